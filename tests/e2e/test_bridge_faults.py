"""A bridge that fails, on the real Asterisk and Postgres, through the service as `dialer serve`
builds it with one websocket agent: the debtor hangs up while the agent is being connected, the
agent's channel drops right after the answer, Asterisk refuses the Redirect.

Each fault is injected at the one moment it matters: the engine's Redirect to [dialer-connect]
is wrapped so that, just before it leaves, the test does what the fault is on Asterisk (hangs the
debtor's channel up, hangs the agent's phone up, or sends a Redirect Asterisk refuses). Asterisk
does the rest. Checked: the attempt's outcome and flags, Asterisk's own events, the agent freed
(not left reserved or talking) and told why over the websocket, no screen pop for a call that
never reached the agent, and no task whose exception nobody read.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from dialer.app import build_app
from dialer.auth import hash_password
from dialer.runtime import RUNTIME
from dialer.settings import Settings
from dialer.store.db import make_sessionmaker
from dialer.store.models import Account, Agent, CallAttempt, Campaign, CampaignAccount, Phone
from dialer.telephony.calls import attempt_of
from dialer.telephony.pool import ServerPool
from tests.e2e.campaign_harness import hang_up_agent_phones, midday_zone
from tests.e2e.test_telephony_outcomes import settings as ami_settings
from tests.fixtures.asterisk import AmiClient, AsteriskAmi, connect

pytestmark = [pytest.mark.asterisk, pytest.mark.postgres]
PASSWORD = "agent-pass-123"
Msg = dict[str, Any]


@dataclass
class Desktop:
    """The agent's websocket, every message kept in order."""

    ws: aiohttp.ClientWebSocketResponse
    messages: list[Msg] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            self.messages.append(json.loads(msg.data))
            self.changed.set()

    def states(self) -> list[tuple[str, str | None]]:
        return [(m["state"], m.get("reason")) for m in self.messages if m["type"] == "state"]

    def state(self) -> str:
        states = self.states()
        return states[-1][0] if states else ""

    def pops(self) -> list[Msg]:
        return [m for m in self.messages if m["type"] == "screen_pop"]

    async def until(self, predicate: Callable[[], bool], timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()


async def _seed(db: AsyncEngine, number: str) -> tuple[int, int]:
    async with make_sessionmaker(db).begin() as s:
        agent = Agent(
            login="ana",
            name="Ana",
            password_hash=hash_password(PASSWORD),
            endpoint="Local/s@sim-agent-phone",  # the testbed's always-answering phone
        )
        campaign = Campaign(
            name="bridge-faults",
            dial_mode="progressive",
            state="running",
            amd_enabled=False,  # the person waits for an agent as soon as they answer
            abandon_limit_s=2.0,
            compliance_profile="MX",
        )
        account = Account(
            external_ref="BF-1",
            name="Debtor",
            balance=Decimal("10.00"),
            currency="MXN",
            time_zone=midday_zone(dt.datetime.now(dt.UTC)),
        )
        account.phones = [Phone(number=number)]
        s.add_all([agent, campaign, account])
        await s.flush()
        s.add(CampaignAccount(campaign_id=campaign.id, account_id=account.id))
        return agent.id, campaign.id


Fault = Callable[[ServerPool, AmiClient, int, int], Awaitable[None]]


async def _debtor_hangs_up(pool: ServerPool, ami: AmiClient, attempt_id: int, _agent: int) -> None:
    channel = pool.server_of(attempt_id).call(attempt_id).channel
    assert channel is not None
    await ami.send({"Action": "Hangup", "Channel": channel, "Cause": "16"})
    await ami.wait_for(lambda e: e.get("Event") == "Hangup" and e.get("Channel") == channel, 5)


async def _agent_channel_drops(pool: ServerPool, ami: AmiClient, _attempt: int, agent: int) -> None:
    reply = await ami.send({"Action": "Getvar", "Variable": f"DIALER_AGENT_{agent}"})
    channel = str(reply[0].get("Value") or "")
    assert channel, "the agent's phone should be up"
    await ami.send({"Action": "Hangup", "Channel": channel, "Cause": "16"})
    await ami.wait_for(
        lambda e: (
            e.get("UserEvent") == "DialerAgentSession"
            and e.get("Agent") == str(agent)
            and e.get("State") == "logout"
        ),
        5,
    )


async def _redirect_refused(pool: ServerPool, _ami: AmiClient, attempt_id: int, _a: int) -> None:
    # What Asterisk answers to a Redirect it cannot carry out (here: a channel it does not have).
    server = pool.server_of(attempt_id)
    await server.connection.send(
        {
            "Action": "Redirect",
            "Channel": "Local/nobody@nowhere-00000000;1",
            "Context": "dialer-connect",
            "Exten": "1",
            "Priority": "1",
        }
    )


async def _run(
    pg_engine: AsyncEngine, asterisk_ami: AsteriskAmi, fault: Fault, number: str, replace: bool
) -> tuple[CallAttempt, Desktop, list[dict[str, Any]], AmiClient, int]:
    """One call with `fault` injected at its connect; returns the attempt, the desktop, the
    loop's unread task exceptions and Asterisk's events."""
    agent_id, campaign_id = await _seed(pg_engine, number)
    loop = asyncio.get_running_loop()
    unread: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: unread.append(context))
    listener = await connect(asterisk_ami)
    settings = Settings(ami_servers=(ami_settings(asterisk_ami),), process_name="bridge-faults")
    app = await build_app(settings, pg_engine)
    from aiohttp.test_utils import TestClient, TestServer

    client = TestClient(TestServer(app))
    await client.start_server()
    sessions = make_sessionmaker(pg_engine)
    reader: asyncio.Task[None] | None = None
    try:
        pool = app[RUNTIME].pool
        await pool.wait_connected(15)
        original = pool.connect_agent
        faulted: list[int] = []

        async def connect_with_fault(attempt_id: int, agent: str) -> None:
            if not faulted:
                faulted.append(attempt_id)
                await fault(pool, listener, attempt_id, agent_id)
                if replace:
                    return  # the fault stands for the Redirect (Asterisk refused it)
            await original(attempt_id, agent)

        pool.connect_agent = connect_with_fault  # type: ignore[method-assign]
        login = await client.post("/api/login", json={"login": "ana", "password": PASSWORD})
        token = (await login.json())["token"]
        ws = await client.ws_connect("/ws/agent", headers={"Authorization": f"Bearer {token}"})
        desk = Desktop(ws)
        reader = asyncio.create_task(desk.read())
        async with asyncio.timeout(20):
            while desk.state() != "ready":
                await ws.send_str(
                    json.dumps(
                        {"v": 1, "id": "r", "type": "state.ready", "campaign_id": campaign_id}
                    )
                )
                with contextlib.suppress(TimeoutError):
                    await desk.until(lambda: desk.state() == "ready", 1.0)
        row: CallAttempt | None = None
        async with asyncio.timeout(40):
            while row is None or row.ended_at is None:
                await asyncio.sleep(0.2)
                async with sessions() as s:
                    row = (await s.execute(select(CallAttempt))).scalars().first()
        # The desktop hears about the end of the reservation (or of the phone) right away.
        await desk.until(lambda: desk.state() not in ("reserved", "talking"), 5)
        await asyncio.sleep(0.5)  # anything late (a screen pop, a stray task) would show by now
        assert faulted == [row.id], "the fault was injected on this call's connect"
        return row, desk, unread, listener, agent_id
    finally:
        await client.close()
        if reader is not None:
            reader.cancel()
        await hang_up_agent_phones(listener)
        listener.manager.close()
        loop.set_exception_handler(previous)


