"""Attempt rows after the claim: telephony's timestamps, the end of a call, and its retry schedule.

Closing an attempt and scheduling its phone and account happen in one transaction.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dialer.domain.retry import PhoneState, RetryRules, after_attempt
from dialer.store.models import (
    Account,
    CallAttempt,
    Callback,
    CallbackStatus,
    CampaignAccount,
    MemberState,
    Phone,
)

_STAMPS = ("originated_at", "answered_at", "bridged_at")


async def stamp(session: AsyncSession, attempt_id: int, **values: object) -> None:
    """Record progress on an open attempt (originated/answered/bridged times, server, ids...)."""
    unknown = set(values) - {
        *_STAMPS,
        "server",
        "uniqueid",
        "linkedid",
        "channel",
        "amd_result",
        "amd_cause",
        "agent_id",
        "recording_path",
        "dial_status",
    }
    if unknown:
        raise ValueError(f"not attempt fields: {sorted(unknown)}")
    await session.execute(update(CallAttempt).where(CallAttempt.id == attempt_id).values(**values))


async def close(
    session: AsyncSession,
    attempt_id: int,
    outcome: str,
    now: dt.datetime,
    rules: RetryRules,
    *,
    abandoned: bool = False,
    hangup_cause: int | None = None,
    dial_status: str | None = None,
    answered_at: dt.datetime | None = None,
    bridged_at: dt.datetime | None = None,
    agent_id: int | None = None,
) -> bool:
    """End an attempt with its outcome and schedule the phone and the account.

    `answered_at`, `bridged_at`, `agent_id`: what the call's earlier events said, written here too
    when their own stamps were lost (the database was away meanwhile); never overwritten.
    Returns False when the attempt was already closed (a late event or a second resync), so a call
    is never counted twice.
    """
    attempt = (
        await session.execute(
            select(CallAttempt).where(CallAttempt.id == attempt_id).with_for_update()
        )
    ).scalar_one_or_none()
    if attempt is None or attempt.ended_at is not None:
        return False
    attempt.ended_at = now
    attempt.outcome = outcome
    attempt.abandoned = abandoned
    if hangup_cause is not None:
        attempt.hangup_cause = hangup_cause
    if dial_status is not None:
        attempt.dial_status = dial_status
    if answered_at is not None and attempt.answered_at is None:
        attempt.answered_at = answered_at
    if bridged_at is not None and attempt.bridged_at is None:
        attempt.bridged_at = bridged_at
    if agent_id is not None and attempt.agent_id is None:
        attempt.agent_id = agent_id

    phones = list(
        (
            await session.execute(select(Phone).where(Phone.account_id == attempt.account_id))
        ).scalars()
    )
    account_zone = (
        await session.execute(select(Account.time_zone).where(Account.id == attempt.account_id))
    ).scalar_one()
    dialed = next(p for p in phones if p.id == attempt.phone_id)
    after = after_attempt(
        outcome,
        attempt.phone_id,
        [PhoneState(p.id, p.valid, p.dnc, p.next_attempt_at) for p in phones],
        rules,
        now,
        dialed.time_zone or account_zone,
    )
    dialed.next_attempt_at = after.phone_next_at
    if after.phone_invalid:
        dialed.valid = False
    member = (
        CampaignAccount.campaign_id == attempt.campaign_id,
        CampaignAccount.account_id == attempt.account_id,
    )
    if after.account_next_at is None:
        await session.execute(
            update(CampaignAccount).where(*member).values(state=MemberState.DONE.value)
        )
    else:
        await session.execute(
            update(CampaignAccount)
            .where(*member, CampaignAccount.state == MemberState.ACTIVE.value)
            .values(next_attempt_at=after.account_next_at)
        )
    return True


async def callback_done(session: AsyncSession, callback_id: int) -> None:
    """The callback's call reached an agent: it is honoured (a pending one only)."""
    await session.execute(
        update(Callback)
        .where(Callback.id == callback_id, Callback.status == CallbackStatus.PENDING.value)
        .values(status=CallbackStatus.DONE.value)
    )


async def open_attempts(session: AsyncSession, server: str | None = None) -> list[CallAttempt]:
    """Attempts not yet ended: what a restart must reconcile with Asterisk's own view."""
    query = select(CallAttempt).where(CallAttempt.ended_at.is_(None)).order_by(CallAttempt.id)
    if server is not None:
        query = query.where(CallAttempt.server == server)
    return list((await session.execute(query)).scalars())
