"""The debtor's time zone: the one on record, else the candidates the phone number allows.

Ambiguity is never guessed away: a number that spans several zones yields all of them, and the
calling window must then be open in every one (the strictest reading).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as phone_timezone

UNKNOWN_ZONE = "Etc/Unknown"


@functools.lru_cache(maxsize=65536)
def valid_zone(name: str | None) -> bool:
    if not name:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


@functools.lru_cache(maxsize=65536)
def zones_for_number(e164: str) -> tuple[str, ...]:
    """Every zone the number may be in, per libphonenumber's geography; () when unknown."""
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return ()
    found = phone_timezone.time_zones_for_number(parsed)
    return tuple(z for z in found if z != UNKNOWN_ZONE and valid_zone(z))


def debtor_zones(
    phone_zone: str | None,
    account_zone: str | None,
    number: str,
    profile_zones: Sequence[str],
) -> tuple[str, ...]:
    """Zones whose window must all be open to call `number`.

    Order of trust: the phone's zone, the account's zone, the zones the number allows (narrowed to
    the profile's zones when they overlap), and finally every zone of the profile. An empty result
    means the zone is unknown and the profile names none: the rule then refuses.
    """
    for zone in (phone_zone, account_zone):
        if valid_zone(zone):
            return (str(zone),)
    inferred = zones_for_number(number)
    if inferred:
        inside = tuple(z for z in inferred if z in profile_zones)
        return inside or inferred
    return tuple(profile_zones)
