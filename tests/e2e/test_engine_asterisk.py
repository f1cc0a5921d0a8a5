"""The engine over the real Asterisk sandbox and a real database: a small campaign whose numbers
map to testbed outcomes runs to the end, each attempt gets the outcome its number dictates, the
live answer reaches the agent's nailed-up channel, /metrics agrees with the database, and
Asterisk is left with no call of ours.

The agents' hub is a small stand-in driving one real nailed-up agent session in Asterisk.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from dialer.app import build_app
from dialer.engine.engine import Engine
from dialer.engine.pool_telephony import PoolTelephony
from dialer.engine.ports import ReadyAgent
from dialer.settings import Settings
from dialer.store.db import make_sessionmaker
from dialer.store.models import Account, Agent, CallAttempt, Campaign, CampaignAccount, Phone
from dialer.telephony.calls import attempt_of
from dialer.telephony.pool import ServerPool
from pacing.snapshot import AgentState, AgentView
from tests.e2e.test_telephony_outcomes import agent_session, settings
from tests.fixtures.asterisk import AmiClient, AsteriskAmi

pytestmark = [pytest.mark.asterisk, pytest.mark.postgres]

# number -> the outcome the engine must record for it (asterisk_conf/testbed numbering plan).
NUMBERS = {
    "555102": "human",  # a person answers after 1 s; AMD says HUMAN; bridged to the agent
    "555204": "machine",  # a long recorded greeting; AMD says MACHINE
    "555300": "busy",
    "555500": "congestion",
    "555800": "invalid_number",
}


def midday_zone(now: dt.datetime) -> str:
    """A fixed-offset zone where it is about noon now, so the calling window is open whenever
    the test runs (Etc/GMT-N is UTC+N)."""
    offset = (12 - now.hour + 12) % 24 - 12
    return f"Etc/GMT{-offset:+d}" if offset else "Etc/GMT"


async def scrape(
    client: TestClient[web.Request, web.Application], campaign: int
) -> dict[str, float]:
    """The campaign's counters from GET /metrics, keyed `name` or `name:outcome`."""
    response = await client.get("/metrics")
    assert response.status == 200
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(await response.text()):
        for sample in family.samples:
            if sample.labels.get("campaign") != str(campaign) or not sample.name.endswith("_total"):
                continue
            key = sample.name
            if "outcome" in sample.labels:
                key += ":" + sample.labels["outcome"]
            values[key] = values.get(key, 0.0) + sample.value
    return values


@dataclass
class OneAgentHub:
    """One agent: ready until a call is bridged, talks for `talk_s`, then is ready again."""

    agent_id: int
    engine: Engine | None = None
    pool: ServerPool | None = None
    talk_s: float = 1.5
    state: AgentState = AgentState.READY
    connected_calls: list[int] = field(default_factory=list)

    def views(self, campaign_id: int) -> list[AgentView]:
        return [AgentView(self.state, 1.0)]

    def longest_waiting(self, campaign_id: int, prefer: int | None = None) -> ReadyAgent | None:
        if self.state is not AgentState.READY:
            return None
        return ReadyAgent(self.agent_id, f"agent-{self.agent_id}")

    async def reserve(self, agent_id: int, attempt_id: int) -> bool:
        if self.state is not AgentState.READY:
            return False
        self.state = AgentState.RESERVED
        return True

    async def connected(self, agent_id: int, attempt_id: int) -> None:
        self.state = AgentState.TALKING
        self.connected_calls.append(attempt_id)
        asyncio.get_running_loop().call_later(
            self.talk_s, lambda: asyncio.ensure_future(self._hang_up(attempt_id))
        )

    async def _hang_up(self, attempt_id: int) -> None:
        assert self.pool is not None
        await self.pool.hang_up(attempt_id)

    async def unreserve(self, agent_id: int, reason: str = "not_connected") -> None:
        self.state = AgentState.READY

    async def call_ended(self, agent_id: int, attempt_id: int) -> None:
        self.state = AgentState.READY
        if self.engine is not None:
            self.engine.agent_ready(0)


