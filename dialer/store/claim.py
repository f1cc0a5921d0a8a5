"""Claiming dialable phones: the one transaction that turns "launch N calls" into attempt rows.

Rows are locked first (`FOR UPDATE SKIP LOCKED` on Postgres), then everything the compliance rule
needs is read in a second statement, so that under READ COMMITTED it sees every attempt committed
by other dialer processes while this one holds the accounts' locks.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from sqlalchemy import (
    ColumnElement,
    and_,
    case,
    exists,
    func,
    or_,
    select,
    true,
    type_coerce,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from dialer.store import evidence
from dialer.store.models import (
    Account,
    CallAttempt,
    Callback,
    CallbackStatus,
    CampaignAccount,
    Consent,
    DncEntry,
    MemberState,
    Phone,
)
from dialer.store.types import UTCDateTime

# While an attempt is open its account is parked this far ahead; the attempt's end sets the real
# next time. Postgres re-checks this column on rows another claimer just updated.
IN_FLIGHT_PARK = dt.timedelta(hours=6)
HISTORY = dt.timedelta(days=8)
# An account whose number is on another account's call now is looked at again after this.
NUMBER_BUSY = dt.timedelta(seconds=60)
# First key of the two-key advisory locks on numbers (its own key space; the second is a hash).
NUMBER_LOCK_SPACE = 0x4E554D  # "NUM"


@dataclass(frozen=True, slots=True)
class PastAttempt:
    phone_id: int
    created_at: dt.datetime
    outcome: str | None
    abandoned: bool
    conversation: bool  # bridged to an agent: a telephone conversation about the debt
    conversation_at: dt.datetime | None = None  # when it was bridged


@dataclass(frozen=True, slots=True)
class Candidate:
    """What a compliance rule sees about one locked account."""

    account: Account
    phones: Sequence[Phone]
    attempts: Sequence[PastAttempt]  # this account's attempts over the last 8 days, any campaign
    dnc_numbers: frozenset[str]  # numbers of this account on an unexpired DNC entry
    campaign_id: int
    account_total_attempts: int = 0  # every attempt ever made on this account, any campaign
    phone_total_attempts: Mapping[int, int] = field(default_factory=dict)  # phone id -> attempts
    dnc_expires: Mapping[str, dt.datetime | None] = field(default_factory=dict)  # None: never
    # Rules about numbers apply to the number, whatever account or campaign holds it: when each
    # of this account's numbers got an abandoned call (last 8 days, any account, any campaign).
    number_abandons: Mapping[str, Sequence[dt.datetime]] = field(default_factory=dict)
    # Numbers of this account with an active consent to automatic calls (TCPA).
    consents: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Choice:
    """A rule's verdict: the phone to dial, or why none may be dialed and until when."""

    phone: Phone | None
    reason: str | None = None
    retry_at: dt.datetime | None = None
    done: bool = False  # nothing will ever be dialable: leave the campaign


@dataclass(slots=True)
class Claimed:
    attempt_id: int
    campaign_id: int
    account_id: int
    phone_id: int
    number: str
    time_zone: str | None
    caller_id: str | None = None  # the caller ID written on the attempt
    callback_id: int | None = None  # the due callback this call honours
    callback_owner: int | None = None  # its owner agent: the router offers them the call first


@dataclass(slots=True)
class ClaimResult:
    claimed: list[Claimed] = field(default_factory=list)
    blocked: dict[str, int] = field(default_factory=dict)  # reason -> accounts, for the explanation


Rule = Callable[[Candidate, dt.datetime], Choice]
CallerIdFor = Callable[[Account, Phone], str | None]


@runtime_checkable
class RecordingRule(Protocol):
    """A rule that explains its decisions and turns them into evidence records (the compliance
    rule, dialer.compliance.evidence.EvidencedRule). Defined here so the store imports nothing
    from compliance."""

    def __call__(self, candidate: Candidate, now: dt.datetime) -> Choice: ...

    def explain(
        self, candidate: Candidate, now: dt.datetime
    ) -> tuple[Choice, dict[str, object]]: ...

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
    ) -> dict[str, object]: ...

    def unstored_profiles(self) -> Mapping[str, tuple[str, str]]:
        """Texts of the profiles the records name, by content hash, that this rule has not
        passed to the store before (a rolled-back first write is covered by verification,
        which also knows the shipped profiles' texts)."""
        ...

    def canonical(self, record: Mapping[str, object]) -> str: ...

    @property
    def heads(self) -> dict[int, str | None]:
        """The chain head this rule's last append left, per campaign (a hint: a stale one only
        costs the locked read)."""
        ...

    def chain_hash(self, previous: str, text: str) -> str: ...


