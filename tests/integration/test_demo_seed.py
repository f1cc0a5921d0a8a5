"""The demo's synthetic data: every aging bucket, agents who can log in, a window open right now."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from dialer import auth
from dialer.demo.seed import DEMO_PASSWORD, REGIONS, open_region, seed
from dialer.store.db import make_sessionmaker
from dialer.store.models import Account, Agent, AgingBucket, CampaignAccount, Phone

pytestmark = pytest.mark.postgres


async def test_seed_spreads_accounts_over_every_bucket_with_agents_who_can_log_in(
    engine: AsyncEngine,
) -> None:
    sessions = make_sessionmaker(engine)
    now = dt.datetime(2026, 11, 24, 16, 0, tzinfo=dt.UTC)
    async with sessions.begin() as s:
        seeded = await seed(s, now, accounts=60, agents=3)
    async with sessions() as s:
        buckets = set((await s.execute(select(Account.aging_bucket))).scalars())
        members = (await s.execute(select(func.count()).select_from(CampaignAccount))).scalar_one()
        phones = list((await s.execute(select(Phone.number))).scalars())
    assert buckets == {b.value for b in AgingBucket}
    assert members == 60 and seeded.accounts == 60
    assert all(p.startswith("+") and 8 <= len(p) <= 16 for p in phones)
    assert len(phones) == len(set(phones)), "no two debtors share a number"
    logged = await auth.login(sessions, seeded.agent_logins[0], DEMO_PASSWORD, now)
    assert logged is not None and logged[1].role == "agent"


@pytest.mark.parametrize(
    ("hour", "profile", "language"),
    # A Tuesday: 10:00 in Mexico City; 18:00 in Honolulu (Mexico's window is shut); 11:00 in Madrid
    [(16, "MX", "es"), (4, "US", "en"), (10, "ES", "es")],
)
async def test_seeded_desktops_speak_the_region_s_language(
    engine: AsyncEngine, hour: int, profile: str, language: str
) -> None:
    sessions = make_sessionmaker(engine)
    now = dt.datetime(2026, 11, 24, hour, 0, tzinfo=dt.UTC)
    async with sessions.begin() as s:
        seeded = await seed(s, now, accounts=6, agents=2)
    async with sessions() as s:
        languages = set((await s.execute(select(Agent.language))).scalars())
    assert seeded.profile == profile
    assert languages == {language}


@pytest.mark.parametrize("day", [23, 28, 29])  # Monday, Saturday, Sunday
@pytest.mark.parametrize("hour", range(24))
def test_at_every_hour_the_chosen_region_is_inside_its_window(day: int, hour: int) -> None:
    now = dt.datetime(2026, 11, day, hour, 30, tzinfo=dt.UTC)
    profile, zone, _prefix, _currency = open_region(now)
    start, end, weekdays_only = next((r[2], r[3], r[4]) for r in REGIONS if r[1] == zone)
    local = now.astimezone(ZoneInfo(zone))
    assert start <= local.hour < end - 1
    assert not (weekdays_only and local.weekday() >= 5), profile
