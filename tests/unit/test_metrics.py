"""The metric helpers: each updates the one series it names, with bounded labels, and refuses
values that would leak free text or nonsense into a label or a counter."""

from __future__ import annotations

import itertools
import re
from decimal import Decimal

import pytest
from prometheus_client import REGISTRY

from dialer import metrics

# Each test takes fresh campaign ids: the registry is process-wide, so tests read their own series.
_ids = itertools.count(900_000)


def campaign() -> int:
    return next(_ids)


def value(name: str, **labels: str) -> float:
    found = REGISTRY.get_sample_value(name, labels)
    return 0.0 if found is None else found


def test_originated_counts_per_campaign_and_server() -> None:
    c = campaign()
    metrics.record_originated(c, "pbx1")
    metrics.record_originated(c, "pbx1")
    metrics.record_originated(c, "pbx2")
    assert value("dialer_calls_originated_total", campaign=str(c), server="pbx1") == 2
    assert value("dialer_calls_originated_total", campaign=str(c), server="pbx2") == 1


def test_unknown_outcome_is_counted_as_other() -> None:
    c = campaign()
    metrics.record_outcome(c, "busy")
    metrics.record_outcome(c, "NO-ANSWER")  # case and dash spelling of a known code
    metrics.record_outcome(c, "+12025550123 said hello")  # must never become a label
    assert value("dialer_call_outcomes_total", campaign=str(c), outcome="busy") == 1
    assert value("dialer_call_outcomes_total", campaign=str(c), outcome="no_answer") == 1
    assert value("dialer_call_outcomes_total", campaign=str(c), outcome="other") == 1


def test_connected_counts_and_observes_bridge_latency() -> None:
    c = campaign()
    metrics.record_connected(c, 0.4)
    metrics.record_connected(c, 2.6)
    labels = {"campaign": str(c)}
    assert value("dialer_calls_connected_to_agent_total", **labels) == 2
    assert value("dialer_bridge_latency_seconds_count", **labels) == 2
    assert value("dialer_bridge_latency_seconds_bucket", le="0.5", **labels) == 1
    assert value("dialer_bridge_latency_seconds_bucket", le="2.0", **labels) == 1
    assert value("dialer_bridge_latency_seconds_sum", **labels) == pytest.approx(3.0)


def test_agents_by_state_resets_states_that_emptied() -> None:
    c = campaign()
    metrics.set_agents_by_state(c, {"ready": 3, "talking": 2})
    metrics.set_agents_by_state(c, {"talking": 4, "wrap-up": 1, "offline": 7})
    assert value("dialer_agents", campaign=str(c), state="ready") == 0
    assert value("dialer_agents", campaign=str(c), state="talking") == 4
    assert value("dialer_agents", campaign=str(c), state="wrap_up") == 1
    assert REGISTRY.get_sample_value("dialer_agents", {"campaign": str(c), "state": "offline"}) is (
        None
    )


def test_calls_in_flight_by_stage() -> None:
    c = campaign()
    metrics.set_calls_in_flight(c, {"ringing": 5, "bridged": 2, "playing-jingle": 1})
    assert value("dialer_calls_in_flight", campaign=str(c), stage="ringing") == 5
    assert value("dialer_calls_in_flight", campaign=str(c), stage="answered") == 0
    assert value("dialer_calls_in_flight", campaign=str(c), stage="other") == 1


def test_pacing_decision_sets_mode_in_force_and_counts_launches() -> None:
    c = campaign()
    metrics.record_pacing_decision(c, {"launches": 2, "mode_in_force": "warm-up"})
    metrics.record_pacing_decision(
        c,
        {
            "launches": 5,
            "mode_in_force": "predictive",
            "predicted_abandon": 0.021,
            "target_abandon": 0.025,
            "forecast": {"horizon_s": [0.0, 5.0], "free_agents_mean": [1.5, 3.25]},
        },
    )
    labels = {"campaign": str(c)}
    assert value("dialer_pacing_mode", mode="predictive", **labels) == 1
    assert value("dialer_pacing_mode", mode="warm-up", **labels) == 0
    assert value("dialer_pacing_decisions_total", mode="warm-up", **labels) == 1
    assert value("dialer_pacing_launches_total", mode="predictive", **labels) == 5
    assert value("dialer_pacing_last_launches", **labels) == 5
    assert value("dialer_pacing_predicted_abandon_ratio", **labels) == pytest.approx(0.021)
    assert value("dialer_pacing_target_abandon_ratio", **labels) == pytest.approx(0.025)
    # The forecast at the end of the horizon.
    assert value("dialer_pacing_forecast_free_agents", **labels) == 3.25