class _Evidence:
    """Evidence records of one claim transaction, appended to the chain in one go at its end."""

    def __init__(self, rule: Rule, enabled: bool, stage: str, agent_id: int | None) -> None:
        self.plain = rule
        self.rule = rule if enabled and isinstance(rule, RecordingRule) else None
        self.stage, self.agent_id = stage, agent_id
        self.records: list[dict[str, object]] = []

    def decide(self, candidate: Candidate, now: dt.datetime) -> tuple[Choice, dict[str, object]]:
        if self.rule is None:
            return self.plain(candidate, now), {}
        return self.rule.explain(candidate, now)

    def add(
        self,
        candidate: Candidate,
        now: dt.datetime,
        choice: Choice,
        facts: Mapping[str, object],
        outcome: str,
        caller_id: str | None = None,
        attempt_id: int | None = None,
    ) -> None:
        if self.rule is None:
            return
        self.records.append(
            self.rule.record(
                stage=self.stage, candidate=candidate, now=now, choice=choice, facts=facts,
                outcome=outcome, caller_id=caller_id, attempt_id=attempt_id,
                agent_id=self.agent_id,
            )
        )  # fmt: skip

    async def flush(self, session: AsyncSession, campaign_id: int) -> None:
        if self.rule is None or not self.records:
            return
        heads = self.rule.heads
        heads[campaign_id] = await evidence.append(
            session, campaign_id, self.records, self.rule.unstored_profiles(),
            self.rule.canonical, self.rule.chain_hash, heads.get(campaign_id),
        )  # fmt: skip
        self.records = []


# The SQL of each ordering a campaign may pick (`dialer.domain.settings.ORDERING_NAMES`).
ORDERINGS: dict[str, Callable[[], ColumnElement[Any]]] = {
    "priority": lambda: CampaignAccount.priority.desc(),
    "aging_youngest_first": lambda: Account.days_past_due.asc(),
    "aging_oldest_first": lambda: Account.days_past_due.desc(),
    "balance_highest_first": lambda: Account.balance.desc(),
    "balance_lowest_first": lambda: Account.balance.asc(),
    "last_contact_oldest_first": lambda: Account.last_contact_at.asc().nulls_first(),
    "last_attempt_oldest_first": lambda: CampaignAccount.last_attempt_at.asc().nulls_first(),
}


def first_dialable_phone(candidate: Candidate, now: dt.datetime) -> Choice:
    """The plainest rule: the first valid, non-DNC phone in priority order that is due."""
    usable = [
        p
        for p in candidate.phones
        if p.valid and not p.dnc and p.number not in candidate.dnc_numbers
    ]
    if not usable:
        return Choice(None, "no valid phone", done=True)
    due = [p for p in usable if p.next_attempt_at is None or p.next_attempt_at <= now]
    if not due:
        return Choice(
            None,
            "phones resting",
            retry_at=min(p.next_attempt_at for p in usable if p.next_attempt_at),
        )
    return Choice(due[0])


async def _take_number(session: AsyncSession, number: str) -> bool:
    """Postgres: whether this transaction may dial `number` now. Another claimer (any campaign,
    any process) holding the number's lock, or an open attempt committed meanwhile, says no.
    The lock is a try-lock (never waits, so no deadlock) released at commit, by which time the
    attempt row is visible to the next claimer's re-check."""
    if session.bind is None or session.bind.dialect.name != "postgresql":
        return True  # SQLite: one writer at a time, the snapshot check above is enough
    taken = (
        await session.execute(
            select(func.pg_try_advisory_xact_lock(NUMBER_LOCK_SPACE, func.hashtext(number)))
        )
    ).scalar_one()
    if not taken:
        return False
    open_now = (
        await session.execute(
            select(CallAttempt.id)
            .where(CallAttempt.number == number, CallAttempt.ended_at.is_(None))
            .limit(1)
        )
    ).first()
    return open_now is None


