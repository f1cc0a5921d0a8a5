"""Campaign leases: which dialer process runs each campaign, taken over when the owner goes quiet.

A lease row per campaign; taking or renewing it is one conditional UPDATE (or an INSERT that a
unique key settles), so two processes can never both believe they own a campaign.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dialer.store.models import CampaignLease


async def acquire(
    sessions: async_sessionmaker[AsyncSession],
    campaign_id: int,
    owner: str,
    now: dt.datetime,
    ttl: dt.timedelta,
) -> bool:
    """Take or renew the lease; True when `owner` holds it until `now + ttl`."""
    async with sessions.begin() as s:
        result = await s.execute(
            update(CampaignLease)
            .where(
                CampaignLease.campaign_id == campaign_id,
                or_(CampaignLease.owner == owner, CampaignLease.expires_at <= now),
            )
            .values(owner=owner, expires_at=now + ttl, updated_at=now)
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            return True
    try:
        async with sessions.begin() as s:
            s.add(
                CampaignLease(
                    campaign_id=campaign_id, owner=owner, expires_at=now + ttl, updated_at=now
                )
            )
        return True
    except IntegrityError:
        return False  # someone else holds a live lease


async def release(sessions: async_sessionmaker[AsyncSession], campaign_id: int, owner: str) -> None:
    async with sessions.begin() as s:
        await s.execute(
            delete(CampaignLease).where(
                CampaignLease.campaign_id == campaign_id, CampaignLease.owner == owner
            )
        )


async def owner_of(
    sessions: async_sessionmaker[AsyncSession], campaign_id: int, now: dt.datetime
) -> str | None:
    async with sessions() as s:
        row = (
            await s.execute(
                select(CampaignLease.owner).where(
                    CampaignLease.campaign_id == campaign_id, CampaignLease.expires_at > now
                )
            )
        ).scalar_one_or_none()
    return row


async def save_decision(
    sessions: async_sessionmaker[AsyncSession],
    campaign_id: int,
    owner: str,
    decision: dict[str, Any],
    now: dt.datetime,
) -> None:
    """Keep the latest pacing decision where the API of any process can read it."""
    async with sessions.begin() as s:
        await s.execute(
            update(CampaignLease)
            .where(CampaignLease.campaign_id == campaign_id, CampaignLease.owner == owner)
            .values(last_decision=decision, updated_at=now)
        )
