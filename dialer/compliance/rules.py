"""The compliance rule applied at claim time: may this account be dialed now, on which phone.

Pure: it sees a `Candidate` (account, phones, recent attempts, DNC hits) and the clock, and returns
a `Choice` that either names a phone or says why not and the earliest moment worth retrying.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol
from zoneinfo import ZoneInfo

from dialer.compliance.phonetype import needs_consent
from dialer.compliance.profiles import (
    Interval,
    Profile,
    ProfileError,
    load_profile,
    overlays_of,
)
from dialer.compliance.windows import Window, parse_narrowing
from dialer.compliance.zones import DebtorEvidence, ZoneFinding, possible_zones
from dialer.domain.settings import Caps, SettingsError
from dialer.store.claim import Candidate, Choice, PastAttempt, Rule
from dialer.store.models import DialMode, Phone

# A DNC hit without a known expiry, or a block with no computable end, is re-checked after this.
RECHECK = dt.timedelta(hours=24)


class CampaignLike(Protocol):
    """The campaign fields the rule reads: a `Campaign` row or the engine's view of one."""

    @property
    def compliance_profile(self) -> str: ...
    @property
    def calling_window(self) -> Mapping[str, object]: ...
    @property
    def caps(self) -> Mapping[str, object]: ...
    @property
    def dial_mode(self) -> str: ...


@dataclass(frozen=True, slots=True)
class CampaignRules:
    """Everything the rule needs about a campaign, parsed once per tick, not per account."""

    profile: Profile
    narrowing: Mapping[str, tuple[Interval, ...]] | None = None
    caps: Caps = field(default_factory=Caps)
    # An agent is guaranteed on answer (preview): the UK 72-hour rest does not apply. It is also
    # a person's click that launches each call (TCPA: no automatic dialing).
    agent_guaranteed: bool = False
    # TCPA: the dialer itself may call a wireless (or possibly wireless) number only with consent.
    wireless_consent_required: bool = False

    @classmethod
    def for_campaign(cls, campaign: CampaignLike) -> CampaignRules:
        try:
            caps = Caps.parse(campaign.caps or {})
        except SettingsError as exc:
            raise ProfileError(str(exc)) from exc
        return cls(
            profile=load_profile(campaign.compliance_profile),
            narrowing=parse_narrowing(campaign.calling_window or {}),
            caps=caps,
            agent_guaranteed=campaign.dial_mode == DialMode.PREVIEW.value,
            wireless_consent_required=_flag(campaign.caps or {}, "wireless_consent_required"),
        )


def _flag(caps: Mapping[str, object], key: str) -> bool:
    value = caps.get(key, False)
    if not isinstance(value, bool):
        raise ProfileError(f"caps.{key}: expected true or false")
    return value


@dataclass(frozen=True, slots=True)
class Block:
    reason: str
    retry_at: dt.datetime | None  # None: never (the phone or account is finished)


def _local_midnight_after(now: dt.datetime, zones: str | Sequence[str]) -> dt.datetime:
    """The next midnight by which it is a new day in every one of `zones`."""
    latest = now
    for zone in (zones,) if isinstance(zones, str) else zones:
        tz = ZoneInfo(zone)
        local = now.astimezone(tz)
        nxt = dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time(0), tzinfo=tz)
        latest = max(latest, nxt.astimezone(dt.UTC))
    return latest


def _same_local_day(a: dt.datetime, b: dt.datetime, zones: str | Sequence[str]) -> bool:
    """Same calendar day in any of `zones` (the strictest reading of "a day")."""
    for zone in (zones,) if isinstance(zones, str) else zones:
        tz = ZoneInfo(zone)
        if a.astimezone(tz).date() == b.astimezone(tz).date():
            return True
    return False


def _conversation_time(a: PastAttempt) -> dt.datetime:
    return a.conversation_at or a.created_at


def _rolling_block(
    times: Sequence[dt.datetime], limit: int, days: int, now: dt.datetime
) -> dt.datetime | None:
    """When `limit` events within any `days` rolling days would be exceeded by one more now, the
    moment the oldest counted event leaves the window; None when one more is allowed."""
    if limit <= 0 or days <= 0:
        return None
    span = dt.timedelta(days=days)
    recent = sorted(t for t in times if t > now - span)
    if len(recent) < limit:
        return None
    return recent[len(recent) - limit] + span


