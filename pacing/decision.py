"""The policy interface: a snapshot goes in, a Decision (launch count with the inputs and the
forecast that produced it, JSON-serialisable) comes out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from pacing.snapshot import FloatArray, Snapshot

JsonScalar = int | float | str | bool | None
JsonValue = JsonScalar | list[float] | dict[str, JsonScalar]


@dataclass(slots=True)
class Forecast:
    """The forecast behind a predictive decision, on the horizon grid (seconds from now)."""

    horizon_s: FloatArray
    free_agents_mean: FloatArray
    free_agents_sd: FloatArray
    answers_mean: FloatArray  # live answers by each horizon, calls in flight plus the launches

    def to_dict(self) -> dict[str, list[float]]:
        return {
            "horizon_s": [float(x) for x in self.horizon_s],
            "free_agents_mean": [round(float(x), 4) for x in self.free_agents_mean],
            "free_agents_sd": [round(float(x), 4) for x in self.free_agents_sd],
            "answers_mean": [round(float(x), 4) for x in self.answers_mean],
        }


@dataclass(slots=True)
class Decision:
    """How many calls to launch now, and why.

    `mode_in_force` names the rule that set the count: "preview", "progressive", "power",
    "warm-up", "small-team", "predictive", "progressive-floor", "trunk-limit", or a baseline's name.
    """

    launches: int
    mode_in_force: str
    reason: str = ""
    inputs: dict[str, JsonScalar] = field(default_factory=dict)
    forecast: Forecast | None = None
    predicted_abandon: float | None = None
    measured_abandon: float | None = None
    target_abandon: float | None = None

    def to_dict(self) -> dict[str, JsonValue | dict[str, list[float]]]:
        out: dict[str, JsonValue | dict[str, list[float]]] = {
            "launches": self.launches,
            "mode_in_force": self.mode_in_force,
            "reason": self.reason,
            "inputs": dict(self.inputs),
            "predicted_abandon": self.predicted_abandon,
            "measured_abandon": self.measured_abandon,
            "target_abandon": self.target_abandon,
        }
        if self.forecast is not None:
            out["forecast"] = self.forecast.to_dict()
        return out


class Policy(Protocol):
    """A dial policy. `decide` may update the policy's estimators from the snapshot's history;
    it reads no clock but `snapshot.now` and does no I/O."""

    name: str

    def decide(self, snapshot: Snapshot) -> Decision: ...


def basic_inputs(snapshot: Snapshot) -> dict[str, JsonScalar]:
    """The counts every decision reports."""
    return {
        "now": snapshot.now,
        "ready": snapshot.ready,
        "busy": snapshot.busy,
        "active_agents": snapshot.active_agents,
        "calls_pending": snapshot.calls_pending,
        "calls_waiting": snapshot.calls_waiting,
        "trunk_free": snapshot.trunk_free,
    }


def cap_to_trunk(launches: int, snapshot: Snapshot) -> int:
    if snapshot.trunk_free is None:
        return max(launches, 0)
    return max(min(launches, snapshot.trunk_free), 0)
