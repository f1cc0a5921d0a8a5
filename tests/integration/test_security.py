"""Sessions that end when they should, throttled logins, CSRF on cookie sessions, and hostile input
on the HTTP API and the websocket: the real app on loopback, SQLite and Postgres.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from agents_ws.engine_port import SupervisorAction
from dialer.agent_service import DbAgentPort, build_screen_pop
from dialer.store.models import Agent, PromiseToPay
from dialer.telephony.asterisk import CallNotFound
from tests.integration.test_agents_ws import (
    PASSWORD,
    Floor,
    ask,
    make_floor,
    ready_agent,
    recv,
)

pytestmark = pytest.mark.postgres
Msg = dict[str, Any]


@pytest_asyncio.fixture
async def floor(engine: AsyncEngine) -> AsyncIterator[Floor]:
    async for f in make_floor(engine):
        yield f


@pytest_asyncio.fixture
async def pg_floor(pg_engine: AsyncEngine) -> AsyncIterator[Floor]:
    async for f in make_floor(pg_engine):
        yield f


async def _admin(floor: Floor) -> dict[str, str]:
    _, token = await floor.agent("root", "admin")
    return {"Authorization": f"Bearer {token}"}


async def _closed_within(ws: aiohttp.ClientWebSocketResponse, seconds: float) -> tuple[Msg, int]:
    """The error pushed before the close, and the close code, within `seconds`."""
    error: Msg = {}
    async with asyncio.timeout(seconds):
        while True:
            msg = await ws.receive()
            if msg.type == aiohttp.WSMsgType.TEXT:
                data = json.loads(msg.data)
                if data["type"] == "error":
                    error = data
                continue
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), msg
            return error, int(ws.close_code or 0)


# --- sessions end when they should -----------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [{"active": False}, {"role": "supervisor"}, {"password": "a-brand-new-password"}],
    ids=["disabled", "role-changed", "password-reset"],
)
async def test_an_admin_change_revokes_tokens_and_closes_the_socket_within_a_second(
    floor: Floor, change: dict[str, object]
) -> None:
    admin = await _admin(floor)
    agent_id, ws = await ready_agent(floor)
    token = ws._response.request_info.headers["Authorization"]  # the agent's bearer header
    started = time.monotonic()
    resp = await floor.client.patch(f"/api/agents/{agent_id}", json=change, headers=admin)
    assert resp.status == 200, await resp.text()
    error, code = await _closed_within(ws, 1.0)
    print(f"socket closed {time.monotonic() - started:.3f} s after the change")
    assert code == 4001
    assert error["code"] == "session_revoked" and "log in again" in error["message"]
    # The old token: refused on the API and on the socket.
    assert (
        await floor.client.get("/api/campaigns", headers={"Authorization": token})
    ).status == 401
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await floor.client.ws_connect("/ws/agent", headers={"Authorization": token})
    assert refused.value.status == 401
    # Off the floor: never offered a call again.
    assert floor.hub.pick(1) is None
    assert all(a.agent_id != agent_id for a in floor.hub.snapshot())


async def test_a_demoted_supervisor_stops_getting_supervisor_pushes(floor: Floor) -> None:
    admin = await _admin(floor)
    sup_id, token = await floor.agent("sue", "supervisor")
    ws = await floor.connect(token)
    snap = await ask(ws, {"type": "supervisor.subscribe"}, "supervisor.snapshot")
    assert snap["type"] == "supervisor.snapshot"
    resp = await floor.client.patch(f"/api/agents/{sup_id}", json={"role": "agent"}, headers=admin)
    assert resp.status == 200
    await _closed_within(ws, 1.0)
    login = await floor.client.post("/api/login", json={"login": "sue", "password": PASSWORD})
    ws2 = await floor.connect((await login.json())["token"])
    refused = await ask(ws2, {"type": "supervisor.subscribe"}, "supervisor.snapshot")
    assert refused["code"] == "forbidden"


async def test_a_revoked_agent_in_a_call_is_not_offered_another(floor: Floor) -> None:
    admin = await _admin(floor)
    agent_id, ws = await ready_agent(floor)
    offer = await floor.account()
    await floor.give_call(agent_id, offer, ws)
    await floor.client.patch(f"/api/agents/{agent_id}", json={"active": False}, headers=admin)
    await _closed_within(ws, 1.0)
    floor.hub.call_ended(offer.call_id)  # the debtor hangs up; wrap-up then ready by expiry
    assert floor.hub.pick(offer.campaign_id) is None


async def test_tokens_in_the_url_are_not_accepted(floor: Floor) -> None:
    _, token = await floor.agent("boss", "admin")
    assert (await floor.client.get(f"/api/agents?token={token}")).status == 401
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await floor.client.ws_connect(f"/ws/agent?token={token}")
    assert refused.value.status == 401


# --- login throttling --------------------------------------------------------------------------


async def test_failed_logins_lock_the_login_with_429_until_an_admin_lifts_it(floor: Floor) -> None:
    admin = await _admin(floor)
    await floor.agent("ana")
    for _ in range(5):
        resp = await floor.client.post("/api/login", json={"login": "ana", "password": "wrong!!"})
        assert resp.status == 401
    locked = await floor.client.post("/api/login", json={"login": "ana", "password": PASSWORD})
    assert locked.status == 429
    assert 1 <= int(locked.headers["Retry-After"]) <= 900
    assert (await locked.json())["error"] == "too_many_requests"
    listed = await (await floor.client.get("/api/login-locks", headers=admin)).json()
    assert any(lock["key"] == "ana" for lock in listed["locks"])
    lifted = await floor.client.post("/api/login-locks/lift", json={"login": "ana"}, headers=admin)
    assert (await lifted.json())["lifted"] == 1
    ok = await floor.client.post("/api/login", json={"login": "ana", "password": PASSWORD})
    assert ok.status == 200


async def test_an_unknown_login_is_answered_like_a_wrong_password(floor: Floor) -> None:
    await floor.agent("ana")
    wrong = await floor.client.post("/api/login", json={"login": "ana", "password": "nope-nope"})
    unknown = await floor.client.post("/api/login", json={"login": "nobody", "password": "nope"})
    assert wrong.status == unknown.status == 401
    assert await wrong.json() == await unknown.json()


# --- cookie sessions and CSRF ------------------------------------------------------------------


async def test_cookie_sessions_are_secure_and_unsafe_requests_need_the_csrf_header(
    floor: Floor,
) -> None:
    await floor.agent("sup", "supervisor")
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(str(floor.client.make_url("/")), cookie_jar=jar) as browser:
        resp = await browser.post(
            "/api/login", json={"login": "sup", "password": PASSWORD, "cookie": True}
        )
        assert resp.status == 200
        cookies = {c.key: c for c in resp.cookies.values()}
        session, csrf = cookies["dialer_session"], cookies["dialer_csrf"]
        assert session["httponly"] and session["secure"] and session["samesite"] == "Strict"
        assert not csrf["httponly"] and csrf["secure"] and csrf["samesite"] == "Strict"
        # Secure cookies are not sent over plain http by a browser; send them by hand here.
        sent = {"Cookie": f"dialer_session={session.value}; dialer_csrf={csrf.value}"}
        assert (await browser.get("/api/campaigns", headers=sent)).status == 200
        forged = await browser.post("/api/campaigns", json={"name": "x"}, headers=sent)
        assert forged.status == 403 and (await forged.json())["error"] == "csrf"
        wrong = await browser.post(
            "/api/campaigns", json={"name": "x"}, headers={**sent, "X-CSRF-Token": "guess"}
        )
        assert wrong.status == 403
        good = await browser.post(
            "/api/campaigns", json={"name": "x"}, headers={**sent, "X-CSRF-Token": csrf.value}
        )
        assert good.status == 201, await good.text()


# --- hostile input on the HTTP API ---------------------------------------------------------------


async def test_an_oversized_login_body_is_refused_before_it_is_read(floor: Floor) -> None:
    big = b'{"login": "a", "password": "' + b"x" * (8 * 1024 * 1024) + b'"}'
    resp = await floor.client.post("/api/login", data=big)
    assert resp.status == 413


async def test_a_chunked_oversized_login_body_is_refused(floor: Floor) -> None:
    async def chunks() -> Any:
        for _ in range(64):
            yield b"x" * 65536

    resp = await floor.client.post("/api/login", data=chunks())
    assert resp.status == 413


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"name": "a\\u0000b"}', "name"),
        ('{"name": "a\\ud800b"}', "name"),
        ('{"name": "n", "pacing": ' + "[" * 3000 + "]" * 3000 + "}", None),
        ('{"name": "n", "scripts": {"\\ud800": "x"}}', None),
    ],
    ids=["nul", "surrogate", "nested", "surrogate-key"],
)
async def test_json_routes_refuse_what_the_database_would_with_the_field_named(
    floor: Floor, body: str, field: str | None
) -> None:
    admin = await _admin(floor)
    resp = await floor.client.post(
        "/api/campaigns", data=body, headers={**admin, "Content-Type": "application/json"}
    )
    assert resp.status == 400, await resp.text()
    answer = await resp.json()
    assert answer["error"] == "invalid_request"
    if field:
        assert answer["field"] == field


async def test_a_json_body_over_the_route_limit_is_413(floor: Floor) -> None:
    admin = await _admin(floor)
    body = json.dumps({"name": "n", "scripts": {"x": "y" * 400_000}})
    resp = await floor.client.post(
        "/api/campaigns", data=body, headers={**admin, "Content-Type": "application/json"}
    )
    assert resp.status == 413


@pytest.mark.parametrize("value", ["%00", "%ED%A0%80", "a%00b"])
async def test_query_values_with_nul_or_surrogates_are_refused_naming_them(
    floor: Floor, value: str
) -> None:
    admin = await _admin(floor)
    resp = await floor.client.get(f"/api/dnc?number={value}", headers=admin)
    assert resp.status == 400, await resp.text()
    assert (await resp.json())["field"] == "number"


# --- the websocket: odd input, and answers that say what happened ------------------------------


async def test_socket_refuses_nested_nul_and_surrogate_input_and_stays_up(pg_floor: Floor) -> None:
    _, ws = await ready_agent(pg_floor)
    await ws.send_str("[" * 6000 + "]" * 6000)
    assert (await recv(ws, "error"))["code"] == "bad_json"
    await ws.send_str(
        '{"v":1,"type":"disposition","id":"d1","call_id":"x","code":"A","notes":"\\u0000"}'
    )
    error = await recv(ws, "error")
    assert (error["code"], error["field"]) == ("invalid_field", "notes")
    await ws.send_str(
        '{"v":1,"type":"disposition","id":"d2","call_id":"x","code":"A","notes":"\\udc00"}'
    )
    error = await recv(ws, "error")
    assert (error["code"], error["field"]) == ("invalid_field", "notes")
    assert (await ask(ws, {"type": "ping"}, "pong"))["type"] == "pong"


async def test_promise_notes_are_stored_and_shown_in_the_history(pg_floor: Floor) -> None:
    agent_id, ws = await ready_agent(pg_floor)
    offer = await pg_floor.account()
    await pg_floor.give_call(agent_id, offer, ws)
    day = (dt.date.today() + dt.timedelta(days=4)).isoformat()
    ack = await ask(
        ws,
        {"type": "ptp", "call_id": offer.call_id, "amount": "50.00", "date": day,
         "notes": "pays after payday"},
    )  # fmt: skip
    assert ack["type"] == "ack", ack
    async with pg_floor.sessions() as s:
        stored = await s.get(PromiseToPay, ack["record_id"])
    assert stored is not None and stored.notes == "pays after payday"
    # The next screen pop of the account shows it in its history.
    async with pg_floor.sessions() as s:
        pop = await build_screen_pop(
            s, offer.campaign_id, offer.account_id, dt.datetime.now(dt.UTC), language="en"
        )
    assert [p["notes"] for p in pop["promises"]] == ["pays after payday"]
    admin = await _admin(pg_floor)
    listed = await (await pg_floor.client.get("/api/promises", headers=admin)).json()
    assert [p["notes"] for p in listed["promises"]] == ["pays after payday"]


async def test_promise_dates_beyond_the_horizon_are_refused_naming_the_date(
    pg_floor: Floor,
) -> None:
    agent_id, ws = await ready_agent(pg_floor)
    offer = await pg_floor.account()
    await pg_floor.give_call(agent_id, offer, ws)
    error = await ask(
        ws, {"type": "ptp", "call_id": offer.call_id, "amount": "5.00", "date": "9999-12-31"}
    )
    assert (error["code"], error["field"]) == ("invalid_field", "date")
    plan = [
        {"amount": "1.00", "date": (dt.date.today() + dt.timedelta(days=3)).isoformat()},
        {"amount": "1.00", "date": (dt.date.today() + dt.timedelta(days=400)).isoformat()},
    ]
    error = await ask(ws, {"type": "ptp", "call_id": offer.call_id, "instalments": plan})
    assert (error["code"], error["field"]) == ("invalid_field", "instalments[1].date")


async def test_a_plan_overflowing_numeric_14_2_is_refused_on_postgres(pg_floor: Floor) -> None:
    agent_id, ws = await ready_agent(pg_floor)
    offer = await pg_floor.account()
    await pg_floor.give_call(agent_id, offer, ws)
    days = [(dt.date.today() + dt.timedelta(days=d)).isoformat() for d in (2, 3)]
    plan = [{"amount": "999999999999.99", "date": d} for d in days]
    error = await ask(ws, {"type": "ptp", "call_id": offer.call_id, "instalments": plan})
    assert (error["code"], error["field"]) == ("invalid_field", "instalments")
    async with pg_floor.sessions() as s:
        assert (await s.execute(select(PromiseToPay))).first() is None


class _RacingTelephony:
    """Asterisk's answer when the call ended between the click and the command: the one fault a
    real PBX cannot be made to show on demand."""

    async def hang_up(self, call_id: str, attempt_id: int | None) -> None:
        raise CallNotFound(f"attempt {attempt_id} is not in flight")

    async def supervise(
        self, action: SupervisorAction, supervisor: str | None, agent: str | None
    ) -> None:
        raise AssertionError("not reached without a phone")

    async def open_agent_channel(self, agent_id: int, endpoint: str | None) -> bool:
        return True

    async def close_agent_channel(self, agent_id: int) -> None:
        return None

    async def originate_preview(self, attempt_id: int, campaign_id: int, agent_id: int) -> None:
        return None


async def test_a_hang_up_racing_the_end_of_the_call_is_call_over(floor: Floor) -> None:
    agent_id, ws = await ready_agent(floor)
    offer = await floor.account()
    await floor.give_call(agent_id, offer, ws)
    port = floor.hub.port
    assert isinstance(port, DbAgentPort)
    port.telephony = _RacingTelephony()
    error = await ask(ws, {"type": "hangup", "call_id": offer.call_id})
    assert (error["code"], error["field"]) == ("call_over", "call_id")


async def test_a_barge_by_a_supervisor_with_no_phone_is_no_phone(floor: Floor) -> None:
    target_id, _ws = await ready_agent(floor)
    sup_id, token = await floor.agent("sue", "supervisor")
    async with floor.sessions.begin() as s:
        sup = await s.get(Agent, sup_id)
        assert sup is not None
        sup.endpoint = None
    port = floor.hub.port
    assert isinstance(port, DbAgentPort)
    port.telephony = _RacingTelephony()
    sup_ws = await floor.connect(token)
    error = await ask(sup_ws, {"type": "supervisor.barge", "agent_id": target_id})
    assert error["code"] == "no_phone"


async def test_a_hang_up_after_the_debtor_hung_up_is_call_over(floor: Floor) -> None:
    agent_id, ws = await ready_agent(floor)
    offer = await floor.account()
    await floor.give_call(agent_id, offer, ws)
    floor.hub.call_ended(offer.call_id)  # the debtor hung up: the agent is in wrap-up
    error = await ask(ws, {"type": "hangup", "call_id": offer.call_id})
    assert (error["code"], error["field"]) == ("call_over", "call_id")


async def test_a_revocation_on_one_process_closes_the_socket_on_another(
    pg_engine: AsyncEngine,
) -> None:
    """Two dialer processes on one database: the admin disables the agent through A while the
    agent's socket is on B; B closes it within a second (tokens are rows, not process memory)."""
    gen_a, gen_b = make_floor(pg_engine), make_floor(pg_engine)
    a, b = await anext(gen_a), await anext(gen_b)
    try:
        admin = await _admin(a)
        agent_id, ws = await ready_agent(b)
        resp = await a.client.patch(
            f"/api/agents/{agent_id}", json={"active": False}, headers=admin
        )
        assert resp.status == 200
        error, code = await _closed_within(ws, 1.0)
        assert (code, error["code"]) == (4001, "session_revoked")
        assert b.hub.pick(1) is None
    finally:
        for gen in (gen_a, gen_b):
            with contextlib.suppress(StopAsyncIteration):
                await anext(gen)


async def test_an_agent_disabled_while_their_socket_is_down_is_taken_off_the_floor(
    floor: Floor,
) -> None:
    admin = await _admin(floor)
    agent_id, ws = await ready_agent(floor)
    await ws.close()  # the agent's network drops: they stay ready for the grace period
    async with asyncio.timeout(2):
        while floor.hub.sessions[agent_id].outlet is not None:
            await asyncio.sleep(0.01)
    assert floor.hub.pick(1) is not None
    resp = await floor.client.patch(
        f"/api/agents/{agent_id}", json={"active": False}, headers=admin
    )
    assert resp.status == 200
    started = time.monotonic()
    while floor.hub.pick(1) is not None:
        assert time.monotonic() - started < 1.0, "still offered calls a second later"
        await asyncio.sleep(0.02)