def test_pacing_decision_from_the_pacing_package_is_accepted() -> None:
    from pacing.decision import Decision

    c = campaign()
    metrics.record_pacing_decision(c, Decision(3, "small-team", "few agents").to_dict())
    assert value("dialer_pacing_mode", campaign=str(c), mode="small-team") == 1


def test_pacing_decision_without_launches_is_refused() -> None:
    with pytest.raises(ValueError, match=r"decision\.launches"):
        metrics.record_pacing_decision(campaign(), {"mode_in_force": "predictive"})


def test_ptp_counts_promises_and_amount_per_currency() -> None:
    c = campaign()
    metrics.record_ptp(c, "USD", Decimal("150.25"))
    metrics.record_ptp(c, "USD", Decimal("49.75"))
    metrics.record_ptp(c, "MXN", Decimal("1000.00"))
    assert value("dialer_promises_to_pay_total", campaign=str(c), currency="USD") == 2
    assert value("dialer_promised_amount_total", campaign=str(c), currency="USD") == 200.0
    assert value("dialer_promised_amount_total", campaign=str(c), currency="MXN") == 1000.0


@pytest.mark.parametrize("currency", ["usd", "US Dollar", "", "€"])
def test_ptp_with_a_bad_currency_is_refused(currency: str) -> None:
    with pytest.raises(ValueError, match="currency: an ISO 4217 code"):
        metrics.record_ptp(campaign(), currency, Decimal("10.00"))


def test_ptp_amount_must_be_a_positive_decimal() -> None:
    with pytest.raises(ValueError, match="amount: a positive Decimal"):
        metrics.record_ptp(campaign(), "USD", 10.0)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["Ana Pérez", "+12025550123 ", "a" * 80, ""])
def test_server_label_refuses_free_text(bad: str) -> None:
    with pytest.raises(ValueError, match="server: expected a short code"):
        metrics.set_ami_up(bad, True)


@pytest.mark.parametrize("bad", ["early", -1, True])
def test_campaign_label_must_be_a_campaign_id(bad: object) -> None:
    with pytest.raises(ValueError, match="campaign: a campaign id"):
        metrics.record_abandoned(bad)  # type: ignore[arg-type]


def test_abandon_rate_and_cap_per_campaign() -> None:
    c = campaign()
    metrics.set_abandon_rate(c, 0.027, cap=0.03)
    assert value("dialer_abandon_rate_ratio", campaign=str(c)) == pytest.approx(0.027)
    assert value("dialer_abandon_cap_ratio", campaign=str(c)) == pytest.approx(0.03)


def test_abandon_rate_above_one_is_refused() -> None:
    with pytest.raises(ValueError, match="rate: a ratio between 0 and 1"):
        metrics.set_abandon_rate(campaign(), 3.0)


def test_ami_up_down_and_negative_event_lag_counts_as_zero() -> None:
    metrics.set_ami_up("pbx-lag", True)
    metrics.set_ami_up("pbx-lag", False)
    metrics.observe_ami_event_lag("pbx-lag", -0.2)  # Asterisk's clock a little ahead
    assert value("dialer_ami_up", server="pbx-lag") == 0
    assert value("dialer_ami_event_lag_seconds_bucket", server="pbx-lag", le="0.001") == 1


def test_db_write_latency_and_errors_by_operation() -> None:
    metrics.observe_db_write("test_claim", 0.004)
    metrics.record_db_error("test_claim")
    assert value("dialer_db_write_duration_seconds_count", op="test_claim") == 1
    assert value("dialer_db_errors_total", op="test_claim") == 1


def test_websocket_connections_gauge() -> None:
    metrics.set_ws_connections(7)
    assert value("dialer_websocket_connections") == 7


def test_every_metric_follows_the_naming_conventions() -> None:
    for metric in metrics.ALL_METRICS:
        for family in metric.describe():
            assert re.fullmatch(r"dialer_[a-z_]+", family.name), family.name
            if family.type == "counter":
                # prometheus_client appends _total to counters when exposing them.
                assert not family.name.endswith("_total"), family.name
            if family.type == "histogram":
                assert family.name.endswith("_seconds"), family.name
            if family.name.endswith("_ratio"):
                assert family.type == "gauge", family.name


def test_labels_are_only_the_bounded_ones() -> None:
    # `name` only on dialer_campaign_info: campaign names are operations' labels, not debtor data.
    allowed = {"campaign", "server", "outcome", "stage", "state", "mode", "currency", "op", "name"}
    allowed.add("reason")  # refused logins: a fixed vocabulary (metrics.LOGIN_REASONS)
    for metric in metrics.ALL_METRICS:
        assert set(metric._labelnames) <= allowed, metric._labelnames


