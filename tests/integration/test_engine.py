"""The engine against a real database: pacing, claim and originate; routing within the 2 s rule;
safe harbor and abandon accounting, pause within a tick, and reconciliation after a crash.

Telephony and the agents' hub are recording doubles here; tests/e2e runs the same engine over real
Asterisk.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from dialer.compliance.claiming import ClaimOptions
from dialer.engine.engine import Engine
from dialer.engine.ports import (
    CallEvent,
    CallEventKind,
    EndedCall,
    OpenCall,
    OriginateRequest,
    ReadyAgent,
)
from dialer.store import leases
from dialer.store.claim import claim_phones, first_dialable_phone
from dialer.store.db import make_sessionmaker
from dialer.store.models import Account, Agent, CallAttempt, Campaign, CampaignAccount, Phone
from pacing.snapshot import AgentState, AgentView

pytestmark = pytest.mark.postgres


@dataclass
class Telephony:
    originated: list[OriginateRequest] = field(default_factory=list)
    commands: list[tuple[str, int, float]] = field(default_factory=list)
    live: set[int] = field(default_factory=set)
    followed: list[int] = field(default_factory=list)
    records: dict[int, EndedCall] = field(default_factory=dict)  # Asterisk's records of ended calls
    # Stands for Asterisk: a Redirect into the agent's bridge is followed by its BridgeEnter.
    engine: Engine | None = None
    bridges: bool = True
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def originate(self, request: OriginateRequest) -> str:
        self.originated.append(request)
        return "pbx1"

    async def bridge(self, attempt_id: int, agent: ReadyAgent) -> None:
        self.commands.append(
            ("bridge:" + agent.channel, attempt_id, asyncio.get_running_loop().time())
        )
        if self.engine is not None and self.bridges:
            event = CallEvent(
                attempt_id,
                CallEventKind.BRIDGED,
                dt.datetime.now(dt.UTC),
                agent=str(agent.agent_id),
            )
            task = asyncio.create_task(self.engine.on_event(event))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def safe_harbor(self, attempt_id: int) -> None:
        self.commands.append(("safe_harbor", attempt_id, asyncio.get_running_loop().time()))

    async def machine(self, attempt_id: int, action: str) -> None:
        self.commands.append(("machine:" + action, attempt_id, 0.0))

    async def hangup(self, attempt_id: int) -> None:
        self.commands.append(("hangup", attempt_id, 0.0))

    async def start_recording(self, attempt_id: int) -> str | None:
        self.commands.append(("record", attempt_id, 0.0))
        return f"dialer/{attempt_id}.wav"

    def free_channels(self) -> int | None:
        return None

    async def adopt(self, calls: Sequence[OpenCall]) -> set[int]:
        self.followed.extend(c.attempt_id for c in calls)
        return {c.attempt_id for c in calls if c.attempt_id in self.live}

    async def ended(self, calls: Sequence[OpenCall]) -> dict[int, EndedCall]:
        return {
            c.attempt_id: self.records[c.attempt_id] for c in calls if c.attempt_id in self.records
        }


@dataclass
class Hub:
    """Agents: id -> [state, since]; `ready_order` decides who waited longest."""

    agents: dict[int, list[object]] = field(default_factory=dict)
    popped: list[tuple[int, int]] = field(default_factory=list)
    released: list[tuple[int, str]] = field(default_factory=list)

    def add_ready(self, agent_id: int, since: float) -> None:
        self.agents[agent_id] = [AgentState.READY, since]

    def views(self, campaign_id: int) -> list[AgentView]:
        return [AgentView(s, 1.0) for s, _ in self.agents.values()]  # type: ignore[arg-type]

    def longest_waiting(self, campaign_id: int, prefer: int | None = None) -> ReadyAgent | None:
        ready = [(since, aid) for aid, (s, since) in self.agents.items() if s is AgentState.READY]
        if not ready:
            return None
        if prefer is not None and any(aid == prefer for _, aid in ready):
            return ReadyAgent(prefer, f"Local/agent{prefer}@nailed")
        _, aid = min(ready)  # type: ignore[type-var]
        return ReadyAgent(aid, f"Local/agent{aid}@nailed")

    async def reserve(self, agent_id: int, attempt_id: int) -> bool:
        if self.agents[agent_id][0] is not AgentState.READY:
            return False
        self.agents[agent_id][0] = AgentState.RESERVED
        return True

    async def connected(self, agent_id: int, attempt_id: int) -> None:
        self.agents[agent_id][0] = AgentState.TALKING
        self.popped.append((agent_id, attempt_id))

    async def unreserve(self, agent_id: int, reason: str = "not_connected") -> None:
        self.agents[agent_id][0] = AgentState.READY
        self.released.append((agent_id, reason))

    async def call_ended(self, agent_id: int, attempt_id: int) -> None:
        self.agents[agent_id][0] = AgentState.WRAP_UP


async def _campaign(
    engine: AsyncEngine, accounts: int, mode: str = "progressive", state: str = "running"
) -> int:
    async with make_sessionmaker(engine).begin() as s:
        c = Campaign(name=f"engine-{mode}", dial_mode=mode, state=state, abandon_limit_s=2.0)
        s.add(c)
        s.add_all(
            Agent(id=i, login=f"agent{i}", name=f"Agent {i}", password_hash="-")
            for i in range(1, 10)
        )
        await s.flush()
        for i in range(accounts):
            a = Account(external_ref=f"E{i}", name="x", balance=Decimal("10.00"))
            a.phones = [Phone(number=f"+1202555{i:04d}")]
            s.add(a)
            await s.flush()
            s.add(CampaignAccount(campaign_id=c.id, account_id=a.id))
        return c.id


def _any_hour(_campaign: object) -> ClaimOptions:
    # These tests are about the engine's mechanics, at whatever hour they run; compliance at claim
    # time is covered by tests/unit/compliance and by the e2e campaign.
    return ClaimOptions(first_dialable_phone, ("priority",), lambda _a, _p: None)


def _engine(db: AsyncEngine, tel: Telephony, hub: Hub) -> Engine:
    eng = Engine(make_sessionmaker(db), tel, hub, owner="test", tick_hz=20, options_for=_any_hour)
    tel.engine = eng
    return eng


async def _run_until(engine: Engine, predicate: object, timeout: float = 5.0) -> None:
    task = asyncio.create_task(engine.run())
    try:
        async with asyncio.timeout(timeout):
            while not predicate():  # type: ignore[operator]
                await asyncio.sleep(0.02)
    finally:
        engine.stop()
        await task


async def _answer(engine: Engine, attempt_id: int) -> None:
    now = dt.datetime.now(dt.UTC)
    await engine.on_event(
        CallEvent(attempt_id, CallEventKind.ORIGINATED, now, server="pbx1", uniqueid="u1")
    )
    await engine.on_event(CallEvent(attempt_id, CallEventKind.ANSWERED, now, amd_result="HUMAN"))


async def test_progressive_launches_one_call_per_ready_agent(engine: AsyncEngine) -> None:
    cid = await _campaign(engine, accounts=10)
    tel, hub = Telephony(), Hub()
    hub.add_ready(1, 0.0)
    hub.add_ready(2, 1.0)
    eng = _engine(engine, tel, hub)
    rows: list[CallAttempt] = []

    async def all_stamped() -> bool:
        async with make_sessionmaker(engine)() as s:
            rows[:] = (await s.execute(select(CallAttempt))).scalars()
        return len(rows) >= 2 and all(r.originated_at is not None for r in rows)

    task = asyncio.create_task(eng.run())
    try:
        async with asyncio.timeout(5):
            while not await all_stamped():
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
    finally:
        eng.stop()
        await task
    assert len(tel.originated) == 2, "no more calls than ready agents while both are in flight"
    await all_stamped()
    assert {r.id for r in rows} == {o.attempt_id for o in tel.originated}
    assert all(r.server == "pbx1" and r.originated_at is not None for r in rows)
    assert all(o.campaign_id == cid for o in tel.originated)


async def test_a_paused_campaign_launches_nothing_and_the_decision_is_saved(
    engine: AsyncEngine,
) -> None:
    cid = await _campaign(engine, accounts=5, state="paused")
    tel, hub = Telephony(), Hub()
    hub.add_ready(1, 0.0)
    eng = _engine(engine, tel, hub)
    await _run_until(eng, lambda: cid in eng.runs, timeout=3)
    task = asyncio.create_task(eng.run())
    await asyncio.sleep(0.5)
    assert tel.originated == []
    async with make_sessionmaker(engine).begin() as s:
        await s.execute(update(Campaign).where(Campaign.id == cid).values(state="running"))
    async with asyncio.timeout(3):
        while not tel.originated:
            await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)
    eng.stop()
    await task
    async with make_sessionmaker(engine)() as s:
        from dialer.store.models import CampaignLease

        saved = [
            lease.last_decision for lease in (await s.execute(select(CampaignLease))).scalars()
        ]
    assert len(tel.originated) == 1
    assert saved and saved[0]["mode_in_force"] == "progressive" and saved[0]["owner"] == "test"


async def test_an_answer_goes_to_the_agent_who_waited_longest_with_the_screen_pop(
    engine: AsyncEngine,
) -> None:
    cid = await _campaign(engine, accounts=1)
    tel, hub = Telephony(), Hub()
    eng = _engine(engine, tel, hub)
    await leases.acquire(eng.sessions, cid, "test", dt.datetime.now(dt.UTC), eng.lease_ttl)
    hub.add_ready(7, 5.0)
    hub.add_ready(3, 1.0)  # waited longer
    await _run_until(eng, lambda: len(tel.originated) == 1)
    attempt_id = tel.originated[0].attempt_id
    task = asyncio.create_task(eng.run())
    await _answer(eng, attempt_id)
    async with asyncio.timeout(2):
        while not hub.popped:
            await asyncio.sleep(0.01)
    eng.stop()
    await task
    assert hub.popped == [(3, attempt_id)]
    assert [c[0] for c in tel.commands] == ["bridge:Local/agent3@nailed"]
    async with make_sessionmaker(engine)() as s:
        row = await s.get(CallAttempt, attempt_id)
    assert (
        row is not None
        and row.agent_id == 3
        and row.bridged_at is not None
        and row.answered_at is not None
    )


async def test_no_agent_within_the_limit_plays_the_safe_harbor_and_counts_an_abandon(
    engine: AsyncEngine,
) -> None:
    cid = await _campaign(engine, accounts=1, mode="power")
    tel, hub = Telephony(), Hub()
    hub.add_ready(1, 0.0)
    eng = _engine(engine, tel, hub)
    await _run_until(eng, lambda: len(tel.originated) >= 1)
    attempt_id = tel.originated[0].attempt_id
    hub.agents[1][0] = AgentState.TALKING  # the only agent is busy when the debtor answers
    task = asyncio.create_task(eng.run())
    loop = asyncio.get_running_loop()
    answered = loop.time()
    await _answer(eng, attempt_id)
    async with asyncio.timeout(3):
        while not tel.commands:
            await asyncio.sleep(0.01)
    kind, _, at = tel.commands[0]
    assert kind == "safe_harbor"
    assert 1.0 < at - answered < 2.0, (
        "safe harbor starts inside the 2-second limit, not before trying"
    )
    # Telephony's verdict: the safe harbor played (DialerSafeHarbor), so abandoned.
    await eng.on_event(CallEvent(attempt_id, CallEventKind.ABANDONED, dt.datetime.now(dt.UTC)))
    await eng.on_event(
        CallEvent(
            attempt_id,
            CallEventKind.ENDED,
            dt.datetime.now(dt.UTC),
            outcome="abandoned",
            hangup_cause=16,
            abandoned=True,
        )
    )
    eng.stop()
    await task
    async with make_sessionmaker(engine)() as s:
        row = await s.get(CallAttempt, attempt_id)
    assert (
        row is not None and row.abandoned and row.outcome == "abandoned" and row.bridged_at is None
    )
    assert cid not in eng.runs or eng.runs[cid].window_abandoned >= 1


async def test_an_agent_freed_within_the_limit_takes_the_waiting_call(engine: AsyncEngine) -> None:
    await _campaign(engine, accounts=1, mode="power")
    tel, hub = Telephony(), Hub()
    hub.add_ready(1, 0.0)
    eng = _engine(engine, tel, hub)
    await _run_until(eng, lambda: len(tel.originated) >= 1)
    attempt_id = tel.originated[0].attempt_id
    hub.agents[1][0] = AgentState.WRAP_UP
    task = asyncio.create_task(eng.run())
    await _answer(eng, attempt_id)
    await asyncio.sleep(0.8)
    hub.agents[1][0] = AgentState.READY
    eng.agent_ready(tel.originated[0].campaign_id)
    async with asyncio.timeout(2):
        while not hub.popped:
            await asyncio.sleep(0.01)
    eng.stop()
    await task
    assert [c[0] for c in tel.commands] == ["bridge:Local/agent1@nailed"]


async def test_after_a_crash_open_attempts_are_reconciled_and_never_redialed(
    engine: AsyncEngine,
) -> None:
    cid = await _campaign(engine, accounts=4)
    sessions = make_sessionmaker(engine)
    now = dt.datetime.now(dt.UTC)
    async with sessions.begin() as s:  # what a killed process left behind: four open attempts
        claimed = (await claim_phones(s, cid, 4, now)).claimed
    live, harbored, busy, unknown = (c.attempt_id for c in claimed)
    tel, hub = Telephony(live={live}), Hub()
    # Asterisk's own records of the calls that ended while no process ran.
    tel.records = {
        harbored: EndedCall(harbored, "abandoned", abandoned=True),
        busy: EndedCall(busy, "busy", dial_status="BUSY", hangup_cause=17),
    }
    eng = _engine(engine, tel, hub)
    await _run_until(eng, lambda: cid in eng.runs and live in eng.calls, timeout=3)
    async with sessions() as s:
        rows = {r.id: r for r in (await s.execute(select(CallAttempt))).scalars()}
        members = {m.account_id: m for m in (await s.execute(select(CampaignAccount))).scalars()}
    assert rows[live].ended_at is None, "the call Asterisk still has stays open"
    assert (rows[harbored].outcome, rows[harbored].abandoned) == ("abandoned", True)
    assert rows[harbored].answered_at is not None, "counted in the abandon window"
    assert (rows[busy].outcome, rows[busy].dial_status) == ("busy", "BUSY")
    assert rows[unknown].outcome == "lost", "only what Asterisk has no record of is lost"
    rest = members[rows[unknown].account_id].next_attempt_at
    ended = rows[unknown].ended_at
    assert rest is not None and ended is not None
    if rest.tzinfo is None:
        rest, ended = rest.replace(tzinfo=dt.UTC), ended.replace(tzinfo=dt.UTC)
    assert rest - ended >= dt.timedelta(hours=72), "a lost call rests as long as an abandon"
    assert tel.originated == [], "reconciliation never dials"


@dataclass
class RacyHub(Hub):
    """`reserve` awaits before it reserves (as the real one awaits the screen pop): the first
    two reservations wait for each other, so two calls answered together have both picked the
    same agent and one of them loses the reservation."""

    asked: int = 0
    both: asyncio.Event = field(default_factory=asyncio.Event)

    async def reserve(self, agent_id: int, attempt_id: int) -> bool:
        self.asked += 1
        if self.asked == 2:
            self.both.set()
        elif self.asked < 2:
            await self.both.wait()
        return await super().reserve(agent_id, attempt_id)


class WaitCounter(asyncio.Event):
    waits = 0

    async def wait(self) -> Literal[True]:
        self.waits += 1
        return await super().wait()


async def test_a_router_that_loses_its_agent_takes_another_ready_one_without_waiting(
    engine: AsyncEngine,
) -> None:
    cid = await _campaign(engine, accounts=2)
    tel, hub = Telephony(), RacyHub()
    eng = _engine(engine, tel, hub)
    await leases.acquire(eng.sessions, cid, "test", dt.datetime.now(dt.UTC), eng.lease_ttl)
    hub.add_ready(1, 1.0)  # both calls' routers pick agent 1, who waited longest
    hub.add_ready(2, 2.0)
    await _run_until(eng, lambda: len(tel.originated) == 2)
    first, second = (r.attempt_id for r in tel.originated)
    task = asyncio.create_task(eng.run())
    async with asyncio.timeout(2):
        while cid not in eng.runs:
            await asyncio.sleep(0.01)
    counter = WaitCounter()
    eng.runs[cid].ready = counter
    await asyncio.gather(_answer(eng, first), _answer(eng, second))
    async with asyncio.timeout(2):
        while len(hub.popped) < 2:
            await asyncio.sleep(0.01)
    eng.stop()
    await task
    assert sorted(agent for agent, _ in hub.popped) == [1, 2]
    assert sorted(attempt for _, attempt in hub.popped) == sorted([first, second])
    # Agent 2 was ready all along: the loser of agent 1 never waited for an agent to free up.
    assert counter.waits == 0
