"""Preview dialing and callbacks in the engine, against a real database: the agent who holds a
preview account dials it and gets the call on the answer; a due callback's answer goes to its
owner first; a preview claim obeys the campaign's compliance.

Telephony and the agents' hub are the recording doubles of tests/integration/test_engine.py;
tests/e2e/test_serve_preview.py runs the same flow on real Asterisk with a real websocket agent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from agents_ws.engine_port import AgentIdentity, PortRefused
from dialer.agent_service import DbAgentPort
from dialer.domain.retry import next_local_midnight
from dialer.engine.engine import Engine, PreviewRefused
from dialer.engine.ports import CallEvent, CallEventKind, ReadyAgent
from dialer.store import leases
from dialer.store.claim import claim_phones
from dialer.store.db import make_sessionmaker
from dialer.store.models import (
    Account,
    CallAttempt,
    Callback,
    Campaign,
    CampaignAccount,
    Phone,
)
from pacing.snapshot import AgentState
from tests.e2e.campaign_harness import midday_zone
from tests.integration.test_engine import Hub, Telephony, _answer, _campaign, _engine, _run_until

pytestmark = pytest.mark.postgres


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _midnight_zone(now: dt.datetime) -> str:
    """A fixed-offset zone where it is about midnight now: every calling window is shut."""
    offset = (0 - now.hour + 12) % 24 - 12
    return f"Etc/GMT{-offset:+d}" if offset else "Etc/GMT"


async def _hold_preview(db: AsyncEngine, campaign_id: int, agent_id: int) -> int:
    """What `next_preview` leaves behind: an open attempt held by the agent."""
    async with make_sessionmaker(db).begin() as s:
        claimed = (await claim_phones(s, campaign_id, 1, _now(), caller_id="+15550001")).claimed
        row = await s.get(CallAttempt, claimed[0].attempt_id)
        assert row is not None
        row.agent_id = agent_id
        return claimed[0].attempt_id


async def _end(eng: Engine, attempt_id: int, outcome: str, cause: int = 16) -> None:
    tel = eng.telephony
    assert isinstance(tel, Telephony)
    await asyncio.gather(*tel._tasks)  # the BridgeEnter stand-in is handled first, as in order
    await eng.on_event(
        CallEvent(
            attempt_id,
            CallEventKind.ENDED,
            _now(),
            outcome=outcome,
            hangup_cause=cause,
            bridged=outcome == "human",
            abandoned=outcome == "abandoned",
        )
    )


async def _wait(predicate: object, timeout: float = 3.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.01)


async def test_a_dialed_preview_goes_to_the_agent_who_holds_it(engine: AsyncEngine) -> None:
    cid = await _campaign(engine, accounts=1, mode="preview")
    tel, hub = Telephony(), Hub()
    hub.agents[5] = [AgentState.RESERVED, 9.0]  # holds the preview (the hub reserved them)
    hub.add_ready(1, 0.0)  # waited longest, but the call is agent 5's
    eng = _engine(engine, tel, hub)
    attempt_id = await _hold_preview(engine, cid, 5)

    await eng.dial_preview(attempt_id, cid, ReadyAgent(5, "Local/agent5@nailed"), lambda: True)
    request = tel.originated[0]
    assert request.attempt_id == attempt_id and request.campaign_id == cid
    assert request.caller_id == "+15550001" and request.number == "+12025550000"
    assert request.amd is False, "the agent hears a machine themself"
    assert request.variables["DIALER_CAMPAIGN_ID"] == str(cid)
    await _answer(eng, attempt_id)
    await _wait(lambda: hub.popped)
    assert hub.popped == [(5, attempt_id)]
    assert [c[0] for c in tel.commands] == ["bridge:Local/agent5@nailed"]
    assert hub.agents[1][0] is AgentState.READY, "nobody else was reserved"
    await _end(eng, attempt_id, "human")
    async with make_sessionmaker(engine)() as s:
        row = await s.get(CallAttempt, attempt_id)
    assert row is not None and row.outcome == "human" and not row.abandoned
    assert row.agent_id == 5 and row.bridged_at is not None and row.server == "pbx1"
    assert hub.agents[5][0] is AgentState.WRAP_UP


async def test_a_busy_preview_ends_with_its_outcome_and_the_agent_wraps_up(
    engine: AsyncEngine,
) -> None:
    cid = await _campaign(engine, accounts=1, mode="preview")
    async with make_sessionmaker(engine).begin() as s:
        campaign = await s.get(Campaign, cid)
        assert campaign is not None
        campaign.retry_rules = {"busy": 600}
    tel, hub = Telephony(), Hub()
    hub.agents[5] = [AgentState.RESERVED, 9.0]
    eng = _engine(engine, tel, hub)
    attempt_id = await _hold_preview(engine, cid, 5)
    await eng.dial_preview(attempt_id, cid, ReadyAgent(5, "x"))
    with pytest.raises(PreviewRefused):
        await eng.dial_preview(attempt_id, cid, ReadyAgent(5, "x"))  # dialed once only
    started = _now()
    await _end(eng, attempt_id, "busy", 17)
    async with make_sessionmaker(engine)() as s:
        row = await s.get(CallAttempt, attempt_id)
        member = (await s.execute(select(CampaignAccount))).scalar_one()
    assert row is not None and row.outcome == "busy" and row.hangup_cause == 17
    assert member.next_attempt_at is not None
    # The campaign's own retry rule, although this process does not run the campaign.
    wait = member.next_attempt_at - started
    assert dt.timedelta(seconds=590) < wait < dt.timedelta(seconds=620), wait
    assert hub.agents[5][0] is AgentState.WRAP_UP, "the agent gets the call's end"
    assert len(tel.originated) == 1


async def test_a_preview_whose_agent_left_gets_the_safe_harbor(engine: AsyncEngine) -> None:
    cid = await _campaign(engine, accounts=1, mode="preview")
    tel, hub = Telephony(), Hub()
    hub.agents[5] = [AgentState.OFFLINE, 9.0]  # logged out while the preview rang
    eng = _engine(engine, tel, hub)
    attempt_id = await _hold_preview(engine, cid, 5)
    await eng.dial_preview(attempt_id, cid, ReadyAgent(5, "x"), held=lambda: False)
    await _answer(eng, attempt_id)
    await _wait(lambda: tel.commands)
    assert [c[0] for c in tel.commands] == ["safe_harbor"]
    await _end(eng, attempt_id, "abandoned")  # telephony's verdict: DialerSafeHarbor was seen
    async with make_sessionmaker(engine)() as s:
        row = await s.get(CallAttempt, attempt_id)
    assert row is not None and row.abandoned and row.outcome == "abandoned"


async def test_a_preview_of_another_agent_or_an_ended_attempt_is_refused(
    engine: AsyncEngine,
) -> None:
    cid = await _campaign(engine, accounts=1, mode="preview")
    tel, hub = Telephony(), Hub()
    eng = _engine(engine, tel, hub)
    attempt_id = await _hold_preview(engine, cid, 5)
    with pytest.raises(PreviewRefused, match="not held by this agent"):
        await eng.dial_preview(attempt_id, cid, ReadyAgent(6, "x"))
    assert tel.originated == [] and attempt_id not in eng.calls


async def test_a_preview_of_a_paused_campaign_is_not_dialed(engine: AsyncEngine) -> None:
    cid = await _campaign(engine, accounts=1, mode="preview")
    attempt_id = await _hold_preview(engine, cid, 5)
    async with make_sessionmaker(engine).begin() as s:
        campaign = await s.get(Campaign, cid)
        assert campaign is not None
        campaign.state = "paused"
    tel = Telephony()
    eng = _engine(engine, tel, Hub())
    with pytest.raises(PreviewRefused, match="paused"):
        await eng.dial_preview(attempt_id, cid, ReadyAgent(5, "x"))
    assert tel.originated == []


async def test_a_held_preview_account_is_claimed_by_nobody_else(engine: AsyncEngine) -> None:
    cid = await _campaign(engine, accounts=1, mode="preview")
    await _hold_preview(engine, cid, 5)
    sessions = make_sessionmaker(engine)
    async with sessions.begin() as s:
        other = Campaign(name="other", dial_mode="progressive", state="running")
        s.add(other)
        await s.flush()
        account_id = (await s.execute(select(Account.id))).scalar_one()
        s.add(CampaignAccount(campaign_id=other.id, account_id=account_id))
        other_id = other.id
    async with sessions.begin() as s:
        assert (await claim_phones(s, cid, 1, _now())).claimed == []
        assert (await claim_phones(s, other_id, 1, _now())).claimed == []


async def test_reconciliation_leaves_a_held_preview_alone(engine: AsyncEngine) -> None:
    cid = await _campaign(engine, accounts=1, mode="preview")
    attempt_id = await _hold_preview(engine, cid, 5)
    eng = _engine(engine, Telephony(), Hub())
    assert await eng.reconcile(cid) == 0
    async with make_sessionmaker(engine)() as s:
        row = await s.get(CallAttempt, attempt_id)
    assert row is not None and row.ended_at is None


async def _preview_campaign(db: AsyncEngine, zone: str) -> int:
    async with make_sessionmaker(db).begin() as s:
        campaign = Campaign(
            name="preview-window", dial_mode="preview", state="running", compliance_profile="MX"
        )
        account = Account(external_ref="W1", name="x", balance=Decimal("5.00"), time_zone=zone)
        account.phones = [Phone(number="+525512345678")]
        s.add_all([campaign, account])
        await s.flush()
        s.add(CampaignAccount(campaign_id=campaign.id, account_id=account.id))
        return campaign.id


async def test_a_preview_claim_outside_the_calling_window_is_refused(
    engine: AsyncEngine,
) -> None:
    cid = await _preview_campaign(engine, _midnight_zone(_now()))
    port = DbAgentPort(make_sessionmaker(engine))
    with pytest.raises(PortRefused, match="outside calling window") as refused:
        await port.next_preview(AgentIdentity(1, "a", "A", "agent"), cid)
    assert refused.value.code == "unavailable"
    async with make_sessionmaker(engine)() as s:
        assert (await s.execute(select(CallAttempt))).first() is None


async def test_a_preview_claim_inside_the_window_holds_the_account(engine: AsyncEngine) -> None:
    cid = await _preview_campaign(engine, midday_zone(_now()))
    sessions = make_sessionmaker(engine)
    async with sessions.begin() as s:
        from dialer.store.models import Agent

        s.add(Agent(id=1, login="a", name="A", password_hash="-"))
    port = DbAgentPort(sessions)
    found = await port.next_preview(AgentIdentity(1, "a", "A", "agent"), cid)
    assert found is not None
    offer, pop = found
    assert offer.preview and pop["attempt_id"] == offer.attempt_id
    async with sessions() as s:
        row = await s.get(CallAttempt, offer.attempt_id)
    assert row is not None and row.agent_id == 1 and row.ended_at is None


async def test_a_held_preview_is_checked_again_at_the_dial(engine: AsyncEngine) -> None:
    """Claimed at midday; by the dial the debtor's calling window has closed."""
    cid = await _preview_campaign(engine, midday_zone(_now()))
    sessions = make_sessionmaker(engine)
    async with sessions.begin() as s:
        from dialer.store.models import Agent

        s.add(Agent(id=1, login="a", name="A", password_hash="-"))
    found = await DbAgentPort(sessions).next_preview(AgentIdentity(1, "a", "A", "agent"), cid)
    assert found is not None and found[0].attempt_id is not None
    attempt_id = found[0].attempt_id
    tel = Telephony()
    eng = Engine(sessions, tel, Hub(), owner="test")  # the campaign's real compliance
    async with sessions.begin() as s:
        account = (await s.execute(select(Account))).scalar_one()
        account.time_zone = _midnight_zone(_now())
    with pytest.raises(PreviewRefused, match="outside calling window"):
        await eng.dial_preview(attempt_id, cid, ReadyAgent(1, "x"))
    assert tel.originated == []
    async with sessions.begin() as s:
        account = (await s.execute(select(Account))).scalar_one()
        account.time_zone = midday_zone(_now())
    await eng.dial_preview(attempt_id, cid, ReadyAgent(1, "x"))  # its own claim does not count
    assert [o.attempt_id for o in tel.originated] == [attempt_id]