async def callbacks_due(
    session: AsyncSession, account_ids: Sequence[int], campaign_id: int, now: dt.datetime
) -> dict[int, tuple[int, int | None]]:
    """Account id -> (callback id, owner agent id) of its earliest pending callback due by `now`
    for `campaign_id` (or for any campaign)."""
    if not account_ids:
        return {}
    rows = await session.execute(
        select(Callback.account_id, Callback.id, Callback.owner_agent_id)
        .where(
            Callback.account_id.in_(account_ids),
            Callback.status == CallbackStatus.PENDING.value,
            Callback.due_at <= now,
            or_(Callback.campaign_id.is_(None), Callback.campaign_id == campaign_id),
        )
        .order_by(Callback.due_at, Callback.id)
    )
    due: dict[int, tuple[int, int | None]] = {}
    for account_id, callback_id, owner in rows:
        due.setdefault(account_id, (callback_id, owner))
    return due


async def _candidates(
    session: AsyncSession,
    campaign_id: int,
    account_ids: Sequence[int],
    now: dt.datetime,
    skip_attempt: int | None = None,
) -> tuple[dict[int, Candidate], set[int]]:
    """What the compliance rule sees about each account, and the accounts with an open attempt;
    `skip_attempt` (a held preview being re-checked) counts as neither history nor open."""
    other = CallAttempt.id != skip_attempt if skip_attempt is not None else true()
    accounts = {
        a.id: a
        for a in (
            await session.execute(select(Account).where(Account.id.in_(account_ids)))
        ).scalars()
    }
    still_open = set(
        (
            await session.execute(
                select(CallAttempt.account_id).where(
                    CallAttempt.account_id.in_(account_ids),
                    CallAttempt.ended_at.is_(None),
                    other,
                )
            )
        ).scalars()
    )
    phones: dict[int, list[Phone]] = defaultdict(list)
    for phone in (
        await session.execute(
            select(Phone)
            .where(Phone.account_id.in_(account_ids))
            .order_by(Phone.priority, Phone.id)
        )
    ).scalars():
        phones[phone.account_id].append(phone)
    history: dict[int, list[PastAttempt]] = defaultdict(list)
    rows = await session.execute(
        select(
            CallAttempt.account_id,
            CallAttempt.phone_id,
            CallAttempt.created_at,
            CallAttempt.outcome,
            CallAttempt.abandoned,
            CallAttempt.bridged_at,
        ).where(
            CallAttempt.account_id.in_(account_ids), CallAttempt.created_at >= now - HISTORY, other
        )
    )
    for acc_id, phone_id, created, outcome, abandoned, bridged in rows:
        history[acc_id].append(
            PastAttempt(phone_id, created, outcome, abandoned, bridged is not None, bridged)
        )
    # Lifetime totals for the total caps, same snapshot rule as the history above.
    phone_totals: dict[int, int] = {}
    account_totals: dict[int, int] = defaultdict(int)
    for acc_id, phone_id, n in await session.execute(
        select(CallAttempt.account_id, CallAttempt.phone_id, func.count())
        .where(CallAttempt.account_id.in_(account_ids), other)
        .group_by(CallAttempt.account_id, CallAttempt.phone_id)
    ):
        phone_totals[phone_id] = int(n)
        account_totals[acc_id] += int(n)
    numbers = {p.number for ps in phones.values() for p in ps}
    # Abandoned calls per number, any account or campaign, at the moment of the answer.
    number_abandons: dict[str, list[dt.datetime]] = defaultdict(list)
    if numbers:
        for number, answered in await session.execute(
            select(
                CallAttempt.number,
                type_coerce(
                    func.coalesce(CallAttempt.answered_at, CallAttempt.created_at), UTCDateTime()
                ),
            ).where(
                CallAttempt.number.in_(numbers),
                CallAttempt.abandoned.is_(True),
                CallAttempt.created_at >= now - HISTORY,
                other,
            )
        ):
            number_abandons[number].append(answered)
    consented: set[str] = set()
    if numbers:
        consented = set(
            (
                await session.execute(
                    select(Consent.number).where(
                        Consent.number.in_(numbers),
                        Consent.given_at <= now,
                        or_(Consent.revoked_at.is_(None), Consent.revoked_at > now),
                    )
                )
            ).scalars()
        )
    # Number -> latest expiry of its unexpired entries (None: an entry that never expires).
    dnc: dict[str, dt.datetime | None] = {}
    if numbers:
        for number, expires in await session.execute(
            select(DncEntry.number, DncEntry.expires_at).where(
                DncEntry.number.in_(numbers),
                or_(DncEntry.campaign_id.is_(None), DncEntry.campaign_id == campaign_id),
                or_(DncEntry.expires_at.is_(None), DncEntry.expires_at > now),
            )
        ):
            if number not in dnc:
                dnc[number] = expires
            else:
                known = dnc[number]
                dnc[number] = None if known is None or expires is None else max(known, expires)
    candidates: dict[int, Candidate] = {}
    for acc_id, account in accounts.items():
        acc_phones = phones.get(acc_id, [])
        candidates[acc_id] = Candidate(
            account=account,
            phones=acc_phones,
            attempts=sorted(history.get(acc_id, []), key=lambda a: a.created_at),
            dnc_numbers=frozenset(p.number for p in acc_phones if p.number in dnc),
            campaign_id=campaign_id,
            account_total_attempts=account_totals.get(acc_id, 0),
            phone_total_attempts={p.id: phone_totals.get(p.id, 0) for p in acc_phones},
            dnc_expires={p.number: dnc[p.number] for p in acc_phones if p.number in dnc},
            number_abandons={
                p.number: tuple(number_abandons[p.number])
                for p in acc_phones
                if p.number in number_abandons
            },
            consents=frozenset(p.number for p in acc_phones if p.number in consented),
        )
    return candidates, still_open


