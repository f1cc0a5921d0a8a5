"""Campaign leases: one owner at a time, renewals, takeover once the owner goes quiet."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from dialer.store import leases
from dialer.store.db import make_engine, make_sessionmaker
from dialer.store.models import Campaign

pytestmark = pytest.mark.postgres
NOW = dt.datetime(2026, 11, 24, 15, 0, tzinfo=dt.UTC)
TTL = dt.timedelta(seconds=15)


async def _campaign(engine: AsyncEngine) -> int:
    async with make_sessionmaker(engine).begin() as s:
        c = Campaign(name="lease")
        s.add(c)
        await s.flush()
        return c.id


async def test_a_live_lease_keeps_a_second_process_out(engine: AsyncEngine) -> None:
    cid, sessions = await _campaign(engine), make_sessionmaker(engine)
    assert await leases.acquire(sessions, cid, "a", NOW, TTL)
    assert not await leases.acquire(sessions, cid, "b", NOW + dt.timedelta(seconds=5), TTL)
    assert await leases.owner_of(sessions, cid, NOW) == "a"


async def test_the_owner_renews_and_keeps_its_campaign(engine: AsyncEngine) -> None:
    cid, sessions = await _campaign(engine), make_sessionmaker(engine)
    assert await leases.acquire(sessions, cid, "a", NOW, TTL)
    assert await leases.acquire(sessions, cid, "a", NOW + dt.timedelta(seconds=10), TTL)
    # Had it not been renewed, b would win at +20 s.
    assert not await leases.acquire(sessions, cid, "b", NOW + dt.timedelta(seconds=20), TTL)


async def test_another_process_takes_over_once_the_lease_expires(engine: AsyncEngine) -> None:
    cid, sessions = await _campaign(engine), make_sessionmaker(engine)
    assert await leases.acquire(sessions, cid, "a", NOW, TTL)
    assert await leases.acquire(sessions, cid, "b", NOW + TTL, TTL)
    assert await leases.owner_of(sessions, cid, NOW + TTL) == "b"
    assert not await leases.acquire(sessions, cid, "a", NOW + TTL, TTL)


async def test_a_released_lease_is_free_at_once(engine: AsyncEngine) -> None:
    cid, sessions = await _campaign(engine), make_sessionmaker(engine)
    assert await leases.acquire(sessions, cid, "a", NOW, TTL)
    await leases.release(sessions, cid, "a")
    assert await leases.acquire(sessions, cid, "b", NOW, TTL)


async def test_the_decision_is_saved_only_by_the_owner(engine: AsyncEngine) -> None:
    cid, sessions = await _campaign(engine), make_sessionmaker(engine)
    await leases.acquire(sessions, cid, "a", NOW, TTL)
    await leases.save_decision(sessions, cid, "a", {"launches": 3, "mode": "predictive"}, NOW)
    await leases.save_decision(sessions, cid, "b", {"launches": 99}, NOW)
    async with sessions() as s:
        from dialer.store.models import CampaignLease

        lease = await s.get(CampaignLease, cid)
    assert lease is not None and lease.last_decision == {"launches": 3, "mode": "predictive"}


async def test_processes_racing_for_a_free_campaign_on_postgres_elect_exactly_one(
    pg_engine: AsyncEngine, pg_url: str
) -> None:
    cid = await _campaign(pg_engine)
    engines = [make_engine(pg_url) for _ in range(6)]
    try:
        results = await asyncio.gather(
            *(
                leases.acquire(make_sessionmaker(e), cid, f"p{i}", NOW, TTL)
                for i, e in enumerate(engines)
            )
        )
    finally:
        for e in engines:
            await e.dispose()
    assert results.count(True) == 1