def _asterisk_bridged(ami: AmiClient, attempt_id: int) -> bool:
    return any(
        e.get("Event") == "BridgeEnter"
        and attempt_of(str(e.get("Uniqueid", ""))) == attempt_id
        and e.get("Context") == "dialer-connect"
        for e in ami.events
    )


def _user_events(ami: AmiClient, attempt_id: int, name: str) -> list[Any]:
    return [
        e for e in ami.events if e.get("UserEvent") == name and e.get("Attempt") == str(attempt_id)
    ]


async def test_the_debtor_hangs_up_while_the_agent_is_being_connected(
    pg_engine: AsyncEngine, asterisk_ami: AsteriskAmi
) -> None:
    row, desk, unread, ami, _ = await _run(
        pg_engine, asterisk_ami, _debtor_hangs_up, "5551010001", replace=False
    )
    assert not _asterisk_bridged(ami, row.id)
    # Within the 2 s: nobody was abandoned; nobody was connected.
    assert (row.outcome, row.bridged_at, row.abandoned) == ("hung_up_early", None, False)
    assert desk.pops() == [], "no screen pop for a call that never reached the agent"
    assert desk.states()[-1] == ("ready", "debtor_hung_up"), desk.states()
    assert unread == []


async def test_the_agents_channel_drops_right_after_the_answer(
    pg_engine: AsyncEngine, asterisk_ami: AsteriskAmi
) -> None:
    row, desk, unread, ami, _ = await _run(
        pg_engine, asterisk_ami, _agent_channel_drops, "5551010002", replace=False
    )
    # The dialplan found no agent channel and played the safe harbor itself.
    assert _user_events(ami, row.id, "DialerConnectFailed")
    assert _user_events(ami, row.id, "DialerSafeHarbor")
    assert not _asterisk_bridged(ami, row.id)
    assert (row.outcome, row.bridged_at, row.abandoned) == ("abandoned", None, True)
    assert desk.pops() == [], "no screen pop (nor wrap-up) for a call nobody heard"
    assert "talking" not in [s for s, _ in desk.states()]
    assert "wrap_up" not in [s for s, _ in desk.states()]
    # Freed and told why (not stuck reserved); the phone is down, so no call is offered until the
    # dialer has rung it back (the agent keeps their state: tests/e2e/test_agent_phone_sessions.py).
    assert desk.states()[-1] == ("ready", "agent_channel_lost"), desk.states()
    assert unread == []


async def test_asterisk_refuses_the_redirect(
    pg_engine: AsyncEngine, asterisk_ami: AsteriskAmi
) -> None:
    row, desk, unread, ami, _ = await _run(
        pg_engine, asterisk_ami, _redirect_refused, "5551010003", replace=True
    )
    assert not _asterisk_bridged(ami, row.id)
    assert _user_events(ami, row.id, "DialerSafeHarbor"), "the debtor got the message"
    assert (row.outcome, row.bridged_at, row.abandoned) == ("abandoned", None, True)
    assert desk.pops() == []
    assert ("ready", "connect_failed") in desk.states(), desk.states()
    assert desk.states()[-1][0] == "ready"
    assert unread == []
