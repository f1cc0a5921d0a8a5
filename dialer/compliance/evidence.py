"""Evidence records of claim decisions: what a record holds, its hash chain, and its replay.

Pure: a record is a plain JSON object built from the claim's inputs (the candidate and the
campaign's rules) and the decision; `replay` rebuilds the same rule from the stored inputs and the
profile texts the record names by hash, and says whether it reaches the same decision.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from dialer.compliance.profiles import (
    Profile,
    ProfileError,
    load_profile,
    profile_from_text,
    profile_text,
    text_hash,
)
from dialer.compliance.rules import CampaignRules, Caps, ComplianceRule
from dialer.compliance.windows import parse_narrowing
from dialer.compliance.zones import POSTAL_KEYS, REGION_KEYS
from dialer.domain.settings import CAP_KEYS
from dialer.store.claim import Candidate, Choice, PastAttempt
from dialer.store.models import Account, Phone

VERSION = 1


def _iso(t: dt.datetime | None) -> str | None:
    return None if t is None else t.astimezone(dt.UTC).isoformat()


def _time(s: object) -> dt.datetime | None:
    return None if s is None else dt.datetime.fromisoformat(str(s))


def canonical(record: Mapping[str, object]) -> str:
    """The exact text that is stored and hashed (verification hashes the stored text, so key
    order needs no sorting: records are built in one fixed order)."""
    return _ENCODER.encode(record)


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False)


def chain_hash(previous: str, text: str) -> str:
    return hashlib.sha256(f"{previous}\n{text}".encode()).hexdigest()


# --- inputs ---------------------------------------------------------------------------------


def rules_to_dict(rules: CampaignRules) -> dict[str, object]:
    narrowing = (
        None
        if rules.narrowing is None
        else {
            day: [[s.strftime("%H:%M"), "24:00" if e == dt.time.max else e.strftime("%H:%M")]
                  for s, e in intervals]
            for day, intervals in rules.narrowing.items()
        }
    )  # fmt: skip
    return {
        "profile": rules.profile.code,
        "narrowing": narrowing,
        "caps": {k: getattr(rules.caps, k) for k in CAP_KEYS},
        "agent_guaranteed": rules.agent_guaranteed,
        "wireless_consent_required": rules.wireless_consent_required,
    }


def candidate_to_dict(c: Candidate) -> dict[str, object]:
    a = c.account
    fields = {str(k).strip().lower(): v for k, v in (a.custom_fields or {}).items()}
    return {
        "account": {
            "id": a.id,
            "time_zone": a.time_zone,
            "jurisdiction": a.jurisdiction,
            "cease_communication": bool(a.cease_communication),
            "attorney_represented": bool(a.attorney_represented),
            # Only the address fields the zones function reads (evidence about the debtor).
            "address": {k: fields[k] for k in (*POSTAL_KEYS, *REGION_KEYS) if k in fields},
        },
        "phones": [
            {"id": p.id, "number": p.number, "valid": bool(p.valid), "dnc": bool(p.dnc),
             "type": p.phone_type, "time_zone": p.time_zone,
             "next_attempt_at": _iso(p.next_attempt_at)}
            for p in c.phones
        ],
        "attempts": [
            [a.phone_id, _iso(a.created_at), a.outcome, a.abandoned, a.conversation,
             _iso(a.conversation_at)]
            for a in c.attempts
        ],
        "dnc_expires": {n: _iso(c.dnc_expires.get(n)) for n in sorted(c.dnc_numbers)},
        "account_total_attempts": c.account_total_attempts,
        "phone_total_attempts": {str(k): v for k, v in c.phone_total_attempts.items()},
        "number_abandons": {n: [_iso(t) for t in ts] for n, ts in c.number_abandons.items()},
        "consents": sorted(c.consents),
    }  # fmt: skip


def candidate_from_dict(d: Mapping[str, object], campaign_id: int) -> Candidate:
    acc = d["account"]
    assert isinstance(acc, dict)
    account = Account(
        id=acc["id"], external_ref="", name="", balance=Decimal(0),
        time_zone=acc["time_zone"], jurisdiction=acc["jurisdiction"],
        cease_communication=acc["cease_communication"],
        attorney_represented=acc["attorney_represented"], custom_fields=dict(acc["address"]),
    )  # fmt: skip
    phones_raw = d["phones"]
    assert isinstance(phones_raw, list)
    phones = [
        Phone(id=p["id"], account_id=account.id, number=p["number"], valid=p["valid"],
              dnc=p["dnc"], phone_type=p.get("type"), time_zone=p["time_zone"],
              next_attempt_at=_time(p["next_attempt_at"]))
        for p in phones_raw
    ]  # fmt: skip
    attempts_raw = d["attempts"]
    assert isinstance(attempts_raw, list)
    attempts = []
    for phone_id, created, outcome, abandoned, conversation, conversation_at in attempts_raw:
        created_at = _time(created)
        assert created_at is not None
        attempts.append(
            PastAttempt(phone_id, created_at, outcome, abandoned, conversation,
                        _time(conversation_at))
        )  # fmt: skip
    dnc = d["dnc_expires"]
    totals = d["phone_total_attempts"]
    abandons = d["number_abandons"]
    assert isinstance(dnc, dict) and isinstance(totals, dict) and isinstance(abandons, dict)
    consents = d.get("consents") or []
    assert isinstance(consents, list)
    total = d["account_total_attempts"]
    assert isinstance(total, int)
    return Candidate(
        account=account,
        phones=phones,
        attempts=attempts,
        dnc_numbers=frozenset(dnc),
        campaign_id=campaign_id,
        account_total_attempts=total,
        phone_total_attempts={int(k): int(v) for k, v in totals.items()},
        dnc_expires={n: _time(t) for n, t in dnc.items()},
        number_abandons={
            n: tuple(t for t in (_time(x) for x in ts) if t is not None)
            for n, ts in abandons.items()
        },
        consents=frozenset(str(n) for n in consents),
    )


def decision_to_dict(choice: Choice) -> dict[str, object]:
    return {
        "allowed": choice.phone is not None,
        "phone_id": choice.phone.id if choice.phone is not None else None,
        "reason": choice.reason,
        "retry_at": _iso(choice.retry_at),
        "done": choice.done,
    }


# --- records --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Launch:
    """Who launched the dial: the dialer itself (its pacing) or an agent's click (preview)."""

    dial_mode: str
    agent_id: int | None = None  # the agent whose click launched it, if a person did

    def to_dict(self) -> dict[str, object]:
        return {"dial_mode": self.dial_mode,
                "by": "agent" if self.agent_id is not None else "dialer",
                "agent_id": self.agent_id}  # fmt: skip


