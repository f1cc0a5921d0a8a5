import json

import pytest

from pacing.policies import (
    PowerPolicy,
    PredictivePolicy,
    PredictiveSettings,
    PreviewPolicy,
    ProgressivePolicy,
    make_policy,
)

from .helpers import history, snapshot


def warmed(**settings: float) -> tuple[PredictivePolicy, dict[str, list]]:
    attempts, handles = history()
    return PredictivePolicy(PredictiveSettings(**settings)), {
        "attempts": attempts,
        "handles": handles,
    }


def test_preview_never_launches() -> None:
    assert PreviewPolicy().decide(snapshot(ready=10)).launches == 0


def test_progressive_dials_one_call_per_ready_agent_counting_calls_out() -> None:
    d = ProgressivePolicy().decide(snapshot(ready=5, pending=[3.0, 4.0], waiting=1))
    assert d.launches == 2


def test_progressive_never_goes_negative() -> None:
    assert ProgressivePolicy().decide(snapshot(ready=1, pending=[1.0] * 4)).launches == 0


def test_power_keeps_a_fixed_number_of_lines_per_ready_agent() -> None:
    d = PowerPolicy(2.5).decide(snapshot(ready=4, pending=[1.0] * 3))
    assert d.launches == 10 - 3


def test_launches_never_exceed_free_trunk_channels() -> None:
    assert PowerPolicy(3.0).decide(snapshot(ready=10, trunk_free=4)).launches == 4


def test_predictive_dials_progressively_during_warm_up() -> None:
    d = PredictivePolicy().decide(snapshot(ready=8, talking=[30.0] * 12))
    assert d.mode_in_force == "warm-up"
    assert d.launches == 8


def test_predictive_dials_progressively_below_the_minimum_team() -> None:
    policy, hist = warmed(min_team=5)
    d = policy.decide(snapshot(ready=2, talking=[30.0], **hist))
    assert d.mode_in_force == "small-team"
    assert d.launches == 2


def test_predictive_never_launches_fewer_than_progressive() -> None:
    policy, hist = warmed(threshold_start=1e-12)
    d = policy.decide(snapshot(ready=6, talking=[10.0] * 20, **hist))
    assert d.launches == 6
    assert d.mode_in_force == "progressive-floor"


def test_predictive_dials_ahead_for_agents_about_to_free_up() -> None:
    policy, hist = warmed()
    d = policy.decide(snapshot(ready=0, talking=[600.0] * 5, wrapping=[40.0] * 20, **hist))
    assert d.mode_in_force == "predictive"
    assert d.launches > 0


def test_predictive_launches_more_when_agents_are_closer_to_free() -> None:
    near, hist = warmed()
    far, _ = warmed()
    soon = near.decide(snapshot(ready=2, wrapping=[40.0] * 30, **hist))
    later = far.decide(snapshot(ready=2, talking=[5.0] * 30, **hist))
    assert soon.launches > later.launches


def test_predictive_holds_back_when_the_measured_abandon_rate_is_over_target() -> None:
    calm, hist = warmed()
    burnt, _ = warmed()
    args = {"ready": 3, "talking": [150.0] * 40, "wrapping": [30.0] * 7, **hist}
    ok = calm.decide(snapshot(window_abandoned=1.0, window_connected=500.0, **args))
    over = burnt.decide(snapshot(window_abandoned=30.0, window_connected=500.0, **args))
    assert over.launches < ok.launches
    assert over.measured_abandon == pytest.approx(30.0 / 530.0)


def test_more_calls_out_means_fewer_new_launches() -> None:
    a, hist = warmed()
    b, _ = warmed()
    args = {"ready": 3, "talking": [150.0] * 40, **hist}
    few = a.decide(snapshot(pending=[2.0] * 2, **args))
    many = b.decide(snapshot(pending=[2.0] * 30, **args))
    assert many.launches < few.launches


def test_decision_is_json_serialisable_with_its_forecast() -> None:
    policy, hist = warmed()
    d = policy.decide(snapshot(ready=1, talking=[100.0] * 10, **hist))
    doc = json.loads(json.dumps(d.to_dict()))
    assert doc["launches"] == d.launches
    assert len(doc["forecast"]["horizon_s"]) == len(doc["forecast"]["free_agents_mean"])
    assert doc["inputs"]["ready"] == 1


def test_make_policy_names_the_modes_it_knows() -> None:
    with pytest.raises(ValueError, match="predictive"):
        make_policy("turbo")


def test_predictive_settings_reject_unknown_keys() -> None:
    with pytest.raises(ValueError, match="abandon_kap"):
        make_policy("predictive", {"abandon_kap": 0.03})


def test_make_policy_builds_power_with_its_ratio() -> None:
    policy = make_policy("power", {"lines_per_agent": 1.5})
    assert policy.decide(snapshot(ready=4)).launches == 6


def test_estimated_abandons_are_budgeted_at_their_upper_bound() -> None:
    observed, hist = warmed()
    estimated, _ = warmed()
    args = {
        "ready": 3,
        "talking": [150.0] * 40,
        "window_abandoned": 10.0,
        "window_connected": 990.0,
        **hist,
    }
    a = observed.decide(snapshot(**args))
    b = estimated.decide(snapshot(window_estimated=10.0, **args))
    assert b.inputs["launch_threshold"] < a.inputs["launch_threshold"]