async def recheck_held(
    session: AsyncSession,
    attempt_id: int,
    now: dt.datetime,
    rule: Rule,
    *,
    agent_id: int | None = None,
    record_evidence: bool = True,
) -> str | None:
    """Why the phone of a held (claimed, not yet dialed) attempt may not be dialed now, or None:
    a preview account an agent looked at for a while is checked again at the dial (the calling
    window may have closed, a DNC entry or a cap may have come meanwhile). The decision is
    recorded as evidence with `agent_id`, the agent whose click launches the call; the caller
    commits it."""
    attempt = await session.get(CallAttempt, attempt_id)
    if attempt is None:
        return f"attempt {attempt_id} does not exist"
    candidates, _ = await _candidates(
        session, attempt.campaign_id, [attempt.account_id], now, skip_attempt=attempt_id
    )
    candidate = candidates.get(attempt.account_id)
    if candidate is None:
        return f"attempt {attempt_id} has no account"
    # The rule judges the held phone alone: another phone being dialable does not make it so.
    only = dataclasses.replace(
        candidate, phones=[p for p in candidate.phones if p.id == attempt.phone_id]
    )
    proof = _Evidence(rule, record_evidence, "dial", agent_id)
    choice, facts = proof.decide(only, now)
    proof.add(
        only, now, choice, facts, "dialed" if choice.phone is not None else "refused",
        attempt.caller_id, attempt_id,
    )  # fmt: skip
    await proof.flush(session, attempt.campaign_id)
    return None if choice.phone is not None else choice.reason or "blocked"


