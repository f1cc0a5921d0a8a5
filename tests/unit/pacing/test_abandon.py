import pytest

from pacing.abandon import DAY_S, AbandonWindow, WindowRule, window_totals


def test_rate_is_abandoned_over_abandoned_plus_connected() -> None:
    w = AbandonWindow()
    w.record(10.0, abandoned=3.0)
    w.record(20.0, connected=97.0)
    assert w.totals(30.0).rate == 3.0 / 100.0


def test_rolling_window_forgets_counts_older_than_the_window() -> None:
    w = AbandonWindow(WindowRule.ROLLING, window_s=3600.0, bucket_s=60.0)
    w.record(0.0, abandoned=5.0)
    w.record(3000.0, connected=10.0)
    assert w.totals(3500.0).abandoned == 5.0
    later = w.totals(3700.0)
    assert later.abandoned == 0.0
    assert later.connected == 10.0


def test_calendar_day_restarts_at_local_midnight() -> None:
    offset = -5 * 3600.0  # a campaign five hours behind UTC
    w = AbandonWindow(WindowRule.CALENDAR_DAY, utc_offset_s=offset)
    local_midnight = DAY_S - offset  # epoch seconds when the local day turns
    w.record(local_midnight - 60.0, abandoned=2.0, connected=8.0)
    assert w.totals(local_midnight - 1.0).abandoned == 2.0
    assert w.totals(local_midnight + 1.0).abandoned == 0.0


def test_fractional_counts_carry_estimated_amd_false_positives() -> None:
    w = AbandonWindow()
    for t in range(10):
        w.record(float(t), abandoned=0.25, connected=1.0)
    assert abs(w.totals(10.0).abandoned - 2.5) < 1e-9


def test_ofcom_estimate_joins_the_window_only_where_the_rule_counts_it() -> None:
    # 100 machine verdicts at 97% accuracy: 3 people were hung up on as machines.
    uk = window_totals(2, 60, 100, 0.97, count_amd_false_positives=True)
    assert (uk.abandoned, uk.connected, uk.estimated) == pytest.approx((5.0, 60.0, 3.0))
    assert uk.rate == pytest.approx(5 / 65)
    us = window_totals(2, 60, 100, 0.97)
    assert (us.abandoned, us.estimated, us.rate) == (2.0, 0.0, 2 / 62)
