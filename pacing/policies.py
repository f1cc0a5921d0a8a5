"""Dial policies behind one interface: preview, progressive, power and predictive, and
`make_policy`, the one place a mode name and its settings become a policy."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import ClassVar

import numpy as np

from pacing.decision import Decision, Forecast, JsonScalar, Policy, basic_inputs, cap_to_trunk
from pacing.estimators import CampaignEstimators, EstimatorPriors
from pacing.forecast import AnswerForecast, AvailabilityForecast
from pacing.snapshot import AgentState, FloatArray, Snapshot
from pacing.stats import normal_cdf

Settings = Mapping[str, JsonScalar]


def progressive_count(snapshot: Snapshot) -> int:
    """One call per ready agent, counting the calls already out for them."""
    return max(snapshot.ready - snapshot.calls_pending - snapshot.calls_waiting, 0)


class PreviewPolicy:
    """The agent asks for the next account and decides to dial or skip: the pacer never launches."""

    name = "preview"

    def decide(self, snapshot: Snapshot) -> Decision:
        return Decision(0, "preview", "preview: agents dial by hand", basic_inputs(snapshot))


class ProgressivePolicy:
    """One call per ready agent, never more."""

    name = "progressive"

    def decide(self, snapshot: Snapshot) -> Decision:
        n = cap_to_trunk(progressive_count(snapshot), snapshot)
        return Decision(n, "progressive", "one call per ready agent", basic_inputs(snapshot))


class PowerPolicy:
    """A fixed number of lines per ready agent (a dial ratio)."""

    def __init__(self, lines_per_agent: float = 2.0) -> None:
        if lines_per_agent < 1.0:
            raise ValueError(f"lines_per_agent must be at least 1, got {lines_per_agent}")
        self.lines_per_agent = lines_per_agent
        self.name = f"power-{lines_per_agent:g}"

    def decide(self, snapshot: Snapshot) -> Decision:
        goal = math.floor(self.lines_per_agent * snapshot.ready + 1e-9)
        n = cap_to_trunk(goal - snapshot.calls_pending - snapshot.calls_waiting, snapshot)
        inputs = basic_inputs(snapshot)
        inputs["lines_per_agent"] = self.lines_per_agent
        return Decision(n, "power", f"{self.lines_per_agent:g} lines per ready agent", inputs)


@dataclass(frozen=True, slots=True)
class PredictiveSettings:
    """Every knob of the predictive policy, with defaults that run.

    abandon_cap: the regulatory ceiling (3% in the US and UK).
    target_margin: how far under the cap the closed loop aims: target = cap - margin.
    threshold_start: the forecast abandons a launch may add per live answer it brings, before
        the loop correction (the forecast is myopic: later ticks add calls that compete for the
        same agents, so the measured rate runs above it; the loop learns the ratio).
    threshold_team, threshold_exponent: below threshold_team agents the starting threshold is
        scaled by (agents / threshold_team) ** threshold_exponent: small teams need a lower
        one (fitted on the standard scenario; the loop corrects the rest).
    loop_gain: the log-change of the threshold per call of abandon budget left in the window,
        times the active agents (a small team answers few calls, so each counts for more):
        threshold = threshold_start * exp(clip(loop_gain / agents * slack, loop_min, loop_max)),
        where slack = target * (abandoned + connected) - abandoned over the regulatory window.
    estimate_z: the estimated part of the window's abandons (AMD false positives, Poisson) is
        counted at its mean plus estimate_z standard deviations.
    patience_s: how long an answered call may wait for an agent (the 2-second rule).
    horizon_s: how far ahead the forecast looks (must cover the time to answer).
    min_team: below this many active agents, dial progressively.
    warmup_attempts, warmup_live, warmup_handles: data needed before leaving progressive.
    prior_*: what the estimators assume before data arrives.
    contact_half_life: attempts over which the contact estimate forgets (follows drift).
    refresh_samples: new talk/wrap samples that trigger rebuilding the survival tables.
    max_launch: launches per decision at most (0: no limit beyond the trunk).
    """

    abandon_cap: float = 0.03
    target_margin: float = 0.004
    threshold_start: float = 0.012
    threshold_team: float = 50.0
    threshold_exponent: float = 1.5
    loop_gain: float = 5.0
    loop_min: float = -6.0
    estimate_z: float = 2.0
    loop_max: float = 4.0
    patience_s: float = 2.0
    horizon_s: int = 34
    min_team: int = 2
    warmup_attempts: int = 60
    warmup_live: int = 15
    warmup_handles: int = 8
    prior_contact_rate: float = 0.15
    prior_answer_s: float = 12.0
    prior_no_answer_s: float = 18.0
    prior_talk_s: float = 180.0
    prior_wrap_s: float = 30.0
    contact_half_life: float = 1000.0
    refresh_samples: int = 25
    max_launch: int = 0

    # What each knob may be: outside these the estimators divide by zero, take the log of a
    # non-positive mean or overflow, or the loop stops meaning anything.
    RANGES: ClassVar[Mapping[str, tuple[float, float]]] = {
        "abandon_cap": (0.001, 0.2),
        "target_margin": (0.0, 0.1),
        "threshold_start": (1e-6, 1.0),
        "threshold_team": (1.0, 10_000.0),
        "threshold_exponent": (0.0, 5.0),
        "loop_gain": (0.0, 100.0),
        "loop_min": (-50.0, 0.0),
        "estimate_z": (0.0, 10.0),
        "loop_max": (0.0, 50.0),
        "patience_s": (0.1, 30.0),
        "horizon_s": (1, 600),
        "min_team": (0, 10_000),
        "warmup_attempts": (0, 1_000_000),
        "warmup_live": (0, 1_000_000),
        "warmup_handles": (0, 1_000_000),
        "prior_contact_rate": (0.001, 1.0),
        "prior_answer_s": (0.1, 600.0),
        "prior_no_answer_s": (0.1, 600.0),
        "prior_talk_s": (1.0, 36_000.0),
        "prior_wrap_s": (0.1, 36_000.0),
        "contact_half_life": (1.0, 1e7),
        "refresh_samples": (1, 1_000_000),
        "max_launch": (0, 100_000),
    }

    @classmethod
    def from_mapping(cls, settings: Settings | None) -> PredictiveSettings:
        if not settings:
            return cls()
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(settings) - set(known))
        if unknown:
            raise ValueError(f"unknown predictive settings: {', '.join(unknown)}")
        values: dict[str, int | float] = {}
        for key, raw in settings.items():
            if not isinstance(raw, int | float) or isinstance(raw, bool):
                raise ValueError(f"predictive setting {key} must be a number, got {raw!r}")
            low, high = cls.RANGES[key]
            if not low <= raw <= high:
                raise ValueError(
                    f"predictive setting {key} must be in [{low}, {high}], got {raw!r}"
                )
            values[key] = int(raw) if known[key].type in ("int", int) else float(raw)
        return cls(**values)  # type: ignore[arg-type]


class PredictivePolicy:
    """Launch the largest n whose last call adds few enough forecast abandons.

    For n new calls, live answers by each horizon h (calls in flight, given their age, plus n
    calls each answering by h with probability p F_A(h)) are compared with the agents free by
    h + patience (ready now, or busy and done by then given the time already spent in talk or
    wrap-up). Both counts are sums of Bernoullis, taken as normals: an answer in bin h is
    abandoned with probability P(answers by h > agents free by h + patience), and summing over
    bins gives the expected abandons E(n). The n-th call goes out while
    (E(n) - E(n - 1)) / p stays under a threshold; the threshold is corrected in closed loop by
    the abandon budget left over the regulatory window (see PredictiveSettings). Warm-up, a
    small team, or a forecast below one call per ready agent make it dial progressively, and
    the decision says which rule was in force.
    """

    name = "predictive"

    def __init__(self, settings: PredictiveSettings | None = None) -> None:
        self.settings = s = settings or PredictiveSettings()
        self.estimators = CampaignEstimators(
            EstimatorPriors(
                contact_rate=s.prior_contact_rate,
                answer_s=s.prior_answer_s,
                no_answer_s=s.prior_no_answer_s,
                talk_s=s.prior_talk_s,
                wrap_s=s.prior_wrap_s,
            ),
            contact_half_life=s.contact_half_life,
        )
        self._patience = round(s.patience_s)
        self._grid = np.arange(s.horizon_s - self._patience + 1, dtype=np.float64)
        self._availability: AvailabilityForecast | None = None
        self._availability_at = -1
        self._answers: AnswerForecast | None = None
        self._answers_key: tuple[float, int] = (-1.0, -1)

    def _mode(self, snapshot: Snapshot, active: int) -> str | None:
        s, est = self.settings, self.estimators
        if active < s.min_team:
            return "small-team"
        if (
            est.contact.count < s.warmup_attempts
            or est.live_answers < s.warmup_live
            or est.talk.count < s.warmup_handles
        ):
            return "warm-up"
        return None

    def _refresh(
        self, contact: float, snapshot: Snapshot
    ) -> tuple[AvailabilityForecast, AnswerForecast]:
        est, s = self.estimators, self.settings
        grown = est.talk.count - self._availability_at
        if self._availability is None or grown >= max(
            s.refresh_samples, self._availability_at // 20
        ):
            talking = snapshot.agent_seconds[snapshot.agent_states == AgentState.TALKING]
            self._availability = AvailabilityForecast(
                est.talk.pmf(censored=talking), est.wrap.pmf(), horizon_s=s.horizon_s
            )
            self._availability_at = est.talk.count
        old_p, old_count = self._answers_key
        samples = est.answer_time.count + est.no_answer_time.count
        if (
            self._answers is None
            or abs(contact - old_p) > 0.01 * old_p
            or samples - old_count >= max(50, old_count // 10)
        ):
            self._answers = AnswerForecast(
                contact, est.answer_time.pmf(), est.no_answer_time.pmf(), s.horizon_s
            )
            self._answers_key = (contact, samples)
        return self._availability, self._answers

    def decide(self, snapshot: Snapshot) -> Decision:
        s, est = self.settings, self.estimators
        est.update(snapshot)
        inputs = basic_inputs(snapshot)
        floor = progressive_count(snapshot)
        measured = snapshot.window_abandon_rate
        inputs["window_abandoned"] = snapshot.window_abandoned
        inputs["window_connected"] = snapshot.window_connected
        inputs["window_estimated"] = snapshot.window_estimated
        active = int(inputs["active_agents"] or 0)
        mode = self._mode(snapshot, active)
        if mode is not None:
            reason = (
                f"fewer than {s.min_team} active agents"
                if mode == "small-team"
                else "estimators still gathering data"
            )
            return Decision(
                cap_to_trunk(floor, snapshot), mode, reason, inputs, measured_abandon=measured
            )

        base = s.abandon_cap - s.target_margin
        slack = base * (snapshot.window_abandoned + snapshot.window_connected)
        # Estimated abandons (AMD false positives) are uncertain: budget for their upper bound.
        slack -= snapshot.window_abandoned + s.estimate_z * math.sqrt(snapshot.window_estimated)
        gain = s.loop_gain / max(active, 1)
        start = s.threshold_start * min(1.0, active / s.threshold_team) ** s.threshold_exponent
        target = start * math.exp(min(max(gain * slack, s.loop_min), s.loop_max))
        p = est.contact.value
        availability, answers = self._refresh(p, snapshot)
        inputs["contact_rate"] = round(p, 5)
        inputs["abandon_slack_calls"] = round(slack, 3)
        inputs["launch_threshold"] = round(target, 6)

        free_mu, free_var = availability.free_agents(snapshot)
        pend_mu, pend_var, pend_eventual = answers.pending(snapshot)
        k = len(self._grid)
        pat = self._patience
        waiting = float(snapshot.calls_waiting)
        supply_mu = free_mu[pat : pat + k]
        supply_var = free_var[pat : pat + k]
        demand_mu = waiting + pend_mu[:k]
        demand_var = pend_var[:k]
        a = answers.new_call[:k]
        committed = waiting + pend_eventual
        room = supply_mu[-1] + 4.0 * math.sqrt(float(supply_var[-1])) + 3.0 - committed
        n_hi = max(math.ceil(room / max(p, 0.02)), floor, 0)
        if snapshot.trunk_free is not None:
            n_hi = min(n_hi, snapshot.trunk_free)
        if s.max_launch > 0:
            n_hi = min(n_hi, s.max_launch)

        demand_step = np.empty(k)
        demand_step[0] = demand_mu[0]
        demand_step[1:] = demand_mu[1:] - demand_mu[:-1]
        a_step = np.empty(k)
        a_step[0] = a[0]
        a_step[1:] = a[1:] - a[:-1]
        a_var = a * (1.0 - a)
        base_var = demand_var + supply_var + 0.05
        gap = demand_mu - supply_mu - 0.5  # -0.5: continuity correction, counts are integers

        def overflow(first: int, count: int) -> FloatArray:
            """Expected abandons among the window's answers with n = first.. launches.

            An answer in bin h is abandoned when the answers up to it outnumber the agents free
            by h + patience; summed over the bins this counts every shortfall."""
            n = np.arange(first, first + count, dtype=np.float64)[:, None]
            short = normal_cdf((gap + n * a) / np.sqrt(base_var + n * a_var))
            return np.asarray(((demand_step + n * a_step) * short).sum(axis=1))

        # The n-th call is worth launching while the abandons it adds (its own and those it
        # causes to calls already out) per live answer it brings stay under the threshold.
        # Search in growing blocks: most ticks launch a handful of calls at most.
        best, prev, first, block = n_hi, float(overflow(0, 1)[0]), 1, 8
        over_best = prev
        while first <= n_hi:
            count = min(block, n_hi - first + 1)
            over = overflow(first, count)
            marginal = np.diff(over, prepend=prev) / max(p, 1e-6)
            bad = np.nonzero(marginal > target)[0]
            if len(bad):
                best = first + int(bad[0]) - 1
                over_best = float(over[bad[0] - 1]) if bad[0] > 0 else prev
                break
            prev = float(over[-1])
            over_best = prev
            first += count
            block *= 4
        predicted = over_best / max(committed + best * p, 1e-9)

        if best < floor:
            launches, mode = floor, "progressive-floor"
            reason = "forecast allows fewer calls than ready agents; dialing one per ready agent"
        else:
            launches, mode = best, "predictive"
            reason = "largest launch count whose marginal forecast abandons stay under threshold"
        capped = cap_to_trunk(launches, snapshot)
        if capped < launches:
            mode, reason = "trunk-limit", f"{reason}; capped by free trunk channels"
        forecast = Forecast(
            horizon_s=self._grid,
            free_agents_mean=supply_mu,
            free_agents_sd=np.sqrt(supply_var),
            answers_mean=demand_mu + launches * a,
        )
        return Decision(capped, mode, reason, inputs, forecast, predicted, measured, base)


def make_policy(mode: str, settings: Settings | None = None) -> Policy:
    """Build a policy from its mode name: preview, progressive, power (lines_per_agent),
    predictive (PredictiveSettings), vicidial-adaptive or omni-formula (the baselines)."""
    from pacing import baselines

    settings = dict(settings or {})
    if mode == "preview":
        return PreviewPolicy()
    if mode == "progressive":
        return ProgressivePolicy()
    if mode == "power":
        lines = settings.get("lines_per_agent", 2.0)
        if isinstance(lines, bool) or not isinstance(lines, int | float) or not 1 <= lines <= 20:
            raise ValueError(f"lines_per_agent must be a number in [1, 20], got {lines!r}")
        return PowerPolicy(float(lines))
    if mode == "predictive":
        return PredictivePolicy(PredictiveSettings.from_mapping(settings))
    if mode == "vicidial-adaptive":
        return baselines.VicidialAdaptivePolicy.from_mapping(settings)
    if mode == "omni-formula":
        return baselines.OmniFormulaPolicy.from_mapping(settings)
    raise ValueError(
        f"unknown pacing mode {mode!r}: use preview, progressive, power, predictive, "
        "vicidial-adaptive or omni-formula"
    )
