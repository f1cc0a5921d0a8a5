"""The compliance rule inside the real claim: caps under concurrent claimers, parking, ordering."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from dialer.compliance.callerid import choose_caller_id
from dialer.compliance.claiming import claim_options
from dialer.compliance.rules import compliance_rule
from dialer.store.claim import claim_phones
from dialer.store.db import make_engine, make_sessionmaker
from dialer.store.models import (
    Account,
    CallAttempt,
    Callback,
    Campaign,
    CampaignAccount,
    DncEntry,
    Phone,
)

pytestmark = pytest.mark.postgres
NY = ZoneInfo("America/New_York")
# Wednesday 10 June 2026, 15:00 in New York: inside the US window.
NOW = dt.datetime(2026, 6, 10, 15, 0, tzinfo=NY).astimezone(dt.UTC)


async def _seed(
    engine: AsyncEngine, accounts: int, campaigns: int, caps: dict[str, int]
) -> list[int]:
    async with make_sessionmaker(engine).begin() as s:
        rows = [
            Campaign(name=f"c{i}", caps=dict(caps), compliance_profile="US")
            for i in range(campaigns)
        ]
        s.add_all(rows)
        await s.flush()
        for i in range(accounts):
            acc = Account(
                external_ref=f"A{i}", name="x", balance=Decimal("10.00"),
                time_zone="America/New_York",
                days_past_due=i,
            )  # fmt: skip
            acc.phones = [Phone(number=f"+1212555{i:04d}", priority=1),
                          Phone(number=f"+1310555{i:04d}", priority=2)]  # fmt: skip
            s.add(acc)
            await s.flush()
            for c in rows:
                s.add(CampaignAccount(campaign_id=c.id, account_id=acc.id))
        return [c.id for c in rows]


async def _claim(engine: AsyncEngine, campaign_id: int, count: int, now: dt.datetime) -> int:
    sessions = make_sessionmaker(engine)
    async with sessions.begin() as s:
        campaign = await s.get(Campaign, campaign_id)
        assert campaign is not None
        result = await claim_phones(s, campaign_id, count, now, compliance_rule(campaign))
    return len(result.claimed)


async def _end_all(engine: AsyncEngine, now: dt.datetime) -> None:
    """What the end of each call does: close the attempt and make the account due again."""
    async with make_sessionmaker(engine).begin() as s:
        await s.execute(
            update(CallAttempt).where(CallAttempt.ended_at.is_(None)).values(ended_at=now)
        )
        await s.execute(update(CampaignAccount).values(next_attempt_at=None))


async def test_two_processes_claiming_at_once_never_exceed_the_caps(
    pg_engine: AsyncEngine, pg_url: str
) -> None:
    first, second = pg_engine, make_engine(pg_url)  # two engines: two "processes"
    try:
        caps = {"account_per_day": 3, "phone_per_day": 2}
        c1, c2 = await _seed(first, accounts=25, campaigns=2, caps=caps)
        for round_ in range(6):
            now = NOW + dt.timedelta(minutes=round_)
            # Both processes claim both campaigns (which share every account) at the same time.
            await asyncio.gather(
                _claim(first, c1, 25, now), _claim(second, c2, 25, now),
                _claim(second, c1, 25, now), _claim(first, c2, 25, now),
            )  # fmt: skip
            await _end_all(first, now)
        async with make_sessionmaker(first)() as s:
            rows = (await s.execute(select(CallAttempt.account_id, CallAttempt.phone_id))).all()
    finally:
        await second.dispose()
    per_account = Counter(a for a, _ in rows)
    per_phone = Counter(p for _, p in rows)
    assert max(per_account.values()) == 3  # the cap was reached ...
    assert len(rows) == 25 * 3  # ... by every account, and never passed
    assert max(per_phone.values()) <= 2


async def test_blocked_account_is_parked_until_the_window_opens(engine: AsyncEngine) -> None:
    (cid,) = await _seed(engine, accounts=1, campaigns=1, caps={})
    late = dt.datetime(2026, 6, 10, 21, 30, tzinfo=NY).astimezone(dt.UTC)
    async with make_sessionmaker(engine).begin() as s:
        campaign = await s.get(Campaign, cid)
        assert campaign is not None
        result = await claim_phones(s, cid, 1, late, compliance_rule(campaign))
    assert result.claimed == [] and result.blocked == {"US: outside calling window": 1}
    async with make_sessionmaker(engine)() as s:
        parked = (await s.execute(select(CampaignAccount.next_attempt_at))).scalar_one()
    assert parked == dt.datetime(2026, 6, 11, 8, 0, tzinfo=NY).astimezone(dt.UTC)


async def test_dnc_entry_skips_the_number_until_it_expires(engine: AsyncEngine) -> None:
    (cid,) = await _seed(engine, accounts=1, campaigns=1, caps={})
    async with make_sessionmaker(engine).begin() as s:
        s.add(DncEntry(number="+12125550000", expires_at=NOW + dt.timedelta(hours=1)))
    assert await _claimed_number(engine, cid, NOW) == "+13105550000"
    await _end_all(engine, NOW)
    assert await _claimed_number(engine, cid, NOW + dt.timedelta(hours=2)) == "+12125550000"


async def _claimed_number(engine: AsyncEngine, cid: int, now: dt.datetime) -> str:
    async with make_sessionmaker(engine).begin() as s:
        campaign = await s.get(Campaign, cid)
        assert campaign is not None
        result = await claim_phones(s, cid, 1, now, compliance_rule(campaign))
    return result.claimed[0].number


async def test_due_callback_is_claimed_before_the_configured_order(engine: AsyncEngine) -> None:
    (cid,) = await _seed(engine, accounts=3, campaigns=1, caps={})
    async with make_sessionmaker(engine).begin() as s:
        ids = list((await s.execute(select(Account.id).order_by(Account.days_past_due))).scalars())
        s.add(Callback(account_id=ids[1], due_at=NOW - dt.timedelta(minutes=5)))
    async with make_sessionmaker(engine).begin() as s:
        result = await claim_phones(s, cid, 3, NOW, order=["aging_oldest_first"])
    assert [c.account_id for c in result.claimed] == [ids[1], ids[2], ids[0]]


async def test_caller_id_matched_to_the_debtors_area_is_written_on_the_attempt(
    engine: AsyncEngine,
) -> None:
    (cid,) = await _seed(engine, accounts=1, campaigns=1, caps={})
    pool = ["+13105559999", "+12125559999"]
    async with make_sessionmaker(engine).begin() as s:
        await claim_phones(
            s, cid, 1, NOW,
            caller_id_for=lambda acc, phone: choose_caller_id(
                phone.number, pool, None, match_area=True, key=acc.id
            ),
        )  # fmt: skip
    async with make_sessionmaker(engine)() as s:
        assert (await s.execute(select(CallAttempt.caller_id))).scalar_one() == "+12125559999"


async def test_claim_options_built_from_the_campaign_row_drive_the_claim(
    engine: AsyncEngine,
) -> None:
    (cid,) = await _seed(engine, accounts=2, campaigns=1, caps={})
    async with make_sessionmaker(engine).begin() as s:
        campaign = await s.get(Campaign, cid)
        assert campaign is not None
        campaign.caps = {"claim_order": ["aging_oldest_first"], "caller_id_match_area": True}
        campaign.caller_id_pool = ["+13105559999", "+12125559999"]
    async with make_sessionmaker(engine).begin() as s:
        campaign = await s.get(Campaign, cid)
        assert campaign is not None
        opts = claim_options(campaign)
        result = await claim_phones(
            s, cid, 1, NOW, opts.rule, order=opts.order, caller_id_for=opts.caller_id_for
        )
    async with make_sessionmaker(engine)() as s:
        oldest = (
            (await s.execute(select(Account.id).order_by(Account.days_past_due.desc())))
            .scalars()
            .first()
        )
        caller_id = (await s.execute(select(CallAttempt.caller_id))).scalar_one()
    assert result.claimed[0].account_id == oldest and caller_id == "+12125559999"
