"""Abandon-rate accounting over a regulatory window: rolling (US, 30 days) or calendar day (UK).

Pure and clock-free: the owner passes `now` (epoch seconds, or a clock with the same day edges).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import StrEnum

DAY_S = 86_400.0


class WindowRule(StrEnum):
    ROLLING = "rolling"  # US TSR / FCC: per campaign per 30 days
    CALENDAR_DAY = "calendar-day"  # UK Ofcom: per campaign per day, midnight to midnight


@dataclass(frozen=True, slots=True)
class WindowTotals:
    abandoned: float
    connected: float
    estimated: float = 0.0  # the part of `abandoned` that is an estimate (AMD false positives)

    @property
    def rate(self) -> float:
        total = self.abandoned + self.connected
        return self.abandoned / total if total > 0 else 0.0


class AbandonWindow:
    """Counts abandoned and connected live answers over the regulatory window.

    Counts are floats because the UK rule adds estimated AMD false positives. The rolling window
    keeps one bucket per `bucket_s` so memory stays bounded over 30 days; the window edge is
    therefore exact to one bucket.
    """

    def __init__(
        self,
        rule: WindowRule | str = WindowRule.ROLLING,
        window_s: float = 30 * DAY_S,
        bucket_s: float = 300.0,
        utc_offset_s: float = 0.0,
    ) -> None:
        self.rule = WindowRule(rule)
        self.window_s = window_s
        self.bucket_s = bucket_s
        # The calendar day that counts is the campaign's local day.
        self.utc_offset_s = utc_offset_s
        # [bucket_start, abandoned, connected, estimated]
        self._buckets: deque[list[float]] = deque()
        self._abandoned = 0.0
        self._connected = 0.0
        self._estimated = 0.0
        self._day: float | None = None

    def _expire(self, now: float) -> None:
        if self.rule is WindowRule.CALENDAR_DAY:
            day = (now + self.utc_offset_s) // DAY_S
            if day != self._day:
                self._day = day
                self._buckets.clear()
                self._abandoned = self._connected = self._estimated = 0.0
            return
        edge = now - self.window_s
        while self._buckets and self._buckets[0][0] + self.bucket_s <= edge:
            _, ab, co, es = self._buckets.popleft()
            self._abandoned -= ab
            self._connected -= co
            self._estimated -= es

    def record(
        self, now: float, abandoned: float = 0.0, connected: float = 0.0, estimated: float = 0.0
    ) -> None:
        """Add counts at `now`. `estimated` is a part of `abandoned` that is not observed but
        estimated (UK rule: AMD false positives), so a policy can allow for its uncertainty."""
        self._expire(now)
        start = now - now % self.bucket_s
        if not self._buckets or self._buckets[-1][0] != start:
            self._buckets.append([start, 0.0, 0.0, 0.0])
        bucket = self._buckets[-1]
        bucket[1] += abandoned
        bucket[2] += connected
        bucket[3] += estimated
        self._abandoned += abandoned
        self._connected += connected
        self._estimated += estimated

    def totals(self, now: float) -> WindowTotals:
        self._expire(now)
        # Guard against float drift after many subtractions.
        return WindowTotals(
            max(self._abandoned, 0.0), max(self._connected, 0.0), max(self._estimated, 0.0)
        )


def amd_false_positive_estimate(machine_verdicts: float, amd_accuracy: float) -> float:
    """Ofcom's "reasoned estimate" of live people that AMD took for machines (and so abandoned):
    each machine verdict is wrong with probability 1 - `amd_accuracy`, the share of machine
    verdicts that really were machines (measured by listening to a sample of them)."""
    if not 0.0 <= amd_accuracy <= 1.0:
        raise ValueError(f"amd_accuracy: a fraction between 0 and 1, got {amd_accuracy!r}")
    return max(machine_verdicts, 0.0) * (1.0 - amd_accuracy)


def window_totals(
    abandoned: float,
    connected: float,
    machine_verdicts: float = 0.0,
    amd_accuracy: float = 1.0,
    *,
    count_amd_false_positives: bool = False,
) -> WindowTotals:
    """The abandon window as the rule counts it: the one function behind the engine's pacing
    snapshot, the API, /metrics and the reports. Under a rule that counts AMD false positives
    (UK), their estimate joins the abandoned calls (and so the live calls they are a share of);
    `estimated` says how much of `abandoned` is that estimate. The simulator adds the same
    estimate call by call from its scenario's human false-positive rate (see simulator)."""
    estimated = (
        amd_false_positive_estimate(machine_verdicts, amd_accuracy)
        if count_amd_false_positives
        else 0.0
    )
    return WindowTotals(abandoned + estimated, connected, estimated)
