"""/metrics, scraped over HTTP from the real app, counts what the database recorded.

The helpers are driven the way the engine will drive them, one call per recorded event; the e2e
version of this test (a real campaign on real Asterisk) comes with the engine.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from dialer import metrics
from dialer.app import build_app
from dialer.settings import Settings
from dialer.store.db import make_sessionmaker
from dialer.store.models import Account, CallAttempt, Campaign, Phone, PromiseToPay

pytestmark = pytest.mark.postgres
T0 = dt.datetime(2026, 11, 24, 14, 0, tzinfo=dt.UTC)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

# (server, answered, amd, bridged after s, abandoned, outcome) for each dial of the seed.
DIALS = [
    ("pbx1", True, "HUMAN", 0.8, False, "human"),
    ("pbx1", True, "HUMAN", 1.6, False, "human"),
    ("pbx2", True, "HUMAN", None, True, "abandoned"),
    ("pbx2", True, "MACHINE", None, False, "machine"),
    ("pbx1", False, None, None, False, "busy"),
    ("pbx2", False, None, None, False, "no_answer"),
    ("pbx1", False, None, None, False, "no_answer"),
]


async def _scrape(client: TestClient[web.Request, web.Application]) -> Samples:
    resp = await client.get("/metrics")
    assert resp.status == 200
    text = await resp.text()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    return after.get(key, 0.0) - before.get(key, 0.0)


async def _record_like_the_engine(engine: AsyncEngine) -> int:
    """Writes the attempts and promises, and calls the metric helpers at each event."""
    sessions = make_sessionmaker(engine)
    async with sessions.begin() as s:
        camp = Campaign(name="scrape")
        acc = Account(external_ref="S1", name="Debtor", balance=Decimal("10.00"))
        acc.phones = [Phone(number=f"+1202555010{i}") for i in range(len(DIALS))]
        s.add_all([camp, acc])
        await s.flush()
        for i, (server, answered, amd, latency, abandoned, outcome) in enumerate(DIALS):
            start = T0 + dt.timedelta(seconds=i)
            answered_at = start + dt.timedelta(seconds=5) if answered else None
            s.add(
                CallAttempt(
                    campaign_id=camp.id,
                    account_id=acc.id,
                    phone_id=acc.phones[i].id,
                    number=acc.phones[i].number,
                    server=server,
                    created_at=start,
                    originated_at=start,
                    answered_at=answered_at,
                    bridged_at=(
                        answered_at + dt.timedelta(seconds=latency)
                        if answered_at and latency
                        else None
                    ),
                    ended_at=start + dt.timedelta(minutes=1),
                    amd_result=amd,
                    abandoned=abandoned,
                    outcome=outcome,
                )
            )
            metrics.record_originated(camp.id, server)
            if answered and amd != "MACHINE":
                metrics.record_answered_live(camp.id)
            if abandoned:
                metrics.record_abandoned(camp.id)
            elif latency is not None:
                metrics.record_connected(camp.id, latency)
            metrics.record_outcome(camp.id, outcome)
        for amount, currency in (("150.00", "USD"), ("20.50", "USD"), ("900.00", "MXN")):
            s.add(
                PromiseToPay(
                    account_id=acc.id,
                    campaign_id=camp.id,
                    amount=Decimal(amount),
                    currency=currency,
                    due_date=T0.date(),
                )
            )
            metrics.record_ptp(camp.id, currency, Decimal(amount))
        return camp.id


async def test_scraped_counters_equal_what_the_database_recorded(engine: AsyncEngine) -> None:
    app = await build_app(Settings(), engine)
    async with TestClient(TestServer(app)) as client:
        before = await _scrape(client)
        campaign_id = await _record_like_the_engine(engine)
        after = await _scrape(client)

    c = str(campaign_id)
    a = CallAttempt
    sessions = make_sessionmaker(engine)
    async with sessions() as s:
        by_server = dict(
            (
                await s.execute(
                    select(a.server, func.count())
                    .where(a.campaign_id == campaign_id)
                    .group_by(a.server)
                )
            ).all()
        )
        by_outcome = dict(
            (
                await s.execute(
                    select(a.outcome, func.count())
                    .where(a.campaign_id == campaign_id)
                    .group_by(a.outcome)
                )
            ).all()
        )
        live = await s.scalar(
            select(func.count()).where(
                a.campaign_id == campaign_id,
                a.answered_at.is_not(None),
                func.coalesce(a.amd_result, "") != "MACHINE",
            )
        )
        abandoned = await s.scalar(
            select(func.count()).where(a.campaign_id == campaign_id, a.abandoned.is_(True))
        )
        connected = await s.scalar(
            select(func.count()).where(a.campaign_id == campaign_id, a.bridged_at.is_not(None))
        )
        promises = (
            await s.execute(
                select(PromiseToPay.currency, PromiseToPay.amount).where(
                    PromiseToPay.campaign_id == campaign_id
                )
            )
        ).all()

    assert by_server == {"pbx1": 4, "pbx2": 3}
    for server, n in by_server.items():
        assert (
            _delta(before, after, "dialer_calls_originated_total", campaign=c, server=server) == n
        )
    for outcome, n in by_outcome.items():
        assert _delta(before, after, "dialer_call_outcomes_total", campaign=c, outcome=outcome) == n
    assert _delta(before, after, "dialer_calls_answered_live_total", campaign=c) == live == 3
    assert _delta(before, after, "dialer_calls_abandoned_total", campaign=c) == abandoned == 1
    assert (
        _delta(before, after, "dialer_calls_connected_to_agent_total", campaign=c) == connected == 2
    )
    assert _delta(before, after, "dialer_bridge_latency_seconds_count", campaign=c) == connected
    for currency in ("USD", "MXN"):
        amounts = [amount for cur, amount in promises if cur == currency]
        labels = {"campaign": c, "currency": currency}
        assert _delta(before, after, "dialer_promises_to_pay_total", **labels) == len(amounts)
        # Counters are floats: compare to the cent.
        promised = _delta(before, after, "dialer_promised_amount_total", **labels)
        assert Decimal(str(round(promised, 2))) == sum(amounts, Decimal("0.00"))


async def test_metrics_endpoint_serves_the_text_exposition_format(engine: AsyncEngine) -> None:
    app = await build_app(Settings(), engine)
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/metrics")
        assert resp.headers["Content-Type"].startswith("text/plain; version=")
        text = await resp.text()
    # Every family the service defines is announced, even before its first sample.
    announced = {f.name for f in text_string_to_metric_families(text)}
    for metric in metrics.ALL_METRICS:
        for family in metric.describe():
            assert family.name in announced, family.name