@pytest_asyncio.fixture(loop_scope="session")
async def pool(asterisk_ami: AsteriskAmi) -> AsyncIterator[ServerPool]:
    p = ServerPool.from_settings([settings(asterisk_ami)])
    await p.start()
    await p.wait_connected(15)
    try:
        yield p
    finally:
        await p.close()


async def test_a_campaign_runs_to_the_end_with_the_outcome_each_number_dictates(
    pg_engine: AsyncEngine, pool: ServerPool, ami: AmiClient
) -> None:
    agent_key, _agent_channel = await agent_session(ami)
    agent_id = int(agent_key)
    sessions = make_sessionmaker(pg_engine)
    zone = midday_zone(dt.datetime.now(dt.UTC))
    async with sessions.begin() as s:
        campaign = Campaign(
            name="e2e",
            dial_mode="progressive",
            state="running",
            amd_enabled=True,
            abandon_limit_s=2.0,
            # Mexico's profile: 07:00-22:00 every day, in the debtor's zone (midday, see above).
            compliance_profile="MX",
        )
        s.add_all([campaign, Agent(id=agent_id, login="e2e", name="E2E", password_hash="-")])
        await s.flush()
        for i, number in enumerate(NUMBERS):
            account = Account(
                external_ref=f"E2E-{i}", name="x", balance=Decimal("1.00"), time_zone=zone
            )
            account.phones = [Phone(number=number)]
            s.add(account)
            await s.flush()
            s.add(CampaignAccount(campaign_id=campaign.id, account_id=account.id))
        campaign_id = campaign.id

    app = await build_app(Settings(), pg_engine)
    scraper = TestClient(TestServer(app))
    await scraper.start_server()
    before = await scrape(scraper, campaign_id)

    hub = OneAgentHub(agent_id, pool=pool)
    telephony = PoolTelephony(pool)
    engine = Engine(sessions, telephony, hub, owner="e2e", tick_hz=4)
    hub.engine = engine
    runner = asyncio.create_task(engine.run())
    pump = asyncio.create_task(telephony.pump(engine.on_event))

    async def finished() -> list[CallAttempt]:
        async with sessions() as s:
            return list((await s.execute(select(CallAttempt))).scalars())

    try:
        async with asyncio.timeout(90):
            while True:
                rows = await finished()
                if len(rows) == len(NUMBERS) and all(r.ended_at is not None for r in rows):
                    break
                await asyncio.sleep(0.25)
    finally:
        engine.stop()
        await runner
        pump.cancel()
        await asyncio.gather(pump, return_exceptions=True)

    got = {r.number: r for r in rows}
    assert {n: got[n].outcome for n in NUMBERS} == NUMBERS
    human = got["555102"]
    assert human.agent_id == agent_id and human.bridged_at is not None and not human.abandoned
    assert human.answered_at is not None and human.bridged_at - human.answered_at < dt.timedelta(
        seconds=2
    )
    assert got["555204"].amd_result == "MACHINE"
    assert hub.connected_calls == [human.id]
    assert all(r.server == "pbx1" and r.originated_at is not None for r in rows)
    # /metrics, scraped over HTTP from the service, agrees with what the database recorded.
    after = await scrape(scraper, campaign_id)
    await scraper.close()
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    assert delta.get("dialer_calls_originated_total", 0.0) == sum(
        1 for r in rows if r.originated_at
    )
    assert delta.get("dialer_calls_connected_to_agent_total", 0.0) == sum(
        1 for r in rows if r.bridged_at
    )
    assert delta.get("dialer_calls_abandoned_total", 0.0) == sum(1 for r in rows if r.abandoned)
    for outcome in set(NUMBERS.values()):
        assert delta.get(f"dialer_call_outcomes_total:{outcome}", 0.0) == sum(
            1 for r in rows if r.outcome == outcome
        ), outcome
    # Asterisk's own view: no channel of any attempt is left.
    channels = await pool.servers[0].connection.send_list({"Action": "CoreShowChannels"})
    leftovers = {attempt_of(str(c.get("Linkedid", ""))) for c in channels} - {None}
    assert leftovers == set()
