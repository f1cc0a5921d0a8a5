"""Retry and recycling: when a phone and its account may be dialed again after an attempt ends.

Defaults follow common collections practice and the rules in DOMAIN.md; each campaign may override
any delay in `Campaign.retry_rules` (seconds, or "next_day").
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

NEXT_DAY = "next_day"

# Outcome -> delay before the same phone is dialed again.
DEFAULT_DELAYS: Mapping[str, dt.timedelta | str] = {
    "busy": dt.timedelta(minutes=15),
    "no_answer": dt.timedelta(hours=2),
    "machine": NEXT_DAY,
    # Ofcom: no repeat call within 72 hours of an abandoned call unless an agent is guaranteed.
    "abandoned": dt.timedelta(hours=72),
    "congestion": dt.timedelta(minutes=10),
    "failed": dt.timedelta(minutes=30),
    # Asterisk kept no record of how it ended: it may have been answered and abandoned, so it
    # rests as long as an abandon does (Ofcom's 72 hours), never the 30 minutes of a failure.
    "lost": dt.timedelta(hours=72),
    "hung_up_early": dt.timedelta(hours=2),
    # Talked to someone: the disposition decides; this only keeps the phone from an instant redial.
    "human": dt.timedelta(hours=4),
    # An agent skipped the account in preview: it comes back to the campaign after this.
    "skipped": dt.timedelta(minutes=30),
}
# Outcomes after which the number itself is wrong: it is never dialed again by any campaign.
INVALIDATING = frozenset({"invalid_number"})


class RetryRuleError(ValueError):
    """A campaign's retry rule could not be read; the message names the key."""


@dataclass(frozen=True, slots=True)
class RetryRules:
    delays: Mapping[str, dt.timedelta | str] = field(default_factory=lambda: dict(DEFAULT_DELAYS))
    # After one phone of an account fails, its next phone may be tried this soon.
    next_phone_gap: dt.timedelta = dt.timedelta(minutes=5)
    # After a right-party contact without a promise, the account rests this long (Regulation F
    # presumes harassment for a call within 7 days after a conversation).
    rpc_rest: dt.timedelta = dt.timedelta(days=7)
    # A promise is checked the day after its due date: the account rests until then.
    ptp_grace: dt.timedelta = dt.timedelta(days=1)

    @classmethod
    def from_campaign(cls, raw: Mapping[str, object]) -> RetryRules:
        """Defaults overlaid with a campaign's `retry_rules` JSON."""
        delays: dict[str, dt.timedelta | str] = dict(DEFAULT_DELAYS)
        extra: dict[str, dt.timedelta] = {}
        for key, value in raw.items():
            if key in ("next_phone_gap", "rpc_rest", "ptp_grace"):
                extra[key] = _seconds(key, value)
            elif value == NEXT_DAY:
                delays[key] = NEXT_DAY
            else:
                delays[key] = _seconds(key, value)
        return cls(delays=delays, **extra)

    def phone_retry_at(self, outcome: str, now: dt.datetime, time_zone: str | None) -> dt.datetime:
        delay = self.delays.get(outcome, dt.timedelta(hours=1))
        if delay == NEXT_DAY:
            return next_local_midnight(now, time_zone)
        assert isinstance(delay, dt.timedelta)
        return now + delay


def _seconds(key: str, value: object) -> dt.timedelta:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise RetryRuleError(
            f"retry_rules.{key}: a number of seconds >= 0 or {NEXT_DAY!r}, not {value!r}"
        )
    return dt.timedelta(seconds=float(value))


def next_local_midnight(now: dt.datetime, time_zone: str | None) -> dt.datetime:
    """The start of the debtor's next calendar day, in UTC (DST-safe)."""
    try:
        zone = ZoneInfo(time_zone) if time_zone else dt.UTC
    except (ZoneInfoNotFoundError, ValueError):
        zone = dt.UTC
    local = now.astimezone(zone)
    tomorrow = dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time(0), tzinfo=zone)
    return tomorrow.astimezone(dt.UTC)


@dataclass(frozen=True, slots=True)
class PhoneState:
    phone_id: int
    valid: bool
    dnc: bool
    next_attempt_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class AfterAttempt:
    """What an ended attempt changes: the phone's next time or its validity, the account's next."""

    phone_next_at: dt.datetime | None
    phone_invalid: bool
    account_next_at: dt.datetime | None  # None: no phone left to dial, the account is done


def after_attempt(
    outcome: str,
    phone_id: int,
    phones: list[PhoneState],
    rules: RetryRules,
    now: dt.datetime,
    time_zone: str | None,
) -> AfterAttempt:
    """Schedule the phone that was dialed and the account's next attempt on any of its phones.

    Phones are tried in priority order by the claim; here the account comes back as soon as any
    usable phone is due, but never sooner than `next_phone_gap`.
    """
    invalid = outcome in INVALIDATING
    phone_next = None if invalid else rules.phone_retry_at(outcome, now, time_zone)
    soonest: dt.datetime | None = None
    for phone in phones:
        if phone.phone_id == phone_id:
            if invalid:
                continue
            due = phone_next
        elif not phone.valid or phone.dnc:
            continue
        else:
            due = phone.next_attempt_at or now
        assert due is not None
        due = max(due, now + rules.next_phone_gap)
        soonest = due if soonest is None else min(soonest, due)
    return AfterAttempt(phone_next, invalid, soonest)


def after_disposition(
    right_party: bool,
    ptp_due: dt.date | None,
    callback_at: dt.datetime | None,
    rules: RetryRules,
    now: dt.datetime,
    time_zone: str | None,
) -> dt.datetime | None:
    """When the account may be dialed again after an agent's disposition; None: no change.

    A promise rests the account until the day after it falls due; a right-party contact rests it
    for `rpc_rest`; a callback brings it back at the callback's time, whichever is later wins.
    """
    candidates: list[dt.datetime] = []
    if ptp_due is not None:
        try:
            zone = ZoneInfo(time_zone) if time_zone else dt.UTC
        except (ZoneInfoNotFoundError, ValueError):
            zone = dt.UTC
        start = dt.datetime.combine(ptp_due, dt.time(0), tzinfo=zone).astimezone(dt.UTC)
        candidates.append(start + rules.ptp_grace)
    if right_party:
        candidates.append(now + rules.rpc_rest)
    if callback_at is not None:
        candidates.append(callback_at)
    return max(candidates) if candidates else None
