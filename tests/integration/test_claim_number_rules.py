"""Rules about numbers apply to the number, whatever account or campaign holds it; rules about
debts apply per account (real claim path, SQLite and Postgres)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from dialer.compliance.claiming import claim_options
from dialer.store.claim import claim_phones
from dialer.store.db import make_sessionmaker
from dialer.store.models import Account, CallAttempt, Campaign, CampaignAccount, Phone

pytestmark = pytest.mark.postgres
# 14:00 in London on a Wednesday: inside the UK window.
NOW = dt.datetime(2026, 6, 10, 13, 0, tzinfo=dt.UTC)
NUMBER = "+447911123456"


async def _seed(engine: AsyncEngine, profile: str) -> tuple[int, int, list[int]]:
    """Two accounts with the same mobile, each in its own campaign; the first got an abandon."""
    async with make_sessionmaker(engine).begin() as s:
        c1 = Campaign(name="first", compliance_profile=profile)
        c2 = Campaign(name="second", compliance_profile=profile)
        s.add_all([c1, c2])
        await s.flush()
        accounts = []
        for i, campaign in enumerate((c1, c2)):
            acc = Account(external_ref=f"N{i}", name="x", balance=Decimal("1.00"))
            acc.phones = [Phone(number=NUMBER)]
            s.add(acc)
            await s.flush()
            s.add(CampaignAccount(campaign_id=campaign.id, account_id=acc.id))
            accounts.append(acc)
        hour_ago = NOW - dt.timedelta(hours=1)
        s.add(
            CallAttempt(
                campaign_id=c1.id,
                account_id=accounts[0].id,
                phone_id=accounts[0].phones[0].id,
                number=NUMBER,
                created_at=hour_ago - dt.timedelta(seconds=20),
                answered_at=hour_ago,
                ended_at=hour_ago + dt.timedelta(seconds=5),
                outcome="abandoned",
                abandoned=True,
            )
        )
        return c1.id, c2.id, [a.id for a in accounts]


async def _claim(engine: AsyncEngine, campaign_id: int, now: dt.datetime) -> list[int]:
    async with make_sessionmaker(engine).begin() as s:
        campaign = await s.get(Campaign, campaign_id)
        assert campaign is not None
        opts = claim_options(campaign)
        result = await claim_phones(s, campaign_id, 5, now, opts.rule, order=opts.order)
        return [c.account_id for c in result.claimed]


async def test_an_abandon_rests_the_number_on_every_account_for_72_hours(
    engine: AsyncEngine,
) -> None:
    _, c2, _ = await _seed(engine, "UK")
    # The other account, in another campaign, holds the same number: it waits 72 h too.
    assert await _claim(engine, c2, NOW) == []
    # 72 h after the abandoned call's answer (not its dial) the number may ring again.
    answered = NOW - dt.timedelta(hours=1)
    assert await _claim(engine, c2, answered + dt.timedelta(hours=72)) != []


async def test_the_us_profile_has_no_rule_about_abandoned_numbers(engine: AsyncEngine) -> None:
    _, c2, _ = await _seed(engine, "US")
    # 14:00 in London is 09:00 in New York; a UK mobile's zone is London's: inside the window.
    assert await _claim(engine, c2, NOW) != []
