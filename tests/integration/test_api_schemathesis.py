"""Property-based run of schemathesis against /api/openapi.json of the real app on loopback.

The app runs in its own thread and event loop (schemathesis calls it synchronously over HTTP) on a
fresh Postgres database seeded so that id 1 exists for each resource; no input may cause a 5xx.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from sqlalchemy.ext.asyncio import AsyncEngine

from dialer.app import build_app
from dialer.auth import hash_password
from dialer.settings import Settings
from dialer.store import migrate
from dialer.store.db import make_engine, make_sessionmaker
from dialer.store.models import (
    Account,
    Agent,
    Callback,
    Campaign,
    CampaignAccount,
    DncEntry,
    Phone,
    PromiseToPay,
)
from tests.fixtures.postgres import PgServer, run_sync

pytestmark = pytest.mark.postgres
# dialer.app's own login route: see test_login_with_a_nul_byte_is_a_client_error below.
CORE_PATHS_COVERED_ELSEWHERE = {"/api/login"}
EXAMPLES_PER_OPERATION = int(os.environ.get("DIALER_SCHEMATHESIS_EXAMPLES", "30"))


@dataclass
class LiveApi:
    base_url: str
    headers: dict[str, str]


async def _seed(engine: AsyncEngine) -> None:
    now = dt.datetime.now(dt.UTC)
    async with make_sessionmaker(engine).begin() as s:
        s.add(
            Agent(
                login="root", name="Root", password_hash=hash_password("root-pw-123"), role="admin"
            )
        )
        s.add(Agent(login="ana", name="Ana", password_hash=hash_password("ana-pw-123")))
        campaign = Campaign(name="seed")
        account = Account(external_ref="S1", name="x", balance=Decimal("10.00"))
        account.phones = [Phone(number="+12125550100")]
        s.add_all([campaign, account])
        await s.flush()
        s.add(CampaignAccount(campaign_id=campaign.id, account_id=account.id))
        s.add(
            PromiseToPay(
                account_id=account.id, amount=Decimal("5.00"), currency="USD",
                due_date=dt.date(2026, 12, 1),
            )
        )  # fmt: skip
        s.add(Callback(account_id=account.id, due_at=now))
        s.add(DncEntry(number="+12125550199"))


@pytest.fixture
def live_api(pg_server: PgServer) -> Iterator[LiveApi]:
    url = run_sync(pg_server.create_database())
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> tuple[object, AsyncEngine, int]:
        from aiohttp import web

        engine = make_engine(url)
        await migrate.upgrade(engine)
        await _seed(engine)
        runner = web.AppRunner(await build_app(Settings(), engine))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        return runner, engine, port

    runner, engine, port = asyncio.run_coroutine_threadsafe(start(), loop).result(120)
    base = f"http://127.0.0.1:{port}"
    token = requests.post(
        f"{base}/api/login", json={"login": "root", "password": "root-pw-123"}, timeout=30
    ).json()["token"]
    try:
        yield LiveApi(base, {"Authorization": f"Bearer {token}"})
    finally:

        async def stop() -> None:
            await runner.cleanup()  # type: ignore[attr-defined]
            await engine.dispose()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        run_sync(pg_server.drop_database(url))


def test_no_input_from_the_openapi_document_causes_a_server_error(live_api: LiveApi) -> None:
    schema = schemathesis.openapi.from_url(f"{live_api.base_url}/api/openapi.json")
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        if operation.path in CORE_PATHS_COVERED_ELSEWHERE:
            continue

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def run(case: schemathesis.Case) -> None:
            response = case.call(base_url=live_api.base_url, headers=live_api.headers, timeout=30)
            case.validate_response(response, checks=[not_a_server_error])

        try:
            run()
        except Exception as exc:  # collect every failing operation, not just the first
            failures.append(f"{operation.label}: {str(exc)[:600]}")
    assert operations >= 20
    assert failures == []


def test_login_with_a_nul_byte_is_a_client_error(live_api: LiveApi) -> None:
    resp = requests.post(
        f"{live_api.base_url}/api/login", json={"login": "a\x00b", "password": "x"}, timeout=30
    )
    assert resp.status_code == 400