# --- callbacks -------------------------------------------------------------------------------


async def _due_callback(db: AsyncEngine, campaign_id: int, owner: int) -> int:
    async with make_sessionmaker(db).begin() as s:
        account_id = (await s.execute(select(Account.id).order_by(Account.id))).scalars().first()
        assert account_id is not None
        cb = Callback(
            account_id=account_id,
            campaign_id=campaign_id,
            due_at=_now() - dt.timedelta(minutes=1),
            owner_agent_id=owner,
        )
        s.add(cb)
        await s.flush()
        return cb.id


async def _callback_status(db: AsyncEngine, cb_id: int) -> str:
    """The callback's status once the router finished recording the bridge."""
    status = ""
    for _ in range(100):
        async with make_sessionmaker(db)() as s:
            cb = await s.get(Callback, cb_id)
        assert cb is not None
        status = cb.status
        if status != "pending":
            break
        await asyncio.sleep(0.02)
    return status


async def _answered_callback(db: AsyncEngine, owner: int, hub: Hub) -> tuple[Engine, int, int]:
    cid = await _campaign(db, accounts=3)
    cb_id = await _due_callback(db, cid, owner)
    tel = Telephony()
    eng = _engine(db, tel, hub)
    await leases.acquire(eng.sessions, cid, "test", _now(), eng.lease_ttl)
    await _run_until(eng, lambda: len(tel.originated) >= 1)
    first = tel.originated[0].attempt_id
    assert eng.calls[first].owner == owner, "the due callback is claimed first, with its owner"
    return eng, first, cb_id


