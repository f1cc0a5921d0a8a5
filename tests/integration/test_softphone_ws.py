"""The desktop's softphone over the agents' websocket: credentials only for softphone agents and
never the agent's own password; a report of lost audio counts the agent's session down once and
stops routing; reports are checked field by field; the metrics count registered softphones."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from prometheus_client import REGISTRY
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from agents_ws.engine_port import CallOffer
from agents_ws.protocol import JsonObject
from dialer.agent_service import DbAgentPort
from dialer.store.models import Agent
from dialer.telephony.softphones import SOFTPHONE
from tests.integration.test_agents_ws import PASSWORD, Floor, ask, make_floor, state_of


class Telephony:
    """Stands in for the pool: what the dialer would answer and what it was asked."""

    def __init__(self, floor: Floor) -> None:
        self.floor = floor
        self.issued: list[int] = []
        self.lost: list[tuple[int, str]] = []

    async def open_agent_channel(self, agent_id: int, endpoint: str | None) -> bool:
        return True

    async def close_agent_channel(self, agent_id: int) -> None:
        return None

    async def softphone_credentials(self, agent_id: int, uses_softphone: bool) -> JsonObject | None:
        if not uses_softphone:
            return None
        self.issued.append(agent_id)
        return {
            "ws_url": "ws://127.0.0.1:1/ws",
            "username": f"softphone-{agent_id}",
            "password": f"random-{len(self.issued)}",
            "uri": "sip:x@127.0.0.1",
        }

    async def softphone_audio_lost(self, agent_id: int, reason: str) -> None:
        self.lost.append((agent_id, reason))
        self.floor.hub.channel_down(agent_id, reason)  # as the session watcher does


@pytest_asyncio.fixture
async def floor(engine: AsyncEngine) -> AsyncIterator[tuple[Floor, Telephony]]:
    async for f in make_floor(engine):
        port = f.hub.port
        assert isinstance(port, DbAgentPort)
        telephony = Telephony(f)
        port.telephony = telephony  # type: ignore[assignment]
        yield f, telephony


async def softphone_agent(floor: Floor, login: str = "ana") -> int:
    agent_id, _ = await floor.agent(login)
    async with floor.sessions.begin() as s:
        await s.execute(update(Agent).where(Agent.id == agent_id).values(endpoint=SOFTPHONE))
    return agent_id


async def login(floor: Floor, login: str) -> str:
    resp = await floor.client.post("/api/login", json={"login": login, "password": PASSWORD})
    return str((await resp.json())["token"])


async def test_a_softphone_agent_gets_fresh_credentials_that_are_not_their_password(
    floor: tuple[Floor, Telephony],
) -> None:
    f, telephony = floor
    agent_id = await softphone_agent(f)
    ws = await f.connect(await login(f, "ana"))
    first = await ask(ws, {"type": "softphone.credentials"}, "softphone.credentials")
    second = await ask(ws, {"type": "softphone.credentials"}, "softphone.credentials")
    assert first["sip"]["username"] == f"softphone-{agent_id}"
    assert first["sip"]["password"] != second["sip"]["password"]
    assert PASSWORD not in str(first) and telephony.issued == [agent_id, agent_id]


async def test_an_agent_with_a_sip_phone_is_told_there_is_no_softphone(
    floor: tuple[Floor, Telephony],
) -> None:
    f, telephony = floor
    _, token = await f.agent("bob")
    ws = await f.connect(token)
    reply = await ask(ws, {"type": "softphone.credentials"}, "softphone.credentials")
    assert reply["type"] == "error" and reply["code"] == "unavailable"
    assert telephony.issued == []


async def test_lost_audio_stops_routing_at_once_and_is_passed_on_once(
    floor: tuple[Floor, Telephony],
) -> None:
    f, telephony = floor
    agent_id = await softphone_agent(f)
    ws = await f.connect(await login(f, "ana"))
    assert (await state_of(ws, {"type": "state.ready"}))["state"] == "ready"
    await ws.send_json(
        {
            "v": 1,
            "type": "softphone.status",
            "state": "ready",
            "registered": True,
            "mos": 4.4,
            "loss_pct": 0,
            "jitter_ms": 2,
            "rtt_ms": 1,
        }
    )
    assert f.hub.pick(1) is not None
    refused_before = REGISTRY.get_sample_value("dialer_calls_refused_audio_down_total") or 0.0
    for _ in range(2):
        await ws.send_json(
            {"v": 1, "type": "softphone.status", "state": "audio_lost", "registered": False}
        )
    pong = await ask(ws, {"type": "ping"}, "pong")  # both reports handled
    assert pong["type"] == "pong"
    assert telephony.lost == [(agent_id, "audio_lost")]
    assert f.hub.pick(1) is None
    offer = CallOffer(call_id="c1", campaign_id=1, account_id=1, attempt_id=1, phone_id=1)
    assert f.hub.reserve(offer) is None
    refused = REGISTRY.get_sample_value("dialer_calls_refused_audio_down_total") or 0.0
    assert refused == refused_before + 1
    assert REGISTRY.get_sample_value("dialer_softphones_registered") == 0.0


async def test_a_report_with_a_bad_field_is_refused_naming_it(
    floor: tuple[Floor, Telephony],
) -> None:
    f, _ = floor
    await softphone_agent(f)
    ws = await f.connect(await login(f, "ana"))
    bad = await ask(ws, {"type": "softphone.status", "state": "ready", "mos": 7}, "x")
    assert (bad["code"], bad["field"]) == ("invalid_field", "mos")
    bad = await ask(ws, {"type": "softphone.status", "state": "dancing"}, "x")
    assert (bad["code"], bad["field"]) == ("invalid_field", "state")
