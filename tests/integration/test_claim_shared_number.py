"""One E.164 number on several accounts rings once at a time: within one claim, across campaigns,
and between two processes claiming at the same moment on Postgres."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from decimal import Decimal

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from dialer.store.claim import claim_phones
from dialer.store.db import make_engine, make_sessionmaker
from dialer.store.models import Account, CallAttempt, Campaign, CampaignAccount, Phone

pytestmark = pytest.mark.postgres
NOW = dt.datetime(2026, 6, 10, 19, 0, tzinfo=dt.UTC)


async def _seed(engine: AsyncEngine, shared: int, campaigns: int = 1) -> list[int]:
    """`shared` accounts that all have the same phone number, in every campaign."""
    async with make_sessionmaker(engine).begin() as s:
        rows = [Campaign(name=f"shared{i}") for i in range(campaigns)]
        s.add_all(rows)
        await s.flush()
        for i in range(shared):
            acc = Account(external_ref=f"S{i}", name="x", balance=Decimal("1.00"))
            acc.phones = [Phone(number="+12125550100")]
            s.add(acc)
            await s.flush()
            s.add_all(CampaignAccount(campaign_id=c.id, account_id=acc.id) for c in rows)
        return [c.id for c in rows]


async def _claim(engine: AsyncEngine, campaign_id: int, count: int) -> int:
    async with make_sessionmaker(engine).begin() as s:
        return len((await claim_phones(s, campaign_id, count, NOW)).claimed)


async def test_a_number_shared_by_two_accounts_is_claimed_once(engine: AsyncEngine) -> None:
    (cid,) = await _seed(engine, shared=2)
    async with make_sessionmaker(engine).begin() as s:
        result = await claim_phones(s, cid, 2, NOW)
    assert len(result.claimed) == 1
    assert result.blocked == {"number on another call": 1}
    async with make_sessionmaker(engine).begin() as s:
        again = await claim_phones(s, cid, 2, NOW + dt.timedelta(minutes=5))
    assert again.claimed == [], "still ringing: the other account waits"


async def test_an_open_attempt_in_another_campaign_blocks_the_number(engine: AsyncEngine) -> None:
    c1, c2 = await _seed(engine, shared=2, campaigns=2)
    assert await _claim(engine, c1, 1) == 1
    assert await _claim(engine, c2, 5) == 0
    async with make_sessionmaker(engine).begin() as s:  # the call ends
        await s.execute(update(CallAttempt).values(ended_at=NOW))
        await s.execute(update(CampaignAccount).values(next_attempt_at=None))
    assert await _claim(engine, c2, 5) == 1


async def test_two_processes_never_ring_a_shared_number_twice(
    pg_engine: AsyncEngine, pg_url: str
) -> None:
    first, second = pg_engine, make_engine(pg_url)
    try:
        c1, c2 = await _seed(first, shared=16, campaigns=2)
        for _ in range(5):
            # Claimers of one call each lock different accounts (SKIP LOCKED), all on one number.
            claims = [
                _claim(db, cid, 1) for db in (first, second) for cid in (c1, c2) for _ in range(2)
            ]
            assert sum(await asyncio.gather(*claims)) <= 1
            async with make_sessionmaker(first)() as s:
                open_numbers = Counter(
                    (
                        await s.execute(
                            select(CallAttempt.number).where(CallAttempt.ended_at.is_(None))
                        )
                    ).scalars()
                )
            assert max(open_numbers.values(), default=0) <= 1, open_numbers
            async with make_sessionmaker(first).begin() as s:
                await s.execute(
                    update(CallAttempt).where(CallAttempt.ended_at.is_(None)).values(ended_at=NOW)
                )
                await s.execute(update(CampaignAccount).values(next_attempt_at=None))
    finally:
        await second.dispose()
