"""A campaign's settings parsed once into typed objects, by one parser that the API (to accept
them), the CLI, the engine and preview (to dial by them) all use: what the API accepts, runs.

    settings = CampaignSettings.of(campaign)   # SettingsError names the field
    settings.retry.phone_retry_at("skipped", now, zone)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from dialer.domain.retry import RetryRuleError, RetryRules
from pacing.policies import make_policy

CAP_KEYS = ("phone_per_day", "phone_total", "account_per_day", "account_total")
# The account orderings a campaign may pick (after due callbacks, which always come first);
# `dialer.store.claim` maps each name to its SQL.
ORDERING_NAMES = (
    "priority",
    "aging_youngest_first",
    "aging_oldest_first",
    "balance_highest_first",
    "balance_lowest_first",
    "last_contact_oldest_first",
    "last_attempt_oldest_first",
)
# Kept inside `Campaign.caps` until they get columns of their own.
EXTRA_CAP_KEYS = (
    "claim_order",
    "caller_id_match_area",
    "amd_accuracy",
    "wireless_consent_required",
)


class SettingsError(ValueError):
    """A campaign setting that cannot be used; `field` names it (`retry_rules.skipped`)."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Caps:
    """Per-phone and per-account attempt caps from `Campaign.caps`; None means no cap."""

    phone_per_day: int | None = None
    phone_total: int | None = None
    account_per_day: int | None = None
    account_total: int | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, object]) -> Caps:
        values: dict[str, int | None] = {}
        for key in CAP_KEYS:
            value = raw.get(key)
            if value is None:
                values[key] = None
            elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                values[key] = value
            else:
                raise SettingsError(f"caps.{key}", "expected a whole number >= 0 or null")
        return cls(**values)


def parse_claim_order(raw: object) -> tuple[str, ...]:
    order = raw or ["priority"]
    if not isinstance(order, list | tuple) or any(o not in ORDERING_NAMES for o in order):
        raise SettingsError("claim_order", f"a list of {', '.join(ORDERING_NAMES)}")
    return tuple(str(o) for o in order)


def pacing_error(dial_mode: str, pacing: Mapping[str, Any]) -> str | None:
    """Why the pacing policy refuses the campaign's settings, naming the field; None when it
    takes them."""
    try:
        make_policy(dial_mode, dict(pacing))
    except (ValueError, TypeError) as exc:
        if str(exc).startswith("unknown pacing mode"):
            return f"dial_mode: {exc}"
        named = [key for key in pacing if str(key) in str(exc)]
        if len(named) == 1:
            return f"pacing.{named[0]}: {exc}"
        if not named:
            # e.g. "could not convert string to float": find the setting that says so.
            for key, value in pacing.items():
                try:
                    make_policy(dial_mode, {key: value})
                except (ValueError, TypeError):
                    return f"pacing.{key}: {exc}"
        return f"pacing: {exc}"
    return None


class SettingsSource(Protocol):
    """The campaign columns settings are read from: a `Campaign` row or the engine's view."""

    @property
    def dial_mode(self) -> str: ...
    @property
    def pacing(self) -> Mapping[str, Any]: ...
    @property
    def retry_rules(self) -> Mapping[str, Any]: ...
    @property
    def caps(self) -> Mapping[str, Any]: ...
    @property
    def caller_id_pool(self) -> Sequence[Any]: ...


@dataclass(frozen=True, slots=True)
class CampaignSettings:
    dial_mode: str
    pacing: Mapping[str, Any]
    retry: RetryRules
    caps: Caps
    claim_order: tuple[str, ...] = ("priority",)
    caller_id_match_area: bool = False
    caller_id_pool: tuple[str, ...] = field(default_factory=tuple)
    # The campaign's measured AMD accuracy (None: the profile's default) and the TCPA switch.
    amd_accuracy: float | None = None
    wireless_consent_required: bool = False

    @classmethod
    def of(cls, campaign: SettingsSource) -> CampaignSettings:
        """Parse every setting; SettingsError names the first that cannot be used."""
        dial_mode = campaign.dial_mode or "predictive"  # the column's default at insert
        pacing = dict(campaign.pacing or {})
        error = pacing_error(dial_mode, pacing)
        if error is not None:
            where, _, detail = error.partition(": ")
            raise SettingsError(where, detail)
        try:
            retry = RetryRules.from_campaign(campaign.retry_rules or {})
        except RetryRuleError as exc:
            where, _, detail = str(exc).partition(": ")
            raise SettingsError(where, detail) from exc
        caps = dict(campaign.caps or {})
        match_area = _flag(caps, "caller_id_match_area")
        accuracy = caps.get("amd_accuracy")
        if accuracy is not None and (
            isinstance(accuracy, bool)
            or not isinstance(accuracy, int | float)
            or not 0 <= accuracy <= 1
        ):
            raise SettingsError("amd_accuracy", "a fraction between 0 and 1, or null")
        return cls(
            dial_mode=dial_mode,
            pacing=pacing,
            retry=retry,
            caps=Caps.parse(caps),
            claim_order=parse_claim_order(caps.get("claim_order")),
            caller_id_match_area=match_area,
            caller_id_pool=tuple(str(n) for n in campaign.caller_id_pool or ()),
            amd_accuracy=None if accuracy is None else float(accuracy),
            wireless_consent_required=_flag(caps, "wireless_consent_required"),
        )


def _flag(caps: Mapping[str, Any], key: str) -> bool:
    value = caps.get(key, False)
    if not isinstance(value, bool):
        raise SettingsError(key, "expected true or false")
    return value
