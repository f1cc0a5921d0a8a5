"""Issue 6's acceptance run: a predictive campaign of 200 accounts on the real Asterisk and
Postgres, through `build_app` with 5 websocket agents on nailed-up channels, checked against
Asterisk's view.

Bridge faults are injected along the way (issue 15): at every `HANG_UP_EVERY`th connect the
debtor hangs up just before the engine's Redirect leaves, and at every `REFUSE_EVERY`th Asterisk
refuses the Redirect. Every attempt's outcome and flags must still agree with Asterisk's events.

The run is done once (module fixture); each test checks one property of it.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from dialer.app import build_app
from dialer.runtime import RUNTIME
from dialer.settings import Settings
from dialer.store.db import make_engine, make_sessionmaker
from dialer.store.models import CallAttempt, CampaignAccount, Disposition
from tests.e2e.campaign_harness import (
    AsteriskCall,
    Desk,
    asterisk_view,
    expected_outcomes,
    hang_up_agent_phones,
    numbers_for,
    open_desks,
    seed_campaign,
)
from tests.e2e.test_bridge_faults import _debtor_hangs_up, _redirect_refused
from tests.e2e.test_telephony_outcomes import settings as ami_settings
from tests.fixtures.asterisk import AsteriskAmi, connect
from tests.fixtures.postgres import PgServer, _migrated

pytestmark = [pytest.mark.asterisk, pytest.mark.postgres]

# 200 numbers: mostly quick outcomes, people (bridged or safe harbor), machines found by AMD,
# and a few that ring the full 25 s unanswered.
MIX = {
    "555300": 40,  # busy
    "555500": 25,  # congestion
    "555800": 25,  # unallocated
    "555601": 25,  # answers, silent, hangs up after 1 s (during AMD): hung_up_early
    "555202": 25,  # answering machine after 2 s of ringing
    "555101": 45,  # a person answers after 1 s and stays on the line
    "555704": 10,  # a person answers after 1 s and hangs up 4 s later
    "555400": 5,  # rings, never answered
}
AGENTS = 5
TALK_S = 1.5
# Leave warm-up sooner than the default (60 attempts, 15 live, 8 handles) so that most of the
# 200 calls are paced by the predictive rule, not its progressive warm-up.
PACING = {"warmup_attempts": 20, "warmup_live": 5, "warmup_handles": 4}
HANG_UP_EVERY = 9  # the debtor hangs up while the agent is being connected
REFUSE_EVERY = 13  # Asterisk refuses the Redirect to the agent


@dataclass
class Run:
    numbers: list[str]
    attempts: list[CallAttempt]
    dispositions: list[Disposition]
    members: list[CampaignAccount]
    desks: list[Desk]
    asterisk: dict[int, AsteriskCall]
    seconds: float
    faults: dict[int, str]  # attempt id -> "debtor_hung_up" | "connect_refused"


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def run(pg_server: PgServer, asterisk_ami: AsteriskAmi) -> AsyncIterator[Run]:
    url = await _migrated(await pg_server.create_database())
    db: AsyncEngine = make_engine(url)
    sessions = make_sessionmaker(db)
    numbers = numbers_for(MIX)
    assert len(numbers) == 200
    campaign_id, logins = await seed_campaign(
        sessions, numbers, agents=AGENTS, dial_mode="predictive", pacing=PACING
    )
    listener = await connect(asterisk_ami)
    settings = Settings(ami_servers=(ami_settings(asterisk_ami),), process_name="e2e-200")
    app = await build_app(settings, db)
    client = TestClient(TestServer(app))
    await client.start_server()
    desks: list[Desk] = []
    readers: list[asyncio.Task[None]] = []
    started = time.monotonic()
    modes: Counter[str] = Counter()
    faults: dict[int, str] = {}
    pool = app[RUNTIME].pool
    original = pool.connect_agent
    connects = itertools.count(1)

    async def connect_with_faults(attempt_id: int, agent: str) -> None:
        n = next(connects)
        if n % HANG_UP_EVERY == 0 and attempt_id not in faults:
            faults[attempt_id] = "debtor_hung_up"
            await _debtor_hangs_up(pool, listener, attempt_id, int(agent))
        elif n % REFUSE_EVERY == 0 and attempt_id not in faults:
            faults[attempt_id] = "connect_refused"
            await _redirect_refused(pool, listener, attempt_id, int(agent))
            return
        await original(attempt_id, agent)

    pool.connect_agent = connect_with_faults  # type: ignore[method-assign]
    try:
        await pool.wait_connected(15)
        desks, readers = await open_desks(client, logins, campaign_id, TALK_S)
        async with asyncio.timeout(240):
            while True:
                async with sessions() as s:
                    rows = list((await s.execute(select(CallAttempt))).scalars())
                if len(rows) >= len(numbers) and all(r.ended_at for r in rows):
                    break
                engine = app[RUNTIME].engine
                decision = engine.runs[campaign_id].decision if engine and engine.runs else None
                if decision is not None:
                    modes[decision.mode_in_force] += 1
                await asyncio.sleep(0.5)
        # A few more ticks: nothing may be dialed again (retries are scheduled in the future).
        await asyncio.sleep(2.0)
        # Let the agents finish their last dispositions.
        async with asyncio.timeout(20):
            while any(d._tasks for d in desks):
                await asyncio.sleep(0.2)
        seconds = time.monotonic() - started
        print(f"\npacing modes sampled every 0.5 s: {dict(modes)}")
    finally:
        for desk in desks:
            await desk.close()
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        await client.close()
        await hang_up_agent_phones(listener)
    await asyncio.sleep(1.0)  # the last Hangup events
    async with sessions() as s:
        attempts = list((await s.execute(select(CallAttempt).order_by(CallAttempt.id))).scalars())
        dispositions = list((await s.execute(select(Disposition))).scalars())
        members = list((await s.execute(select(CampaignAccount))).scalars())
    view = asterisk_view(listener)
    listener.manager.close()
    await db.dispose()
    try:
        yield Run(numbers, attempts, dispositions, members, desks, view, seconds, faults)
    finally:
        await pg_server.drop_database(url)


def test_every_account_is_attempted_exactly_once(run: Run) -> None:
    per_account = Counter(a.account_id for a in run.attempts)
    assert len(per_account) == 200 and set(per_account.values()) == {1}
    assert all(a.ended_at is not None and a.originated_at is not None for a in run.attempts)
    print(f"\n200 accounts dialed and closed in {run.seconds:.1f} s")


def test_every_attempt_ends_in_the_outcome_its_number_dictates(run: Run) -> None:
    faulted = {"debtor_hung_up": {"hung_up_early"}, "connect_refused": {"abandoned"}}
    wrong = [
        (a.id, a.number, a.outcome)
        for a in run.attempts
        if a.outcome
        not in (faulted[run.faults[a.id]] if a.id in run.faults else expected_outcomes(a.number))
    ]
    assert wrong == [], "\n".join(
        f"attempt {i} ({number}) -> {outcome}; Asterisk saw:\n  "
        + "\n  ".join(run.asterisk[i].trace)
        for i, number, outcome in wrong
    )
    print("\noutcomes:", dict(Counter(str(a.outcome) for a in run.attempts)))


def test_every_account_is_scheduled_again_only_in_the_future(run: Run) -> None:
    # The retry rules put each account out of reach for minutes at least (busy 15 min, ...), or
    # take it out of the campaign (an invalid number, a right-party contact).
    ended = {a.account_id: a.ended_at for a in run.attempts if a.ended_at is not None}
    for member in run.members:
        assert member.attempts == 1
        if member.next_attempt_at is not None:
            gap = member.next_attempt_at - ended[member.account_id]
            assert gap.total_seconds() >= 60, (member.account_id, member.state, gap)


def test_asterisk_saw_exactly_one_originate_per_attempt_and_nothing_else(run: Run) -> None:
    ids = {a.id for a in run.attempts}
    assert set(run.asterisk) == ids
    assert {i: len(c.linkedids) for i, c in run.asterisk.items() if len(c.linkedids) != 1} == {}
    assert {i: c.open_channels for i, c in run.asterisk.items() if c.open_channels} == {}


def test_no_phone_is_dialed_twice_at_once(run: Run) -> None:
    spans: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for a in run.attempts:
        call = run.asterisk[a.id]
        spans[a.phone_id].append((call.first_ts, call.last_hangup_ts))
    for phone, intervals in spans.items():
        intervals.sort()
        for (_, end), (start, _) in itertools.pairwise(intervals):
            assert start >= end, f"phone {phone} dialed twice at once"
    assert len(spans) == 200
    # Nor any number (the claim skips a number another account is being called on).
    by_number: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for a in run.attempts:
        call = run.asterisk[a.id]
        by_number[a.number] += [(call.first_ts, 1), (call.last_hangup_ts, -1)]
    peak = {}
    for number, marks in by_number.items():
        level = top = 0
        for _, step in sorted(marks):  # at a tie an end (-1) sorts before a start (+1)
            level += step
            top = max(top, level)
        peak[number] = top
    assert {n: p for n, p in peak.items() if p > 1} == {}, "a number rang twice at once"


def test_every_human_answer_is_bridged_to_an_agent_or_gets_the_safe_harbor(run: Run) -> None:
    humans = [
        a
        for a in run.attempts
        if a.number.startswith(("5551", "5557")) and run.faults.get(a.id) != "debtor_hung_up"
    ]
    pops = {attempt: d.agent_id for d in run.desks for attempt in d.pops}
    bridged = abandoned = 0
    for a in humans:
        call = run.asterisk[a.id]
        assert a.answered_at is not None, a.id
        if a.outcome == "human":
            bridged += 1
            assert a.bridged_at is not None and a.agent_id is not None and not a.abandoned
            assert call.agent_bridge_ts is not None, f"{a.id}: Asterisk never bridged it"
            assert call.first("DialerSafeHarbor") is None, f"{a.id}: bridged and abandoned"
            assert pops.get(a.id) == a.agent_id, f"{a.id}: screen pop went elsewhere"
        else:
            abandoned += 1
            assert a.outcome == "abandoned" and a.abandoned and a.bridged_at is None
            assert call.agent_bridge_ts is None, f"{a.id}: Asterisk bridged an abandoned call"
            assert call.first("DialerSafeHarbor") is not None, f"{a.id}: no safe harbor"
    # Nobody else was bridged or abandoned.
    assert all(a.bridged_at is None and not a.abandoned for a in run.attempts if a not in humans)
    assert len([f for f in run.faults.values() if f == "debtor_hung_up"]) >= 2
    assert [i for i, c in run.asterisk.items() if c.agent_bridge_ts and i not in pops] == []
    print(f"\nhumans: {bridged} bridged, {abandoned} abandoned (safe harbor)")


def test_every_bridged_call_gets_its_disposition(run: Run) -> None:
    bridged = {a.id for a in run.attempts if a.bridged_at is not None}
    assert bridged
    assert {d.attempt_id for d in run.dispositions} == bridged
    assert sorted(i for d in run.desks for i in d.disposed) == sorted(bridged)
    assert [e for d in run.desks for e in d.errors if e.get("code") != "invalid_state"] == []


def test_the_database_agrees_with_asterisk_on_what_each_call_did(run: Run) -> None:
    for a in run.attempts:
        call = run.asterisk[a.id]
        amd = call.first("DialerAmd")
        dial = call.first("DialerDialResult")
        if a.outcome == "machine":
            assert amd is not None and amd["AmdStatus"] == "MACHINE", a.id
        if a.outcome in ("busy", "congestion", "no_answer", "invalid_number"):
            assert dial is not None, a.id
            assert call.first("DialerAwaitingAgent") is None, a.id
        if a.outcome in ("human", "abandoned"):
            assert call.first("DialerAwaitingAgent") is not None, a.id


def asterisk_verdict(call: AsteriskCall, limit_s: float = 2.0) -> tuple[str | None, bool, bool]:
    """The oracle, from Asterisk's own events only (the abandon rule's text: a person not
    connected to an agent within the limit is abandoned; the safe-harbor message marks it):
    (outcome for answered people or None, bridged, abandoned)."""
    bridged = call.agent_bridge_ts is not None
    harbor = call.first("DialerSafeHarbor") is not None
    connect_failed = call.first("DialerConnectFailed") is not None
    awaiting = call.first("DialerAwaitingAgent")
    if bridged:
        return "human", True, False
    if harbor or connect_failed:
        return "abandoned", False, True
    if awaiting is not None:
        waited = call.last_hangup_ts - float(awaiting["Timestamp"])
        if waited >= limit_s:
            return "abandoned", False, True
        return "hung_up_early", False, False
    return None, False, False


def test_every_attempts_outcome_and_flags_agree_with_asterisks_events(run: Run) -> None:
    disagree = []
    for a in run.attempts:
        outcome, bridged, abandoned = asterisk_verdict(run.asterisk[a.id])
        got = (a.bridged_at is not None, a.abandoned)
        if got != (bridged, abandoned) or (outcome is not None and a.outcome != outcome):
            disagree.append((a.id, a.number, a.outcome, got, (outcome, bridged, abandoned)))
    assert disagree == [], "\n".join(
        f"attempt {i} ({n}): db {o} {g}, Asterisk {w}:\n  " + "\n  ".join(run.asterisk[i].trace)
        for i, n, o, g, w in disagree
    )
    assert [a.id for a in run.attempts if a.bridged_at is not None and a.abandoned] == []
    assert run.faults, "faults were injected"
    print(f"\nbridge faults injected: {dict(Counter(run.faults.values()))}")
