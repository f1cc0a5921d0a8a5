"""One abandon figure everywhere: under the UK rule the estimated AMD false positives join the
window, and the API, /metrics, the report and the pacing snapshot all show the same rate."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncEngine

from dialer.app import build_app
from dialer.engine.engine import Engine
from dialer.settings import Settings
from dialer.store.db import make_sessionmaker
from dialer.store.models import Account, Agent, CallAttempt, Campaign, Phone
from tests.integration.test_api import _HASH, _as
from tests.integration.test_engine import Hub, Telephony, _any_hour

pytestmark = pytest.mark.postgres
Client = TestClient[web.Request, web.Application]

# Ofcom's estimate: machine verdicts x (1 - accuracy) = 100 x (1 - 0.97) = 3 people hung up on.
ABANDONED, CONNECTED, MACHINES, ACCURACY = 2, 60, 100, 0.97
ESTIMATED = MACHINES * (1 - ACCURACY)


@pytest_asyncio.fixture
async def client(engine: AsyncEngine) -> AsyncIterator[Client]:
    async with make_sessionmaker(engine).begin() as s:
        s.add(Agent(login="sup", name="sup", password_hash=_HASH, role="supervisor"))
    app = await build_app(Settings(), engine)
    async with TestClient(TestServer(app)) as c:
        yield c


async def _seed(engine: AsyncEngine, profile: str) -> int:
    """A running predictive campaign with today's answered calls: abandoned, bridged, machines."""
    now = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30)
    async with make_sessionmaker(engine).begin() as s:
        c = Campaign(
            name=f"amd-{profile}",
            dial_mode="predictive",
            state="running",
            compliance_profile=profile,
            amd_enabled=True,
            caps={"amd_accuracy": ACCURACY},
        )
        acc = Account(external_ref="A", name="x", balance=Decimal("1.00"))
        acc.phones = [Phone(number="+447911123456")]
        s.add_all([c, acc])
        await s.flush()
        kinds = (
            [dict(abandoned=True, outcome="abandoned")] * ABANDONED
            + [dict(bridged_at=now, outcome="completed")] * CONNECTED
            + [dict(amd_result="MACHINE", outcome="machine")] * MACHINES
        )
        s.add_all(
            CallAttempt(
                campaign_id=c.id, account_id=acc.id, phone_id=acc.phones[0].id,
                number=acc.phones[0].number, created_at=now, answered_at=now, ended_at=now,
                **kind,
            )
            for kind in kinds
        )  # fmt: skip
        return c.id


def _metric(text: str, name: str, cid: int) -> float:
    match = re.search(rf'^{name}\{{campaign="{cid}"\}} (\S+)$', text, re.M)
    assert match, name
    return float(match.group(1))


@pytest.mark.parametrize(
    ("profile", "estimated"), [("UK", ESTIMATED), ("US", 0.0)], ids=["UK", "US"]
)
async def test_api_metrics_report_and_pacing_show_the_same_abandon_rate(
    client: Client, engine: AsyncEngine, profile: str, estimated: float
) -> None:
    cid = await _seed(engine, profile)
    rate = (ABANDONED + estimated) / (ABANDONED + estimated + CONNECTED)
    hub = Hub()
    hub.add_ready(1, 0.0)
    eng = Engine(
        make_sessionmaker(engine), Telephony(), hub, owner="t", tick_hz=20, options_for=_any_hour
    )
    task = asyncio.create_task(eng.run())
    try:
        async with asyncio.timeout(5):
            while cid not in eng.runs or eng.runs[cid].decision is None:
                await asyncio.sleep(0.02)
        used = eng.runs[cid].decision.inputs  # type: ignore[union-attr]
        # /metrics while the engine runs the campaign (a stopped campaign's gauges are dropped).
        scrape = await (await client.get("/metrics")).text()
    finally:
        eng.stop()
        await task
    # What the pacing snapshot used: counted abandons plus the estimate, and the estimate apart.
    assert used["window_abandoned"] == pytest.approx(ABANDONED + estimated)
    assert used["window_connected"] == CONNECTED
    assert used["window_estimated"] == pytest.approx(estimated)

    h = await _as(client, "sup")
    abandon = (await (await client.get(f"/api/campaigns/{cid}", headers=h)).json())["abandon"]
    assert abandon["rate"] == pytest.approx(rate, abs=1e-6)
    assert (abandon["abandoned"], abandon["connected"]) == (ABANDONED, CONNECTED)
    assert abandon["estimated_amd_false_positives"] == pytest.approx(estimated)

    assert _metric(scrape, "dialer_abandon_rate_ratio", cid) == pytest.approx(rate)
    assert _metric(scrape, "dialer_abandon_estimated_calls", cid) == pytest.approx(estimated)

    today = dt.datetime.now(dt.UTC).date().isoformat()
    resp = await client.get(
        f"/api/reports?from={today}&to={today}&by=campaign&campaign={cid}&format=json", headers=h
    )
    assert resp.status == 200, await resp.text()
    (row,) = (await resp.json())["rows"]
    assert row["abandon_rate"] == round(rate, 4)
    assert row["estimated_amd_false_positives"] == pytest.approx(estimated)
    assert row["machine_verdicts"] == MACHINES
