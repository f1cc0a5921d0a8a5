"""The debtor's possible time zones: one function for import, claim and screen pop.

The phone number gives its zone(s) (every zone of a NANP area code that spans several, every zone
of a country whose mobiles carry no geography); evidence about the debtor (a zone given in the
file, an address's postal code or state) narrows them where it overlaps. Evidence that contradicts
the number widens instead: the debtor may be in either place, so the window must be open in all
of them (Regulation F, comment 6(b)(1)(i)-2: "convenient in all of the locations at which the debt
collector's information indicates the consumer might be located"). A jurisdiction profile's zone
list is never used to narrow; it is only the last resort for a number with no known geography.
"""

from __future__ import annotations

import datetime as dt
import functools
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as phone_timezone

UNKNOWN_ZONE = "Etc/Unknown"

# Where a debtor's address is looked for in an account's custom fields (the importer keeps every
# column it does not map there, by header, lower-cased here).
POSTAL_KEYS = ("postal_code", "postcode", "zip", "zip_code", "zipcode", "codigo_postal", "cp")
REGION_KEYS = ("state", "region", "province", "provincia", "estado", "departamento")


@functools.lru_cache(maxsize=65536)
def valid_zone(name: str | None) -> bool:
    if not name:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


@functools.cache
def country_zones(region: str) -> tuple[str, ...]:
    """Every zone of a country per the tz database's zone.tab (a Chilean mobile, which
    libphonenumber places nowhere, may be on Easter Island)."""
    text = resources.files("tzdata").joinpath("zoneinfo").joinpath("zone.tab").read_text()
    found = set()
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and parts[0] == region and valid_zone(parts[2]):
            found.add(parts[2])
    return tuple(sorted(found))


def zones_of_parsed(parsed: phonenumbers.PhoneNumber) -> tuple[str, ...]:
    """Every zone a parsed number may be in per libphonenumber's data; () when it knows none.

    North America: the area code's zones (all of them when it spans several: Idaho 208, North
    Dakota 701, Alaska 907 with Adak); NANP mobiles keep their area code, so the geographical
    lookup is the answer. Elsewhere a mobile carries no geography: `time_zones_for_number` then
    gives every zone of the country (a Spanish mobile: Madrid and the Canaries, where the
    geographical lookup says only Madrid)."""
    found: list[str] = []
    if parsed.country_code != 1:
        found = [z for z in phone_timezone.time_zones_for_number(parsed) if z != UNKNOWN_ZONE]
        if not found:
            # No range data (a Chilean mobile): anywhere in the country, Easter Island included.
            region = phonenumbers.region_code_for_number(parsed)
            found = list(country_zones(region)) if region else []
    if not found:
        found = [
            z
            for z in phone_timezone.time_zones_for_geographical_number(parsed)
            if z != UNKNOWN_ZONE
        ]
    return tuple(sorted({z for z in found if valid_zone(z)}))


@functools.lru_cache(maxsize=65536)
def zones_for_number(e164: str) -> tuple[str, ...]:
    """The number's zones (see zones_of_parsed); () when not even its country is known."""
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return ()
    return zones_of_parsed(parsed)


@functools.lru_cache(maxsize=1)
def _address_data() -> dict[str, object]:
    text = resources.files("dialer.compliance").joinpath("address_zones.toml").read_text()
    return tomllib.loads(text)


def _country_of(e164: str) -> str | None:
    """Whose address table reads the debtor's address: the number's country; for a North
    American number whose own territory has none (Puerto Rico, Guam...), the US states'."""
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return None
    region = phonenumbers.region_code_for_number(parsed)
    if parsed.country_code == 1 and region not in _address_data():
        return "US"
    return region


def _table(country: str, key: str) -> Mapping[str, object]:
    section = _address_data().get(country)
    if not isinstance(section, dict):
        return {}
    table = section.get(key, {})
    return table if isinstance(table, dict) else {}


def zones_for_address(
    country: str | None, postal_code: str | None, region: str | None
) -> tuple[tuple[str, ...], str]:
    """Zones an address pins (postal code first, then state/province), with what was used;
    ((), "") when the address says nothing we know."""
    if not country:
        return (), ""
    if postal_code:
        code = "".join(ch for ch in postal_code.upper() if ch.isalnum())
        prefixes = _table(country, "postal_prefix")
        for size in range(len(code), 0, -1):
            zones = prefixes.get(code[:size])
            if isinstance(zones, list):
                return tuple(sorted(str(z) for z in zones)), f"postal code {code[:size]}*"
    if region:
        zones = _table(country, "region").get(region.strip().upper())
        if isinstance(zones, list):
            return tuple(sorted(str(z) for z in zones)), f"state/province {region.strip().upper()}"
    return (), ""


