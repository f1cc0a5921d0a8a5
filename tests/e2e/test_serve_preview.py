"""Preview dialing through the service as `dialer serve` builds it, on the real Asterisk: an agent
takes a preview account over the real websocket, dials it, the (simulated-PSTN) debtor answers and
is bridged into the agent's nailed-up channel, the agent dispositions; a skipped account places no
call; a busy number sends the agent to wrap-up with the attempt closed `busy`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from decimal import Decimal

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from dialer.app import build_app
from dialer.auth import hash_password
from dialer.runtime import RUNTIME
from dialer.settings import Settings
from dialer.store.db import make_sessionmaker
from dialer.store.models import (
    Account,
    Agent,
    CallAttempt,
    Campaign,
    CampaignAccount,
    Disposition,
    Phone,
)
from tests.e2e.campaign_harness import (
    AGENT_PHONE,
    PASSWORD,
    asterisk_view,
    hang_up_agent_phones,
    midday_zone,
)
from tests.e2e.test_telephony_outcomes import settings as ami_settings
from tests.fixtures.asterisk import AmiClient, AsteriskAmi, connect

pytestmark = [pytest.mark.asterisk, pytest.mark.postgres]
Msg = dict[str, object]


@dataclass
class Socket:
    """The agent's desktop: every message received, in order, and a way to wait for one."""

    ws: aiohttp.ClientWebSocketResponse
    received: list[Msg] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    seq: int = 0

    async def read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            self.received.append(json.loads(msg.data))
            self.changed.set()

    async def wait(self, predicate: Callable[[Msg], bool], timeout: float, after: int = 0) -> Msg:
        async with asyncio.timeout(timeout):
            while True:
                for m in self.received[after:]:
                    if predicate(m):
                        return m
                self.changed.clear()
                await self.changed.wait()

    async def ask(self, message: Msg, timeout: float = 15) -> Msg:
        """Send; the direct answer (`ack` or `error`) with this message's id."""
        self.seq += 1
        mid = f"m{self.seq}"
        await self.ws.send_str(json.dumps({"v": 1, "id": mid, **message}))
        return await self.wait(
            lambda m: m.get("re") == mid and m["type"] in ("ack", "error"), timeout
        )

    def state(self) -> str | None:
        states = [m for m in self.received if m["type"] == "state"]
        return str(states[-1]["state"]) if states else None

    async def go_ready(self, campaign_id: int) -> None:
        """Ask until ready: the nailed-up channel comes up a moment after the login."""
        async with asyncio.timeout(20):
            while self.state() != "ready":
                self.seq += 1
                await self.ws.send_str(
                    json.dumps(
                        {
                            "v": 1,
                            "id": f"r{self.seq}",
                            "type": "state.ready",
                            "campaign_id": campaign_id,
                        }
                    )
                )
                with contextlib.suppress(TimeoutError):
                    await self.wait(
                        lambda m: m["type"] == "state" and m["state"] == "ready",
                        1.0,
                        len(self.received),
                    )

    async def wait_state(self, state: str, timeout: float, after: int = 0) -> Msg:
        return await self.wait(
            lambda m: m["type"] == "state" and m["state"] == state, timeout, after
        )


@dataclass
class Floor:
    sessions: object
    campaign_id: int
    agent_id: int
    desk: Socket
    listener: AmiClient


async def _seed(db: AsyncEngine, number: str) -> tuple[int, int]:
    async with make_sessionmaker(db).begin() as s:
        agent = Agent(
            login="lucia",
            name="Lucía",
            password_hash=hash_password(PASSWORD),
            endpoint=AGENT_PHONE,
        )
        campaign = Campaign(
            name="serve-preview",
            dial_mode="preview",
            state="running",
            amd_enabled=True,  # a preview dials without AMD all the same: the agent is there
            compliance_profile="MX",
            caller_id="5550199",
            dispositions=[{"code": "RPC", "label": "Right party", "contact": True, "rpc": True}],
        )
        account = Account(
            external_ref="PREVIEW-1",
            name="Debtor",
            balance=Decimal("77.00"),
            currency="MXN",
            days_past_due=40,
            aging_bucket="31-60",
            time_zone=midday_zone(dt.datetime.now(dt.UTC)),
        )
        account.phones = [Phone(number=number)]
        s.add_all([agent, campaign, account])
        await s.flush()
        s.add(CampaignAccount(campaign_id=campaign.id, account_id=account.id))
        return agent.id, campaign.id


@contextlib.asynccontextmanager
async def _floor(db: AsyncEngine, asterisk: AsteriskAmi, number: str) -> AsyncIterator[Floor]:
    agent_id, campaign_id = await _seed(db, number)
    listener = await connect(asterisk)
    settings = Settings(ami_servers=(ami_settings(asterisk),), process_name="serve-preview")
    app = await build_app(settings, db)
    client = TestClient(TestServer(app))
    await client.start_server()
    reader: asyncio.Task[None] | None = None
    try:
        await app[RUNTIME].pool.wait_connected(15)
        login = await client.post("/api/login", json={"login": "lucia", "password": PASSWORD})
        token = (await login.json())["token"]
        ws = await client.ws_connect("/ws/agent", headers={"Authorization": f"Bearer {token}"})
        desk = Socket(ws)
        reader = asyncio.create_task(desk.read())
        await desk.wait(lambda m: m["type"] == "welcome", 10)
        await desk.go_ready(campaign_id)
        yield Floor(make_sessionmaker(db), campaign_id, agent_id, desk, listener)
        await ws.close()
    finally:
        if reader is not None:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        await client.close()
        await hang_up_agent_phones(listener)
        listener.manager.close()


