"""Discrete-event simulator of one campaign's shift (agents, debtors, trunks) on a virtual clock,
driving any Policy through the same snapshot interface the live engine uses."""

from __future__ import annotations

import heapq
import itertools
import math
from collections import OrderedDict, deque
from dataclasses import dataclass, field

import numpy as np

from pacing.abandon import AbandonWindow
from pacing.decision import JsonValue, Policy
from pacing.scenario import Distribution, Scenario
from pacing.snapshot import AgentState, Attempt, Handle, Outcome, Snapshot

_TICK, _LIVE, _END, _PATIENCE, _TALK_END, _WRAP_END = 0, 1, 2, 3, 4, 5
_LOGIN, _BREAK_START, _BREAK_END, _LOGOUT = 6, 7, 8, 9
_HUMAN, _MACHINE = 0, 1
_READY = int(AgentState.READY)
_TALKING = int(AgentState.TALKING)
_WRAP = int(AgentState.WRAP_UP)
_PAUSED = int(AgentState.PAUSED)
_OFFLINE = int(AgentState.OFFLINE)


class _Draws:
    """Buffered draws: one numpy call per block instead of one per sample."""

    def __init__(self, dist: Distribution | None, rng: np.random.Generator, block: int = 4096):
        self._dist = dist
        self._rng = rng
        self._block = block
        self._buf: list[float] = []
        self._i = 0

    def next(self) -> float:
        if self._i >= len(self._buf):
            arr = (
                self._dist.sample(self._rng, self._block)
                if self._dist is not None
                else self._rng.random(self._block)
            )
            self._buf = arr.tolist()
            self._i = 0
        x = self._buf[self._i]
        self._i += 1
        return x


@dataclass(slots=True)
class SimResult:
    """Shift totals and the KPIs of the pacing benchmark (definitions in DOMAIN.md)."""

    policy: str
    scenario: str
    agents: int
    seed: int
    dials: int = 0
    connected: int = 0  # live humans connected to an agent
    abandoned: int = 0  # live humans not connected within the patience, plus AMD false positives
    amd_false_positives: int = 0
    machines_to_agents: int = 0
    talk_s: float = 0.0
    wrap_s: float = 0.0
    ready_s: float = 0.0
    logged_in_s: float = 0.0  # logged in and not paused
    hourly_abandoned: list[int] = field(default_factory=list)
    hourly_connected: list[int] = field(default_factory=list)
    decisions: int = 0
    modes: dict[str, int] = field(default_factory=dict)
    trace: list[dict[str, JsonValue | dict[str, list[float]]]] = field(default_factory=list)

    @property
    def occupancy(self) -> float:
        return (self.talk_s + self.wrap_s) / self.logged_in_s if self.logged_in_s else 0.0

    @property
    def abandon_rate(self) -> float:
        total = self.abandoned + self.connected
        return self.abandoned / total if total else 0.0

    @property
    def worst_hour_abandon_rate(self) -> float:
        rates = [
            a / (a + c)
            for a, c in zip(self.hourly_abandoned, self.hourly_connected, strict=True)
            if a + c
        ]
        return max(rates, default=0.0)

    def metrics(self) -> dict[str, float]:
        hours = float(self.logged_in_s) / 3600.0 if self.logged_in_s else 1.0
        return {
            "occupancy": round(float(self.occupancy), 5),
            "abandon_rate": round(self.abandon_rate, 5),
            "worst_hour_abandon_rate": round(self.worst_hour_abandon_rate, 5),
            "talk_minutes_per_agent_hour": round(float(self.talk_s) / 60.0 / hours, 3),
            # Time an agent waits, ready, per call connected to it.
            "mean_wait_s": round(
                float(self.ready_s) / max(self.connected + self.machines_to_agents, 1), 3
            ),
            "dials_per_agent_hour": round(self.dials / hours, 3),
        }

    def to_dict(self) -> dict[str, object]:
        return {
            "scenario": self.scenario,
            "policy": self.policy,
            "agents": self.agents,
            "seed": self.seed,
            **self.metrics(),
            "dials": self.dials,
            "connected": self.connected,
            "abandoned": self.abandoned,
            "amd_false_positives": self.amd_false_positives,
            "decisions": self.decisions,
            "modes": dict(self.modes),
        }


