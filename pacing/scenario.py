"""Scenario parameters for the simulator, and `from_dict`, which turns a parsed TOML document (or
any mapping) into a Scenario with clear errors; reading the file is the caller's job."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import cast

import numpy as np

from pacing.abandon import WindowRule
from pacing.decision import JsonScalar
from pacing.snapshot import FloatArray


@dataclass(frozen=True, slots=True)
class Distribution:
    """A duration distribution: uniform(low=a, high=b), lognormal(mean=a, cv=b),
    exponential(mean=a) or constant(value=a)."""

    kind: str
    a: float
    b: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("uniform", "lognormal", "exponential", "constant"):
            raise ValueError(
                f"unknown distribution kind {self.kind!r}: use uniform, lognormal, exponential "
                "or constant"
            )
        if self.kind == "uniform" and self.b < self.a:
            raise ValueError(f"uniform needs low <= high, got {self.a} > {self.b}")
        if self.kind in ("lognormal", "exponential") and self.a <= 0:
            raise ValueError(f"{self.kind} needs a positive mean, got {self.a}")

    @property
    def mean(self) -> float:
        return (self.a + self.b) / 2.0 if self.kind == "uniform" else self.a

    def sample(self, rng: np.random.Generator, size: int) -> FloatArray:
        if self.kind == "uniform":
            return rng.uniform(self.a, self.b, size)
        if self.kind == "lognormal":
            sigma2 = float(np.log1p(self.b * self.b))
            return rng.lognormal(float(np.log(self.a)) - sigma2 / 2.0, float(np.sqrt(sigma2)), size)
        if self.kind == "exponential":
            return rng.exponential(self.a, size)
        return np.full(size, self.a)


def uniform(low: float, high: float) -> Distribution:
    return Distribution("uniform", low, high)


def lognormal(mean: float, cv: float) -> Distribution:
    return Distribution("lognormal", mean, cv)


@dataclass(frozen=True, slots=True)
class BreakSpec:
    """Agents split into `groups` groups; group g pauses at start_s + g * duration_s (so the team
    is never all away), for duration_s, starting once its current call is wrapped up."""

    start_s: float
    duration_s: float
    groups: int = 1


@dataclass(frozen=True, slots=True)
class Scenario:
    """Every simulator knob, with the standard scenario of the pacing benchmark as defaults."""

    name: str = "standard"
    shift_s: float = 8 * 3600.0
    agents: int = 50
    login_spread_s: float = 0.0  # agent i logs in at login_spread_s * i / agents
    logout_spread_s: float = 0.0  # agent i logs out at shift_s - logout_spread_s * i / agents
    breaks: tuple[BreakSpec, ...] = ()
    # (hour of the shift, live-answer probability per dial) points, linearly interpolated.
    contact_curve: tuple[tuple[float, float], ...] = ((0.0, 0.2),)
    answer_time: Distribution = field(default_factory=lambda: uniform(4.0, 20.0))
    no_answer_time: Distribution = field(default_factory=lambda: uniform(5.0, 30.0))
    talk_time: Distribution = field(default_factory=lambda: lognormal(180.0, 0.7))
    wrap_time: Distribution = field(default_factory=lambda: uniform(15.0, 45.0))
    machine_share: float = 0.0  # of all answers; 0 means no AMD in the path
    amd_delay_s: float = 2.5
    amd_machine_accuracy: float = 0.85  # machines recognised as machines
    amd_human_false_positive: float = 0.015  # humans taken for machines (counted abandoned)
    machine_talk_time: Distribution = field(default_factory=lambda: uniform(5.0, 15.0))
    trunk_channels: int = 0  # 0: unlimited
    ring_timeout_s: float = 30.0
    patience_s: float = 2.0
    abandon_rule: WindowRule = WindowRule.ROLLING
    tick_s: float = 0.25
    idle_tick_s: float = 1.0  # without any event, decide at least this often
    policy: str = "predictive"
    policy_settings: tuple[tuple[str, JsonScalar], ...] = ()

    def __post_init__(self) -> None:
        if self.agents < 1:
            raise ValueError(f"agents must be at least 1, got {self.agents}")
        for hour, rate in self.contact_curve:
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"contact rate at hour {hour} must be in [0, 1], got {rate}")
        if not 0.0 <= self.machine_share < 1.0:
            raise ValueError(f"machine_share must be in [0, 1), got {self.machine_share}")

    def with_(self, **changes: object) -> Scenario:
        return replace(self, **changes)  # type: ignore[arg-type]

    def contact_rate(self, hour: float) -> float:
        hours = [h for h, _ in self.contact_curve]
        rates = [r for _, r in self.contact_curve]
        return float(np.interp(hour, hours, rates))

    def settings_dict(self) -> dict[str, JsonScalar]:
        return dict(self.policy_settings)

    def to_dict(self) -> dict[str, object]:
        def dist(d: Distribution) -> dict[str, object]:
            if d.kind == "uniform":
                return {"kind": "uniform", "low": d.a, "high": d.b}
            if d.kind == "lognormal":
                return {"kind": "lognormal", "mean": d.a, "cv": d.b}
            if d.kind == "exponential":
                return {"kind": "exponential", "mean": d.a}
            return {"kind": "constant", "value": d.a}

        return {
            "name": self.name,
            "shift_hours": self.shift_s / 3600.0,
            "agents": self.agents,
            "login_spread_s": self.login_spread_s,
            "logout_spread_s": self.logout_spread_s,
            "breaks": [
                {"start_s": b.start_s, "duration_s": b.duration_s, "groups": b.groups}
                for b in self.breaks
            ],
            "contact_curve": [list(p) for p in self.contact_curve],
            "answer_time": dist(self.answer_time),
            "no_answer_time": dist(self.no_answer_time),
            "talk_time": dist(self.talk_time),
            "wrap_time": dist(self.wrap_time),
            "machine_share": self.machine_share,
            "amd_delay_s": self.amd_delay_s,
            "amd_machine_accuracy": self.amd_machine_accuracy,
            "amd_human_false_positive": self.amd_human_false_positive,
            "machine_talk_time": dist(self.machine_talk_time),
            "trunk_channels": self.trunk_channels,
            "ring_timeout_s": self.ring_timeout_s,
            "patience_s": self.patience_s,
            "abandon_rule": str(self.abandon_rule),
            "tick_s": self.tick_s,
            "policy": self.policy,
            "policy_settings": dict(self.policy_settings),
        }


def _table(data: Mapping[str, object], key: str) -> Mapping[str, object]:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise ValueError(f"[{key}] must be a table")
    return cast(Mapping[str, object], value)


def _num(data: Mapping[str, object], key: str, default: float, where: str) -> float:
    value = data.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"{where}{key} must be a number, got {value!r}")
    return float(value)


def _dist(data: Mapping[str, object], key: str, default: Distribution, where: str) -> Distribution:
    spec = data.get(key)
    if spec is None:
        return default
    if not isinstance(spec, Mapping):
        raise ValueError(f'{where}{key} must be a table like {{kind = "uniform", ...}}')
    spec = cast(Mapping[str, object], spec)
    kind = spec.get("kind")
    name = f"{where}{key}."
    if kind == "uniform":
        return uniform(_num(spec, "low", 0.0, name), _num(spec, "high", 0.0, name))
    if kind == "lognormal":
        return lognormal(_num(spec, "mean", 0.0, name), _num(spec, "cv", 0.0, name))
    if kind == "exponential":
        return Distribution("exponential", _num(spec, "mean", 0.0, name))
    if kind == "constant":
        return Distribution("constant", _num(spec, "value", 0.0, name))
    raise ValueError(
        f"{where}{key}.kind must be uniform, lognormal, exponential or constant, got {kind!r}"
    )


_TOP = {
    "name",
    "shift_hours",
    "tick_s",
    "idle_tick_s",
    "agents",
    "contact",
    "timing",
    "amd",
    "trunk",
    "rules",
    "policy",
}


def from_dict(data: Mapping[str, object]) -> Scenario:
    """Build a Scenario from a parsed TOML document; see benchmarks/scenarios/standard.toml."""
    unknown = sorted(set(data) - _TOP)
    if unknown:
        raise ValueError(f"unknown scenario keys: {', '.join(unknown)}")
    d = Scenario()
    agents = _table(data, "agents")
    breaks_raw = agents.get("breaks", [])
    if not isinstance(breaks_raw, list):
        raise ValueError("agents.breaks must be an array of tables")
    breaks = []
    for i, b in enumerate(breaks_raw):
        if not isinstance(b, Mapping):
            raise ValueError(f"agents.breaks[{i}] must be a table")
        where = f"agents.breaks[{i}]."
        breaks.append(
            BreakSpec(
                _num(b, "start_s", 0.0, where),
                _num(b, "duration_s", 0.0, where),
                int(_num(b, "groups", 1, where)),
            )
        )
    contact = _table(data, "contact")
    curve_raw = contact.get("curve")
    if curve_raw is None:
        curve: tuple[tuple[float, float], ...] = ((0.0, _num(contact, "rate", 0.2, "contact.")),)
    else:
        if not isinstance(curve_raw, list) or not all(
            isinstance(p, list) and len(p) == 2 for p in curve_raw
        ):
            raise ValueError("contact.curve must be a list of [hour, rate] pairs")
        curve = tuple((float(h), float(r)) for h, r in curve_raw)
    timing = _table(data, "timing")
    amd = _table(data, "amd")
    trunk = _table(data, "trunk")
    rules = _table(data, "rules")
    policy = _table(data, "policy")
    settings = _table(policy, "settings")
    for k, v in settings.items():
        if not isinstance(v, int | float | str | bool):
            raise ValueError(f"policy.settings.{k} must be a number, string or boolean")
    name = data.get("name", d.name)
    mode = policy.get("mode", d.policy)
    rule = rules.get("abandon_rule", str(d.abandon_rule))
    if not isinstance(name, str) or not isinstance(mode, str) or not isinstance(rule, str):
        raise ValueError("name, policy.mode and rules.abandon_rule must be strings")
    try:
        window_rule = WindowRule(rule)
    except ValueError:
        raise ValueError(
            f"rules.abandon_rule must be 'rolling' (US) or 'calendar-day' (UK), got {rule!r}"
        ) from None
    return Scenario(
        name=name,
        shift_s=_num(data, "shift_hours", d.shift_s / 3600.0, "") * 3600.0,
        tick_s=_num(data, "tick_s", d.tick_s, ""),
        idle_tick_s=_num(data, "idle_tick_s", d.idle_tick_s, ""),
        agents=int(_num(agents, "count", d.agents, "agents.")),
        login_spread_s=_num(agents, "login_spread_s", 0.0, "agents."),
        logout_spread_s=_num(agents, "logout_spread_s", 0.0, "agents."),
        breaks=tuple(breaks),
        contact_curve=curve,
        answer_time=_dist(timing, "answer", d.answer_time, "timing."),
        no_answer_time=_dist(timing, "no_answer", d.no_answer_time, "timing."),
        talk_time=_dist(timing, "talk", d.talk_time, "timing."),
        wrap_time=_dist(timing, "wrap", d.wrap_time, "timing."),
        machine_talk_time=_dist(timing, "machine_talk", d.machine_talk_time, "timing."),
        machine_share=_num(amd, "machine_share", 0.0, "amd."),
        amd_delay_s=_num(amd, "delay_s", d.amd_delay_s, "amd."),
        amd_machine_accuracy=_num(amd, "machine_accuracy", d.amd_machine_accuracy, "amd."),
        amd_human_false_positive=_num(
            amd, "human_false_positive", d.amd_human_false_positive, "amd."
        ),
        trunk_channels=int(_num(trunk, "channels", 0, "trunk.")),
        ring_timeout_s=_num(trunk, "ring_timeout_s", d.ring_timeout_s, "trunk."),
        patience_s=_num(rules, "patience_s", d.patience_s, "rules."),
        abandon_rule=window_rule,
        policy=mode,
        policy_settings=tuple(sorted((str(k), cast(JsonScalar, v)) for k, v in settings.items())),
    )
