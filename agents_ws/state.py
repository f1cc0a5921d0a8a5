"""The agent state machine: which states exist, which moves are legal, and the wrap-up rule.

Pure: no sockets, no clock of its own. Callers pass `now` (monotonic seconds) into every move.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class AgentState(enum.StrEnum):
    OFFLINE = "offline"
    LOGGED_IN = "logged_in"  # connected and the nailed-up channel is up
    READY = "ready"
    PAUSED = "paused"
    RESERVED = "reserved"  # chosen for a call (or holding a preview account), not yet talking
    TALKING = "talking"
    WRAP_UP = "wrap_up"


class WrapUpExpiry(enum.StrEnum):
    """What happens when a campaign's wrap-up limit passes without a disposition."""

    AUTO_READY = "auto_ready"  # the agent goes ready; the call keeps no disposition
    AUTO_DISPOSE = "auto_dispose"  # the system records WRAP_UP_EXPIRED_CODE, then ready


WRAP_UP_EXPIRED_CODE = "WRAPUP_EXPIRED"

S = AgentState
# Offline is reachable from every state (logout, channel lost); it is added below.
_ALLOWED: dict[AgentState, frozenset[AgentState]] = {
    S.OFFLINE: frozenset({S.LOGGED_IN}),
    S.LOGGED_IN: frozenset({S.READY, S.PAUSED}),
    S.READY: frozenset({S.PAUSED, S.RESERVED}),
    S.PAUSED: frozenset({S.READY}),
    # -> wrap-up: a dialed preview that was never answered (the agent still dispositions it).
    S.RESERVED: frozenset({S.TALKING, S.READY, S.WRAP_UP}),
    S.TALKING: frozenset({S.WRAP_UP}),
    S.WRAP_UP: frozenset({S.READY, S.PAUSED}),
}


class IllegalTransition(Exception):
    def __init__(self, current: AgentState, target: AgentState) -> None:
        super().__init__(f"cannot go from {current.value} to {target.value}")
        self.current = current
        self.target = target


def can_move(current: AgentState, target: AgentState) -> bool:
    return target == S.OFFLINE or target in _ALLOWED[current]


@dataclass(slots=True)
class StateMachine:
    """One agent's state, since when (monotonic seconds), why, and the wrap-up deadline."""

    state: AgentState = S.OFFLINE
    since: float = 0.0
    reason: str | None = None
    wrap_up_deadline: float | None = None

    def move(
        self,
        target: AgentState,
        now: float,
        reason: str | None = None,
        wrap_up_limit_s: float | None = None,
    ) -> AgentState:
        """Move to `target` or raise IllegalTransition; returns the previous state."""
        if not can_move(self.state, target):
            raise IllegalTransition(self.state, target)
        previous = self.state
        self.state = target
        self.since = now
        self.reason = reason
        self.wrap_up_deadline = (
            now + wrap_up_limit_s if target == S.WRAP_UP and wrap_up_limit_s is not None else None
        )
        return previous

    def time_in_state(self, now: float) -> float:
        return max(0.0, now - self.since)

    def wrap_up_expired(self, now: float) -> bool:
        return (
            self.state == S.WRAP_UP
            and self.wrap_up_deadline is not None
            and now >= self.wrap_up_deadline
        )
