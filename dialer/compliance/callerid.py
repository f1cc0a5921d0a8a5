"""Caller ID per dial: the campaign's pool, optionally matched to the debtor's area code.

Pure and deterministic: the same debtor and key give the same number, so a debtor who calls back
reaches the number they saw (UK and Mexico require an identifiable, returnable caller ID).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import phonenumbers


@functools.lru_cache(maxsize=65536)
def area_of(e164: str) -> tuple[int, str] | None:
    """(country code, geographic area code) of a number; area "" when the plan has none."""
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return None
    national = phonenumbers.national_significant_number(parsed)
    length = phonenumbers.length_of_geographical_area_code(parsed)
    return int(parsed.country_code or 0), national[:length]


def choose_caller_id(
    number: str,
    pool: Sequence[str],
    default: str | None,
    *,
    match_area: bool = False,
    key: int = 0,
) -> str | None:
    """The caller ID to present when dialing `number` (E.164).

    With `match_area`, pool numbers in the debtor's area code come first, then the debtor's
    country; without a match (or without a pool) the whole pool, then `default`. `key` (e.g. the
    account id) spreads debtors over equal candidates while keeping each debtor's choice stable.
    """
    if not pool:
        return default
    candidates = list(pool)
    if match_area:
        debtor = area_of(number)
        if debtor is not None:
            same_area = [p for p in pool if debtor[1] and area_of(p) == debtor]
            same_country = [p for p in pool if (area_of(p) or (0, ""))[0] == debtor[0]]
            candidates = same_area or same_country or candidates
    return candidates[key % len(candidates)]
