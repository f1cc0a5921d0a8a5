"""An oracle for collection calls, written from the published rules (see /work/shared/DOMAIN.md and
the citations below), not from the dialer's code: it must not import dialer.compliance.

`forbidden(call)` says why a call is forbidden, or None when the rules allow it. Where the debtor
is: the phone number's zones (libphonenumber's data), narrowed by evidence about the debtor (a
zone in the file, the state of an address) where the two agree, both kept where they disagree
(Regulation F comment 6(b)(1)(i)-2: convenient "in all of the locations at which the debt
collector's information indicates the consumer might be located").
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass, field
from importlib import resources
from zoneinfo import ZoneInfo

import holidays
import phonenumbers
from phonenumbers import timezone as phone_timezone

# Calling hours in the debtor's local time, per weekday (0 = Monday): (start, end) inclusive of
# the start; the end itself is allowed where the text says "after 9 p.m." is forbidden.
ALL_DAYS = {d: (dt.time(8), dt.time(21)) for d in range(7)}
WINDOWS: dict[str, dict[int, tuple[dt.time, dt.time]]] = {
    # FDCPA 15 U.S.C. 1692c(a)(1): "before 8 o'clock antemeridian and after 9 o'clock postmeridian".
    "US": ALL_DAYS,
    # CONDUSEF (2014): collection contact only 07:00-22:00 in the debtor's time zone.
    "MX": {d: (dt.time(7), dt.time(22)) for d in range(7)},
    # Ley 2300 de 2023: Mon-Fri 07:00-19:00, Sat 08:00-15:00, never Sundays or holidays.
    "CO": {**{d: (dt.time(7), dt.time(19)) for d in range(5)}, 5: (dt.time(8), dt.time(15))},
    # Peru: no calls 20:00-07:00 nor on weekends or holidays.
    "PE": {d: (dt.time(7), dt.time(20)) for d in range(5)},
    # Spain: the 09:00-21:00 weekday window for commercial calls is the usual reference.
    "ES": {d: (dt.time(9), dt.time(21)) for d in range(5)},
}
NO_HOLIDAY_CALLS = {"CO": "CO", "PE": "PE"}
# US states by the zones that cover them (tz database zone.tab comments), for address evidence.
STATE_ZONES = {
    "NY": {"America/New_York"},
    "CA": {"America/Los_Angeles"},
    "ID": {"America/Boise", "America/Los_Angeles"},
    "ND": {"America/Chicago", "America/Denver"},
    "AK": {"America/Anchorage", "America/Adak"},
    "HI": {"Pacific/Honolulu"},
    "TX": {"America/Chicago", "America/Denver"},
    "CO": {"America/Denver"},
    "MA": {"America/New_York"},
}
# NANPA: Massachusetts area codes (a debtor whose address names no state but whose number is one).
MA_AREA_CODES = {"339", "351", "413", "508", "617", "774", "781", "857", "978"}


@dataclass(frozen=True)
class PastCall:
    at: dt.datetime  # when it was dialed
    number: str
    conversation_at: dt.datetime | None = None  # bridged to an agent: a telephone conversation
    abandoned_at: dt.datetime | None = None  # answered by a person and abandoned


@dataclass(frozen=True)
class Call:
    number: str
    at: dt.datetime
    profiles: tuple[str, ...]  # the campaign's jurisdiction, and the debtor's own if different
    agent_guaranteed: bool = False  # preview: an agent is on the line when the debtor answers
    file_zone: str | None = None
    state: str | None = None
    cease_communication: bool = False
    attorney_represented: bool = False
    debt_calls: tuple[PastCall, ...] = ()  # this debt's calls, any number, any campaign
    number_abandons: tuple[dt.datetime, ...] = ()  # abandons on this number, any debt
    dnc: tuple[tuple[str, dt.datetime | None], ...] = field(default=())  # (number, expires)
    # TCPA: launched by the dialer itself (not an agent's click), under a campaign that honours
    # the consent rule; what the creditor's file called the line; a consent in force.
    automatic_under_tcpa: bool = False
    declared_type: str = "unknown"
    consent: bool = False


def possibly_wireless(number: str, declared: str) -> bool:
    """Wireless unless known to be a landline (the numbering plan or the file says so, and
    neither says mobile)."""
    kind = phonenumbers.number_type(phonenumbers.parse(number, None))
    if kind == phonenumbers.PhoneNumberType.MOBILE or declared == "mobile":
        return True
    return not (kind == phonenumbers.PhoneNumberType.FIXED_LINE or declared in ("home", "work"))


def _tz_table() -> dict[str, set[str]]:
    table: dict[str, set[str]] = {}
    text = resources.files("tzdata").joinpath("zoneinfo", "zone.tab").read_text()
    for line in text.splitlines():
        if not line.startswith("#") and line.strip():
            country, _, zone = line.split("\t")[:3]
            table.setdefault(country, set()).add(zone)
    return table


_COUNTRY_ZONES = _tz_table()


@functools.cache
def number_zones(number: str) -> frozenset[str]:
    """NANP: the area code's zones. Elsewhere: the number's zones, or where the numbering plan
    says nothing (mobiles), every zone of the country (tz database zone.tab)."""
    parsed = phonenumbers.parse(number, None)
    if parsed.country_code == 1:
        zones = set(phone_timezone.time_zones_for_geographical_number(parsed))
    else:
        zones = set(phone_timezone.time_zones_for_number(parsed)) - {"Etc/Unknown"}
        if not zones:
            zones = _COUNTRY_ZONES.get(phonenumbers.region_code_for_number(parsed) or "", set())
    return frozenset(zones - {"Etc/Unknown"})


@functools.cache
def _same_clock(a: str, b: str) -> bool:
    t, end = dt.datetime(2020, 1, 1, tzinfo=dt.UTC), dt.datetime(2035, 1, 1, tzinfo=dt.UTC)
    while t < end:
        if t.astimezone(ZoneInfo(a)).utcoffset() != t.astimezone(ZoneInfo(b)).utcoffset():
            return False
        t += dt.timedelta(days=7)
    return True


def debtor_zones(call: Call) -> set[str]:
    zones = set(number_zones(call.number))
    by_state = STATE_ZONES.get(call.state or "", set())
    for evidence in ({call.file_zone} if call.file_zone else set(), by_state):
        if not evidence:
            continue
        agree = {z for z in zones if any(_same_clock(z, e) for e in evidence)}
        zones = agree if agree else zones | evidence
    return zones


@functools.cache
def _holidays(country: str, year: int) -> frozenset[dt.date]:
    return frozenset(holidays.country_holidays(country, years=year))


def _open(profile: str, local: dt.datetime) -> bool:
    window = WINDOWS.get(profile)
    if window is None:
        return True  # the rule names no hours
    country = NO_HOLIDAY_CALLS.get(profile)
    if country and local.date() in _holidays(country, local.year):
        return False
    hours = window.get(local.weekday())
    if hours is None:
        return False
    t = local.time().replace(tzinfo=None)
    return hours[0] <= t <= hours[1]


def forbidden(call: Call) -> str | None:
    now = call.at
    for number, expires in call.dnc:
        if number == call.number and (expires is None or expires > now):
            return "number on a do-not-call list"
    # 47 U.S.C. 227(b)(1)(A)(iii): no automatic dialing of a wireless number without prior
    # express consent.
    if (
        call.automatic_under_tcpa
        and not call.consent
        and possibly_wireless(call.number, call.declared_type)
    ):
        return "TCPA: wireless number without consent, dialed automatically"
    zones = debtor_zones(call)
    conversations = [c.conversation_at for c in call.debt_calls if c.conversation_at]
    for profile in call.profiles:
        for zone in zones or {"UTC"}:
            if not _open(profile, now.astimezone(ZoneInfo(zone))):
                return f"{profile}: outside the calling hours in {zone}"
        if profile == "US":
            # 12 CFR 1006.14(b)(2): more than 7 attempts within 7 consecutive days, or any call
            # within 7 days after a telephone conversation about the debt.
            week = now - dt.timedelta(days=7)
            if sum(1 for c in call.debt_calls if week < c.at <= now) >= 7:
                return "US: 7 attempts in 7 days"
            if any(week < c <= now for c in conversations):
                return "US: conversation in the last 7 days"
            if call.cease_communication or call.attorney_represented:
                return "US: cease-communication or attorney"
            # 940 CMR 7.04(1)(f): in Massachusetts, no more than two calls in each seven-day
            # period (read as any 7 x 24 h).
            in_ma = call.state == "MA" or (
                call.state is None
                and call.number.startswith("+1")
                and call.number[2:5] in MA_AREA_CODES
            )
            if in_ma and sum(1 for c in call.debt_calls if week < c.at <= now) >= 2:
                return "MA: 2 calls in 7 days"
        if profile == "CO":
            # Ley 2300: at most one contact a day (the debtor's day).
            for zone in zones or {"UTC"}:
                today = now.astimezone(ZoneInfo(zone)).date()
                if any(
                    c.astimezone(ZoneInfo(zone)).date() == today and c <= now for c in conversations
                ):
                    return "CO: a contact today"
        # Ley 21.320 (Chile): at most one phone contact a week.
        week = now - dt.timedelta(days=7)
        if profile == "CL" and any(week < c <= now for c in conversations):
            return "CL: a contact this week"
        # Ofcom: no repeat call within 72 hours to a number that got an abandoned call, unless
        # an agent is guaranteed.
        rest = now - dt.timedelta(hours=72)
        if (
            profile == "UK"
            and not call.agent_guaranteed
            and any(rest < a <= now for a in call.number_abandons)
        ):
            return "UK: abandoned call to this number in the last 72 h"
    return None