def test_outcome_vocabulary_is_the_telephony_layers() -> None:
    from dialer.telephony.outcomes import Outcome

    assert set(metrics.OUTCOMES) == {o.value for o in Outcome}


def test_call_stages_are_the_call_states_in_flight() -> None:
    from dialer.telephony.calls import CallState

    assert set(metrics.CALL_STAGES) == {s.value for s in CallState} - {"ended"}


def test_agent_states_are_the_agents_state_machines() -> None:
    from agents_ws.state import AgentState

    assert set(metrics.AGENT_STATES) == {s.value for s in AgentState} - {"offline"}


def test_forgetting_a_campaign_drops_its_gauges_but_keeps_counters() -> None:
    c = campaign()
    metrics.set_campaign_running(c, True)
    metrics.set_agents_by_state(c, {"ready": 2})
    metrics.set_calls_in_flight(c, {"ringing": 1})
    metrics.set_abandon_rate(c, 0.01, cap=0.03)
    metrics.record_pacing_decision(c, {"launches": 1, "mode_in_force": "predictive"})
    metrics.record_originated(c, "pbx1")
    metrics.forget_campaign(c)
    labels = {"campaign": str(c)}
    for name, extra in (
        ("dialer_agents", {"state": "ready"}),
        ("dialer_calls_in_flight", {"stage": "ringing"}),
        ("dialer_pacing_mode", {"mode": "predictive"}),
        ("dialer_abandon_rate_ratio", {}),
    ):
        assert REGISTRY.get_sample_value(name, {**labels, **extra}) is None, name
    assert value("dialer_campaign_running", **labels) == 0
    assert value("dialer_calls_originated_total", server="pbx1", **labels) == 1


def test_a_running_campaign_starts_every_series_at_zero() -> None:
    c = campaign()
    metrics.set_ami_up("pbx-init", True)
    label = {"campaign": str(c)}
    assert REGISTRY.get_sample_value("dialer_calls_answered_live_total", label) is None
    metrics.set_campaign_running(c, True)

    def zero(name: str, **more: str) -> bool:
        return REGISTRY.get_sample_value(name, {**label, **more}) == 0.0

    assert zero("dialer_calls_originated_total", server="pbx-init")
    for name in (
        "dialer_calls_answered_live_total",
        "dialer_calls_abandoned_total",
        "dialer_calls_connected_to_agent_total",
        "dialer_bridge_latency_seconds_count",
        "dialer_campaign_stalled",
    ):
        assert zero(name), name
    assert all(zero("dialer_call_outcomes_total", outcome=o) for o in metrics.OUTCOMES)
    assert all(zero("dialer_pacing_decisions_total", mode=m) for m in metrics.PACING_MODES)
    assert zero("dialer_bridge_latency_seconds_bucket", le="0.005")
    # Promise series need the campaign's currencies.
    metrics.init_campaign(c, ["MXN", "not-a-currency"])
    assert zero("dialer_promises_to_pay_total", currency="MXN")
    assert zero("dialer_promised_amount_total", currency="MXN")
    # Idempotent: a second start does not reset what was counted.
    metrics.record_answered_live(c)
    metrics.set_campaign_running(c, True)
    assert value("dialer_calls_answered_live_total", **label) == 1


def test_bridge_latency_resolves_tens_of_milliseconds() -> None:
    c = campaign()
    metrics.record_connected(c, 0.030)
    labels = {"campaign": str(c)}
    assert value("dialer_bridge_latency_seconds_bucket", le="0.005", **labels) == 0
    assert value("dialer_bridge_latency_seconds_bucket", le="0.025", **labels) == 0
    assert value("dialer_bridge_latency_seconds_bucket", le="0.05", **labels) == 1


def test_campaign_info_maps_the_id_to_its_name() -> None:
    c = campaign()
    metrics.set_campaign_info(c, "Cobranza 31-60")
    info = "dialer_campaign_info"
    assert REGISTRY.get_sample_value(info, {"campaign": str(c), "name": "Cobranza 31-60"}) == 1
    metrics.set_campaign_info(c, "Cobranza 31-60 (MX)")  # renamed: one series, the new name
    assert REGISTRY.get_sample_value(
        "dialer_campaign_info", {"campaign": str(c), "name": "Cobranza 31-60"}
    ) is None
    assert REGISTRY.get_sample_value(info, {"campaign": str(c), "name": "Cobranza 31-60 (MX)"}) == 1
    metrics.forget_campaign_info(c)
    assert REGISTRY.get_sample_value(
        "dialer_campaign_info", {"campaign": str(c), "name": "Cobranza 31-60 (MX)"}
    ) is None
