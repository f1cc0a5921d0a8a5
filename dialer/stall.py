"""The stalled-campaign alarm: a running campaign whose pacing wants calls but that launches none
(no Asterisk, a setting, nothing dialable), raised as a log line and `dialer_campaign_stalled`;
and the campaign's info series (its name) and promise series (its currencies), set once seen.

It watches the engine from outside (its decisions and the originate counter); pacing deciding
to launch nothing (no agent ready, the abandon cap) is not a stall.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from sqlalchemy import func, or_, select

from dialer import metrics
from dialer.doctor import campaign_problems
from dialer.runtime import RUNTIME
from dialer.store.db import make_sessionmaker
from dialer.store.models import Account, Campaign, CampaignAccount, MemberState

log = logging.getLogger("dialer.stall")

CHECK_EVERY_S = 5.0
STALLED_AFTER_S = 20.0  # pacing wanted calls this long and none was originated


@dataclass(slots=True)
class _Seen:
    originated: float
    wanting_since: float | None = None
    reason: str | None = None


def originated_total(campaign_id: int) -> float:
    """Originates this process sent for the campaign (all servers), from the metric itself."""
    total = 0.0
    for family in metrics.CALLS_ORIGINATED.collect():
        for sample in family.samples:
            if sample.name.endswith("_total") and sample.labels.get("campaign") == str(
                campaign_id
            ):
                total += sample.value
    return total


class StallWatch:
    """Every few seconds: for each campaign the engine runs, did pacing want calls while none
    went out? After `stalled_after_s` the campaign is stalled until a call goes out again."""

    def __init__(
        self,
        app: web.Application,
        mono: Callable[[], float] | None = None,
        stalled_after_s: float = STALLED_AFTER_S,
    ) -> None:
        self.app = app
        self.mono = mono or (lambda: asyncio.get_running_loop().time())
        self.stalled_after_s = stalled_after_s
        self.seen: dict[int, _Seen] = {}
        self.currencies: set[int] = set()  # campaigns whose promise series are initialised

    async def check(self) -> None:
        runtime = self.app.get(RUNTIME)
        engine = runtime.engine if runtime is not None else None
        runs = dict(engine.runs) if engine is not None else {}
        now = self.mono()
        for cid in list(self.seen):
            if cid not in runs:
                self.seen.pop(cid)
                self.currencies.discard(cid)
                metrics.set_campaign_stalled(cid, False)
                metrics.forget_campaign_info(cid)
        for cid, run in runs.items():
            metrics.set_campaign_info(cid, run.view.name)
            if cid not in self.currencies:
                self.currencies.add(cid)
                metrics.init_campaign(cid, await self.campaign_currencies(cid))
            sent = originated_total(cid)
            seen = self.seen.setdefault(cid, _Seen(sent))
            wants = run.view.state == "running" and (
                run.decision is not None and run.decision.launches > 0
            )
            if sent > seen.originated or not wants:
                if seen.reason is not None:
                    log.info("campaign dials again", extra={"campaign_id": cid})
                seen.originated, seen.wanting_since, seen.reason = sent, None, None
                metrics.set_campaign_stalled(cid, False)
                continue
            if seen.wanting_since is None:
                seen.wanting_since = now
            if seen.reason is None and now - seen.wanting_since >= self.stalled_after_s:
                seen.reason = await self.reason(cid)
                metrics.set_campaign_stalled(cid, True)
                # Reasons name settings and rules, never an account or a number.
                log.warning(
                    "campaign %d launches nothing although pacing wants calls: %s",
                    cid,
                    seen.reason,
                    extra={"campaign_id": cid},
                )

    async def campaign_currencies(self, campaign_id: int) -> list[str]:
        """The currencies of the campaign's accounts: its promise-to-pay series start at 0."""
        from dialer.app import ENGINE

        async with make_sessionmaker(self.app[ENGINE])() as s:
            rows = await s.execute(
                select(Account.currency)
                .join(CampaignAccount, CampaignAccount.account_id == Account.id)
                .where(CampaignAccount.campaign_id == campaign_id)
                .distinct()
                .limit(50)
            )
            return [str(c) for c in rows.scalars()]

    async def reason(self, campaign_id: int) -> str:
        runtime = self.app.get(RUNTIME)
        if runtime is not None and not any(s.connection.connected for s in runtime.pool.servers):
            return "no Asterisk server is connected"
        from dialer.app import ENGINE

        now = dt.datetime.now(dt.UTC)
        async with make_sessionmaker(self.app[ENGINE])() as s:
            campaign = await s.get(Campaign, campaign_id)
            if campaign is None:
                return "the campaign is gone"
            problems = campaign_problems(campaign)
            if problems:
                return "; ".join(p.detail for p in problems)
            due = (
                await s.execute(
                    select(func.count()).where(
                        CampaignAccount.campaign_id == campaign_id,
                        CampaignAccount.state == MemberState.ACTIVE.value,
                        or_(
                            CampaignAccount.next_attempt_at.is_(None),
                            CampaignAccount.next_attempt_at <= now,
                        ),
                    )
                )
            ).scalar_one()
        if not due:
            return "no account is due now (`dialer doctor` lists what blocks each)"
        return "originates fail or are refused (see the telephony log; `dialer doctor`)"

    async def run(self) -> None:
        while True:
            try:
                await self.check()
            except Exception:  # the alarm must not die with one bad check; said, and retried
                log.exception("stall check failed")
            await asyncio.sleep(CHECK_EVERY_S)


STALL_TASK = web.AppKey("stall_watch_task", asyncio.Task)


def add_stall_watch(app: web.Application) -> StallWatch:
    """Run the watch with the app (after the dialing runtime has started)."""
    watch = StallWatch(app)

    async def start(app: web.Application) -> None:
        app[STALL_TASK] = asyncio.create_task(watch.run(), name="stall-watch")

    async def stop(app: web.Application) -> None:
        task = app[STALL_TASK]
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        for cid in watch.seen:  # this process no longer runs them
            metrics.forget_campaign_info(cid)
            metrics.set_campaign_stalled(cid, False)

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    return watch
