"""Two `dialer serve` processes on one Postgres and one real Asterisk: each running campaign dials
from exactly one of them (its lease), and killing the owner moves the campaign to the other within
the lease timeout, without dialing anything twice.

Which process placed a call: each process names the same Asterisk differently in
DIALER_AMI_SERVERS (pbx-a, pbx-b), and the engine stamps that name on the attempts it originates.
Each agent connects to one process only, the one that survives: the owner paces on them through
the cluster's presence (dialer/cluster.py; tests/e2e/test_dialer_cluster.py bridges calls to them).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections import Counter
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import select

from dialer.store.db import make_engine, make_sessionmaker
from dialer.store.models import CallAttempt, CampaignLease
from tests.e2e.campaign_harness import (
    Desk,
    asterisk_view,
    hang_up_agent_phones,
    seed_campaign,
)
from tests.e2e.test_dialer_restart import LEASE_S, Serve, connect_agents, drop_agents
from tests.fixtures.asterisk import AsteriskAmi, connect
from tests.fixtures.postgres import PgServer, _migrated

pytestmark = [pytest.mark.asterisk, pytest.mark.postgres]
# Answering machines after 2-11 s of ringing: AMD hangs up on them, no agent is ever needed, and
# each call lasts 4-13 s, so both campaigns are still dialing when the owner is killed. A number
# rings once at a time (the claim parks an account whose number is busy), so each campaign cycles
# over five numbers of its own.
NUMBERS = {
    "north": [f"5552{n:02d}" for n in range(2, 7)],
    "south": [f"5552{n:02d}" for n in range(7, 12)],
}
ACCOUNTS = 30


async def test_each_campaign_dials_from_its_lease_owner_and_fails_over_within_the_lease(
    pg_server: PgServer, asterisk_ami: AsteriskAmi, tmp_path: Path
) -> None:
    url = await _migrated(await pg_server.create_database())
    db = make_engine(url)
    sessions = make_sessionmaker(db)
    campaigns: dict[int, list[str]] = {}
    for name in ("north", "south"):
        cid, logins = await seed_campaign(
            sessions,
            [NUMBERS[name][i % len(NUMBERS[name])] for i in range(ACCOUNTS)],
            agents=2,
            dial_mode="progressive",
            name=name,
            login_prefix=f"{name}-agent",
        )
        campaigns[cid] = logins

    async def leases() -> dict[int, str]:
        async with sessions() as s:
            return {
                r.campaign_id: r.owner for r in (await s.execute(select(CampaignLease))).scalars()
            }

    async def attempts() -> list[CallAttempt]:
        async with sessions() as s:
            return list((await s.execute(select(CallAttempt))).scalars())

    listener = await connect(asterisk_ami)
    a = Serve("dialer-a", url, asterisk_ami, tmp_path, server_name="pbx-a")
    b: Serve | None = None
    connected: list[tuple[aiohttp.ClientSession, list[Desk], list[asyncio.Task[None]]]] = []
    try:
        await a.wait_up()
        async with asyncio.timeout(15):
            while set((await leases()).values()) != {"dialer-a"} or len(await leases()) != 2:
                await asyncio.sleep(0.2)
        b = Serve("dialer-b", url, asterisk_ami, tmp_path, server_name="pbx-b")
        await b.wait_up()
        for cid, logins in campaigns.items():
            connected.append(await connect_agents(b, logins, cid))
        # Both processes run, the ready agents are all on B: only the owner, A, dials.
        await asyncio.sleep(6.0)
        before = await attempts()
        assert await leases() == {cid: "dialer-a" for cid in campaigns}
        assert {r.campaign_id for r in before} == set(campaigns)
        assert Counter(r.server for r in before) == Counter({"pbx-a": len(before)})

        a.kill()
        killed = time.monotonic()
        killed_at = dt.datetime.now(dt.UTC)
        moved: dict[int, float] = {}
        async with asyncio.timeout(LEASE_S + 10):
            while len(moved) < len(campaigns):
                for cid, owner in (await leases()).items():
                    if owner == "dialer-b" and cid not in moved:
                        moved[cid] = time.monotonic() - killed
                await asyncio.sleep(0.1)
        # B dials on both campaigns.
        async with asyncio.timeout(30):
            while True:
                after = [r for r in await attempts() if r.server == "pbx-b"]
                if {r.campaign_id for r in after} == set(campaigns) and len(after) >= 6:
                    break
                await asyncio.sleep(0.3)
    finally:
        for session in connected:
            await drop_agents(*session)
        a.kill()
        if b is not None:
            b.stop()
        await hang_up_agent_phones(listener)
    # B stopped with calls in flight: they stay open in the database for the next owner to
    # reconcile, and end by themselves in Asterisk (~5 s).
    async with asyncio.timeout(30):
        while any(c.open_channels for c in asterisk_view(listener).values()):
            await asyncio.sleep(0.5)
    rows = await attempts()
    await db.dispose()
    view = asterisk_view(listener)
    listener.manager.close()
    await pg_server.drop_database(url)

    # The lease moved within its timeout (plus one adoption round of the survivor, <= 1 s).
    assert max(moved.values()) <= LEASE_S + 1.5, moved
    # Each campaign dialed from exactly one process at a time: A's calls all before the kill,
    # B's all after it.
    assert all(r.created_at < killed_at for r in rows if r.server == "pbx-a")
    assert all(r.created_at > killed_at for r in rows if r.server == "pbx-b")
    assert {r.server for r in rows} == {"pbx-a", "pbx-b"}
    # Nothing dialed twice: one attempt per account, one Originate (ChannelId) per attempt.
    assert set(Counter(r.account_id for r in rows).values()) == {1}
    assert {i: c.linkedids for i, c in view.items() if len(c.linkedids) != 1} == {}
    assert set(view) == {r.id for r in rows if r.originated_at is not None}
    print(
        f"\nlease moved after {', '.join(f'{s:.2f} s' for s in moved.values())} "
        f"(lease {LEASE_S} s); attempts by server: {dict(Counter(r.server for r in rows))}"
    )