async def test_a_due_callback_goes_to_its_owner_though_another_waited_longer(
    engine: AsyncEngine,
) -> None:
    hub = Hub()
    hub.add_ready(3, 0.0)  # waited longest
    hub.add_ready(4, 5.0)  # the callback's owner
    eng, attempt_id, cb_id = await _answered_callback(engine, 4, hub)
    for aid in (3, 4):
        hub.agents[aid][0] = AgentState.READY  # progressive launched per ready agent
    await _answer(eng, attempt_id)
    await _wait(lambda: hub.popped)
    assert hub.popped == [(4, attempt_id)]
    assert await _callback_status(engine, cb_id) == "done", "honoured once connected"
    async with make_sessionmaker(engine)() as s:
        row = await s.get(CallAttempt, attempt_id)
    assert row is not None and row.agent_id == 4


async def test_a_due_callback_whose_owner_is_busy_goes_to_another_ready_agent(
    engine: AsyncEngine,
) -> None:
    hub = Hub()
    hub.add_ready(3, 0.0)
    hub.add_ready(4, 5.0)
    eng, attempt_id, cb_id = await _answered_callback(engine, 4, hub)
    hub.agents[3][0] = AgentState.READY
    hub.agents[4][0] = AgentState.TALKING  # the owner is on another call at the answer
    loop = asyncio.get_running_loop()
    answered = loop.time()
    await _answer(eng, attempt_id)
    await _wait(lambda: hub.popped)
    assert hub.popped == [(3, attempt_id)], "the debtor is not kept waiting for the owner"
    assert loop.time() - answered < 0.5
    assert await _callback_status(engine, cb_id) == "done"