def build_record(
    *,
    at: dt.datetime,
    campaign_id: int,
    stage: str,
    rules: CampaignRules,
    profiles: Sequence[Profile],
    profile_hashes: Mapping[str, str],
    candidate: Candidate,
    choice: Choice,
    facts: Mapping[str, object],
    launch: Launch,
    outcome: str,
    caller_id: str | None,
    attempt_id: int | None,
) -> dict[str, object]:
    """One claim decision. `outcome` is what the claim did ("claimed", "refused", or a refusal
    that is not the rule's, e.g. "number on another call"); `decision` is the rule's."""
    return {
        "v": VERSION,
        "at": _iso(at),
        "stage": stage,
        "campaign_id": campaign_id,
        "account_id": candidate.account.id,
        "attempt_id": attempt_id,
        "outcome": outcome,
        "decision": decision_to_dict(choice),
        "profiles": [{"code": p.code, "hash": profile_hashes[p.code]} for p in profiles],
        "rules": rules_to_dict(rules),
        "launch": launch.to_dict(),
        "caller_id": caller_id,
        "inputs": candidate_to_dict(candidate),
        "facts": dict(facts),
    }


# --- replay ---------------------------------------------------------------------------------


def _shipped(code: str, digest: str) -> str | None:
    """The shipped profile's text when it is still the one the record names."""
    try:
        text = profile_text(code)
    except ProfileError:
        return None
    return text if text_hash(text) == digest else None


