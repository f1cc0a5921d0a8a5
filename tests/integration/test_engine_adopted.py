"""Calls adopted after a restart end with what Asterisk reports, not `lost`: the engine asks
telephony to follow them, and closes one as lost only when it vanished without a word."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from dialer.engine.ports import CallEvent, CallEventKind, OpenCall, TelephonyUnavailable
from dialer.store.claim import claim_phones
from dialer.store.db import make_sessionmaker
from dialer.store.models import CallAttempt
from pacing.snapshot import AgentState
from tests.integration.test_engine import Hub, Telephony, _campaign, _engine

pytestmark = pytest.mark.postgres


async def _left_open(db: AsyncEngine, campaign_id: int) -> int:
    """An attempt a killed process left open (its call still ringing in Asterisk)."""
    async with make_sessionmaker(db).begin() as s:
        claimed = await claim_phones(s, campaign_id, 1, dt.datetime.now(dt.UTC))
        return claimed.claimed[0].attempt_id


async def _outcome(db: AsyncEngine, attempt_id: int) -> str | None:
    async with make_sessionmaker(db)() as s:
        row = await s.get(CallAttempt, attempt_id)
    assert row is not None
    return row.outcome


async def test_an_adopted_call_is_closed_with_its_real_outcome(engine: AsyncEngine) -> None:
    cid = await _campaign(engine, accounts=1)
    attempt_id = await _left_open(engine, cid)
    tel = Telephony(live={attempt_id})
    eng = _engine(engine, tel, Hub())
    assert await eng.reconcile(cid) == 0
    assert eng.calls[attempt_id].adopted and tel.followed == [attempt_id]
    now = dt.datetime.now(dt.UTC)
    await eng.on_event(
        CallEvent(attempt_id, CallEventKind.ENDED, now, outcome="no_answer", hangup_cause=19)
    )
    assert await _outcome(engine, attempt_id) == "no_answer"


async def test_an_adopted_bridged_call_ends_with_telephonys_verdict(engine: AsyncEngine) -> None:
    cid = await _campaign(engine, accounts=1)
    attempt_id = await _left_open(engine, cid)
    tel, hub = Telephony(live={attempt_id}), Hub()
    hub.add_ready(3, 0.0)
    eng = _engine(engine, tel, hub)
    await eng.reconcile(cid)
    now = dt.datetime.now(dt.UTC)
    await eng.on_event(CallEvent(attempt_id, CallEventKind.BRIDGED, now, agent="3"))
    await eng.on_event(
        CallEvent(attempt_id, CallEventKind.ENDED, now, outcome="human", bridged=True)
    )
    async with make_sessionmaker(engine)() as s:
        row = await s.get(CallAttempt, attempt_id)
    assert row is not None and row.outcome == "human" and row.bridged_at is not None
    assert row.agent_id == 3 and not row.abandoned
    assert hub.agents[3][0] is AgentState.WRAP_UP, "the agent who had it goes to wrap-up"


async def test_nothing_is_closed_while_asterisk_cannot_be_asked(engine: AsyncEngine) -> None:
    cid = await _campaign(engine, accounts=1)
    attempt_id = await _left_open(engine, cid)

    class Down(Telephony):
        async def adopt(self, calls: Sequence[OpenCall]) -> set[int]:
            raise TelephonyUnavailable("AMI not connected to pbx1")

    eng = _engine(engine, Down(), Hub())
    with pytest.raises(TelephonyUnavailable):
        await eng.reconcile(cid)
    assert await _outcome(engine, attempt_id) is None, "not lost: Asterisk was not asked"
