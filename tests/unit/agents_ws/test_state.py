"""The agent state machine: legal moves, timers, wrap-up expiry; the connection rate limiter."""

from __future__ import annotations

import pytest

from agents_ws.server import RateLimiter
from agents_ws.state import AgentState as S
from agents_ws.state import IllegalTransition, StateMachine, can_move


def test_full_call_cycle_is_legal() -> None:
    sm = StateMachine()
    for step, target in enumerate(
        [S.LOGGED_IN, S.READY, S.PAUSED, S.READY, S.RESERVED, S.TALKING, S.WRAP_UP, S.READY]
    ):
        sm.move(target, float(step))
    assert sm.state == S.READY


def test_offline_agent_cannot_go_ready_before_the_channel_is_up() -> None:
    with pytest.raises(IllegalTransition):
        StateMachine().move(S.READY, 0.0)


def test_paused_agent_cannot_be_reserved() -> None:
    assert not can_move(S.PAUSED, S.RESERVED)


def test_talking_agent_cannot_go_ready_without_wrap_up() -> None:
    assert not can_move(S.TALKING, S.READY)


def test_every_state_can_go_offline() -> None:
    assert all(can_move(state, S.OFFLINE) for state in S)


def test_time_in_state_counts_from_the_last_move() -> None:
    sm = StateMachine()
    sm.move(S.LOGGED_IN, 10.0)
    assert sm.time_in_state(12.5) == 2.5


def test_wrap_up_expires_at_the_campaign_limit() -> None:
    sm = StateMachine(state=S.TALKING)
    sm.move(S.WRAP_UP, 100.0, wrap_up_limit_s=30)
    assert (sm.wrap_up_expired(129.9), sm.wrap_up_expired(130.0)) == (False, True)


def test_leaving_wrap_up_clears_the_deadline() -> None:
    sm = StateMachine(state=S.TALKING)
    sm.move(S.WRAP_UP, 0.0, wrap_up_limit_s=1)
    sm.move(S.READY, 0.5)
    assert not sm.wrap_up_expired(5.0)


def test_rate_limiter_allows_the_burst_then_refuses() -> None:
    limiter = RateLimiter(rate=10, burst=3, now=0.0)
    assert [limiter.allow(0.0) for _ in range(4)] == [True, True, True, False]


def test_rate_limiter_refills_over_time() -> None:
    limiter = RateLimiter(rate=10, burst=1, now=0.0)
    limiter.allow(0.0)
    assert limiter.allow(0.1)