def replay(record: Mapping[str, object], profile_texts: Mapping[str, str]) -> str | None:
    """Re-evaluate a record from its stored inputs: None when the rule reaches the same
    decision, else what differs. `profile_texts` maps content hash -> the profile's TOML."""
    by_code: dict[str, Profile] = {}
    profiles = record.get("profiles")
    if not isinstance(profiles, list) or not profiles:
        return "names no profile"
    for entry in profiles:
        text = profile_texts.get(entry["hash"]) or _shipped(entry["code"], entry["hash"])
        if text is None:
            return f"profile {entry['code']} text {entry['hash'][:12]} is not stored"
        if text_hash(text) != entry["hash"]:
            return f"stored profile {entry['code']} does not match its hash"
        by_code[entry["code"]] = profile_from_text(entry["code"], text)

    def loader(code: str) -> Profile:
        if code not in by_code:
            raise ProfileError(f"unknown compliance profile {code!r}")
        return by_code[code]

    raw = record["rules"]
    assert isinstance(raw, dict)
    caps = Caps(**{k: raw["caps"].get(k) for k in CAP_KEYS})
    rules = CampaignRules(
        profile=loader(raw["profile"]),
        narrowing=None if raw["narrowing"] is None else parse_narrowing(raw["narrowing"]),
        caps=caps,
        agent_guaranteed=bool(raw["agent_guaranteed"]),
        wireless_consent_required=bool(raw.get("wireless_consent_required", False)),
    )
    inputs = record["inputs"]
    campaign_id = record["campaign_id"]
    assert isinstance(inputs, dict) and isinstance(campaign_id, int)
    candidate = candidate_from_dict(inputs, campaign_id)
    at = _time(record["at"])
    assert at is not None
    # The overlays that existed for this decision are those the record names (a state overlay
    # shipped later must not change how an old record re-evaluates).
    overlays = [code for code in by_code if by_code[code].overlay is not None]
    again = decision_to_dict(ComplianceRule(rules, loader, overlays)(candidate, at))
    if again != record["decision"]:
        return f"re-evaluated to {again}, recorded {record['decision']}"
    return None


class EvidencedRule(ComplianceRule):
    """The compliance rule that also writes its evidence records (what `claim_phones` appends
    to the chain): the claim's rule in production."""

    def __init__(
        self,
        rules: CampaignRules,
        dial_mode: str,
        loader: Callable[[str], Profile] = load_profile,
    ) -> None:
        super().__init__(rules, loader)
        self.dial_mode = dial_mode
        self._hashes: dict[str, str] = {}
        self._texts: dict[str, tuple[str, str]] = {}
        self._passed: set[str] = set()
        self._heads: dict[int, str | None] = {}
        self._note(rules.profile.code)

    def _note(self, code: str) -> str:
        digest = self._hashes.get(code)
        if digest is None:
            text = profile_text(code)
            digest = self._hashes[code] = text_hash(text)
            self._texts[digest] = (code, text)
        return digest

    def record(
        self,
        *,
        stage: str,
        candidate: Candidate,
        now: dt.datetime,
        choice: Choice,
        facts: Mapping[str, object],
        outcome: str,
        caller_id: str | None,
        attempt_id: int | None,
        agent_id: int | None,
    ) -> dict[str, object]:
        try:
            profiles = [p for p, _ in self._profiles(candidate)]
        except ProfileError:
            profiles = [self.rules.profile]
        return build_record(
            at=now,
            campaign_id=candidate.campaign_id,
            stage=stage,
            rules=self.rules,
            profiles=profiles,
            profile_hashes={p.code: self._note(p.code) for p in profiles},
            candidate=candidate,
            choice=choice,
            facts=facts,
            launch=Launch(self.dial_mode, agent_id),
            outcome=outcome,
            caller_id=caller_id,
            attempt_id=attempt_id,
        )

    @property
    def heads(self) -> dict[int, str | None]:
        return self._heads

    def unstored_profiles(self) -> Mapping[str, tuple[str, str]]:
        fresh = {h: v for h, v in self._texts.items() if h not in self._passed}
        self._passed.update(fresh)
        return fresh

    def canonical(self, record: Mapping[str, object]) -> str:
        return canonical(record)

    def chain_hash(self, previous: str, text: str) -> str:
        return chain_hash(previous, text)