@functools.lru_cache(maxsize=4096)
def same_clock(a: str, b: str) -> bool:
    """Two zone names that keep the same local time (America/Boise and America/Denver) from 2020
    to 2035: evidence named one way matches a number named the other."""
    if a == b:
        return True
    za, zb = ZoneInfo(a), ZoneInfo(b)
    t = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    end = dt.datetime(2035, 1, 1, tzinfo=dt.UTC)
    while t < end:
        if t.astimezone(za).utcoffset() != t.astimezone(zb).utcoffset():
            return False
        t += dt.timedelta(days=7)
    return True


@dataclass(frozen=True, slots=True)
class ZoneFinding:
    """The zones whose windows must all be open, and why (shown in the screen pop, kept in the
    evidence record)."""

    zones: tuple[str, ...]
    source: str  # number | number+evidence | evidence (conflict: union) | profile fallback | none
    reason: str

    def to_dict(self) -> dict[str, str | list[str]]:
        return {"zones": list(self.zones), "source": self.source, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class DebtorEvidence:
    """What is known about where the debtor lives, apart from the number."""

    file_zone: str | None = None
    postal_code: str | None = None
    region: str | None = None

    @classmethod
    def of_account(
        cls, time_zone: str | None, custom_fields: Mapping[str, object] | None
    ) -> DebtorEvidence:
        fields = {str(k).strip().lower(): v for k, v in (custom_fields or {}).items()}

        def first(keys: Sequence[str]) -> str | None:
            for key in keys:
                value = fields.get(key)
                if isinstance(value, str | int) and str(value).strip():
                    return str(value).strip()
            return None

        return cls(time_zone if valid_zone(time_zone) else None, first(POSTAL_KEYS),
                   first(REGION_KEYS))  # fmt: skip


@functools.lru_cache(maxsize=65536)
def _narrow(
    from_number: tuple[str, ...],
    evidence: DebtorEvidence,
    country: str | None,
    fallback: tuple[str, ...],
) -> ZoneFinding:
    said: list[tuple[tuple[str, ...], str]] = []
    if evidence.file_zone:
        said.append(((evidence.file_zone,), f"zone {evidence.file_zone} given in the file"))
    address, how = zones_for_address(country, evidence.postal_code, evidence.region)
    if address:
        said.append((address, f"address {how}"))
    if not from_number:
        if said:
            zones = tuple(sorted({z for zs, _ in said for z in zs}))
            return ZoneFinding(zones, "evidence", "; ".join(r for _, r in said) + " (number: none)")
        if fallback:
            return ZoneFinding(
                tuple(fallback), "profile fallback",
                "the number has no known zone: every zone of the profile",
            )  # fmt: skip
        return ZoneFinding((), "none", "the number has no known zone")
    number_reason = (
        f"the number is in {from_number[0]}"
        if len(from_number) == 1
        else f"the number spans {', '.join(from_number)}"
    )
    zones = from_number
    reasons = [number_reason]
    source = "number"
    for evidence_zones, reason in said:
        overlap = tuple(z for z in zones if any(same_clock(z, e) for e in evidence_zones))
        if overlap:
            if overlap != zones:
                source = "number+evidence"
                reasons.append(f"narrowed by {reason}")
            zones = overlap
        else:
            # Contradiction: the debtor may be where the number says or where the evidence says.
            zones = tuple(sorted({*zones, *evidence_zones}))
            source = "number+evidence (conflict: all kept)"
            reasons.append(f"{reason} contradicts the number: both kept")
    return ZoneFinding(zones, source, "; ".join(reasons))


def finding_for(
    number: str,
    from_number: tuple[str, ...],
    evidence: DebtorEvidence,
    fallback: Sequence[str] = (),
) -> ZoneFinding:
    """`possible_zones` when the caller already has the number's zones (the importer caches them
    per number prefix)."""
    country = _country_of(number) if evidence.postal_code or evidence.region else None
    return _narrow(from_number, evidence, country, tuple(fallback))


def possible_zones(
    number: str,
    evidence: DebtorEvidence | None = None,
    fallback: Sequence[str] = (),
) -> ZoneFinding:
    """The debtor's possible zones when called on `number` (E.164). `fallback` (a profile's
    zones) is used only when neither the number nor the evidence names any zone."""
    return finding_for(number, zones_for_number(number), evidence or DebtorEvidence(), fallback)


def debtor_zones(
    phone_zone: str | None,
    account_zone: str | None,
    number: str,
    profile_zones: Sequence[str],
) -> tuple[str, ...]:
    """Compatibility wrapper: the zones of `possible_zones` with the account's zone as evidence.
    `phone_zone` is what import stored from this same function, so it is not evidence."""
    del phone_zone
    return possible_zones(number, DebtorEvidence(account_zone), profile_zones).zones
