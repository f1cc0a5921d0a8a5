"""The stalled-campaign alarm: pacing wants calls, none goes out -> `dialer_campaign_stalled` 1
and one log line naming why (no debtor data); a call going out clears it. Pacing deciding to
launch nothing is not a stall."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from dialer import metrics
from dialer.app import ENGINE
from dialer.runtime import RUNTIME
from dialer.stall import StallWatch
from dialer.store.db import make_sessionmaker
from dialer.store.models import Campaign

pytestmark = pytest.mark.postgres


def stalled(campaign: int) -> float:
    return metrics.CAMPAIGN_STALLED.labels(str(campaign))._value.get()


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


async def test_a_campaign_that_wants_calls_and_sends_none_raises_the_alarm(
    engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    async with make_sessionmaker(engine).begin() as s:
        campaign = Campaign(name="stuck", state="running", compliance_profile="MX")
        s.add(campaign)
        await s.flush()
        cid = campaign.id
    # The engine's side as the watch reads it: a running campaign whose pacing wants 2 calls,
    # on a process whose one Asterisk connection is down. (A stand-in: the watch only reads.)
    run = SimpleNamespace(
        view=SimpleNamespace(state="running", name="stuck"), decision=SimpleNamespace(launches=2)
    )
    server = SimpleNamespace(connection=SimpleNamespace(connected=False))
    app = web.Application()
    app[ENGINE] = engine
    app[RUNTIME] = SimpleNamespace(engine=SimpleNamespace(runs={cid: run}), pool=SimpleNamespace(servers=[server]))  # type: ignore[assignment]  # noqa: E501
    clock = Clock()
    watch = StallWatch(app, mono=clock, stalled_after_s=20)

    caplog.set_level(logging.INFO, logger="dialer.stall")
    await watch.check()
    clock.t = 19
    await watch.check()
    assert stalled(cid) == 0  # not yet: pacing may just be warming up
    clock.t = 21
    await watch.check()
    assert stalled(cid) == 1
    [line] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "no Asterisk server is connected" in line.getMessage()
    assert line.campaign_id == cid  # type: ignore[attr-defined]

    # Asterisk back, but the campaign has no caller ID: that is the reason now.
    server.connection.connected = True
    watch.seen.clear()
    clock.t = 100
    await watch.check()
    clock.t = 125
    await watch.check()
    assert watch.seen[cid].reason and "no caller ID" in watch.seen[cid].reason

    # A call goes out: cleared.
    metrics.record_originated(cid, "pbx")
    await watch.check()
    assert stalled(cid) == 0 and watch.seen[cid].reason is None

    # Pacing launching nothing (no agent ready) is not a stall, however long it lasts.
    run.decision.launches = 0
    clock.t = 1000
    await watch.check()
    clock.t = 2000
    await watch.check()
    assert stalled(cid) == 0
