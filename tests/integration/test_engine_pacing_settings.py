"""Pacing settings that do not parse: the API refuses them naming the field, and a campaign that
has them anyway (written before the check, or by hand) does not dial, says why in its pacing
decision, logs it once, and dials again once fixed."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from dialer.app import build_app
from dialer.auth import hash_password
from dialer.settings import Settings
from dialer.store.db import make_sessionmaker
from dialer.store.models import Agent, Campaign
from tests.integration.test_engine import Hub, Telephony, _campaign, _engine

pytestmark = pytest.mark.postgres
Client = TestClient[web.Request, web.Application]


@pytest_asyncio.fixture
async def client(engine: AsyncEngine) -> AsyncIterator[Client]:
    async with make_sessionmaker(engine).begin() as s:
        s.add(
            Agent(
                login="sup", name="sup", password_hash=hash_password("pw-123456"), role="supervisor"
            )
        )
    app = await build_app(Settings(), engine)
    async with TestClient(TestServer(app)) as c:
        yield c


async def _headers(client: Client) -> dict[str, str]:
    resp = await client.post("/api/login", json={"login": "sup", "password": "pw-123456"})
    return {"Authorization": f"Bearer {(await resp.json())['token']}"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"dial_mode": "predictive", "pacing": {"target_abandon": 0.02}}, "pacing.target_abandon"),
        ({"dial_mode": "power", "pacing": {"lines_per_agent": "two"}}, "pacing.lines_per_agent"),
    ],
)
async def test_the_api_refuses_pacing_the_runner_cannot_use(
    client: Client, body: dict[str, object], field: str
) -> None:
    h = await _headers(client)
    resp = await client.post("/api/campaigns", json={"name": "bad", **body}, headers=h)
    assert resp.status == 400, await resp.text()
    error = await resp.json()
    assert error["field"] == field, error
    key = next(iter(body["pacing"]))  # type: ignore[call-overload]
    assert key in error["detail"]


async def test_the_api_takes_the_knobs_of_the_dial_mode(client: Client) -> None:
    h = await _headers(client)
    for name, body in (
        ("power", {"dial_mode": "power", "pacing": {"lines_per_agent": 2.5}}),
        ("pred", {"dial_mode": "predictive", "pacing": {"target_margin": 0.005}}),
    ):
        resp = await client.post("/api/campaigns", json={"name": name, **body}, headers=h)
        assert resp.status == 201, await resp.text()
        assert (await resp.json())["pacing"] == body["pacing"]


async def test_an_update_that_breaks_the_pacing_is_refused(client: Client) -> None:
    h = await _headers(client)
    resp = await client.post(
        "/api/campaigns",
        json={"name": "ok", "dial_mode": "power", "pacing": {"lines_per_agent": 2}},
        headers=h,
    )
    assert resp.status == 201
    cid = (await resp.json())["id"]
    # The settings stay, the mode changes: power's knob means nothing to predictive.
    resp = await client.patch(f"/api/campaigns/{cid}", json={"dial_mode": "predictive"}, headers=h)
    assert resp.status == 400 and (await resp.json())["field"] == "pacing.lines_per_agent"
    resp = await client.get(f"/api/campaigns/{cid}", headers=h)
    assert (await resp.json())["dial_mode"] == "power", "nothing was saved"


async def test_a_campaign_with_bad_pacing_does_not_dial_and_says_why(
    engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    cid = await _campaign(engine, accounts=3, mode="power")
    sessions = make_sessionmaker(engine)
    async with sessions.begin() as s:
        await s.execute(
            update(Campaign).where(Campaign.id == cid).values(pacing={"lines_per_agent": "two"})
        )
    tel, hub = Telephony(), Hub()
    hub.add_ready(1, 0.0)
    eng = _engine(engine, tel, hub)
    caplog.set_level(logging.ERROR, logger="dialer.engine")
    task = asyncio.create_task(eng.run())
    try:
        async with asyncio.timeout(5):
            while cid not in eng.runs or eng.runs[cid].decision is None:
                await asyncio.sleep(0.02)
        await asyncio.sleep(1.5)  # several ticks and a saved decision
        decision = eng.decision_dict(eng.runs[cid])
        assert tel.originated == []
        assert decision["launches"] == 0 and decision["mode_in_force"] == "invalid-settings"
        assert "pacing.lines_per_agent" in str(decision["reason"])
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1, [r.getMessage() for r in errors]
        assert f"campaign {cid}" in errors[0].getMessage()
        assert "pacing.lines_per_agent" in errors[0].getMessage()
        async with sessions() as s:
            from dialer.store.models import CampaignLease

            lease = await s.get(CampaignLease, cid)
        assert lease is not None and lease.last_decision["mode_in_force"] == "invalid-settings"
        async with sessions.begin() as s:  # fixed by hand: the runner picks it up
            await s.execute(
                update(Campaign)
                .where(Campaign.id == cid)
                .values(pacing={"lines_per_agent": 1}, updated_at=dt.datetime.now(dt.UTC))
            )
        async with asyncio.timeout(5):
            while not tel.originated:
                await asyncio.sleep(0.02)
    finally:
        eng.stop()
        await task
