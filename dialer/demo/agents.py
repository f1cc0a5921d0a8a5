"""The demo's simulated agents: real websocket clients of `/ws/agent`, as a browser desktop is.

Each logs in over HTTP, goes ready, talks for a drawn time on a screen pop, hangs up, and records
a disposition (sometimes a promise-to-pay) after a drawn wrap-up; durations come from `Scenario`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

import aiohttp
import numpy as np

from pacing.scenario import Distribution, Scenario

log = logging.getLogger("dialer.demo.agents")

JsonObject = dict[str, object]

# What the debtors say, as disposition weights (codes of the seeded campaign).
OUTCOMES: tuple[tuple[str, float], ...] = (
    ("PTP", 0.55),
    ("RPC", 0.15),
    ("3RD", 0.12),
    ("WRONG", 0.06),
    ("REFUSED", 0.12),
)


@dataclass(slots=True)
class AgentTally:
    """What the simulated agents did, counted from the server's acks."""

    logged_in: int = 0
    calls: int = 0
    acks: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    agents_with_calls: set[str] = field(default_factory=set)


class SimulatedAgent:
    """One agent's desktop, driven by draws instead of a person."""

    def __init__(
        self,
        base_url: str,
        login: str,
        password: str,
        scenario: Scenario,
        tally: AgentTally,
        *,
        seed: int,
        today: dt.date,
    ) -> None:
        self.base_url = base_url
        self.login = login
        self.password = password
        self.scenario = scenario
        self.tally = tally
        self.today = today
        self._rng = np.random.default_rng(seed)
        self._ids = itertools.count(1)
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._state = "offline"
        self._state_changed = asyncio.Event()
        self._campaign_id: int | None = None
        self._call_tasks: set[asyncio.Task[None]] = set()

    def _draw(self, dist: Distribution) -> float:
        return max(0.5, float(dist.sample(self._rng, 1)[0]))

    async def _send(self, message: JsonObject) -> str:
        assert self._ws is not None
        mid = f"{self.login}-{next(self._ids)}"
        await self._ws.send_str(json.dumps({"v": 1, "id": mid, **message}))
        return mid

    async def run(self, stop: asyncio.Event) -> None:
        """Log in, take calls until `stop`, then log out. Connection errors end this agent."""
        async with aiohttp.ClientSession() as http:
            resp = await http.post(
                f"{self.base_url}/api/login", json={"login": self.login, "password": self.password}
            )
            if resp.status != 200:
                raise RuntimeError(f"demo agent {self.login}: login refused ({resp.status})")
            token = str((await resp.json())["token"])
            async with http.ws_connect(
                f"{self.base_url}/ws/agent", headers={"Authorization": f"Bearer {token}"}
            ) as ws:
                self._ws = ws
                reader = asyncio.create_task(self._read(ws))
                try:
                    await self._work(stop)
                finally:
                    for task in list(self._call_tasks):
                        task.cancel()
                    await asyncio.gather(*self._call_tasks, return_exceptions=True)
                    reader.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await reader

    async def _wait_state(self, *states: str, within: float) -> bool:
        async with asyncio.timeout(within):
            while self._state not in states:
                self._state_changed.clear()
                await self._state_changed.wait()
        return True

    async def _work(self, stop: asyncio.Event) -> None:
        counted = False
        while not stop.is_set():
            # logged_in means the phone is in the holding bridge: then ready is accepted.
            if self._state in ("logged_in", "paused") and self._campaign_id is not None:
                await self._send({"type": "state.ready", "campaign_id": self._campaign_id})
                if not counted:
                    self.tally.logged_in += 1
                    counted = True
            self._state_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._state_changed.wait(), 1.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.05)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            data: JsonObject = json.loads(msg.data)
            kind = data.get("type")
            if kind == "welcome":
                campaigns = data.get("campaigns")
                if isinstance(campaigns, list) and campaigns:
                    self._campaign_id = int(campaigns[0]["id"])
                state = data.get("state")
                if isinstance(state, dict):
                    self._set_state(str(state.get("state", "offline")))
            elif kind == "state":
                self._set_state(str(data.get("state")))
            elif kind == "screen_pop":
                call, pop = data.get("call"), data.get("pop")
                if isinstance(call, dict) and isinstance(pop, dict):
                    task = asyncio.create_task(self._take_call(call, pop))
                    self._call_tasks.add(task)
                    task.add_done_callback(self._call_tasks.discard)
            elif kind == "ack":
                self.tally.acks[str(data.get("for"))] += 1
            elif kind == "error":
                self.tally.errors[str(data.get("code"))] += 1
                log.debug("demo agent %s: %s", self.login, data.get("message"))

    def _set_state(self, state: str) -> None:
        self._state = state
        self._state_changed.set()

    async def _take_call(self, call: JsonObject, pop: JsonObject) -> None:
        call_id = str(call["call_id"])
        self.tally.calls += 1
        self.tally.agents_with_calls.add(self.login)
        if self._state not in ("talking", "wrap_up"):
            with contextlib.suppress(TimeoutError):
                await self._wait_state("talking", "wrap_up", within=5.0)
        talk = self._draw(self.scenario.talk_time)
        code = self._outcome()
        ended = ("wrap_up", "ready", "logged_in", "offline")
        # The debtor may hang up first: then the hub moves the agent to wrap-up by itself.
        with contextlib.suppress(TimeoutError):
            await self._wait_state(*ended, within=talk * 0.4)
        if code == "PTP":
            # Promised during the conversation, then the terms are read back before the goodbye.
            await self._send(self._promise(call_id, pop))
        if self._state == "talking":
            with contextlib.suppress(TimeoutError):
                await self._wait_state(*ended, within=talk * 0.6)
        if self._state == "talking":
            await self._send({"type": "hangup", "call_id": call_id})
        await asyncio.sleep(self._draw(self.scenario.wrap_time))
        await self._send({"type": "disposition", "call_id": call_id, "code": code})

    def _outcome(self) -> str:
        codes = [c for c, _ in OUTCOMES]
        weights = np.array([w for _, w in OUTCOMES])
        return str(self._rng.choice(codes, p=weights / weights.sum()))

    def _promise(self, call_id: str, pop: JsonObject) -> JsonObject:
        account = pop.get("account")
        balance = Decimal("100.00")
        if isinstance(account, dict):
            with contextlib.suppress(InvalidOperation, TypeError):
                balance = Decimal(str(account.get("balance")))
        share = Decimal(str(round(float(self._rng.uniform(0.1, 0.5)), 2)))
        amount = max(Decimal("1.00"), (balance * share).quantize(Decimal("0.01")))
        # A week or more ahead: never before today in any debtor's zone.
        due = self.today + dt.timedelta(days=int(self._rng.integers(7, 31)))
        return {"type": "ptp", "call_id": call_id, "amount": str(amount), "date": due.isoformat()}