async def _take_preview(f: Floor) -> tuple[str, int]:
    before = len(f.desk.received)
    ack = await f.desk.ask({"type": "preview.next", "campaign_id": f.campaign_id})
    assert ack["type"] == "ack", ack
    pop = await f.desk.wait(lambda m: m["type"] == "screen_pop", 5, before)
    call = pop["call"]
    assert isinstance(call, dict) and call["preview"] is True
    assert pop["pop"]["account"]["external_ref"] == "PREVIEW-1"  # type: ignore[index]
    assert f.desk.state() == "reserved"
    return str(call["call_id"]), int(call["attempt_id"])


async def test_a_dialed_preview_is_bridged_into_the_agents_channel(
    pg_engine: AsyncEngine, asterisk_ami: AsteriskAmi
) -> None:
    async with _floor(pg_engine, asterisk_ami, "555102") as f:  # a person answers after 1 s
        call_id, attempt_id = await _take_preview(f)
        mark = len(f.desk.received)
        dialed = await f.desk.ask({"type": "preview.dial", "call_id": call_id})
        assert dialed["type"] == "ack", dialed
        await f.desk.wait_state("talking", 20, mark)
        pop = await f.desk.wait(lambda m: m["type"] == "screen_pop", 5, mark)
        assert pop["pop"]["account"]["external_ref"] == "PREVIEW-1", "the pop is kept"  # type: ignore[index]
        # Asterisk's own view: the debtor's channel entered the agent's bridge.
        await f.listener.wait_for(
            lambda e: e.get("Event") == "BridgeEnter" and e.get("Context") == "dialer-connect",
            10,
        )
        seen = asterisk_view(f.listener)[attempt_id]
        assert seen.agent_bridge_ts is not None, "\n".join(seen.trace)
        assert seen.first("DialerSafeHarbor") is None, "\n".join(seen.trace)
        hung = await f.desk.ask({"type": "hangup", "call_id": call_id})
        assert hung["type"] == "ack", hung
        await f.desk.wait_state("wrap_up", 15, mark)
        done = await f.desk.ask({"type": "disposition", "call_id": call_id, "code": "RPC"})
        assert done["type"] == "ack", done
        await f.desk.wait_state("ready", 5, mark)

    async with make_sessionmaker(pg_engine)() as s:
        attempt = await s.get(CallAttempt, attempt_id)
        disposition = (await s.execute(select(Disposition))).scalar_one()
    assert attempt is not None and attempt.outcome == "human" and not attempt.abandoned
    assert attempt.agent_id == f.agent_id and attempt.bridged_at is not None
    assert attempt.answered_at is not None and attempt.caller_id == "5550199"
    assert attempt.amd_result in (None, "OFF", "HUMAN")
    assert disposition.attempt_id == attempt_id and disposition.code == "RPC"


async def test_a_skipped_preview_places_no_call_and_rests_the_account(
    pg_engine: AsyncEngine, asterisk_ami: AsteriskAmi
) -> None:
    async with _floor(pg_engine, asterisk_ami, "555102") as f:
        call_id, attempt_id = await _take_preview(f)
        skipped_at = dt.datetime.now(dt.UTC)
        mark = len(f.desk.received)
        skipped = await f.desk.ask({"type": "preview.skip", "call_id": call_id})
        assert skipped["type"] == "ack", skipped
        await f.desk.wait_state("ready", 5, mark)
        again = await f.desk.ask({"type": "preview.next", "campaign_id": f.campaign_id})
        assert again["type"] == "error" and again["code"] == "unavailable", again
        await asyncio.sleep(1.0)  # any Originate would show in Asterisk by now
        assert attempt_id not in asterisk_view(f.listener)
        assert not f.listener.find(
            lambda e: (
                e.get("Event") == "Newchannel" and "dialer-outbound" in str(e.get("Context", ""))
            )
        )

    async with make_sessionmaker(pg_engine)() as s:
        attempt = await s.get(CallAttempt, attempt_id)
        member = (await s.execute(select(CampaignAccount))).scalar_one()
    assert attempt is not None and attempt.outcome == "skipped" and attempt.originated_at is None
    assert member.next_attempt_at is not None
    assert member.next_attempt_at - skipped_at > dt.timedelta(minutes=29)


async def test_a_busy_preview_closes_busy_and_the_agent_wraps_up(
    pg_engine: AsyncEngine, asterisk_ami: AsteriskAmi
) -> None:
    async with _floor(pg_engine, asterisk_ami, "555300") as f:
        call_id, attempt_id = await _take_preview(f)
        mark = len(f.desk.received)
        dialed = await f.desk.ask({"type": "preview.dial", "call_id": call_id})
        assert dialed["type"] == "ack", dialed
        wrap = await f.desk.wait_state("wrap_up", 20, mark)
        assert wrap["reason"] == "not_connected" and wrap["call_id"] == call_id
        done = await f.desk.ask({"type": "disposition", "call_id": call_id, "code": "RPC"})
        assert done["type"] == "ack", done
        await f.desk.wait_state("ready", 5, mark)

    async with make_sessionmaker(pg_engine)() as s:
        attempt = await s.get(CallAttempt, attempt_id)
    assert attempt is not None and attempt.outcome == "busy" and attempt.bridged_at is None
    assert not attempt.abandoned