class ComplianceRule:
    """A claim `Rule`: `rule(candidate, now) -> Choice`. Blocks are explained, never silent."""

    def __init__(
        self,
        rules: CampaignRules,
        loader: Callable[[str], Profile] = load_profile,
        overlay_codes: Sequence[str] | None = None,
    ) -> None:
        self.rules = rules
        self.window = Window(rules.profile, rules.narrowing)
        self._windows: dict[str, Window] = {rules.profile.code: self.window}
        # Where an account's own jurisdiction profile comes from: the shipped files, or (when an
        # evidence record is re-evaluated) the profile texts the record names by hash.
        self._load = loader
        # The state overlays that exist: the shipped ones, or those an evidence record names.
        self._overlay_codes = None if overlay_codes is None else tuple(overlay_codes)
        self._findings: tuple[Candidate | None, dict[int, ZoneFinding]] = (None, {})
        self._profiles_memo: tuple[Candidate | None, tuple[tuple[Profile, Window], ...]] = (
            None,
            (),
        )

    def _profiles(self, candidate: Candidate) -> list[tuple[Profile, Window]]:
        """The campaign's profile, plus the account's own jurisdiction when it differs, plus the
        state overlays of either that apply to the debtor (address state, else area code)."""
        if self._profiles_memo[0] is candidate:
            return list(self._profiles_memo[1])
        out = [(self.rules.profile, self.window)]
        code = candidate.account.jurisdiction
        if code and code != self.rules.profile.code:
            out.append(self._window_of(code))
        for profile, _ in list(out):
            for overlay in self._overlays(profile.code):
                if self._applies(overlay, candidate):
                    out.append(self._window_of(overlay))
        self._profiles_memo = (candidate, tuple(out))
        return out

    def _window_of(self, code: str) -> tuple[Profile, Window]:
        if code not in self._windows:
            self._windows[code] = Window(self._load(code), self.rules.narrowing)
        return self._windows[code].profile, self._windows[code]

    def _overlays(self, base: str) -> tuple[str, ...]:
        if self._overlay_codes is None:
            return overlays_of(base)
        return tuple(c for c in self._overlay_codes if c.startswith(f"{base}-"))

    def _applies(self, code: str, candidate: Candidate) -> bool:
        overlay = self._load(code).overlay
        if overlay is None:
            return False
        account = candidate.account
        state = DebtorEvidence.of_account(None, account.custom_fields).region
        if state:
            return state.strip().upper() == overlay.state
        return any(
            p.number.startswith("+1") and p.number[2:5] in overlay.area_codes
            for p in candidate.phones
        )

    def _day_zones(self, candidate: Candidate) -> tuple[str, ...]:
        """Every zone the debtor may be in on any of their phones: a daily limit counts the
        debtor's calendar day, so an event counts as "today" if it is today in any of them."""
        zones: list[str] = []
        for phone in candidate.phones:
            for z in self.finding(candidate, phone).zones:
                if z not in zones:
                    zones.append(z)
        return tuple(zones) or ("UTC",)

    def _account_blocks(
        self, candidate: Candidate, profiles: Sequence[Profile], now: dt.datetime
    ) -> list[Block]:
        account, attempts = candidate.account, candidate.attempts
        blocks: list[Block] = []
        if account.cease_communication:
            blocks.append(Block("cease-communication requested", None))
        if account.attorney_represented:
            blocks.append(Block("debtor represented by an attorney", None))
        caps, zone = self.rules.caps, self._day_zones(candidate)
        total = max(candidate.account_total_attempts, len(attempts))
        if caps.account_total is not None and total >= caps.account_total:
            blocks.append(Block("account attempt cap reached", None))
        if caps.account_per_day is not None:
            today = [a for a in attempts if _same_local_day(a.created_at, now, zone)]
            if len(today) >= caps.account_per_day:
                blocks.append(
                    Block("account daily attempt cap reached", _local_midnight_after(now, zone))
                )
        conversations = [_conversation_time(a) for a in attempts if a.conversation]
        for profile in profiles:
            f = profile.frequency
            until = _rolling_block(
                [a.created_at for a in attempts], f.attempts_max, f.attempts_days, now
            )
            if until is not None:
                blocks.append(
                    Block(
                        f"{profile.code}: {f.attempts_max} attempts in {f.attempts_days} days",
                        until,
                    )
                )
            if f.rest_after_conversation_days and conversations:
                until = max(conversations) + dt.timedelta(days=f.rest_after_conversation_days)
                if until > now:
                    blocks.append(
                        Block(
                            f"{profile.code}: conversation in the last "
                            f"{f.rest_after_conversation_days} days",
                            until,
                        )
                    )
            if f.contacts_per_day:
                today_contacts = [c for c in conversations if _same_local_day(c, now, zone)]
                if len(today_contacts) >= f.contacts_per_day:
                    blocks.append(
                        Block(
                            f"{profile.code}: {f.contacts_per_day} contact(s) a day",
                            _local_midnight_after(now, zone),
                        )
                    )
            until = _rolling_block(conversations, f.contacts_max, f.contacts_days, now)
            if until is not None:
                blocks.append(
                    Block(
                        f"{profile.code}: {f.contacts_max} contact(s) in {f.contacts_days} days",
                        until,
                    )
                )
        return blocks

    def _phone_block(
        self,
        candidate: Candidate,
        phone: Phone,
        profiles: Sequence[tuple[Profile, Window]],
        now: dt.datetime,
    ) -> Block | None:
        """Why `phone` may not be dialed at `now` (window aside), or None."""
        if not phone.valid:
            return Block("no valid phone", None)
        if phone.dnc:
            return Block("phone on DNC", None)
        if phone.number in candidate.dnc_numbers:
            expiry = candidate.dnc_expires
            until = expiry.get(phone.number)
            return Block("phone on DNC list", until if until is not None else None)
        if (
            self.rules.wireless_consent_required
            and not self.rules.agent_guaranteed
            and phone.number not in candidate.consents
            and needs_consent(phone.number, phone.phone_type)
        ):
            # Not in this campaign: a preview campaign (an agent's click per call) may call it.
            return Block("wireless number without consent: human-initiated calls only", None)
        if phone.next_attempt_at is not None and phone.next_attempt_at > now:
            return Block("phone resting", phone.next_attempt_at)
        caps = self.rules.caps
        mine = [a for a in candidate.attempts if a.phone_id == phone.id]
        totals = candidate.phone_total_attempts
        if caps.phone_total is not None and max(totals.get(phone.id, 0), len(mine)) >= (
            caps.phone_total
        ):
            return Block("phone attempt cap reached", None)
        if caps.phone_per_day is not None:
            day_zone = self._phone_zones(candidate, phone, profiles) or ("UTC",)
            today = [a for a in mine if _same_local_day(a.created_at, now, day_zone)]
            if len(today) >= caps.phone_per_day:
                return Block(
                    "phone daily attempt cap reached", _local_midnight_after(now, day_zone)
                )
        if not self.rules.agent_guaranteed:
            # A rule about the number: abandons on this number by any account or campaign.
            abandoned = [
                *candidate.number_abandons.get(phone.number, ()),
                *(a.created_at for a in mine if a.abandoned),
            ]
            for profile, _ in profiles:
                hours = profile.frequency.rest_after_abandoned_hours
                if hours and abandoned:
                    until = max(abandoned) + dt.timedelta(hours=hours)
                    if until > now:
                        return Block(f"{profile.code}: abandoned call in the last {hours} h", until)
        return None

    def finding(self, candidate: Candidate, phone: Phone) -> ZoneFinding:
        """The debtor's possible zones when called on `phone` (the one zones function); a
        profile's zone list is only the fallback for a number with no known geography."""
        memo = self._findings
        if memo[0] is not candidate:
            # Asked several times per decision (window, daily limits, evidence): once per phone.
            memo = self._findings = (candidate, {})
        found = memo[1].get(phone.id)
        if found is None:
            fallback: list[str] = []
            for profile, _ in self._profiles(candidate):
                fallback.extend(z for z in profile.zones if z not in fallback)
            account = candidate.account
            evidence = DebtorEvidence.of_account(account.time_zone, account.custom_fields)
            found = memo[1][phone.id] = possible_zones(phone.number, evidence, fallback)
        return found

    def _phone_zones(
        self, candidate: Candidate, phone: Phone, profiles: Sequence[tuple[Profile, Window]]
    ) -> tuple[str, ...]:
        return self.finding(candidate, phone).zones

    def _window_block(
        self,
        candidate: Candidate,
        phone: Phone,
        profiles: Sequence[tuple[Profile, Window]],
        at: dt.datetime,
    ) -> Block | None:
        zones = self._phone_zones(candidate, phone, profiles)
        if not zones:
            return Block("debtor time zone unknown", None)
        moment: dt.datetime | None = at
        # The window must be open under every applicable profile; iterate to a common opening.
        for _ in range(8):
            assert moment is not None
            start = moment
            for profile, window in profiles:
                moment = window.next_open(moment, zones)
                if moment is None:
                    return Block(f"{profile.code}: calling window never opens", None)
            if moment == start:
                break
        assert moment is not None
        if moment > at:
            return Block(f"{profiles[0][0].code}: outside calling window", moment)
        return None

    def __call__(self, candidate: Candidate, now: dt.datetime) -> Choice:
        return self._decide(candidate, now, None)

    def explain(self, candidate: Candidate, now: dt.datetime) -> tuple[Choice, dict[str, object]]:
        """The decision and what it rested on, for the evidence record: each rule's verdict and
        the counts it used, the zones assumed per phone and why, the debtor-local times."""
        trace: dict[str, object] = {}
        choice = self._decide(candidate, now, trace)
        try:
            profiles = [p for p, _ in self._profiles(candidate)]
        except ProfileError:
            profiles = [self.rules.profile]
        zones: dict[str, object] = {}
        local: dict[str, str] = {}
        for phone in candidate.phones:
            finding = self.finding(candidate, phone)
            zones[str(phone.id)] = finding.to_dict()
            for z in finding.zones:
                if z not in local:
                    local[z] = now.astimezone(ZoneInfo(z)).strftime("%Y-%m-%d %H:%M %a")
        day_zones = self._day_zones(candidate)
        attempts = candidate.attempts
        conversations = [_conversation_time(a) for a in attempts if a.conversation]
        counts: dict[str, object] = {
            "attempts_7d": sum(1 for a in attempts if a.created_at > now - dt.timedelta(days=7)),
            "last_conversation": max(conversations).isoformat() if conversations else None,
            "contacts_today": sum(1 for c in conversations if _same_local_day(c, now, day_zones)),
            "contacts_7d": sum(1 for c in conversations if c > now - dt.timedelta(days=7)),
            "account_total_attempts": max(candidate.account_total_attempts, len(attempts)),
        }
        for profile in profiles:
            f = profile.frequency
            if f.attempts_days:
                counts[f"{profile.code}:attempts_{f.attempts_days}d"] = sum(
                    1 for a in attempts if a.created_at > now - dt.timedelta(days=f.attempts_days)
                )
            if f.contacts_days:
                counts[f"{profile.code}:contacts_{f.contacts_days}d"] = sum(
                    1 for c in conversations if c > now - dt.timedelta(days=f.contacts_days)
                )
        trace.update(
            zones=zones,
            local_time=local,
            day_zones=list(day_zones),
            counts=counts,
            # The DNC check's inputs (entries, flags) and the numbers' abandons are in the
            # record's inputs; here only what the check found.
            dnc_listed=sorted(candidate.dnc_numbers),
        )
        return choice, trace

    def _decide(
        self, candidate: Candidate, now: dt.datetime, trace: dict[str, object] | None
    ) -> Choice:
        try:
            profiles = self._profiles(candidate)
        except ProfileError:
            return Choice(None, "unknown jurisdiction profile", retry_at=now + RECHECK)
        account_blocks = self._account_blocks(candidate, [p for p, _ in profiles], now)
        verdicts: list[dict[str, object]] = []
        if trace is not None:
            trace["account"] = [
                {"rule": b.reason, "until": b.retry_at.isoformat() if b.retry_at else None}
                for b in account_blocks
            ] or "ok"
            trace["phones"] = verdicts
        never = [b for b in account_blocks if b.retry_at is None]
        if never:
            return Choice(None, never[0].reason, done=True)
        not_before = max((b.retry_at for b in account_blocks if b.retry_at), default=now)

        best: tuple[dt.datetime, str] | None = None
        first_final: str | None = None
        for phone in candidate.phones:
            block = self._phone_block(candidate, phone, profiles, not_before)
            if block is None:
                block = self._window_block(candidate, phone, profiles, not_before)
            if trace is not None:
                verdicts.append(
                    {"phone_id": phone.id, "rule": block.reason if block else "ok",
                     "until": block.retry_at.isoformat() if block and block.retry_at else None}
                )  # fmt: skip
            if block is None:
                if not account_blocks:
                    return Choice(phone)
                # Dialable once the account-level block clears, on this phone.
                block = Block(account_blocks[0].reason, not_before)
            elif account_blocks and block.retry_at is not None:
                block = Block(account_blocks[0].reason, max(block.retry_at, not_before))
            if block.retry_at is None:
                first_final = first_final or block.reason
                continue
            if best is None or block.retry_at < best[0]:
                best = (block.retry_at, block.reason)
        if best is None:
            if first_final is None:
                return Choice(None, "no phone", done=True)
            if first_final == "phone on DNC list":
                # A list entry without an expiry may still be lifted: look again later.
                return Choice(None, first_final, retry_at=now + RECHECK)
            return Choice(None, first_final, done=True)
        return Choice(None, best[1], retry_at=best[0])


def compliance_rule(campaign: CampaignLike) -> Rule:
    """The claim rule for `campaign`; raises ProfileError on a malformed profile or narrowing."""
    return ComplianceRule(CampaignRules.for_campaign(campaign))