@pytest.mark.parametrize(
    ("skipped", "expected"),
    [
        (600, lambda now, zone: now + dt.timedelta(seconds=600)),
        (None, lambda now, zone: now + dt.timedelta(minutes=30)),  # the default
        ("next_day", lambda now, zone: next_local_midnight(now, zone)),
    ],
    ids=["seconds", "default", "next_day"],
)
async def test_a_skipped_preview_rests_as_retry_rules_skipped_says(
    engine: AsyncEngine, skipped: object, expected: Callable[[dt.datetime, str], dt.datetime]
) -> None:
    """`retry_rules.skipped` takes what the API accepts for any outcome, "next_day" included."""
    zone = midday_zone(_now())
    cid = await _preview_campaign(engine, zone)
    sessions = make_sessionmaker(engine)
    async with sessions.begin() as s:
        from dialer.store.models import Agent

        s.add(Agent(id=1, login="a", name="A", password_hash="-"))
        campaign = await s.get(Campaign, cid)
        assert campaign is not None
        campaign.retry_rules = {} if skipped is None else {"skipped": skipped}
    port = DbAgentPort(sessions)
    agent = AgentIdentity(1, "a", "A", "agent")
    found = await port.next_preview(agent, cid)
    assert found is not None
    offer, _pop = found
    before = _now()
    await port.skip_preview(agent, offer)
    after = _now()
    async with sessions() as s:
        row = (await s.execute(select(CampaignAccount))).scalar_one()
        attempt = await s.get(CallAttempt, offer.attempt_id)
    assert attempt is not None and attempt.outcome == "skipped"
    due = row.next_attempt_at
    assert due is not None
    due = due if due.tzinfo else due.replace(tzinfo=dt.UTC)
    assert expected(before, zone) - dt.timedelta(seconds=1) <= due
    assert due <= expected(after, zone) + dt.timedelta(seconds=1)
