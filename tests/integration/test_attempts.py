"""Closing attempts: outcomes recorded once, phones and accounts scheduled by the retry rules."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from dialer.domain.retry import RetryRules
from dialer.store import attempts
from dialer.store.claim import claim_phones
from dialer.store.db import make_sessionmaker
from dialer.store.models import Account, CallAttempt, Campaign, CampaignAccount, Phone

pytestmark = pytest.mark.postgres
NOW = dt.datetime(2026, 11, 24, 15, 0, tzinfo=dt.UTC)


async def _one_account(engine: AsyncEngine, phones: int) -> int:
    async with make_sessionmaker(engine).begin() as s:
        c = Campaign(name="attempts")
        a = Account(
            external_ref="A", name="x", balance=Decimal("1.00"), time_zone="America/New_York"
        )
        a.phones = [Phone(number=f"+1202555000{i}", priority=i) for i in range(phones)]
        s.add_all([c, a])
        await s.flush()
        s.add(CampaignAccount(campaign_id=c.id, account_id=a.id))
        return c.id


async def _claim(engine: AsyncEngine, cid: int, now: dt.datetime) -> list[int]:
    async with make_sessionmaker(engine).begin() as s:
        return [c.phone_id for c in (await claim_phones(s, cid, 1, now)).claimed]


async def test_no_answer_on_the_first_phone_brings_the_second_phone_after_the_gap(
    engine: AsyncEngine,
) -> None:
    cid = await _one_account(engine, phones=2)
    sessions = make_sessionmaker(engine)
    async with sessions.begin() as s:
        first = (await claim_phones(s, cid, 1, NOW)).claimed[0]
    async with sessions.begin() as s:
        assert await attempts.close(s, first.attempt_id, "no_answer", NOW, RetryRules())
    assert await _claim(engine, cid, NOW + dt.timedelta(minutes=4)) == []
    second = await _claim(engine, cid, NOW + dt.timedelta(minutes=5))
    assert len(second) == 1 and second[0] != first.phone_id


async def test_an_attempt_is_closed_once_and_a_late_event_changes_nothing(
    engine: AsyncEngine,
) -> None:
    cid = await _one_account(engine, phones=1)
    sessions = make_sessionmaker(engine)
    async with sessions.begin() as s:
        claimed = (await claim_phones(s, cid, 1, NOW)).claimed[0]
    async with sessions.begin() as s:
        assert await attempts.close(
            s, claimed.attempt_id, "abandoned", NOW, RetryRules(), abandoned=True
        )
    async with sessions.begin() as s:
        assert not await attempts.close(s, claimed.attempt_id, "lost", NOW, RetryRules())
    async with sessions() as s:
        row = await s.get(CallAttempt, claimed.attempt_id)
        member = (await s.execute(select(CampaignAccount))).scalar_one()
    assert row is not None and (row.outcome, row.abandoned) == ("abandoned", True)
    assert member.next_attempt_at == NOW + dt.timedelta(hours=72)


async def test_an_invalid_lone_number_ends_the_account_in_the_campaign(engine: AsyncEngine) -> None:
    cid = await _one_account(engine, phones=1)
    sessions = make_sessionmaker(engine)
    async with sessions.begin() as s:
        claimed = (await claim_phones(s, cid, 1, NOW)).claimed[0]
    async with sessions.begin() as s:
        await attempts.close(s, claimed.attempt_id, "invalid_number", NOW, RetryRules())
    async with sessions() as s:
        phone = await s.get(Phone, claimed.phone_id)
        member = (await s.execute(select(CampaignAccount))).scalar_one()
    assert phone is not None and not phone.valid
    assert member.state == "done"
    assert await _claim(engine, cid, NOW + dt.timedelta(days=30)) == []


async def test_open_attempts_lists_what_a_restart_must_reconcile(engine: AsyncEngine) -> None:
    cid = await _one_account(engine, phones=1)
    sessions = make_sessionmaker(engine)
    async with sessions.begin() as s:
        claimed = (await claim_phones(s, cid, 1, NOW)).claimed[0]
        await attempts.stamp(s, claimed.attempt_id, server="pbx1", originated_at=NOW)
    async with sessions() as s:
        assert [a.id for a in await attempts.open_attempts(s, "pbx1")] == [claimed.attempt_id]
        assert await attempts.open_attempts(s, "pbx2") == []