async def claim_phones(
    session: AsyncSession,
    campaign_id: int,
    count: int,
    now: dt.datetime,
    rule: Rule = first_dialable_phone,
    *,
    caller_id: str | None = None,
    caller_id_for: CallerIdFor | None = None,
    order: Sequence[str] = ("priority",),
    scan_factor: int = 4,
    agent_id: int | None = None,
    record_evidence: bool = True,
) -> ClaimResult:
    """Claim up to `count` phones of `campaign_id` and write their attempt rows, in the caller's
    transaction. Accounts a rule blocks are pushed to their retry time so the next tick skips
    them.

    Accounts with a due callback come first, then `order` (keys of `ORDERINGS`). `caller_id_for`
    picks a caller ID per dial (e.g. matched to the debtor's area); else `caller_id` is used.

    Every decision, allowed or refused, is recorded as evidence in this transaction when the
    rule records (the compliance rule does); `agent_id` is the agent who asked (preview)."""
    result = ClaimResult()
    if count <= 0:
        return result
    unknown = [o for o in order if o not in ORDERINGS]
    if unknown:
        raise ValueError(f"order: unknown {unknown}; known: {', '.join(ORDERINGS)}")
    due_callback = exists().where(
        Callback.account_id == CampaignAccount.account_id,
        Callback.status == CallbackStatus.PENDING.value,
        Callback.due_at <= now,
        or_(Callback.campaign_id.is_(None), Callback.campaign_id == campaign_id),
    )
    open_attempt = exists().where(
        and_(CallAttempt.account_id == CampaignAccount.account_id, CallAttempt.ended_at.is_(None))
    )
    lock = (
        select(CampaignAccount.account_id)
        .join(Account, Account.id == CampaignAccount.account_id)
        .where(
            CampaignAccount.campaign_id == campaign_id,
            CampaignAccount.state == MemberState.ACTIVE.value,
            or_(CampaignAccount.next_attempt_at.is_(None), CampaignAccount.next_attempt_at <= now),
            ~open_attempt,
        )
        .order_by(
            case((due_callback, 0), else_=1),
            *(ORDERINGS[o]() for o in order),
            CampaignAccount.next_attempt_at.asc().nulls_first(),
            CampaignAccount.account_id,
        )
        .limit(count * scan_factor)
    )
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        lock = lock.with_for_update(of=[CampaignAccount, Account], skip_locked=True)
    account_ids = list((await session.execute(lock)).scalars())
    if not account_ids:
        return result

    # Second statement, fresh snapshot: what other processes committed before we got the locks.
    candidates, still_open = await _candidates(session, campaign_id, account_ids, now)
    numbers = {p.number for c in candidates.values() for p in c.phones}
    # The same number may sit on several accounts (family, employer): it rings once at a time.
    busy_numbers: set[str] = set()
    if numbers:
        busy_numbers = set(
            (
                await session.execute(
                    select(CallAttempt.number).where(
                        CallAttempt.number.in_(numbers), CallAttempt.ended_at.is_(None)
                    )
                )
            ).scalars()
        )

    proof = _Evidence(rule, record_evidence, "claim", agent_id)
    for acc_id in account_ids:
        if len(result.claimed) >= count:
            break
        if acc_id in still_open:
            continue
        candidate = candidates[acc_id]
        choice, facts = proof.decide(candidate, now)
        member = (CampaignAccount.campaign_id == campaign_id, CampaignAccount.account_id == acc_id)
        if choice.phone is None:
            reason = choice.reason or "blocked"
            result.blocked[reason] = result.blocked.get(reason, 0) + 1
            values: dict[str, object] = (
                {"state": MemberState.DONE.value}
                if choice.done
                else {"next_attempt_at": choice.retry_at or now + dt.timedelta(minutes=15)}
            )
            await session.execute(update(CampaignAccount).where(*member).values(**values))
            proof.add(candidate, now, choice, facts, "refused")
            continue
        if choice.phone.number in busy_numbers or not await _take_number(
            session, choice.phone.number
        ):
            reason = "number on another call"
            result.blocked[reason] = result.blocked.get(reason, 0) + 1
            await session.execute(
                update(CampaignAccount).where(*member).values(next_attempt_at=now + NUMBER_BUSY)
            )
            proof.add(candidate, now, choice, facts, reason)
            continue
        busy_numbers.add(choice.phone.number)
        attempt = CallAttempt(
            campaign_id=campaign_id,
            account_id=acc_id,
            phone_id=choice.phone.id,
            number=choice.phone.number,
            caller_id=(
                caller_id_for(candidate.account, choice.phone) if caller_id_for else caller_id
            ),
            created_at=now,
        )
        session.add(attempt)
        await session.flush()
        await session.execute(
            update(CampaignAccount)
            .where(*member)
            .values(
                attempts=CampaignAccount.attempts + 1,
                last_attempt_at=now,
                next_attempt_at=now + IN_FLIGHT_PARK,
            )
        )
        result.claimed.append(
            Claimed(
                attempt.id,
                campaign_id,
                acc_id,
                choice.phone.id,
                choice.phone.number,
                choice.phone.time_zone or candidate.account.time_zone,
                attempt.caller_id,
            )
        )
        proof.add(candidate, now, choice, facts, "claimed", attempt.caller_id, attempt.id)
    await proof.flush(session, campaign_id)
    due = await callbacks_due(session, [c.account_id for c in result.claimed], campaign_id, now)
    for claimed in result.claimed:
        claimed.callback_id, claimed.callback_owner = due.get(claimed.account_id, (None, None))
    return result
