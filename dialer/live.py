"""The supervisor view's live campaign figures: every second, what this process's engine runs
(calls by stage, abandon rate over the regulatory window, the pacing decision in words) goes to
the agents' hub, which pushes it with each `supervisor.snapshot`.

The counts are the ones the engine publishes as metrics (one source for dashboards and the page).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import web
from prometheus_client import Gauge

from agents_ws.engine_port import CampaignLive
from agents_ws.server import HUB
from dialer import metrics
from dialer.runtime import RUNTIME

log = logging.getLogger("dialer.live")

PUBLISH_EVERY_S = 1.0
DIALING_STAGES = ("created", "originated")


def _gauge(gauge: Gauge, campaign: str, **labels: str) -> float:
    for family in gauge.collect():
        for sample in family.samples:
            if sample.labels.get("campaign") == campaign and all(
                sample.labels.get(k) == v for k, v in labels.items()
            ):
                return float(sample.value)
    return 0.0


def campaign_figures(app: web.Application) -> list[CampaignLive]:
    runtime = app.get(RUNTIME)
    engine = runtime.engine if runtime is not None else None
    if engine is None:
        return []
    out = []
    for cid, run in sorted(engine.runs.items()):
        label = str(cid)
        decision = run.decision
        words = "-"
        if decision is not None:
            words = f"{decision.mode_in_force}: launch {decision.launches}"
            if decision.reason:
                words += f" ({decision.reason})"
        if _gauge(metrics.CAMPAIGN_STALLED, label):
            words += " · stalled: no call goes out (dialer doctor)"
        out.append(
            CampaignLive(
                campaign_id=cid,
                name=run.view.name,
                dialing=round(
                    sum(_gauge(metrics.CALLS_IN_FLIGHT, label, stage=s) for s in DIALING_STAGES)
                ),
                ringing=round(_gauge(metrics.CALLS_IN_FLIGHT, label, stage="ringing")),
                talking=round(_gauge(metrics.CALLS_IN_FLIGHT, label, stage="bridged")),
                abandon_rate=_gauge(metrics.ABANDON_RATE, label),
                decision=words,
            )
        )
    return out


LIVE_TASK = web.AppKey("live_figures_task", asyncio.Task)


def add_live_figures(app: web.Application) -> None:
    async def publish() -> None:
        while True:
            try:
                app[HUB].set_campaigns_live(campaign_figures(app))
            except Exception:  # the page's figures must not stop for one bad read; said
                log.exception("live campaign figures failed")
            await asyncio.sleep(PUBLISH_EVERY_S)

    async def start(app: web.Application) -> None:
        app[LIVE_TASK] = asyncio.create_task(publish(), name="live-figures")

    async def stop(app: web.Application) -> None:
        app[LIVE_TASK].cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await app[LIVE_TASK]

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
