"""/healthz runs `dialer doctor`'s fast subset: 200 with the failing checks while a campaign
cannot dial (`degraded`), 503 when the database is unusable (and, with dialing configured, while
the engine or an AMI connection is down: tests/e2e/test_postgres_outage.py)."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncEngine

from dialer.app import build_app
from dialer.settings import Settings
from dialer.store.db import make_sessionmaker
from dialer.store.models import Agent, Campaign

pytestmark = pytest.mark.postgres


async def health(engine: AsyncEngine) -> tuple[int, dict[str, object]]:
    app = await build_app(Settings(), engine)
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/healthz")
        return resp.status, await resp.json()


async def test_healthz_names_what_stops_the_dialing(engine: AsyncEngine) -> None:
    async with make_sessionmaker(engine).begin() as s:
        campaign = Campaign(name="no-cid", state="running", compliance_profile="MX")
        s.add(campaign)
        s.add(Agent(login="ana", name="Ana", password_hash="x"))
        await s.flush()
        cid = campaign.id
    status, body = await health(engine)
    assert status == 200 and body["status"] == "degraded"
    failing = {c["name"]: c for c in body["checks"] if c["status"] == "fail"}  # type: ignore[union-attr]
    assert set(failing) == {"asterisk", f"campaign {cid} (no-cid) caller ID", "agent ana phone"}
    assert "DIALER_AMI_SERVERS" in failing["asterisk"]["fix"]
    assert failing["agent ana phone"]["fix"].startswith("`dialer agent update ana --phone")


async def test_healthz_is_503_when_the_schema_is_behind(engine: AsyncEngine) -> None:
    from dialer.store import migrate

    app = await build_app(Settings(), engine)
    async with TestClient(TestServer(app)) as client:
        await migrate.downgrade(engine, "0002")
        try:
            resp = await client.get("/healthz")
            body = await resp.json()
        finally:
            await migrate.upgrade(engine)
    assert resp.status == 503 and body["status"] == "unhealthy"
    assert "run `dialer migrate`" in body["checks"][0]["fix"]
