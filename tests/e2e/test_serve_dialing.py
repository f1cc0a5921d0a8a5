"""The service as `dialer serve` builds it, with Asterisk configured: an agent logs in over the real
websocket, their phone is called into the holding bridge, they go ready, the engine dials a real
(simulated-PSTN) debtor who answers, the call is bridged into the agent's channel with the screen
pop, the agent records a promise and hangs up from the desktop protocol, the disposition is
committed, and /metrics shows the AMI link, the socket, the promise and the database writes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from decimal import Decimal

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families
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
    AgentStateLog,
    CallAttempt,
    Campaign,
    CampaignAccount,
    Disposition,
    Phone,
)
from tests.e2e.test_engine_asterisk import midday_zone
from tests.e2e.test_telephony_outcomes import settings as ami_settings
from tests.fixtures.asterisk import AmiClient, AsteriskAmi

pytestmark = [pytest.mark.asterisk, pytest.mark.postgres]
PASSWORD = "agent-pass-123"
Msg = dict[str, object]


async def recv(ws: aiohttp.ClientWebSocketResponse, kind: str, timeout: float) -> Msg:
    async with asyncio.timeout(timeout):
        while True:
            msg = await ws.receive()
            assert msg.type == aiohttp.WSMsgType.TEXT, f"socket closed: {msg}"
            data: Msg = json.loads(msg.data)
            if data["type"] == kind:
                return data


# The last `state` each socket received, also those `ask` read past while waiting for its reply
# (a wrap-up may be pushed before the hang-up's ack).
LAST_STATE: dict[int, str] = {}


async def ask(ws: aiohttp.ClientWebSocketResponse, message: Msg, kind: str) -> Msg:
    await ws.send_str(json.dumps({"v": 1, **message}))
    async with asyncio.timeout(10):
        while True:
            data: Msg = json.loads((await ws.receive()).data)
            if data["type"] == "state":
                LAST_STATE[id(ws)] = str(data["state"])
            if data.get("re") == message["id"] and data["type"] in (kind, "error"):
                return data


async def scrape(client: TestClient[web.Request, web.Application]) -> dict[str, float]:
    """Every sample of GET /metrics summed by name (this test's process runs one campaign)."""
    response = await client.get("/metrics")
    assert response.status == 200
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(await response.text()):
        for sample in family.samples:
            values[sample.name] = values.get(sample.name, 0.0) + sample.value
    return values


async def agent_channel(ami: AmiClient, agent_id: int) -> str:
    """The agent's nailed-up channel, as the dialplan records it in a global variable."""
    reply = await ami.send({"Action": "Getvar", "Variable": f"DIALER_AGENT_{agent_id}"})
    return str(reply[0].get("Value") or "")


async def channel_names(ami: AmiClient) -> set[str]:
    listed = await ami.send({"Action": "CoreShowChannels"})
    return {str(c["Channel"]) for c in listed if c.get("Event") == "CoreShowChannel"}


async def test_an_agent_takes_a_real_call_through_the_service(
    pg_engine: AsyncEngine, asterisk_ami: AsteriskAmi, ami: AmiClient
) -> None:
    sessions = make_sessionmaker(pg_engine)
    async with sessions.begin() as s:
        agent = Agent(
            login="maria",
            name="María",
            password_hash=hash_password(PASSWORD),
            language="es",
            # The testbed's always-answering phone stands in for the agent's softphone.
            endpoint="Local/s@sim-agent-phone",
        )
        campaign = Campaign(
            name="serve-e2e",
            dial_mode="progressive",
            state="running",
            amd_enabled=False,
            compliance_profile="MX",
            dispositions=[{"code": "RPC", "label": "Right party", "contact": True, "rpc": True}],
        )
        account = Account(
            external_ref="SERVE-1",
            name="Debtor",
            balance=Decimal("321.00"),
            currency="MXN",
            days_past_due=40,
            aging_bucket="31-60",
            time_zone=midday_zone(dt.datetime.now(dt.UTC)),
        )
        account.phones = [Phone(number="555102")]  # a person answers after 1 s
        s.add_all([agent, campaign, account])
        await s.flush()
        s.add(CampaignAccount(campaign_id=campaign.id, account_id=account.id))
        agent_id, campaign_id = agent.id, campaign.id

    settings = Settings(ami_servers=(ami_settings(asterisk_ami),), process_name="serve-e2e")
    app = await build_app(settings, pg_engine)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        await app[RUNTIME].pool.wait_connected(15)
        login = await client.post("/api/login", json={"login": "maria", "password": PASSWORD})
        token = (await login.json())["token"]
        ws = await client.ws_connect("/ws/agent", headers={"Authorization": f"Bearer {token}"})
        await recv(ws, "welcome", 10)
        ready = await ask(
            ws, {"type": "state.ready", "id": "r1", "campaign_id": campaign_id}, "state"
        )
        assert ready["state"] == "ready", ready

        pop = await recv(ws, "screen_pop", 30)
        call = pop["call"]
        assert isinstance(call, dict) and isinstance(pop["pop"], dict)
        assert pop["pop"]["account"]["external_ref"] == "SERVE-1"  # type: ignore[index]
        promise = {"type": "ptp", "id": "p1", "call_id": call["call_id"], "amount": "150.25"}
        promise["date"] = (dt.date.today() + dt.timedelta(days=5)).isoformat()
        assert (await ask(ws, promise, "ack"))["type"] == "ack"
        # What Prometheus would scrape while the agent is connected.
        live = await scrape(client)
        assert live["dialer_ami_up"] == 1.0
        assert live["dialer_websocket_connections"] == 1.0
        assert live["dialer_promises_to_pay_total"] >= 1.0
        assert live["dialer_promised_amount_total"] >= 150.25
        assert live["dialer_ami_event_lag_seconds_count"] > 0
        assert live["dialer_db_write_duration_seconds_count"] > 0
        hung = await ask(ws, {"type": "hangup", "id": "h1", "call_id": call["call_id"]}, "ack")
        assert hung["type"] == "ack", hung
        while LAST_STATE.get(id(ws)) != "wrap_up":
            LAST_STATE[id(ws)] = str((await recv(ws, "state", 15))["state"])
        ack = await ask(
            ws,
            {"type": "disposition", "id": "d1", "call_id": call["call_id"], "code": "RPC"},
            "ack",
        )
        assert ack["type"] == "ack", ack
        # Logging out hangs up the agent's phone: its nailed-up channel leaves Asterisk.
        channel = await agent_channel(ami, agent_id)
        assert channel in await channel_names(ami), "the agent's channel should be up"
        async with asyncio.timeout(15):
            while (await ask(ws, {"type": "state.logout", "id": "lo"}, "state")).get(
                "state"
            ) != "offline":
                await asyncio.sleep(0.2)  # still in wrap-up: try again
            while channel in await channel_names(ami):
                await asyncio.sleep(0.2)
        assert await agent_channel(ami, agent_id) == ""
        await ws.close()
    finally:
        await client.close()

    async with sessions() as s:
        attempt = (await s.execute(select(CallAttempt))).scalar_one()
        disposition = (await s.execute(select(Disposition))).scalar_one()
        states = [
            r.state
            for r in (
                await s.execute(
                    select(AgentStateLog)
                    .where(AgentStateLog.agent_id == agent_id)
                    .order_by(AgentStateLog.id)
                )
            ).scalars()
        ]
    assert attempt.outcome == "human" and attempt.agent_id == agent_id
    assert attempt.answered_at is not None and attempt.bridged_at is not None
    assert attempt.bridged_at - attempt.answered_at < dt.timedelta(seconds=2)
    assert disposition.attempt_id == attempt.id and disposition.code == "RPC"
    for expected in ("ready", "reserved", "talking", "wrap_up"):
        assert expected in states, states
