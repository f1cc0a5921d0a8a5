"""The agents' websocket over a real loopback socket, against the real database (SQLite and
Postgres): login, state changes, errors that keep the connection, submissions, reconnects.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from agents_ws.engine_port import CallOffer
from agents_ws.hub import AgentHub
from agents_ws.server import HUB
from dialer.agent_service import HubAgents, build_screen_pop
from dialer.app import build_app
from dialer.auth import hash_password
from dialer.engine.ports import ReadyAgent
from dialer.settings import Settings
from dialer.store.db import make_sessionmaker
from dialer.store.models import (
    Account,
    Agent,
    AgentStateLog,
    CallAttempt,
    Callback,
    Campaign,
    CampaignAccount,
    Disposition,
    DncEntry,
    Phone,
    PromiseToPay,
)
from tests.e2e.campaign_harness import midday_zone

PASSWORD = "correct horse battery"
_ids = itertools.count(1)
Msg = dict[str, Any]


class Floor:
    """A running app on loopback, its hub, and helpers to seed and talk to it."""

    def __init__(
        self, client: TestClient[Any, Any], engine: AsyncEngine, app: web.Application
    ) -> None:
        self.client = client
        self.engine = engine
        self.sessions = make_sessionmaker(engine)
        self.hub: AgentHub = app[HUB]

    async def agent(self, login: str, role: str = "agent") -> tuple[int, str]:
        async with self.sessions.begin() as s:
            agent = Agent(
                login=login,
                name=login.title(),
                password_hash=hash_password(PASSWORD),
                role=role,
                language="en",
                endpoint=f"PJSIP/{login}",
            )
            s.add(agent)
            await s.flush()
            agent_id = agent.id
        resp = await self.client.post("/api/login", json={"login": login, "password": PASSWORD})
        assert resp.status == 200
        return agent_id, (await resp.json())["token"]

    async def account(
        self,
        *,
        wrap_up_limit_s: int = 120,
        wrap_up_expiry: str = "auto_ready",
        time_zone: str = "America/Bogota",
    ) -> CallOffer:
        async with self.sessions.begin() as s:
            campaign = Campaign(
                name=f"c{next(_ids)}",
                wrap_up_limit_s=wrap_up_limit_s,
                wrap_up_expiry=wrap_up_expiry,
                state="running",
            )
            account = Account(
                external_ref=f"r{next(_ids)}",
                name="Ana Pérez",
                balance=Decimal("1234.50"),
                currency="COP",
                days_past_due=45,
                aging_bucket="31-60",
                time_zone=time_zone,
                custom_fields={"producto": "tarjeta"},
            )
            s.add_all([campaign, account])
            await s.flush()
            phone = Phone(account_id=account.id, number=f"+5760100{next(_ids):05d}")
            s.add(phone)
            await s.flush()
            attempt = CallAttempt(
                campaign_id=campaign.id,
                account_id=account.id,
                phone_id=phone.id,
                number=phone.number,
            )
            s.add(attempt)
            await s.flush()
            return CallOffer(
                call_id=f"call-{attempt.id}",
                campaign_id=campaign.id,
                account_id=account.id,
                attempt_id=attempt.id,
                phone_id=phone.id,
                time_zone=time_zone,
                wrap_up_limit_s=float(wrap_up_limit_s),
                wrap_up_expiry=wrap_up_expiry,
            )

    async def connect(self, token: str) -> aiohttp.ClientWebSocketResponse:
        ws = await self.client.ws_connect("/ws/agent", headers={"Authorization": f"Bearer {token}"})
        welcome = await recv(ws, "welcome")
        assert welcome["agent"]["role"] in ("agent", "supervisor", "admin")
        return ws

    async def give_call(self, agent_id: int, offer: CallOffer, ws: Any) -> Msg:
        """Reserve the agent, bridge the call, push the screen pop built from the database."""
        assert self.hub.reserve(offer, agent_id) == agent_id
        async with self.sessions() as s:
            pop = await build_screen_pop(
                s,
                offer.campaign_id,
                offer.account_id,
                dt.datetime.now(dt.UTC),
                attempt_id=offer.attempt_id,
                phone_id=offer.phone_id,
                language="en",
            )
        assert self.hub.call_bridged(offer.call_id, pop)
        return await recv(ws, "screen_pop")


async def recv(ws: aiohttp.ClientWebSocketResponse, kind: str, timeout: float = 5.0) -> Msg:
    """The next message of type `kind`, skipping others (state pushes, pongs)."""
    async with asyncio.timeout(timeout):
        while True:
            msg = await ws.receive()
            assert msg.type == aiohttp.WSMsgType.TEXT, f"socket closed: {msg}"
            data: Msg = json.loads(msg.data)
            if data["type"] == kind:
                return data


async def ask(ws: aiohttp.ClientWebSocketResponse, message: Msg, kind: str = "ack") -> Msg:
    """Send a message with a fresh client id; return the reply of type `kind` or an error."""
    message = {"v": 1, "id": f"m{next(_ids)}", **message}
    await ws.send_str(json.dumps(message))
    async with asyncio.timeout(5):
        while True:
            data = json.loads((await ws.receive()).data)
            if data.get("re") == message["id"] and data["type"] in (kind, "error"):
                return data


async def state_of(ws: aiohttp.ClientWebSocketResponse, message: Msg) -> Msg:
    return await ask(ws, message, "state")


async def still_up(ws: aiohttp.ClientWebSocketResponse) -> bool:
    await ws.send_str(json.dumps({"v": 1, "type": "ping", "id": "alive"}))
    return (await recv(ws, "pong"))["re"] == "alive"


def future_day(days: int = 3) -> str:
    return (dt.date.today() + dt.timedelta(days=days)).isoformat()


async def make_floor(engine: AsyncEngine, grace: float = 30.0) -> AsyncIterator[Floor]:
    app = await build_app(Settings(agent_grace_seconds=grace), engine)
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield Floor(client, engine, app)
    finally:
        await client.close()


@pytest_asyncio.fixture
async def floor(engine: AsyncEngine) -> AsyncIterator[Floor]:
    async for f in make_floor(engine):
        yield f


@pytest_asyncio.fixture
async def pg_floor(pg_engine: AsyncEngine) -> AsyncIterator[Floor]:
    async for f in make_floor(pg_engine):
        yield f


@pytest_asyncio.fixture
async def short_grace_floor(pg_engine: AsyncEngine) -> AsyncIterator[Floor]:
    async for f in make_floor(pg_engine, grace=0.3):
        yield f


Connected = Callable[[], Awaitable[tuple[int, aiohttp.ClientWebSocketResponse]]]


async def ready_agent(
    floor: Floor, login: str = "ana"
) -> tuple[int, aiohttp.ClientWebSocketResponse]:
    agent_id, token = await floor.agent(login)
    ws = await floor.connect(token)
    assert (await state_of(ws, {"type": "state.ready"}))["state"] == "ready"
    return agent_id, ws


# --- connecting ------------------------------------------------------------------------------


async def test_socket_without_token_is_refused(floor: Floor) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await floor.client.ws_connect("/ws/agent")
    assert refused.value.status == 401


async def test_socket_with_unknown_token_is_refused(floor: Floor) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await floor.client.ws_connect("/ws/agent", headers={"Authorization": "Bearer nope"})
    assert refused.value.status == 401


async def test_login_then_socket_welcomes_agent_logged_in(floor: Floor) -> None:
    _, token = await floor.agent("ana")
    ws = await floor.client.ws_connect("/ws/agent", protocols=("dialer.v1", f"bearer.{token}"))
    welcome = await recv(ws, "welcome")
    assert welcome["agent"]["login"] == "ana"
    assert (await recv(ws, "state"))["state"] == "logged_in"


# --- state changes -----------------------------------------------------------------------------


async def test_ready_then_pause_with_reason_changes_state(floor: Floor) -> None:
    _, ws = await ready_agent(floor)
    paused = await state_of(ws, {"type": "state.pause", "reason": "lunch"})
    assert (paused["state"], paused["reason"]) == ("paused", "lunch")


async def test_every_state_change_is_written_to_the_state_log(floor: Floor) -> None:
    agent_id, ws = await ready_agent(floor)
    await state_of(ws, {"type": "state.pause", "reason": "break"})
    await floor.hub.flush()
    async with floor.sessions() as s:
        rows = (
            (
                await s.execute(
                    select(AgentStateLog)
                    .where(AgentStateLog.agent_id == agent_id)
                    .order_by(AgentStateLog.id)
                )
            )
            .scalars()
            .all()
        )
    assert [(r.state, r.reason) for r in rows] == [
        ("logged_in", None),
        ("ready", None),
        ("paused", "break"),
    ]
    assert [r.ended_at is None for r in rows] == [False, False, True]


async def test_pause_with_unknown_reason_is_refused_naming_reason(floor: Floor) -> None:
    _, ws = await ready_agent(floor)
    error = await ask(ws, {"type": "state.pause", "reason": "nap"})
    assert (error["type"], error["code"], error["field"]) == ("error", "invalid_field", "reason")


async def test_call_goes_reserved_talking_wrap_up_then_ready_on_disposition(floor: Floor) -> None:
    agent_id, ws = await ready_agent(floor)
    offer = await floor.account()
    pop = await floor.give_call(agent_id, offer, ws)
    assert pop["call"]["call_id"] == offer.call_id
    floor.hub.call_ended(offer.call_id)
    wrap = await recv(ws, "state")
    while wrap["state"] != "wrap_up":
        wrap = await recv(ws, "state")
    assert wrap["wrap_up_remaining_s"] == pytest.approx(120, abs=1)
    ack = await ask(ws, {"type": "disposition", "call_id": offer.call_id, "code": "RPC_NO_PTP"})
    assert ack["type"] == "ack"
    assert (await recv(ws, "state"))["state"] == "ready"


# --- errors that keep the connection ------------------------------------------------------------


async def test_bad_json_gets_error_and_connection_stays_up(floor: Floor) -> None:
    _, ws = await ready_agent(floor)
    await ws.send_str("{not json")
    error = await recv(ws, "error")
    assert error["code"] == "bad_json"
    assert await still_up(ws)


async def test_unknown_type_gets_error_naming_type(floor: Floor) -> None:
    _, ws = await ready_agent(floor)
    error = await ask(ws, {"type": "teleport"})
    assert (error["code"], error["field"]) == ("unknown_type", "type")
    assert await still_up(ws)


async def test_missing_field_gets_error_naming_it(floor: Floor) -> None:
    _, ws = await ready_agent(floor)
    error = await ask(ws, {"type": "ptp", "amount": "10.00", "date": future_day()})
    assert (error["code"], error["field"]) == ("missing_field", "call_id")
    assert await still_up(ws)


async def test_call_id_that_is_not_the_agents_is_refused(floor: Floor) -> None:
    ana_id, ana_ws = await ready_agent(floor, "ana")
    _, bob_ws = await ready_agent(floor, "bob")
    offer = await floor.account()
    await floor.give_call(ana_id, offer, ana_ws)
    error = await ask(bob_ws, {"type": "disposition", "call_id": offer.call_id, "code": "PTP"})
    assert (error["code"], error["field"]) == ("not_your_call", "call_id")
    assert await still_up(bob_ws)


async def test_oversized_message_gets_error_and_connection_stays_up(floor: Floor) -> None:
    _, ws = await ready_agent(floor)
    await ws.send_str(json.dumps({"type": "ping", "pad": "x" * 20_000}))
    assert (await recv(ws, "error"))["code"] == "too_large"
    assert await still_up(ws)


async def test_flood_of_messages_is_rate_limited_without_closing(floor: Floor) -> None:
    _, ws = await ready_agent(floor)
    for _ in range(80):
        await ws.send_str('{"type": "ping"}')
    assert (await recv(ws, "error"))["code"] == "rate_limited"
    await asyncio.sleep(1.1)  # the bucket refills
    assert await still_up(ws)


async def test_agent_cannot_use_supervisor_messages(floor: Floor) -> None:
    _, ws = await ready_agent(floor)
    error = await ask(ws, {"type": "supervisor.subscribe"}, "supervisor.snapshot")
    assert error["code"] == "forbidden"


# --- promise-to-pay validation and persistence ------------------------------------------------


async def _in_call(floor: Floor) -> tuple[aiohttp.ClientWebSocketResponse, CallOffer]:
    agent_id, ws = await ready_agent(floor)
    offer = await floor.account()
    await floor.give_call(agent_id, offer, ws)
    return ws, offer


async def test_ptp_amount_with_decimal_comma_is_refused_naming_amount(floor: Floor) -> None:
    ws, offer = await _in_call(floor)
    error = await ask(
        ws, {"type": "ptp", "call_id": offer.call_id, "amount": "12,50", "date": future_day()}
    )
    assert (error["code"], error["field"]) == ("invalid_field", "amount")
    assert "12.50" in error["message"]


async def test_ptp_negative_amount_is_refused_naming_amount(floor: Floor) -> None:
    ws, offer = await _in_call(floor)
    error = await ask(
        ws, {"type": "ptp", "call_id": offer.call_id, "amount": "-5.00", "date": future_day()}
    )
    assert (error["code"], error["field"]) == ("invalid_field", "amount")


async def test_ptp_past_date_is_refused_naming_date(floor: Floor) -> None:
    ws, offer = await _in_call(floor)
    error = await ask(
        ws,
        {
            "type": "ptp",
            "call_id": offer.call_id,
            "amount": "12.50",
            "date": (dt.date.today() - dt.timedelta(days=2)).isoformat(),
        },
    )
    assert (error["code"], error["field"]) == ("invalid_field", "date")


async def test_valid_ptp_is_in_postgres_when_its_ack_arrives(pg_floor: Floor) -> None:
    ws, offer = await _in_call(pg_floor)
    ack = await ask(
        ws, {"type": "ptp", "call_id": offer.call_id, "amount": "12.50", "date": future_day(5)}
    )
    assert ack["type"] == "ack"
    # A separate connection, right after the ack: the row must already be committed.
    async with pg_floor.sessions() as s:
        row = await s.get(PromiseToPay, ack["record_id"])
    assert row is not None
    assert (row.amount, row.currency, row.due_date) == (
        Decimal("12.50"),
        "COP",
        dt.date.today() + dt.timedelta(days=5),
    )


async def test_instalment_plan_is_stored_with_each_instalment(floor: Floor) -> None:
    ws, offer = await _in_call(floor)
    ack = await ask(
        ws,
        {
            "type": "ptp",
            "call_id": offer.call_id,
            "instalments": [
                {"amount": "100.00", "date": future_day(1)},
                {"amount": "50.25", "date": future_day(31)},
            ],
        },
    )
    async with floor.sessions() as s:
        row = await s.get(PromiseToPay, ack["record_id"])
        assert row is not None
        await s.refresh(row, ["instalments"])
        assert row.amount == Decimal("150.25")
        assert [(i.seq, i.amount) for i in row.instalments] == [
            (1, Decimal("100.00")),
            (2, Decimal("50.25")),
        ]


async def test_resent_ptp_with_same_client_id_creates_one_record(floor: Floor) -> None:
    ws, offer = await _in_call(floor)
    message = {
        "v": 1,
        "type": "ptp",
        "id": "same-id",
        "call_id": offer.call_id,
        "amount": "20.00",
        "date": future_day(),
    }
    await ws.send_str(json.dumps(message))
    first = await recv(ws, "ack")
    await ws.send_str(json.dumps(message))
    second = await recv(ws, "ack")
    assert (second["record_id"], second["duplicate"]) == (first["record_id"], True)
    async with floor.sessions() as s:
        assert await s.scalar(select(func.count()).select_from(PromiseToPay)) == 1


# --- other submissions -----------------------------------------------------------------------


async def test_callback_in_debtors_local_time_is_stored_in_utc(floor: Floor) -> None:
    ws, offer = await _in_call(floor)  # the debtor is in America/Bogota (UTC-5, no DST)
    local = (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).replace(
        hour=10, minute=30, second=0, microsecond=0, tzinfo=None
    )
    ack = await ask(
        ws,
        {
            "type": "callback",
            "call_id": offer.call_id,
            "local_time": local.strftime("%Y-%m-%dT%H:%M"),
            "owner": "anyone",
        },
    )
    async with floor.sessions() as s:
        row = await s.get(Callback, ack["record_id"])
    assert row is not None
    assert row.due_at == local.replace(hour=15, tzinfo=dt.UTC)
    assert row.owner_agent_id is None


async def test_callback_in_the_past_is_refused_naming_local_time(floor: Floor) -> None:
    ws, offer = await _in_call(floor)
    error = await ask(
        ws, {"type": "callback", "call_id": offer.call_id, "local_time": "2020-01-01T10:00"}
    )
    assert (error["code"], error["field"]) == ("invalid_field", "local_time")


async def test_disposition_with_code_outside_campaign_is_refused_naming_code(floor: Floor) -> None:
    ws, offer = await _in_call(floor)
    error = await ask(ws, {"type": "disposition", "call_id": offer.call_id, "code": "MADE_UP"})
    assert (error["code"], error["field"]) == ("invalid_field", "code")


async def test_wrong_number_with_dnc_marks_phone_and_adds_dnc_entry(floor: Floor) -> None:
    ws, offer = await _in_call(floor)
    ack = await ask(ws, {"type": "wrong_number", "call_id": offer.call_id, "dnc": True})
    assert ack["record_id"] == offer.phone_id
    async with floor.sessions() as s:
        phone = await s.get(Phone, offer.phone_id)
        assert phone is not None and (phone.valid, phone.dnc) == (False, True)
        assert await s.scalar(select(func.count()).select_from(DncEntry)) == 1


async def test_hang_up_without_telephony_is_refused_as_unavailable(floor: Floor) -> None:
    ws, offer = await _in_call(floor)
    error = await ask(ws, {"type": "hangup", "call_id": offer.call_id})
    assert error["code"] == "unavailable"
    assert await still_up(ws)


# --- screen pop -----------------------------------------------------------------------------


async def test_screen_pop_carries_account_script_and_custom_fields(floor: Floor) -> None:
    agent_id, ws = await ready_agent(floor)
    offer = await floor.account()
    pop = (await floor.give_call(agent_id, offer, ws))["pop"]
    assert pop["account"]["balance"] == "1234.50"
    assert pop["account"]["currency"] == "COP"
    assert pop["account"]["aging_bucket"] == "31-60"
    assert pop["script"]["phase"] == "renegotiation"
    assert pop["custom_fields"] == {"producto": "tarjeta"}
    assert [p["current"] for p in pop["phones"]] == [True]


# --- reconnects and the grace period -----------------------------------------------------------


async def test_reconnect_mid_call_gets_call_and_state_back(floor: Floor) -> None:
    agent_id, token = await floor.agent("ana")
    ws = await floor.connect(token)
    await state_of(ws, {"type": "state.ready"})
    offer = await floor.account()
    await floor.give_call(agent_id, offer, ws)
    await ws.close()
    again = await floor.client.ws_connect("/ws/agent", headers={"Authorization": f"Bearer {token}"})
    welcome = await recv(again, "welcome")
    assert welcome["state"]["state"] == "talking"
    assert welcome["call"]["call_id"] == offer.call_id
    assert welcome["pop"]["account"]["name"] == "Ana Pérez"


async def test_agent_away_longer_than_grace_gets_no_calls_until_back(
    short_grace_floor: Floor,
) -> None:
    floor = short_grace_floor
    agent_id, token = await floor.agent("ana")
    ws = await floor.connect(token)
    await state_of(ws, {"type": "state.ready"})
    await ws.close()
    await asyncio.sleep(0.1)
    assert [a.agent_id for a in floor.hub.snapshot()] == [agent_id]  # within grace: counted
    await asyncio.sleep(0.4)
    offer = await floor.account()
    assert floor.hub.snapshot() == []
    assert floor.hub.reserve(offer) is None
    back = await floor.connect(token)
    assert floor.hub.reserve(offer) == agent_id
    assert (await recv(back, "state"))["state"] == "reserved"


async def test_wrap_up_limit_with_auto_ready_makes_agent_ready(floor: Floor) -> None:
    agent_id, ws = await ready_agent(floor)
    offer = await floor.account(wrap_up_limit_s=0)
    await floor.give_call(agent_id, offer, ws)
    floor.hub.call_ended(offer.call_id)
    state = await recv(ws, "state")
    while state["state"] != "ready":
        state = await recv(ws, "state")
    assert state["reason"] == "wrap_up_expired"


async def test_wrap_up_limit_with_forced_disposition_records_one(floor: Floor) -> None:
    agent_id, ws = await ready_agent(floor)
    offer = await floor.account(wrap_up_limit_s=0, wrap_up_expiry="auto_dispose")
    await floor.give_call(agent_id, offer, ws)
    floor.hub.call_ended(offer.call_id)
    state = await recv(ws, "state")
    while state["state"] != "ready":
        state = await recv(ws, "state")
    async with floor.sessions() as s:
        codes = (await s.execute(select(Disposition.code))).scalars().all()
    assert codes == ["WRAPUP_EXPIRED"]


async def test_forced_disposition_campaign_refuses_ready_before_disposition(floor: Floor) -> None:
    agent_id, ws = await ready_agent(floor)
    offer = await floor.account(wrap_up_expiry="auto_dispose")
    await floor.give_call(agent_id, offer, ws)
    floor.hub.call_ended(offer.call_id)
    error = await ask(ws, {"type": "state.ready"}, "state")
    assert error["code"] == "invalid_state"


# --- supervisor -----------------------------------------------------------------------------


async def test_supervisor_sees_agent_on_call(floor: Floor) -> None:
    agent_id, ws = await ready_agent(floor)
    offer = await floor.account()
    await floor.give_call(agent_id, offer, ws)
    _, sup_token = await floor.agent("sam", role="supervisor")
    sup = await floor.connect(sup_token)
    snap = await ask(sup, {"type": "supervisor.subscribe"}, "supervisor.snapshot")
    row = next(a for a in snap["agents"] if a["agent_id"] == agent_id)
    assert (row["state"], row["call_id"]) == ("talking", offer.call_id)


async def test_supervisor_listen_without_telephony_is_refused_as_unavailable(floor: Floor) -> None:
    agent_id, _ws = await ready_agent(floor)
    _, sup_token = await floor.agent("sam", role="supervisor")
    sup = await floor.connect(sup_token)
    error = await ask(sup, {"type": "supervisor.listen", "agent_id": agent_id})
    assert error["code"] == "unavailable"


# --- pages -----------------------------------------------------------------------------------


async def test_desktop_and_supervisor_pages_are_served_without_external_urls(floor: Floor) -> None:
    for path in ("/agent/", "/supervisor/", "/agent/static/agent.js", "/agent/static/common.js"):
        resp = await floor.client.get(path)
        assert resp.status == 200, path
        body = await resp.text()
        assert "http://" not in body and "https://" not in body, path


# --- the engine's side ------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.ready: list[int | None] = []
        self.finished: list[tuple[int, float, float]] = []

    def agent_ready(self, campaign_id: int | None) -> None:
        self.ready.append(campaign_id)

    def handle_finished(self, campaign_id: int, talk_s: float, wrap_s: float) -> None:
        self.finished.append((campaign_id, talk_s, wrap_s))


async def test_engine_adapter_reserves_longest_waiting_and_pushes_pop(floor: Floor) -> None:
    agent_id, ws = await ready_agent(floor)
    offer = await floor.account()
    assert offer.attempt_id is not None
    agents = HubAgents(floor.hub, floor.sessions)
    chosen = agents.longest_waiting(offer.campaign_id)
    assert chosen is not None and (chosen.agent_id, chosen.channel) == (agent_id, "PJSIP/ana")
    assert await agents.reserve(agent_id, offer.attempt_id)
    assert [v.state.name for v in agents.views(offer.campaign_id)] == ["RESERVED"]
    await agents.connected(agent_id, offer.attempt_id)
    pop = await recv(ws, "screen_pop")
    assert (pop["call"]["call_id"], pop["pop"]["account"]["name"]) == (
        str(offer.attempt_id),
        "Ana Pérez",
    )


async def test_an_agent_whose_phone_is_down_keeps_their_state_but_gets_no_call(
    floor: Floor,
) -> None:
    agent_id, ws = await ready_agent(floor)
    offer = await floor.account()
    agents = HubAgents(floor.hub, floor.sessions)
    woken: list[int] = []
    agents.on_ready = woken.append
    agents.views(offer.campaign_id)  # the engine runs this campaign
    floor.hub.channel_down(agent_id, "asterisk_down")  # what telephony says when the link drops
    told = await recv(ws, "state")
    assert (told["state"], told["phone"]) == ("ready", "down")
    assert told["phone_reason"] == "asterisk_down"
    assert agents.longest_waiting(offer.campaign_id) is None
    assert [v.state.name for v in agents.views(offer.campaign_id)] == ["PAUSED"]
    floor.hub.channel_up(agent_id, "phone_up")
    told = await recv(ws, "state")
    assert (told["state"], told["phone"]) == ("ready", "up")
    assert agents.longest_waiting(offer.campaign_id) == ReadyAgent(agent_id, "PJSIP/ana")
    assert [v.state.name for v in agents.views(offer.campaign_id)] == ["READY"]
    assert woken == [offer.campaign_id]  # the router hears that the agent is routable again


async def test_a_call_prepared_while_it_rings_reserves_its_agent_without_reading_the_database(
    floor: Floor,
) -> None:
    agent_id, ws = await ready_agent(floor)
    offer = await floor.account()
    assert offer.attempt_id is not None
    agents = HubAgents(floor.hub, floor.sessions)
    agents.prepare(offer.attempt_id)  # ringing
    async with asyncio.timeout(5):
        while offer.attempt_id not in agents._prepared:
            await asyncio.sleep(0.01)
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(floor.engine.sync_engine, "before_cursor_execute", count)
    try:
        assert await agents.reserve(agent_id, offer.attempt_id)  # answered
        await agents.connected(agent_id, offer.attempt_id)
    finally:
        event.remove(floor.engine.sync_engine, "before_cursor_execute", count)
    assert statements == []
    pop = await recv(ws, "screen_pop")
    assert pop["pop"]["account"]["name"] == "Ana Pérez"
    assert pop["pop"]["script"]["text"].startswith("Your account")  # the agent's language: en
    assert pop["pop"]["disposition_codes"][0]["label"] == "Promise to pay"


async def test_engine_adapter_prefers_a_ready_owner_else_the_longest_waiting(
    floor: Floor,
) -> None:
    first, _ = await ready_agent(floor, "ana")  # waited longest
    owner, _ = await ready_agent(floor, "bea")
    offer = await floor.account()
    agents = HubAgents(floor.hub, floor.sessions)
    cid = offer.campaign_id
    assert agents.longest_waiting(cid) == ReadyAgent(first, "PJSIP/ana")
    assert agents.longest_waiting(cid, prefer=owner) == ReadyAgent(owner, "PJSIP/bea")
    assert offer.attempt_id is not None
    assert await agents.reserve(owner, offer.attempt_id)  # the owner is busy now
    assert agents.longest_waiting(cid, prefer=owner) == ReadyAgent(first, "PJSIP/ana")


async def test_engine_adapter_gives_calls_answered_together_different_agents(
    floor: Floor,
) -> None:
    first, _ = await ready_agent(floor, "ana")
    second, _ = await ready_agent(floor, "bea")
    offers = [await floor.account(), await floor.account()]
    agents = HubAgents(floor.hub, floor.sessions)

    async def route(offer: CallOffer) -> tuple[int, bool]:
        # As the engine's router does: pick, then reserve (which reads the screen pop first).
        agent = agents.longest_waiting(offer.campaign_id)
        assert agent is not None and offer.attempt_id is not None
        return agent.agent_id, await agents.reserve(agent.agent_id, offer.attempt_id)

    results = await asyncio.gather(*(route(o) for o in offers))
    assert sorted(results) == sorted([(first, True), (second, True)])


async def test_hub_tells_listener_when_agent_is_ready_and_call_is_finished(floor: Floor) -> None:
    recorder = Recorder()
    floor.hub.listen(recorder)
    agent_id, ws = await ready_agent(floor)
    offer = await floor.account()
    await floor.give_call(agent_id, offer, ws)
    floor.hub.call_ended(offer.call_id)
    await ask(ws, {"type": "disposition", "call_id": offer.call_id, "code": "PTP"})
    assert recorder.ready == [None, None]  # "any campaign", twice: at login-ready, after wrap-up
    assert [f[0] for f in recorder.finished] == [offer.campaign_id]


# --- preview ---------------------------------------------------------------------------------


async def test_preview_next_claims_an_account_and_skip_ends_its_attempt(floor: Floor) -> None:
    async with floor.sessions.begin() as s:
        # Midday in the debtor's zone: the claim applies the campaign's calling window.
        campaign = Campaign(
            name="preview", dial_mode="preview", state="running", compliance_profile="MX"
        )
        account = Account(
            external_ref="p1",
            name="Luis Mora",
            balance=Decimal("80.00"),
            time_zone=midday_zone(dt.datetime.now(dt.UTC)),
        )
        s.add_all([campaign, account])
        await s.flush()
        s.add_all(
            [
                Phone(account_id=account.id, number="+5215512345678"),
                CampaignAccount(campaign_id=campaign.id, account_id=account.id),
            ]
        )
    _, ws = await ready_agent(floor)
    ack = await ask(ws, {"type": "preview.next"})
    assert ack["type"] == "ack"
    call_id = str(ack["record_id"])
    skipped = await ask(ws, {"type": "preview.skip", "call_id": call_id})
    assert skipped["type"] == "ack"
    async with floor.sessions() as s:
        attempt = await s.get(CallAttempt, int(call_id))
    assert attempt is not None and attempt.outcome == "skipped"
    assert floor.hub.sessions[attempt.agent_id or 0].sm.state.value == "ready"


async def test_engine_adapter_wakes_campaigns_it_runs_when_any_campaign_agent_is_ready(
    floor: Floor,
) -> None:
    woken: list[int] = []
    agents = HubAgents(floor.hub, floor.sessions, on_ready=woken.append)
    agents.views(5)  # the engine ticks campaign 5
    await ready_agent(floor)  # ready for any campaign
    assert woken == [5]
