"""Everything `claim_phones` needs from one campaign: the compliance rule, the account order and
the caller ID chooser, built once per tick from the campaign row (the engine's one call).

    opts = claim_options(campaign)
    await claim_phones(s, campaign.id, n, now, opts.rule, order=opts.order,
                       caller_id_for=opts.caller_id_for)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from dialer.compliance.callerid import choose_caller_id
from dialer.compliance.evidence import EvidencedRule
from dialer.compliance.profiles import ProfileError
from dialer.compliance.rules import CampaignLike, CampaignRules
from dialer.domain.settings import SettingsError, parse_claim_order
from dialer.store.claim import CallerIdFor, Rule
from dialer.store.models import Account, Phone


class ClaimCampaign(CampaignLike, Protocol):
    """What the rule reads, plus the caller-ID settings."""

    @property
    def caller_id(self) -> str | None: ...
    @property
    def caller_id_pool(self) -> Sequence[object]: ...


@dataclass(frozen=True, slots=True)
class ClaimOptions:
    rule: Rule
    order: tuple[str, ...]
    caller_id_for: CallerIdFor


def claim_options(campaign: ClaimCampaign) -> ClaimOptions:
    """ProfileError (naming the key) when the campaign's profile, window, caps or order is bad."""
    caps = campaign.caps or {}
    try:
        order = parse_claim_order(caps.get("claim_order"))
    except SettingsError as exc:
        raise ProfileError(str(exc)) from exc
    pool = [str(n) for n in campaign.caller_id_pool or []]
    match_area = bool(caps.get("caller_id_match_area", False))
    default = campaign.caller_id

    def caller_id_for(account: Account, phone: Phone) -> str | None:
        return choose_caller_id(phone.number, pool, default, match_area=match_area, key=account.id)

    # The rule records every decision it makes at claim time (dialer.compliance.evidence).
    rule = EvidencedRule(CampaignRules.for_campaign(campaign), campaign.dial_mode)
    return ClaimOptions(rule, order, caller_id_for)
