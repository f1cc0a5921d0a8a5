"""A whole campaign through `build_app` on the real Asterisk: seeded accounts, websocket agents
that take calls and record dispositions, and Asterisk's own view of every attempt (from AMI events).

Shared by tests/e2e/test_campaign_e2e.py and benchmarks/bridge_latency.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient
from panoramisk.message import Message
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dialer.auth import hash_password
from dialer.store.models import Account, Agent, Campaign, CampaignAccount, Phone
from dialer.telephony.calls import attempt_of
from tests.fixtures.asterisk import AmiClient

PASSWORD = "agent-pass-123"
AGENT_PHONE = "Local/s@sim-agent-phone"  # the testbed's always-answering phone
Msg = dict[str, object]


def midday_zone(now: dt.datetime) -> str:
    """A fixed-offset zone where it is about noon now, so the calling window is open whenever
    the test runs (Etc/GMT-N is UTC+N)."""
    offset = (12 - now.hour + 12) % 24 - 12
    return f"Etc/GMT{-offset:+d}" if offset else "Etc/GMT"


def expected_outcomes(number: str) -> set[str]:
    """The outcomes the testbed's numbering plan allows for a number (asterisk_conf/testbed);
    a longer number behaves as its first six digits (see `seed_campaign`)."""
    number = number[:6]
    if number.startswith(("5551", "5557")):
        # A person: bridged to an agent, or the safe harbor when nobody was free in time.
        return {"human", "abandoned"}
    if number.startswith("5552"):
        return {"machine"}
    if number.startswith("5556"):
        return {"hung_up_early"}
    return {
        "555300": {"busy"},
        "555400": {"no_answer"},
        "555500": {"congestion"},
        "555800": {"invalid_number"},
    }[number]


def numbers_for(mix: Mapping[str, int], seed: int = 6) -> list[str]:
    numbers = [n for n, count in mix.items() for _ in range(count)]
    random.Random(seed).shuffle(numbers)
    return numbers


async def seed_campaign(
    sessions: async_sessionmaker[AsyncSession],
    numbers: Sequence[str],
    *,
    agents: int,
    dial_mode: str,
    pacing: Mapping[str, object] | None = None,
    name: str = "e2e-campaign",
    login_prefix: str = "agent",
) -> tuple[int, list[str]]:
    """A running campaign with one account (one phone) per number, and `agents` agent logins.

    Each phone gets the number plus a 4-digit suffix of its own (5553000007: a busy number, see
    asterisk_conf/testbed): the dialer never rings one number twice at once, so accounts sharing
    a testbed number would wait for each other."""
    zone = midday_zone(dt.datetime.now(dt.UTC))
    async with sessions.begin() as s:
        campaign = Campaign(
            name=name,
            dial_mode=dial_mode,
            pacing=dict(pacing or {}),
            state="running",
            amd_enabled=True,
            abandon_limit_s=2.0,
            compliance_profile="MX",  # 07:00-22:00 in the debtor's zone, midday here
            dispositions=[{"code": "RPC", "label": "Right party", "contact": True, "rpc": True}],
        )
        logins = [f"{login_prefix}{i}" for i in range(agents)]
        s.add(campaign)
        s.add_all(
            Agent(
                login=login,
                name=login.title(),
                password_hash=hash_password(PASSWORD),
                endpoint=AGENT_PHONE,
            )
            for login in logins
        )
        await s.flush()
        accounts = []
        for i, number in enumerate(numbers):
            account = Account(
                external_ref=f"{name}-{i:04d}",
                name="Debtor",
                balance=Decimal("100.00"),
                currency="MXN",
                days_past_due=40,
                aging_bucket="31-60",
                time_zone=zone,
            )
            account.phones = [Phone(number=f"{number}{i:04d}")]
            accounts.append(account)
        s.add_all(accounts)
        await s.flush()
        # Numbers that ring the full 25 s first, so that their wait overlaps the rest of the run.
        s.add_all(
            CampaignAccount(
                campaign_id=campaign.id,
                account_id=a.id,
                priority=1 if number == "555400" else 0,
            )
            for a, number in zip(accounts, numbers, strict=True)
        )
        return campaign.id, logins


@dataclass
class Desk:
    """One agent's desktop over the real websocket: go ready, and for every screen pop talk for
    `talk_s`, hang up, and record a disposition (which makes the agent ready again)."""

    login: str
    ws: aiohttp.ClientWebSocketResponse
    talk_s: float
    campaign_id: int
    agent_id: int = 0
    state: str = "offline"
    phone: str = "down"  # the agent's nailed-up session, as the desktop is told ("up"/"down")
    phone_reasons: list[str] = field(default_factory=list)  # every phone_reason told, in order
    call_id: str | None = None
    pops: list[int] = field(default_factory=list)  # attempt ids, in order
    pop_at: dict[int, float] = field(default_factory=dict)  # attempt id -> wall clock at receipt
    disposed: list[int] = field(default_factory=list)
    errors: list[Msg] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _seq: int = 0
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def send(self, message: Msg) -> str:
        self._seq += 1
        mid = f"{self.login}-{self._seq}"
        await self.ws.send_str(json.dumps({"v": 1, "id": mid, **message}))
        return mid

    async def wait_state(self, predicate: object, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():  # type: ignore[operator]
                self._changed.clear()
                await self._changed.wait()

    async def read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            data: Msg = json.loads(msg.data)
            kind = data.get("type")
            if kind == "welcome":
                agent = data["agent"]
                assert isinstance(agent, dict)
                self.agent_id = int(agent["id"])
            elif kind == "state":
                self.state = str(data["state"])
                self.phone = str(data.get("phone", "down"))
                reason = data.get("phone_reason")
                if reason and (not self.phone_reasons or self.phone_reasons[-1] != reason):
                    self.phone_reasons.append(str(reason))
            elif kind == "screen_pop":
                call = data["call"]
                assert isinstance(call, dict)
                self.call_id = str(call["call_id"])
                self.pops.append(int(call["attempt_id"]))
                self.pop_at.setdefault(int(call["attempt_id"]), time.time())
                task = asyncio.create_task(self._take(self.call_id, int(call["attempt_id"])))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            elif kind == "error":
                self.errors.append(data)
            self._changed.set()

    async def _take(self, call_id: str, attempt_id: int) -> None:
        await asyncio.sleep(self.talk_s)
        # The debtor may have hung up already (5557NN): then the hangup is refused, which is fine.
        await self.send({"type": "hangup", "call_id": call_id})
        await self.wait_state(lambda: self.state == "wrap_up", 20)
        await self.send({"type": "disposition", "call_id": call_id, "code": "RPC"})
        await self.wait_state(lambda: self.state == "ready", 20)
        self.disposed.append(attempt_id)

    async def go_ready(self, timeout: float = 20) -> None:
        """Ask until ready: the nailed-up channel comes up a moment after the login."""
        async with asyncio.timeout(timeout):
            while self.state != "ready":
                await self.send({"type": "state.ready", "campaign_id": self.campaign_id})
                with contextlib.suppress(TimeoutError):
                    await self.wait_state(lambda: self.state == "ready", 1.0)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.ws.close()


async def open_desks(
    client: TestClient[web.Request, web.Application] | aiohttp.ClientSession,
    logins: Sequence[str],
    campaign_id: int,
    talk_s: float,
) -> tuple[list[Desk], list[asyncio.Task[None]]]:
    desks: list[Desk] = []
    readers: list[asyncio.Task[None]] = []
    for login in logins:
        response = await client.post("/api/login", json={"login": login, "password": PASSWORD})
        assert response.status == 200, await response.text()
        token = (await response.json())["token"]
        ws = await client.ws_connect("/ws/agent", headers={"Authorization": f"Bearer {token}"})
        desk = Desk(login, ws, talk_s, campaign_id)
        desks.append(desk)
        readers.append(asyncio.create_task(desk.read(), name=f"desk-{login}"))
    await asyncio.gather(*(d.go_ready() for d in desks))
    return desks, readers


@dataclass
class AsteriskCall:
    """Everything Asterisk said about one attempt (all channels whose Linkedid is its id)."""

    attempt_id: int
    linkedids: set[str] = field(default_factory=set)
    first_ts: float = float("inf")
    last_hangup_ts: float = float("-inf")
    open_channels: dict[str, str] = field(default_factory=dict)  # uniqueid -> channel
    user_events: dict[str, list[Message]] = field(default_factory=dict)
    agent_bridge_ts: float | None = None  # the debtor's ;1 channel entering the agent's bridge
    trace: list[str] = field(default_factory=list)  # a line per event, for failure messages

    def first(self, user_event: str) -> Message | None:
        found = self.user_events.get(user_event)
        return found[0] if found else None


_AGENT_PHONE_CHANNEL = "@sim-agent-phone-"  # Local/s@sim-agent-phone-<n>;1 and ;2


def asterisk_view(client: AmiClient) -> dict[int, AsteriskCall]:
    """Per attempt id, from the recorded AMI events (timestampevents=yes gives `Timestamp`)."""
    calls: dict[int, AsteriskCall] = {}
    # A channel keeps its attempt even when joining the agent's older bridge changes its Linkedid.
    owner: dict[str, int] = {}
    for event in client.events:
        name = event.get("Event")
        linked = str(event.get("Linkedid", ""))
        unique = str(event.get("Uniqueid", ""))
        if _AGENT_PHONE_CHANNEL in str(event.get("Channel", "")):
            # An agent's phone takes the call's Linkedid when it is the newer channel of the two
            # in the bridge (a session opened after the call, e.g. after a restart): its own
            # later hang-up is not the call's.
            continue
        attempt = owner.get(unique, attempt_of(linked))
        if attempt is not None and unique:
            owner.setdefault(unique, attempt)
        if name == "UserEvent" and attempt is None:
            with contextlib.suppress(ValueError):
                attempt = int(str(event.get("Attempt", "")))
        if attempt is None:
            continue
        call = calls.setdefault(attempt, AsteriskCall(attempt))
        stamp = float(event.get("Timestamp", "nan"))
        call.trace.append(
            " ".join(
                f"{k}={event[k]}"
                for k in (
                    "Timestamp",
                    "Event",
                    "UserEvent",
                    "Uniqueid",
                    "Channel",
                    "Cause",
                    "DialStatus",
                    "HangupCause",
                    "Response",
                    "Reason",
                    "AmdStatus",
                )
                if k in event
            )
        )
        if attempt_of(linked) == attempt:
            call.linkedids.add(linked)
        if name == "Newchannel":
            call.first_ts = min(call.first_ts, stamp)
            call.open_channels[str(event["Uniqueid"])] = str(event.get("Channel"))
        elif name == "Hangup":
            call.last_hangup_ts = max(call.last_hangup_ts, stamp)
            call.open_channels.pop(str(event["Uniqueid"]), None)
        elif name == "UserEvent":
            call.user_events.setdefault(str(event["UserEvent"]), []).append(event)
        elif (
            name == "BridgeEnter"
            and attempt_of(unique) == attempt
            and str(event.get("Context")) == "dialer-connect"
            and call.agent_bridge_ts is None
        ):
            call.agent_bridge_ts = stamp
    return calls


async def hang_up_agent_phones(client: AmiClient) -> None:
    """The agents' nailed-up channels would wait an hour in the sandbox: end them."""
    channels = await client.send({"Action": "CoreShowChannels"})
    for channel in channels:
        if channel.get("Event") != "CoreShowChannel":
            continue
        if channel.get("Context") in ("dialer-agent-session", "sim-agent-phone"):
            with contextlib.suppress(Exception):
                await client.send({"Action": "Hangup", "Channel": str(channel["Channel"])})
