"""The abandon window of a campaign as its rule counts it: the one query behind the engine's pacing
snapshot, the API, /metrics and the reports (the counting itself is `pacing.abandon.window_totals`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from dialer.compliance.profiles import AbandonWindow
from dialer.store.models import CallAttempt
from pacing.abandon import WindowTotals, window_totals

# AMD's verdict "machine" (Asterisk's AMDSTATUS); a person taken for one is a false positive.
MACHINE_VERDICT = "MACHINE"


@dataclass(frozen=True, slots=True)
class AbandonFigures:
    """The window's figures: what was counted, what was estimated, and the rate they give."""

    totals: WindowTotals
    counted_abandoned: int
    connected: int
    machine_verdicts: int
    amd_accuracy: float | None  # None: the rule does not count AMD false positives
    max_rate: float
    window: str
    since: dt.datetime

    @property
    def rate(self) -> float:
        return self.totals.rate

    def to_dict(self) -> dict[str, object]:
        total = self.totals.abandoned + self.totals.connected
        return {
            "rate": round(self.totals.rate, 6) if total else None,
            "abandoned": self.counted_abandoned,
            "connected": self.connected,
            "estimated_amd_false_positives": round(self.totals.estimated, 6),
            "machine_verdicts": self.machine_verdicts,
            "amd_accuracy": self.amd_accuracy,
            "max_rate": self.max_rate,
            "window": self.window,
            "since": self.since,
        }


def amd_accuracy_for(window: AbandonWindow, caps: Mapping[str, object] | None) -> float:
    """The campaign's measured AMD accuracy (caps.amd_accuracy) else the profile's default."""
    value = (caps or {}).get("amd_accuracy")
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1:
        return float(value)
    return window.amd_accuracy


def figures(
    window: AbandonWindow,
    caps: Mapping[str, object] | None,
    since: dt.datetime,
    abandoned: int,
    connected: int,
    machines: int,
) -> AbandonFigures:
    accuracy = amd_accuracy_for(window, caps)
    totals = window_totals(
        abandoned,
        connected,
        machines,
        accuracy,
        count_amd_false_positives=window.amd_false_positives,
    )
    return AbandonFigures(
        totals,
        abandoned,
        connected,
        machines,
        accuracy if window.amd_false_positives else None,
        window.max_rate,
        window.describe(),
        since,
    )


def window_counts() -> tuple[ColumnElement[int], ColumnElement[int], ColumnElement[int]]:
    """Abandoned, connected to an agent, and AMD machine verdicts among answered attempts."""
    a = CallAttempt
    return (
        func.count().filter(a.abandoned.is_(True)),
        func.count().filter(a.bridged_at.is_not(None), a.abandoned.is_(False)),
        func.count().filter(func.upper(func.coalesce(a.amd_result, "")) == MACHINE_VERDICT),
    )


async def abandon_window(
    session: AsyncSession,
    campaign_id: int,
    window: AbandonWindow,
    caps: Mapping[str, object] | None,
    now: dt.datetime,
) -> AbandonFigures:
    """The campaign's abandon figures over its rule's window containing `now`."""
    since = window.start(now)
    row = (
        await session.execute(
            select(*window_counts()).where(
                CallAttempt.campaign_id == campaign_id, CallAttempt.answered_at >= since
            )
        )
    ).one()
    return figures(window, caps, since, int(row[0]), int(row[1]), int(row[2]))
