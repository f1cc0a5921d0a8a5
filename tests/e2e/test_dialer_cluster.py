"""Two `dialer serve` processes on one Postgres and one real Asterisk, the agents connected only
to the process that does NOT own the campaign: the owner reserves them through the other process
(dialer/cluster.py), bridges the answered calls into their nailed-up channels, the screen pop
reaches them over their own process's websocket, and their dispositions land.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from dialer.store.db import make_engine, make_sessionmaker
from dialer.store.models import CallAttempt, CampaignLease, Disposition
from tests.e2e.campaign_harness import asterisk_view, hang_up_agent_phones, seed_campaign
from tests.e2e.test_dialer_restart import Serve, connect_agents, drop_agents
from tests.fixtures.asterisk import AsteriskAmi, connect
from tests.fixtures.postgres import PgServer, _migrated

pytestmark = [pytest.mark.asterisk, pytest.mark.postgres]
# People who answer after 1-3 s (5551NN stay on the line; 5557NN hang up NN s after answering,
# later than the agent does). Distinct numbers: the same number rings once a minute at most.
NUMBERS = ["555101", "555102", "555103", *(f"5557{n:02d}" for n in range(4, 13))]
ACCOUNTS = len(NUMBERS)
AGENTS = 2


def percentile(values: list[float], q: float) -> float:
    ranked = sorted(values)
    return ranked[max(0, min(len(ranked) - 1, round(q / 100 * len(ranked) + 0.5) - 1))]


async def test_a_campaign_reaches_agents_connected_only_to_another_process(
    pg_server: PgServer, asterisk_ami: AsteriskAmi, tmp_path: Path
) -> None:
    url = await _migrated(await pg_server.create_database())
    db = make_engine(url)
    sessions = make_sessionmaker(db)
    campaign_id, logins = await seed_campaign(
        sessions, NUMBERS, agents=AGENTS, dial_mode="progressive", name="cluster"
    )

    async def attempts() -> list[CallAttempt]:
        async with sessions() as s:
            return list((await s.execute(select(CallAttempt))).scalars())

    listener = await connect(asterisk_ami)
    a = Serve("dialer-a", url, asterisk_ami, tmp_path, server_name="pbx-a")
    b: Serve | None = None
    agents = None
    try:
        await a.wait_up()
        async with asyncio.timeout(15):
            while True:
                async with sessions() as s:
                    lease = await s.get(CampaignLease, campaign_id)
                if lease is not None and lease.owner == "dialer-a":
                    break
                await asyncio.sleep(0.2)
        b = Serve("dialer-b", url, asterisk_ami, tmp_path, server_name="pbx-b")
        await b.wait_up()
        agents = await connect_agents(b, logins, campaign_id)
        desks = agents[1]
        async with asyncio.timeout(120):
            while True:
                rows = await attempts()
                if len(rows) >= ACCOUNTS and all(r.ended_at for r in rows):
                    break
                await asyncio.sleep(0.5)
        async with asyncio.timeout(20):  # the last dispositions
            while sum(len(d.disposed) for d in desks) < sum(len(d.pops) for d in desks):
                await asyncio.sleep(0.2)
        rows = await attempts()
        async with sessions() as s:
            lease = await s.get(CampaignLease, campaign_id)
            dispositions = list((await s.execute(select(Disposition))).scalars())
    finally:
        if agents is not None:
            await drop_agents(*agents)
        a.stop()
        if b is not None:
            b.stop()
        await hang_up_agent_phones(listener)
        await db.dispose()
    await asyncio.sleep(1.0)  # the last Hangup events
    view = asterisk_view(listener)
    listener.manager.close()
    await pg_server.drop_database(url)

    # A owned the campaign and placed every call.
    assert lease is not None and lease.owner == "dialer-a"
    assert Counter(r.server for r in rows) == Counter({"pbx-a": ACCOUNTS})
    # Every person was bridged to one of B's agents, in Asterisk as in the database, and the
    # screen pop went to that agent over B's websocket.
    pops = {attempt: d.agent_id for d in desks for attempt in d.pops}
    assert {d.agent_id for d in desks} == {r.agent_id for r in rows if r.agent_id is not None}
    human = [r for r in rows if r.outcome == "human"]
    assert len(human) >= ACCOUNTS - 1, Counter(r.outcome for r in rows)
    for r in human:
        assert r.bridged_at is not None and r.agent_id is not None, r.id
        assert view[r.id].agent_bridge_ts is not None, f"{r.id}: Asterisk never bridged it"
        assert pops.get(r.id) == r.agent_id, f"{r.id}: screen pop went elsewhere"
    # Their dispositions landed.
    assert {d.attempt_id for d in dispositions} == {r.id for r in human}
    assert [e for d in desks for e in d.errors if e.get("code") != "invalid_state"] == []
    # Answer (the dialplan hands the call over) to bridge, across the two processes.
    latency = []
    for r in human:
        awaiting = view[r.id].first("DialerAwaitingAgent")
        bridged = view[r.id].agent_bridge_ts
        if awaiting is not None and bridged is not None:
            latency.append((bridged - float(awaiting["Timestamp"])) * 1000)
    assert latency
    print(
        f"\nanswer -> bridge across processes: p50 {percentile(latency, 50):.0f} ms, "
        f"p99 {percentile(latency, 99):.0f} ms over {len(latency)} calls; "
        f"outcomes {dict(Counter(r.outcome for r in rows))}"
    )