class Simulation:
    """One shift. Build, then `run()`; every random draw comes from `seed`."""

    def __init__(
        self, scenario: Scenario, policy: Policy, seed: int = 1, trace_every_s: float = 0.0
    ) -> None:
        self.sc = sc = scenario
        self.policy = policy
        rng = np.random.default_rng(seed)
        self._u = _Draws(None, rng)
        self._answer = _Draws(sc.answer_time, rng)
        self._no_answer = _Draws(sc.no_answer_time, rng)
        self._talk = _Draws(sc.talk_time, rng)
        self._wrap = _Draws(sc.wrap_time, rng)
        self._machine_talk = _Draws(sc.machine_talk_time, rng)
        n = sc.agents
        self.state = np.full(n, _OFFLINE, dtype=np.int8)
        self._counts = [0, 0, 0, 0, 0, n]  # agents per state, kept in step with `state`
        self.since = np.zeros(n)
        self._talk_len = [0.0] * n
        self._call_kind = [_HUMAN] * n
        self._break_due = [0.0] * n  # pending break length, taken after the current call
        self._logout_due = [False] * n
        self._ready: OrderedDict[int, None] = OrderedDict()  # longest-waiting first
        self._pending: dict[int, float] = {}  # call id -> dial time
        self._kind: dict[int, int] = {}
        self._waiting: OrderedDict[int, float] = OrderedDict()  # call id -> dial time
        self._live_at: dict[int, float] = {}
        self._talking_calls = 0
        self._events: list[tuple[float, int, int, int]] = []
        self._seq = itertools.count()
        self._attempt_seq = itertools.count()
        self._handle_seq = itertools.count()
        self.attempts: deque[Attempt] = deque(maxlen=4096)
        self.handles: deque[Handle] = deque(maxlen=4096)
        self.window = AbandonWindow(sc.abandon_rule)
        hours = math.ceil(sc.shift_s / 3600.0)
        self.result = SimResult(
            policy.name,
            sc.name,
            n,
            seed,
            hourly_abandoned=[0] * hours,
            hourly_connected=[0] * hours,
        )
        minutes = math.ceil(sc.shift_s / 60.0) + 1
        self._contact = [sc.contact_rate(m / 60.0) for m in range(minutes)]
        share = sc.machine_share
        self._machine_factor = share / (1.0 - share) if share > 0 else 0.0
        self._amd = share > 0
        fp = sc.amd_human_false_positive
        # UK rule: each human passed to the agents implies fp / (1 - fp) humans lost to AMD.
        self._fp_estimate = fp / (1.0 - fp) if self._amd else 0.0
        self._trace_every = trace_every_s
        self._next_trace = 0.0
        self._dirty = True
        self._last_decision = -math.inf

    def _push(self, t: float, kind: int, ident: int) -> None:
        heapq.heappush(self._events, (t, next(self._seq), kind, ident))

    # -- agents -------------------------------------------------------------------------------

    def _leave_state(self, agent: int, now: float) -> None:
        """Account the time spent in the state the agent is leaving."""
        st = self.state[agent]
        spent = now - self.since[agent]
        r = self.result
        if st == _READY:
            r.ready_s += spent
            r.logged_in_s += spent
        elif st == _TALKING:
            r.talk_s += spent
            r.logged_in_s += spent
        elif st == _WRAP:
            r.wrap_s += spent
            r.logged_in_s += spent

    def _set(self, agent: int, st: int, now: float) -> None:
        self._leave_state(agent, now)
        self._counts[self.state[agent]] -= 1
        self._counts[st] += 1
        self.state[agent] = st
        self.since[agent] = now

    def _agent_free(self, agent: int, now: float) -> None:
        """The agent is done with a call, back from a break, or just logged in."""
        if self._logout_due[agent]:
            self._set(agent, _OFFLINE, now)
            return
        if self._break_due[agent] > 0:
            self._set(agent, _PAUSED, now)
            self._push(now + self._break_due[agent], _BREAK_END, agent)
            self._break_due[agent] = 0.0
            return
        while self._waiting:
            call, _ = self._waiting.popitem(last=False)
            self._connect(agent, call, now)
            return
        self._set(agent, _READY, now)
        self._ready[agent] = None

    def _connect(self, agent: int, call: int, now: float) -> None:
        kind = self._kind.pop(call)
        live_at = self._live_at.pop(call)
        self._set(agent, _TALKING, now)
        self._talking_calls += 1
        r = self.result
        if kind == _HUMAN:
            talk = self._talk.next()
            r.connected += 1
            hour = min(int(live_at // 3600.0), len(r.hourly_connected) - 1)
            r.hourly_connected[hour] += 1
            self.window.record(now, connected=1.0)
        else:
            talk = self._machine_talk.next()
            r.machines_to_agents += 1
        self._talk_len[agent] = talk
        self._call_kind[agent] = kind
        self._push(now + talk, _TALK_END, agent)

    # -- calls --------------------------------------------------------------------------------

    def _launch(self, now: float) -> None:
        sc = self.sc
        call = next(self._seq)
        self.result.dials += 1
        self._pending[call] = now
        c = self._contact[min(int(now // 60.0), len(self._contact) - 1)]
        u = self._u.next()
        if u < c:
            kind = _HUMAN
        elif u < c + c * self._machine_factor:
            kind = _MACHINE
        else:
            end = min(self._no_answer.next(), sc.ring_timeout_s)
            self._kind[call] = -1
            self._push(now + end, _END, call)
            return
        answer = self._answer.next()
        if answer >= sc.ring_timeout_s:
            self._kind[call] = -1
            self._push(now + sc.ring_timeout_s, _END, call)
            return
        if self._amd:
            answer += sc.amd_delay_s
            miss = self._u.next()
            if kind == _HUMAN and miss < sc.amd_human_false_positive:
                # A human hung up on as a machine: abandoned under the UK rule.
                self._kind[call] = -2
                self._push(now + answer, _END, call)
                return
            if kind == _MACHINE and miss < sc.amd_machine_accuracy:
                self._kind[call] = -3
                self._push(now + answer, _END, call)
                return
        self._kind[call] = kind
        self._push(now + answer, _LIVE, call)

    def _record_attempt(self, now: float, outcome: Outcome, seconds: float) -> None:
        self.attempts.append(Attempt(next(self._attempt_seq), now, outcome, seconds))

    def _on_live(self, call: int, now: float) -> None:
        dialed = self._pending.pop(call)
        self._live_at[call] = now
        if self._fp_estimate:
            self.window.record(now, abandoned=self._fp_estimate, estimated=self._fp_estimate)
        if self._ready:
            agent, _ = self._ready.popitem(last=False)
            self._record_attempt(now, Outcome.CONNECTED, now - dialed)
            self._connect(agent, call, now)
        else:
            self._waiting[call] = dialed
            self._push(now + self.sc.patience_s, _PATIENCE, call)

    def _on_patience(self, call: int, now: float) -> None:
        dialed = self._waiting.pop(call, None)
        if dialed is None:
            return  # connected in time
        kind = self._kind.pop(call)
        live_at = self._live_at.pop(call)
        self._record_attempt(now, Outcome.ABANDONED, live_at - dialed)
        self.window.record(now, abandoned=1.0)
        if kind == _HUMAN:
            r = self.result
            r.abandoned += 1
            r.hourly_abandoned[min(int(live_at // 3600.0), len(r.hourly_abandoned) - 1)] += 1

    def _on_end(self, call: int, now: float) -> None:
        dialed = self._pending.pop(call)
        kind = self._kind.pop(call)
        if kind == -2:
            r = self.result
            r.abandoned += 1
            r.amd_false_positives += 1
            hour = min(int((now - self.sc.amd_delay_s) // 3600.0), len(r.hourly_abandoned) - 1)
            r.hourly_abandoned[hour] += 1
        # -2: a human taken for a machine; -3: a machine recognised; -1: no live answer.
        outcome = Outcome.MACHINE if kind in (-2, -3) else Outcome.NO_ANSWER
        self._record_attempt(now, outcome, now - dialed)

    # -- policy -------------------------------------------------------------------------------

    def snapshot(self, now: float) -> Snapshot:
        pending = self._pending
        waiting = self._waiting
        n_p, n_w = len(pending), len(waiting)
        seconds = np.empty(n_p + n_w)
        if n_p:
            seconds[:n_p] = now - np.fromiter(pending.values(), dtype=np.float64, count=n_p)
        if n_w:
            seconds[n_p:] = now - np.fromiter(waiting.values(), dtype=np.float64, count=n_w)
        stages = np.zeros(n_p + n_w, dtype=np.int8)
        stages[n_p:] = 2
        totals = self.window.totals(now)
        trunk_free = None
        if self.sc.trunk_channels > 0:
            trunk_free = max(self.sc.trunk_channels - n_p - n_w - self._talking_calls, 0)
        return Snapshot(
            now,
            self.state,
            now - self.since,
            stages,
            seconds,
            self.attempts,
            self.handles,
            totals.abandoned,
            totals.connected,
            trunk_free,
            totals.estimated,
            list(self._counts),
            [n_p, 0, n_w],
        )

    def _decide(self, now: float) -> None:
        decision = self.policy.decide(self.snapshot(now))
        r = self.result
        r.decisions += 1
        r.modes[decision.mode_in_force] = r.modes.get(decision.mode_in_force, 0) + 1
        if self._trace_every > 0 and now >= self._next_trace:
            self._next_trace = now + self._trace_every
            r.trace.append(decision.to_dict())
        for _ in range(decision.launches):
            self._launch(now)

    # -- main loop ----------------------------------------------------------------------------

    def run(self) -> SimResult:
        sc = self.sc
        n = sc.agents
        for i in range(n):
            self._push(sc.login_spread_s * i / n, _LOGIN, i)
            self._push(sc.shift_s - sc.logout_spread_s * i / n, _LOGOUT, i)
        for b in sc.breaks:
            groups = max(b.groups, 1)
            for i in range(n):
                # Encode the break length with the agent: lengths differ between breaks.
                self._push(
                    b.start_s + (i % groups) * b.duration_s,
                    _BREAK_START,
                    i + n * round(b.duration_s),
                )
        self._push(0.0, _TICK, 0)
        events = self._events
        end = sc.shift_s
        tick = sc.tick_s
        idle = sc.idle_tick_s
        while events:
            now, _, kind, ident = heapq.heappop(events)
            if now >= end:
                break
            if kind == _TICK:
                if self._dirty or now - self._last_decision >= idle:
                    self._dirty = False
                    self._last_decision = now
                    self._decide(now)
                heapq.heappush(events, (now + tick, next(self._seq), _TICK, 0))
                continue
            self._dirty = True
            if kind == _END:
                self._on_end(ident, now)
            elif kind == _LIVE:
                self._on_live(ident, now)
            elif kind == _PATIENCE:
                self._on_patience(ident, now)
            elif kind == _TALK_END:
                self._talking_calls -= 1
                self._set(ident, _WRAP, now)
                self._push(now + self._wrap.next(), _WRAP_END, ident)
            elif kind == _WRAP_END:
                if self._call_kind[ident] == _HUMAN:
                    self.handles.append(
                        Handle(
                            next(self._handle_seq),
                            now,
                            self._talk_len[ident],
                            now - self.since[ident],
                        )
                    )
                self._agent_free(ident, now)
            elif kind == _LOGIN:
                self._agent_free(ident, now)
            elif kind == _BREAK_START:
                agent, length = ident % n, float(ident // n)
                if self.state[agent] == _READY:
                    del self._ready[agent]
                    self._set(agent, _PAUSED, now)
                    self._push(now + length, _BREAK_END, agent)
                elif self.state[agent] != _OFFLINE:
                    self._break_due[agent] = length
            elif kind == _BREAK_END:
                self._agent_free(ident, now)
            elif kind == _LOGOUT:
                if self.state[ident] in (_READY, _PAUSED):
                    self._ready.pop(ident, None)
                    self._set(ident, _OFFLINE, now)
                else:
                    self._logout_due[ident] = True
        for agent in range(n):
            self._leave_state(agent, end)
            self.since[agent] = end
        return self.result


def simulate(
    scenario: Scenario, policy: Policy, seed: int = 1, trace_every_s: float = 0.0
) -> SimResult:
    """Run one shift of `scenario` under `policy`."""
    return Simulation(scenario, policy, seed, trace_every_s).run()
