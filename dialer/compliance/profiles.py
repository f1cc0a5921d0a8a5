"""Jurisdiction profiles: calling windows, frequency limits and the abandon-rate window, as data.

The rules live in `profiles/*.toml` so counsel can review and change them; this module only parses
them into typed values and refuses a file that does not say exactly what it means.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Interval = tuple[dt.time, dt.time]


class ProfileError(ValueError):
    """A profile (or a campaign's narrowing of it) is malformed; the message names the key."""


@dataclass(frozen=True, slots=True)
class Frequency:
    """Frequency limits; 0 means no limit. "Contacts" are conversations with an agent."""

    attempts_max: int = 0
    attempts_days: int = 0
    rest_after_conversation_days: int = 0
    contacts_per_day: int = 0
    contacts_max: int = 0
    contacts_days: int = 0
    rest_after_abandoned_hours: int = 0


@dataclass(frozen=True, slots=True)
class AbandonWindow:
    """What the abandon-rate cap is measured over: `rolling_days`, or a `calendar_day` in `zone`."""

    max_rate: float = 0.03
    kind: str = "rolling_days"
    days: int = 30
    zone: str = "UTC"
    # UK (Ofcom): the estimated AMD false positives count as abandoned calls. `amd_accuracy` is
    # the share of AMD's machine verdicts assumed to be machines until the campaign sets its own
    # measured figure (caps.amd_accuracy).
    amd_false_positives: bool = False
    amd_accuracy: float = 1.0

    def start(self, now: dt.datetime) -> dt.datetime:
        """When the window that contains `now` began (aware UTC)."""
        if self.kind == "calendar_day":
            local = now.astimezone(ZoneInfo(self.zone))
            midnight = dt.datetime.combine(local.date(), dt.time(0), tzinfo=local.tzinfo)
            return midnight.astimezone(dt.UTC)
        return now - dt.timedelta(days=self.days)

    def describe(self) -> str:
        if self.kind == "calendar_day":
            return f"calendar day (midnight to midnight, {self.zone})"
        return f"rolling {self.days} days"


@dataclass(frozen=True, slots=True)
class Profile:
    code: str
    name: str
    holiday_country: str | None
    holidays_closed: bool
    zones: tuple[str, ...]
    window: dict[str, tuple[Interval, ...]]
    frequency: Frequency = field(default_factory=Frequency)
    abandon: AbandonWindow = field(default_factory=AbandonWindow)
    overlay: Overlay | None = None  # a state's rules added to its base profile


@dataclass(frozen=True, slots=True)
class Overlay:
    """Where a state overlay applies: debtors of its `base` profile whose address is in `state`,
    or, when the address names no state, whose number has one of its `area_codes`."""

    base: str
    state: str
    area_codes: tuple[str, ...] = ()


def parse_hhmm(value: object, where: str) -> dt.time:
    if not isinstance(value, str):
        raise ProfileError(f"{where}: times are strings HH:MM, got {value!r}")
    if value == "24:00":
        return dt.time.max
    try:
        return dt.time.fromisoformat(value)
    except ValueError as exc:
        raise ProfileError(f"{where}: {value!r} is not a time HH:MM") from exc


def parse_intervals(value: object, where: str) -> tuple[Interval, ...]:
    """`[["08:00", "21:00"], ...]` or a single `["08:00", "21:00"]`; `[]`/null closes the day."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ProfileError(f"{where}: expected a list of [start, end] pairs")
    if len(value) == 2 and all(isinstance(v, str) for v in value):
        value = [value]
    out: list[Interval] = []
    for i, pair in enumerate(value):
        if not isinstance(pair, list) or len(pair) != 2:
            raise ProfileError(f"{where}[{i}]: expected [start, end]")
        start, end = parse_hhmm(pair[0], f"{where}[{i}]"), parse_hhmm(pair[1], f"{where}[{i}]")
        if end <= start:
            raise ProfileError(f"{where}[{i}]: end {pair[1]} is not after start {pair[0]}")
        out.append((start, end))
    return tuple(sorted(out))


def _zone(name: object, where: str) -> str:
    if not isinstance(name, str):
        raise ProfileError(f"{where}: expected a time zone name")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ProfileError(f"{where}: unknown time zone {name!r}") from exc
    return name


def _int(table: dict[str, object], key: str, where: str) -> int:
    value = table.get(key, 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ProfileError(f"{where}.{key}: expected a whole number >= 0")
    return value


def parse_profile(data: dict[str, object], source: str) -> Profile:
    code = data.get("code")
    if not isinstance(code, str) or not code:
        raise ProfileError(f"{source}: code is required")
    window_table = data.get("window")
    if not isinstance(window_table, dict):
        raise ProfileError(f"{source}: [window] is required")
    unknown = set(window_table) - set(DAYS)
    if unknown:
        raise ProfileError(f"{source}: window has unknown days {sorted(unknown)}")
    window = {d: parse_intervals(window_table.get(d), f"{source}: window.{d}") for d in DAYS}
    freq_table = data.get("frequency", {})
    if not isinstance(freq_table, dict):
        raise ProfileError(f"{source}: [frequency] must be a table")
    known = set(Frequency.__slots__)
    if set(freq_table) - known:
        raise ProfileError(
            f"{source}: frequency has unknown keys {sorted(set(freq_table) - known)}"
        )
    frequency = Frequency(**{k: _int(freq_table, k, f"{source}: frequency") for k in known})
    ab = data.get("abandon", {})
    if not isinstance(ab, dict):
        raise ProfileError(f"{source}: [abandon] must be a table")
    kind = ab.get("window", "rolling_days")
    if kind not in ("rolling_days", "calendar_day"):
        raise ProfileError(f"{source}: abandon.window is rolling_days or calendar_day")
    rate = ab.get("max_rate", 0.03)
    if not isinstance(rate, int | float) or not 0 <= rate <= 1:
        raise ProfileError(f"{source}: abandon.max_rate is a fraction between 0 and 1")
    counts_fp = ab.get("amd_false_positives", False)
    if not isinstance(counts_fp, bool):
        raise ProfileError(f"{source}: abandon.amd_false_positives is true or false")
    accuracy = ab.get("amd_accuracy", 1.0)
    if not isinstance(accuracy, int | float) or not 0 <= accuracy <= 1:
        raise ProfileError(f"{source}: abandon.amd_accuracy is a fraction between 0 and 1")
    abandon = AbandonWindow(
        max_rate=float(rate),
        kind=str(kind),
        days=_int(ab, "days", f"{source}: abandon") or 30,
        zone=_zone(ab.get("zone", "UTC"), f"{source}: abandon.zone"),
        amd_false_positives=counts_fp,
        amd_accuracy=float(accuracy),
    )
    zones = data.get("zones", [])
    if not isinstance(zones, list):
        raise ProfileError(f"{source}: zones is a list of time zone names")
    overlay = None
    raw_overlay = data.get("overlay")
    if raw_overlay is not None:
        if not isinstance(raw_overlay, dict):
            raise ProfileError(f"{source}: [overlay] must be a table")
        base, state = raw_overlay.get("base"), raw_overlay.get("state")
        codes = raw_overlay.get("area_codes", [])
        if not isinstance(base, str) or not isinstance(state, str):
            raise ProfileError(f"{source}: overlay.base and overlay.state are required strings")
        if not isinstance(codes, list) or not all(isinstance(c, str) for c in codes):
            raise ProfileError(f"{source}: overlay.area_codes is a list of strings")
        overlay = Overlay(base, state.upper(), tuple(codes))
    holiday_country = data.get("holiday_country")
    if holiday_country is not None and not isinstance(holiday_country, str):
        raise ProfileError(f"{source}: holiday_country is a country code")
    return Profile(
        code=code,
        name=str(data.get("name", code)),
        holiday_country=holiday_country,
        holidays_closed=bool(data.get("holidays_closed", False)),
        zones=tuple(_zone(z, f"{source}: zones") for z in zones),
        window=window,
        frequency=frequency,
        abandon=abandon,
        overlay=overlay,
    )


@functools.cache
def overlays_of(base: str) -> tuple[str, ...]:
    """The shipped state overlays of profile `base` (e.g. US-MA for US)."""
    return tuple(c for c in available_profiles() if c.startswith(f"{base}-"))


def available_profiles() -> list[str]:
    folder = resources.files("dialer.compliance").joinpath("profiles")
    return sorted(
        p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml")
    )


@functools.cache
def profile_text(code: str) -> str:
    """The shipped profile's TOML as counsel reviewed it; ProfileError names the known ones."""
    known = available_profiles()
    if code not in known:
        raise ProfileError(f"unknown compliance profile {code!r}; known: {', '.join(known)}")
    return (
        resources.files("dialer.compliance")
        .joinpath("profiles")
        .joinpath(f"{code}.toml")
        .read_text()
    )


def text_hash(text: str) -> str:
    """The content hash an evidence record names a profile by (sha256 of its TOML text)."""
    return hashlib.sha256(text.encode()).hexdigest()


@functools.cache
def profile_hash(code: str) -> str:
    return text_hash(profile_text(code))


def profile_from_text(code: str, text: str) -> Profile:
    return parse_profile(tomllib.loads(text), f"profiles/{code}.toml")


@functools.cache
def load_profile(code: str) -> Profile:
    """The shipped profile `code` (e.g. "US"); ProfileError names the known ones otherwise."""
    return profile_from_text(code, profile_text(code))
