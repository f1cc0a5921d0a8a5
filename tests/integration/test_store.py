"""The store on both backends: round-trips that must be exact, and claims that must not collide."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import selectinload

from dialer.store.claim import claim_phones
from dialer.store.db import make_sessionmaker
from dialer.store.models import (
    Account,
    CallAttempt,
    Campaign,
    CampaignAccount,
    Phone,
    PromiseToPay,
    PtpInstalment,
)

pytestmark = pytest.mark.postgres
NOW = dt.datetime(2026, 11, 24, 15, 0, tzinfo=dt.UTC)


async def _seed(engine: AsyncEngine, accounts: int, phones_per_account: int = 1) -> int:
    sessions = make_sessionmaker(engine)
    async with sessions.begin() as s:
        campaign = Campaign(name="seed")
        s.add(campaign)
        await s.flush()
        for i in range(accounts):
            acc = Account(external_ref=f"A{i}", name=f"Debtor {i}", balance=Decimal("100.00"))
            acc.phones = [
                Phone(number=f"+1202555{i:04d}{k}", priority=k) for k in range(phones_per_account)
            ]
            s.add(acc)
            await s.flush()
            s.add(CampaignAccount(campaign_id=campaign.id, account_id=acc.id))
        return campaign.id


async def test_account_with_three_phones_round_trips(engine: AsyncEngine) -> None:
    sessions = make_sessionmaker(engine)
    async with sessions.begin() as s:
        acc = Account(
            source="bank-a",
            external_ref="X-1",
            name="Ana Pérez",
            balance=Decimal("98765.43"),
            currency="MXN",
            days_past_due=45,
            aging_bucket="31-60",
            time_zone="America/Mexico_City",
            custom_fields={"product": "tarjeta", "limit": 20000},
        )
        acc.phones = [
            Phone(number="+525512345678", phone_type="mobile", priority=1),
            Phone(number="+525587654321", phone_type="home", priority=2),
            Phone(number="+525511112222", phone_type="work", priority=3, dnc=True),
        ]
        s.add(acc)
    async with sessions() as s:
        got = (
            await s.execute(
                select(Account)
                .options(selectinload(Account.phones))
                .where(Account.external_ref == "X-1")
            )
        ).scalar_one()
    assert [(p.number, p.phone_type, p.priority, p.dnc) for p in got.phones] == [
        ("+525512345678", "mobile", 1, False),
        ("+525587654321", "home", 2, False),
        ("+525511112222", "work", 3, True),
    ]
    assert got.balance == Decimal("98765.43") and got.currency == "MXN"
    assert got.custom_fields == {"product": "tarjeta", "limit": 20000}
    assert got.created_at.tzinfo is not None and got.created_at.utcoffset() == dt.timedelta(0)


async def test_promise_to_pay_amount_round_trips_exactly(engine: AsyncEngine) -> None:
    sessions = make_sessionmaker(engine)
    async with sessions.begin() as s:
        acc = Account(external_ref="P-1", name="x", balance=Decimal("5000.00"))
        s.add(acc)
        await s.flush()
        ptp = PromiseToPay(
            account_id=acc.id,
            amount=Decimal("1234.56"),
            currency="USD",
            due_date=dt.date(2026, 12, 1),
        )
        ptp.instalments = [
            PtpInstalment(seq=1, due_date=dt.date(2026, 12, 1), amount=Decimal("617.28")),
            PtpInstalment(seq=2, due_date=dt.date(2027, 1, 1), amount=Decimal("617.28")),
        ]
        s.add(ptp)
    async with sessions() as s:
        got = (
            await s.execute(select(PromiseToPay).options(selectinload(PromiseToPay.instalments)))
        ).scalar_one()
    assert got.amount == Decimal("1234.56") and str(got.amount) == "1234.56"
    assert sum(i.amount for i in got.instalments) == got.amount
    assert got.status == "pending"


async def test_money_with_more_than_two_decimals_is_refused(engine: AsyncEngine) -> None:
    sessions = make_sessionmaker(engine)
    with pytest.raises(Exception, match="more than two decimals"):
        async with sessions.begin() as s:
            s.add(Account(external_ref="M-1", name="x", balance=Decimal("1.005")))


async def test_naive_timestamps_are_refused(engine: AsyncEngine) -> None:
    sessions = make_sessionmaker(engine)
    with pytest.raises(Exception, match="timezone-aware"):
        async with sessions.begin() as s:
            s.add(
                Account(
                    external_ref="T-1",
                    name="x",
                    balance=Decimal("1.00"),
                    last_contact_at=dt.datetime(2026, 1, 1),
                )
            )


async def test_a_claim_writes_attempt_rows_and_never_returns_an_account_with_an_open_attempt(
    engine: AsyncEngine,
) -> None:
    campaign_id = await _seed(engine, accounts=3, phones_per_account=2)
    sessions = make_sessionmaker(engine)
    async with sessions.begin() as s:
        first = await claim_phones(s, campaign_id, 2, NOW)
    async with sessions.begin() as s:
        second = await claim_phones(s, campaign_id, 5, NOW)
    assert len(first.claimed) == 2 and len(second.claimed) == 1
    assert {c.account_id for c in first.claimed}.isdisjoint({c.account_id for c in second.claimed})
    async with sessions() as s:
        open_rows = (
            await s.execute(select(func.count()).where(CallAttempt.ended_at.is_(None)))
        ).scalar_one()
    assert open_rows == 3


async def test_the_database_refuses_a_second_open_attempt_on_one_phone(engine: AsyncEngine) -> None:
    campaign_id = await _seed(engine, accounts=1)
    sessions = make_sessionmaker(engine)
    async with sessions.begin() as s:
        claimed = (await claim_phones(s, campaign_id, 1, NOW)).claimed[0]
    with pytest.raises(IntegrityError):
        async with sessions.begin() as s:
            s.add(
                CallAttempt(
                    campaign_id=campaign_id,
                    account_id=claimed.account_id,
                    phone_id=claimed.phone_id,
                    number=claimed.number,
                )
            )


async def test_concurrent_claims_on_postgres_never_get_the_same_phone(
    pg_engine: AsyncEngine,
) -> None:
    campaign_id = await _seed(pg_engine, accounts=300, phones_per_account=2)
    sessions = make_sessionmaker(pg_engine)
    start = asyncio.Event()

    async def claimer() -> list[int]:
        got: list[int] = []
        await start.wait()
        for _ in range(30):
            async with sessions.begin() as s:
                got += [c.phone_id for c in (await claim_phones(s, campaign_id, 7, NOW)).claimed]
        return got

    tasks = [asyncio.create_task(claimer()) for _ in range(4)]
    start.set()
    results = await asyncio.gather(*tasks)
    every = [p for r in results for p in r]
    assert len(every) == 300, "all 300 accounts are claimed exactly once between the four claimers"
    assert len(set(every)) == len(every)
    assert sum(1 for r in results if r) >= 2, "the claimers really ran side by side"
