"""Builders shared by the pacing unit tests: snapshots and warmed-up history."""

from __future__ import annotations

import numpy as np

from pacing.snapshot import (
    AgentState,
    AgentView,
    Attempt,
    CallStage,
    CallView,
    Handle,
    Outcome,
    Snapshot,
)


def history(
    contact: float = 0.2, attempts: int = 400, handles: int = 200, seed: int = 0
) -> tuple[list[Attempt], list[Handle]]:
    """History drawn from the standard scenario's distributions."""
    rng = np.random.default_rng(seed)
    out_a = []
    for i in range(attempts):
        if rng.random() < contact:
            out_a.append(Attempt(i, float(i), Outcome.CONNECTED, float(rng.uniform(4, 20))))
        else:
            out_a.append(Attempt(i, float(i), Outcome.NO_ANSWER, float(rng.uniform(5, 30))))
    sigma2 = float(np.log1p(0.49))
    talks = rng.lognormal(np.log(180.0) - sigma2 / 2, np.sqrt(sigma2), handles)
    wraps = rng.uniform(15, 45, handles)
    out_h = [
        Handle(i, float(i), float(t), float(w))
        for i, (t, w) in enumerate(zip(talks, wraps, strict=True))
    ]
    return out_a, out_h


def snapshot(
    now: float = 1000.0,
    ready: int = 0,
    talking: list[float] | None = None,
    wrapping: list[float] | None = None,
    pending: list[float] | None = None,
    waiting: int = 0,
    paused: int = 0,
    attempts: list[Attempt] | None = None,
    handles: list[Handle] | None = None,
    window_abandoned: float = 0.0,
    window_connected: float = 0.0,
    trunk_free: int | None = None,
    window_estimated: float = 0.0,
) -> Snapshot:
    agents = [AgentView(AgentState.READY, 5.0)] * ready
    agents += [AgentView(AgentState.TALKING, s) for s in talking or []]
    agents += [AgentView(AgentState.WRAP_UP, s) for s in wrapping or []]
    agents += [AgentView(AgentState.PAUSED, 60.0)] * paused
    calls = [CallView(CallStage.DIALING, s) for s in pending or []]
    calls += [CallView(CallStage.ANSWERED_WAITING, 10.0)] * waiting
    return Snapshot.build(
        now,
        agents,
        calls,
        attempts or [],
        handles or [],
        window_abandoned,
        window_connected,
        trunk_free,
        window_estimated,
    )
