"""Baseline pacers written from their vendors' documented behaviour, run in the same simulator as
ours: an adaptive dial level in the style of VICIdial and an abandon-throttled formula in the style
of OMniDialer."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from pacing.decision import Decision, JsonScalar, basic_inputs, cap_to_trunk
from pacing.estimators import CampaignEstimators
from pacing.snapshot import AgentState, Snapshot


def _number(settings: Mapping[str, JsonScalar], key: str, default: float) -> float:
    raw = settings.get(key, default)
    if not isinstance(raw, int | float) or isinstance(raw, bool):
        raise ValueError(f"setting {key} must be a number, got {raw!r}")
    return float(raw)


class VicidialAdaptivePolicy:
    """Adaptive dial level in the style VICIdial documents.

    Lines dialed = dial level x active agents - calls already up (ringing, waiting, talking).
    Every `adjust_every_s` the level moves toward a target difference between waiting agents and
    waiting calls (averaged over the interval), within [1, max_level]; when the day's drop
    percentage passes the limit the level is halved (or reset to 1 with on_limit="reset").
    """

    name = "vicidial-adaptive"

    def __init__(
        self,
        start_level: float = 1.0,
        max_level: float = 3.0,
        diff_target: float = 0.0,
        adjust_every_s: float = 15.0,
        intensity: float = 1.0,
        drop_limit: float = 0.03,
        reset_on_limit: bool = False,
    ) -> None:
        self.level = start_level
        self.max_level = max_level
        self.diff_target = diff_target
        self.adjust_every_s = adjust_every_s
        self.intensity = intensity
        self.drop_limit = drop_limit
        self.reset_on_limit = reset_on_limit
        self._next_adjust: float | None = None
        self._diff_sum = 0.0
        self._diff_n = 0

    @classmethod
    def from_mapping(cls, settings: Mapping[str, JsonScalar]) -> VicidialAdaptivePolicy:
        return cls(
            start_level=_number(settings, "start_level", 1.0),
            max_level=_number(settings, "max_level", 3.0),
            diff_target=_number(settings, "diff_target", 0.0),
            adjust_every_s=_number(settings, "adjust_every_s", 15.0),
            intensity=_number(settings, "intensity", 1.0),
            drop_limit=_number(settings, "drop_limit", 0.03),
            reset_on_limit=bool(settings.get("reset_on_limit", False)),
        )

    def decide(self, snapshot: Snapshot) -> Decision:
        states = snapshot.agent_states
        active = int(np.count_nonzero(states <= AgentState.WRAP_UP))
        talking = int(
            np.count_nonzero((states == AgentState.TALKING) | (states == AgentState.RESERVED))
        )
        waiting = snapshot.calls_waiting
        self._diff_sum += snapshot.ready - waiting
        self._diff_n += 1
        if self._next_adjust is None:
            self._next_adjust = snapshot.now + self.adjust_every_s
        elif snapshot.now >= self._next_adjust:
            self._next_adjust = snapshot.now + self.adjust_every_s
            if snapshot.window_abandon_rate > self.drop_limit:
                self.level = 1.0 if self.reset_on_limit else max(1.0, self.level / 2.0)
            elif active > 0:
                diff = self._diff_sum / max(self._diff_n, 1)
                step = self.intensity * (diff - self.diff_target) / active
                self.level = min(max(self.level + step, 1.0), self.max_level)
            self._diff_sum, self._diff_n = 0.0, 0
        goal = math.floor(self.level * active + 1e-9)
        up = snapshot.calls_pending + waiting + talking
        inputs = basic_inputs(snapshot)
        inputs["dial_level"] = round(self.level, 4)
        return Decision(
            cap_to_trunk(goal - up, snapshot),
            "vicidial-adaptive",
            f"dial level {self.level:.2f}",
            inputs,
            measured_abandon=snapshot.window_abandon_rate,
        )


class OmniFormulaPolicy:
    """Formula pacing in the style OMniDialer documents.

    calls = (free agents + agents expected to free up - ringing calls x answer rate) / answer rate,
    where an agent is expected to free up when its mean remaining handle time is under the mean
    time to answer; the count is throttled linearly to zero as the moving abandon average (last
    100 live answers) goes from `throttle_from` x ceiling to the ceiling, down to one call per
    ready agent.
    """

    name = "omni-formula"

    def __init__(self, ceiling: float = 0.03, throttle_from: float = 0.8) -> None:
        self.ceiling = ceiling
        self.throttle_from = throttle_from
        self.estimators = CampaignEstimators()

    @classmethod
    def from_mapping(cls, settings: Mapping[str, JsonScalar]) -> OmniFormulaPolicy:
        return cls(_number(settings, "ceiling", 0.03), _number(settings, "throttle_from", 0.8))

    def decide(self, snapshot: Snapshot) -> Decision:
        est = self.estimators
        est.update(snapshot)
        rate = max(est.contact.value, 0.01)
        talk, wrap, answer = est.talk.mean(), est.wrap.mean(), est.answer_time.mean()
        states, secs = snapshot.agent_states, snapshot.agent_seconds
        talking = (states == AgentState.TALKING) | (states == AgentState.RESERVED)
        remaining = np.where(talking, talk + wrap - secs, wrap - secs)
        busy = talking | (states == AgentState.WRAP_UP)
        expected_free = int(np.count_nonzero(busy & (remaining <= answer)))
        free = snapshot.ready - snapshot.calls_waiting
        calls = (free + expected_free - snapshot.calls_pending * rate) / rate
        moving = est.moving_abandon_rate
        start = self.throttle_from * self.ceiling
        if moving >= start:
            calls *= max(0.0, (self.ceiling - moving) / (self.ceiling - start))
        # Throttled, it still dials for the agents who are ready: otherwise a burst of abandons
        # would stop it for good (the moving average only moves with new answers).
        calls = max(calls, snapshot.ready - snapshot.calls_pending - snapshot.calls_waiting)
        inputs = basic_inputs(snapshot)
        inputs["answer_rate"] = round(rate, 5)
        inputs["expected_free"] = expected_free
        inputs["moving_abandon"] = round(moving, 5)
        return Decision(
            cap_to_trunk(math.floor(calls), snapshot),
            "omni-formula",
            "formula pacing",
            inputs,
            measured_abandon=snapshot.window_abandon_rate,
        )
