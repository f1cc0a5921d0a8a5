"""Postgres goes away under a running campaign (real Asterisk, real Postgres, websocket agents):
stopped for 10 s and started again, and separately its connections killed with
`pg_terminate_backend`. Dialing resumes by itself within 10 s of the database coming back,
/healthz says 503 meanwhile, every call that ended during the outage is closed with its real
outcome (Asterisk's events), no acknowledged disposition is lost, and no agent is left stuck.

The cluster is a throwaway one of this module's own (the fixture's pg_ctl), so stopping it
disturbs no other test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from dialer.app import build_app
from dialer.runtime import RUNTIME
from dialer.settings import Settings
from dialer.store.db import make_engine, make_sessionmaker
from dialer.store.models import CallAttempt, Disposition
from tests.e2e.campaign_harness import (
    PASSWORD,
    asterisk_view,
    expected_outcomes,
    hang_up_agent_phones,
    numbers_for,
    seed_campaign,
)
from tests.e2e.test_campaign_e2e import asterisk_verdict
from tests.e2e.test_telephony_outcomes import settings as ami_settings
from tests.fixtures.asterisk import AmiClient, AsteriskAmi, connect
from tests.fixtures.postgres import PgServer, _migrated, throwaway_cluster

pytestmark = [pytest.mark.asterisk, pytest.mark.postgres]
Msg = dict[str, Any]

MIX = {
    "555102": 20,  # a person answers after 1 s and stays: bridged, the agent hangs up
    "555704": 12,  # a person who hangs up 4 s after answering (often during the outage)
    "555300": 14,  # busy
}
AGENTS = 3
OUTAGE_S = 10.0


@dataclass
class Agent:
    """A desktop that does what a person does when the service says `internal` or
    `unavailable`: sends the same message again (same id) until it is acknowledged."""

    login: str
    ws: aiohttp.ClientWebSocketResponse
    campaign_id: int
    state: str = "offline"
    acked: list[int] = field(default_factory=list)  # attempt ids whose disposition was acked
    pops: list[int] = field(default_factory=list)
    _replies: dict[str, asyncio.Future[Msg]] = field(default_factory=dict)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _seq: int = 0

    async def read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            data: Msg = json.loads(msg.data)
            if data.get("re") in self._replies and data["type"] in ("ack", "error"):
                future = self._replies.pop(data["re"])
                if not future.done():
                    future.set_result(data)
            if data["type"] == "state":
                self.state = data["state"]
            elif data["type"] == "screen_pop":
                attempt = int(data["call"]["attempt_id"])
                self.pops.append(attempt)
                task = asyncio.create_task(self._take(str(data["call"]["call_id"]), attempt))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            self._changed.set()

    async def ask(self, message: Msg, timeout: float = 5.0) -> Msg:
        self._seq += 1
        mid = message.get("id") or f"{self.login}-{self._seq}"
        future: asyncio.Future[Msg] = asyncio.get_running_loop().create_future()
        self._replies[mid] = future
        await self.ws.send_str(json.dumps({"v": 1, **message, "id": mid}))
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            self._replies.pop(mid, None)
            return {"type": "error", "code": "timeout"}

    async def until(self, predicate: Any, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    async def _take(self, call_id: str, attempt_id: int) -> None:
        await asyncio.sleep(1.0)
        await self.ask({"type": "hangup", "call_id": call_id})  # refused if already over
        await self.until(lambda: self.state == "wrap_up", 60)
        message = {"type": "disposition", "call_id": call_id, "code": "RPC", "id": f"d{attempt_id}"}
        while (await self.ask(message))["type"] != "ack":
            await asyncio.sleep(0.5)  # the same id again: committed once, acknowledged once
        self.acked.append(attempt_id)

    async def go_ready(self) -> None:
        async with asyncio.timeout(30):
            while self.state != "ready":
                await self.ask({"type": "state.ready", "campaign_id": self.campaign_id})
                with contextlib.suppress(TimeoutError):
                    await self.until(lambda: self.state == "ready", 1.0)


@pytest.fixture(scope="module")
def own_pg() -> Iterator[PgServer]:
    with throwaway_cluster() as server:
        yield server


@dataclass
class Service:
    client: TestClient[web.Request, web.Application]
    db: AsyncEngine
    agents: list[Agent]
    readers: list[asyncio.Task[None]]
    listener: AmiClient
    url: str
    campaign_id: int
    unread: list[dict[str, Any]]  # task exceptions nobody read (the loop's handler)


@pytest_asyncio.fixture(loop_scope="session")
async def service(own_pg: PgServer, asterisk_ami: AsteriskAmi) -> AsyncIterator[Service]:
    url = await _migrated(await own_pg.create_database())
    db = make_engine(url)
    sessions = make_sessionmaker(db)
    campaign_id, logins = await seed_campaign(
        sessions, numbers_for(MIX), agents=AGENTS, dial_mode="progressive", name="pg-outage"
    )
    listener = await connect(asterisk_ami)
    loop = asyncio.get_running_loop()
    unread: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: unread.append(context))
    settings = Settings(ami_servers=(ami_settings(asterisk_ami),), process_name="pg-outage")
    app = await build_app(settings, db)
    client = TestClient(TestServer(app))
    await client.start_server()
    await app[RUNTIME].pool.wait_connected(15)
    agents, readers = [], []
    for login in logins:
        response = await client.post("/api/login", json={"login": login, "password": PASSWORD})
        token = (await response.json())["token"]
        ws = await client.ws_connect("/ws/agent", headers={"Authorization": f"Bearer {token}"})
        agent = Agent(login, ws, campaign_id)
        agents.append(agent)
        readers.append(asyncio.create_task(agent.read()))
    await asyncio.gather(*(a.go_ready() for a in agents))
    try:
        yield Service(client, db, agents, readers, listener, url, campaign_id, unread)
    finally:
        for agent in agents:
            for task in list(agent._tasks):
                task.cancel()
            await agent.ws.close()
        for reader in readers:
            reader.cancel()
        await client.close()
        await hang_up_agent_phones(listener)
        listener.manager.close()
        await db.dispose()
        loop.set_exception_handler(previous)


async def _rows(db: AsyncEngine) -> list[CallAttempt]:
    async with make_sessionmaker(db)() as s:
        return list((await s.execute(select(CallAttempt))).scalars())


async def _health(client: TestClient[web.Request, web.Application]) -> tuple[int, str]:
    response = await client.get("/healthz")
    return response.status, await response.text()


async def _outage(
    service: Service, own_pg: PgServer, fault: str
) -> tuple[list[tuple[int, str]], float, set[int]]:
    """Runs until some calls are up, breaks the database (`fault`), and returns /healthz seen
    meanwhile, the seconds from the database's return to the next dial, and the attempts that
    were in flight when it broke."""
    async with asyncio.timeout(60):
        while True:
            rows = await _rows(service.db)
            if sum(1 for r in rows if r.ended_at is None and r.answered_at) >= 1 and len(rows) >= 6:
                break
            await asyncio.sleep(0.2)
    in_flight = {r.id for r in rows if r.ended_at is None}
    health: list[tuple[int, str]] = []
    assert own_pg.control is not None
    if fault == "stop":
        await asyncio.to_thread(own_pg.control.stop)
        deadline = time.monotonic() + OUTAGE_S
        while time.monotonic() < deadline:
            health.append(await _health(service.client))
            await asyncio.sleep(0.5)
        await asyncio.to_thread(own_pg.control.start)
    else:
        dsn = own_pg.dsn("postgres")
        name = service.url.rsplit("/", 1)[1]
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:  # again and again: the pool reconnects in between
            conn = await asyncpg.connect(dsn)
            try:
                await conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = $1 AND pid <> pg_backend_pid()",
                    name,
                )
            finally:
                await conn.close()
            health.append(await _health(service.client))
            await asyncio.sleep(0.3)
    back = time.monotonic()
    before = {r.id for r in await _rows(service.db)}
    async with asyncio.timeout(30):
        while True:
            rows = await _rows(service.db)
            if any(r.id not in before and r.originated_at for r in rows):
                break
            await asyncio.sleep(0.1)
    return health, time.monotonic() - back, in_flight


async def _finish(service: Service) -> list[CallAttempt]:
    async with asyncio.timeout(240):
        while True:
            rows = await _rows(service.db)
            if len(rows) >= sum(MIX.values()) and all(r.ended_at for r in rows):
                break
            await asyncio.sleep(0.5)
    async with asyncio.timeout(60):
        while any(a._tasks for a in service.agents):
            await asyncio.sleep(0.2)
    return rows


async def test_postgres_stopped_then_started_and_connections_killed(
    service: Service, own_pg: PgServer
) -> None:
    stopped = await _outage(service, own_pg, "stop")
    status, _ = await _health(service.client)
    terminated = await _outage(service, own_pg, "terminate")
    rows = await _finish(service)
    await asyncio.sleep(1.0)
    view = asterisk_view(service.listener)
    async with make_sessionmaker(service.db)() as s:
        dispositions = {d.attempt_id for d in (await s.execute(select(Disposition))).scalars()}

    health, resumed_s, in_flight = stopped
    assert any(code == 503 for code, _ in health), health
    assert status == 200, "healthy again once the database is back"
    assert resumed_s <= 10.0, f"dialing resumed {resumed_s:.1f} s after the database came back"
    assert terminated[1] <= 10.0, f"after pg_terminate_backend: {terminated[1]:.1f} s"
    # Every call, those that ended during the outage included, closed with its real outcome.
    for row in rows:
        outcome, bridged, abandoned = asterisk_verdict(view[row.id])
        assert row.outcome == (outcome or row.outcome) and row.outcome in expected_outcomes(
            row.number
        ) | {"hung_up_early"}, (row.id, row.number, row.outcome, view[row.id].trace)
        assert (row.bridged_at is not None, row.abandoned) == (bridged, abandoned), row.id
    assert in_flight and all(r.outcome != "lost" for r in rows)
    # No acknowledged disposition lost; every bridged call got one; no agent stuck.
    acked = {i for a in service.agents for i in a.acked}
    assert acked <= dispositions
    assert {r.id for r in rows if r.bridged_at} == acked
    assert [a.state for a in service.agents] == ["ready"] * AGENTS
    assert [str(c.get("exception") or c.get("message")) for c in service.unread] == []
    print(
        f"\nPostgres stopped {OUTAGE_S:.0f} s: /healthz 503 x{sum(c == 503 for c, _ in health)}, "
        f"dialing again {resumed_s:.1f} s after it came back; connections killed: dialing "
        f"again {terminated[1]:.1f} s later; {len(in_flight)} calls in flight at the stop"
    )
