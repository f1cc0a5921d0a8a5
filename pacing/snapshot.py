"""Snapshot types: what the live engine and the simulator tell a dial policy at one tick.

Agents and calls in flight are held as numpy arrays so a policy reads them without per-object work.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int8]


class AgentState(IntEnum):
    READY = 0
    RESERVED = 1  # picked by the router, bridge not yet up: busy, about to talk
    TALKING = 2
    WRAP_UP = 3
    PAUSED = 4
    OFFLINE = 5


class CallStage(IntEnum):
    DIALING = 0
    RINGING = 1
    ANSWERED_WAITING = 2  # a live answer waiting for an agent (the 2-second clock runs)


class Outcome(StrEnum):
    CONNECTED = "connected"
    ABANDONED = "abandoned"
    MACHINE = "machine"
    NO_ANSWER = "no-answer"


@dataclass(frozen=True, slots=True)
class AgentView:
    state: AgentState
    seconds_in_state: float


@dataclass(frozen=True, slots=True)
class CallView:
    stage: CallStage
    seconds_since_dial: float


@dataclass(frozen=True, slots=True)
class Attempt:
    """One resolved attempt. `seconds_to_outcome` runs from the dial to the live answer as the
    dialer saw it (after AMD, if any) or to the end of a call that was not answered live."""

    seq: int
    ended_at: float
    outcome: Outcome
    seconds_to_outcome: float

    @property
    def live(self) -> bool:
        return self.outcome in (Outcome.CONNECTED, Outcome.ABANDONED)


@dataclass(frozen=True, slots=True)
class Handle:
    """One call an agent finished: talk and wrap-up durations, reported after the disposition."""

    seq: int
    ended_at: float
    talk_s: float
    wrap_s: float


def _empty_float() -> FloatArray:
    return np.zeros(0, dtype=np.float64)


def _empty_int() -> IntArray:
    return np.zeros(0, dtype=np.int8)


@dataclass(slots=True)
class Snapshot:
    """Everything a policy may look at. `attempts` and `handles` are recent history in increasing
    `seq`; a policy remembers the last `seq` it consumed, so the owner may keep a bounded deque.
    `window_abandoned`/`window_connected` are the counts over the regulatory window (floats: under
    the UK rule the estimated AMD false positives are added as a fraction)."""

    now: float
    agent_states: IntArray = field(default_factory=_empty_int)
    agent_seconds: FloatArray = field(default_factory=_empty_float)
    call_stages: IntArray = field(default_factory=_empty_int)
    call_seconds: FloatArray = field(default_factory=_empty_float)
    attempts: Sequence[Attempt] = ()
    handles: Sequence[Handle] = ()
    window_abandoned: float = 0.0
    window_connected: float = 0.0
    trunk_free: int | None = None
    window_estimated: float = 0.0  # the estimated part of window_abandoned (AMD false positives)
    _agent_counts: list[int] | None = field(default=None, repr=False, compare=False)
    _call_counts: list[int] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def build(
        cls,
        now: float,
        agents: Iterable[AgentView] = (),
        calls: Iterable[CallView] = (),
        attempts: Sequence[Attempt] = (),
        handles: Sequence[Handle] = (),
        window_abandoned: float = 0.0,
        window_connected: float = 0.0,
        trunk_free: int | None = None,
        window_estimated: float = 0.0,
    ) -> Snapshot:
        """Build from per-object views (what the live engine holds)."""
        agent_list = list(agents)
        call_list = list(calls)
        return cls(
            now=now,
            agent_states=np.array([int(a.state) for a in agent_list], dtype=np.int8),
            agent_seconds=np.array([a.seconds_in_state for a in agent_list], dtype=np.float64),
            call_stages=np.array([int(c.stage) for c in call_list], dtype=np.int8),
            call_seconds=np.array([c.seconds_since_dial for c in call_list], dtype=np.float64),
            attempts=attempts,
            handles=handles,
            window_abandoned=window_abandoned,
            window_connected=window_connected,
            trunk_free=trunk_free,
            window_estimated=window_estimated,
        )

    def agent_counts(self) -> list[int]:
        """Agents per state, indexed by AgentState (computed once per snapshot)."""
        if self._agent_counts is None:
            self._agent_counts = np.bincount(self.agent_states, minlength=6).tolist()
        return self._agent_counts

    def call_counts(self) -> list[int]:
        """Calls per stage, indexed by CallStage."""
        if self._call_counts is None:
            self._call_counts = np.bincount(self.call_stages, minlength=3).tolist()
        return self._call_counts

    def count(self, state: AgentState) -> int:
        return self.agent_counts()[state]

    @property
    def ready(self) -> int:
        return self.agent_counts()[0]

    @property
    def busy(self) -> int:
        """Reserved, talking or in wrap-up."""
        c = self.agent_counts()
        return c[1] + c[2] + c[3]

    @property
    def active_agents(self) -> int:
        """Logged-in agents who are not paused: the team the dialer works for."""
        c = self.agent_counts()
        return c[0] + c[1] + c[2] + c[3]

    @property
    def calls_pending(self) -> int:
        """Calls dialed and not yet resolved (dialing or ringing)."""
        c = self.call_counts()
        return c[0] + c[1]

    @property
    def calls_waiting(self) -> int:
        return self.call_counts()[2]

    @property
    def window_abandon_rate(self) -> float:
        total = self.window_abandoned + self.window_connected
        return self.window_abandoned / total if total > 0 else 0.0
