"""Calling windows in the debtor's local time: is a moment open, and when does it next open.

A window is a set of [start, end) intervals per weekday, closed on holidays when the profile says
so; with several candidate zones a moment is open only if it is open in every one (the strictest).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import holidays

from dialer.compliance.profiles import DAYS, Interval, Profile

# How far ahead `next_open` looks before it declares a window that never opens.
HORIZON = dt.timedelta(days=21)


@functools.cache
def _holiday_calendar(country: str, year: int) -> frozenset[dt.date]:
    return frozenset(holidays.country_holidays(country, years=year).keys())


def is_holiday(country: str | None, day: dt.date) -> bool:
    return country is not None and day in _holiday_calendar(country, day.year)


def _intersect(a: Sequence[Interval], b: Sequence[Interval]) -> tuple[Interval, ...]:
    out: list[Interval] = []
    for s1, e1 in a:
        for s2, e2 in b:
            s, e = max(s1, s2), min(e1, e2)
            if s < e:
                out.append((s, e))
    return tuple(sorted(out))


@dataclass(frozen=True, slots=True)
class Window:
    """A profile's window, optionally narrowed by a campaign (a narrowing can never widen it)."""

    profile: Profile
    narrowing: Mapping[str, tuple[Interval, ...]] | None = None

    def intervals(self, day: dt.date) -> tuple[Interval, ...]:
        if self.profile.holidays_closed and is_holiday(self.profile.holiday_country, day):
            return ()
        base = self.profile.window[DAYS[day.weekday()]]
        if self.narrowing is not None and DAYS[day.weekday()] in self.narrowing:
            return _intersect(base, self.narrowing[DAYS[day.weekday()]])
        return base

    def is_open(self, now: dt.datetime, zone: str) -> bool:
        local = now.astimezone(ZoneInfo(zone))
        t = local.time().replace(tzinfo=None)
        return any(s <= t < e for s, e in self.intervals(local.date()))

    def next_open_in(self, now: dt.datetime, zone: str) -> dt.datetime | None:
        """`now` if open, else the next opening in `zone` (aware UTC), None within the horizon."""
        tz = ZoneInfo(zone)
        local = now.astimezone(tz)
        day = local.date()
        for _ in range(HORIZON.days + 1):
            for start, end in self.intervals(day):
                opening = dt.datetime.combine(day, start, tzinfo=tz)
                closing = dt.datetime.combine(day, end, tzinfo=tz)
                # Round-trip through UTC so a wall time in a DST gap lands on a real instant.
                opening_utc = opening.astimezone(dt.UTC)
                if closing.astimezone(dt.UTC) <= now:
                    continue
                return max(opening_utc, now)
            day += dt.timedelta(days=1)
        return None

    def next_open(self, now: dt.datetime, zones: Sequence[str]) -> dt.datetime | None:
        """The first moment >= now open in every zone of `zones` (the strictest reading)."""
        moment = now
        limit = now + HORIZON
        while moment <= limit:
            latest = moment
            for zone in zones:
                opening = self.next_open_in(moment, zone)
                if opening is None:
                    return None
                latest = max(latest, opening)
            if latest == moment:
                return moment
            moment = latest
        return None


def parse_narrowing(raw: Mapping[str, object]) -> dict[str, tuple[Interval, ...]]:
    """A campaign's `calling_window` {"mon": ["09:00", "20:00"], "sun": []}: missing days keep the
    profile's window, an empty list closes the day."""
    from dialer.compliance.profiles import ProfileError, parse_intervals

    unknown = set(raw) - set(DAYS)
    if unknown:
        raise ProfileError(f"calling_window: unknown days {sorted(unknown)}; use {', '.join(DAYS)}")
    return {day: parse_intervals(value, f"calling_window.{day}") for day, value in raw.items()}
