import numpy as np

from pacing.estimators import CampaignEstimators, DurationEstimator, RateEstimator
from pacing.snapshot import Attempt, Outcome, Snapshot

from .helpers import history


def test_rate_estimator_answers_the_prior_before_data() -> None:
    assert RateEstimator(prior_mean=0.15).value == 0.15


def test_rate_estimator_converges_to_the_observed_frequency() -> None:
    est = RateEstimator(prior_mean=0.5, half_life=1e9)
    rng = np.random.default_rng(1)
    for hit in rng.random(20000) < 0.12:
        est.update(bool(hit))
    assert abs(est.value - 0.12) < 0.01


def test_rate_estimator_follows_a_drifting_rate() -> None:
    est = RateEstimator(prior_mean=0.25, half_life=500)
    rng = np.random.default_rng(2)
    for hit in rng.random(5000) < 0.25:
        est.update(bool(hit))
    for hit in rng.random(5000) < 0.08:
        est.update(bool(hit))
    assert abs(est.value - 0.08) < 0.03


def test_duration_estimator_answers_the_prior_mean_before_data() -> None:
    assert abs(DurationEstimator(prior_mean=180.0).mean() - 180.0) < 1.0


def test_duration_estimator_pmf_converges_to_the_samples() -> None:
    est = DurationEstimator(prior_mean=60.0, max_s=200)
    rng = np.random.default_rng(3)
    for x in rng.uniform(15, 45, 2000):
        est.update(float(x))
    cdf = est.cdf()
    assert abs(cdf[30] - 0.5) < 0.05
    assert cdf[50] > 0.98
    assert abs(est.pmf().sum() - 1.0) < 1e-9


def test_running_calls_correct_the_early_shift_bias_toward_short_calls() -> None:
    # Fifty agents start at once; after 120 s only the calls shorter than 120 s have finished.
    rng = np.random.default_rng(4)
    talks = rng.exponential(180.0, 50)
    naive = DurationEstimator(prior_mean=100.0, prior_weight=1.0)
    for t in talks[talks < 120]:
        naive.update(float(t))
    running = np.full(int(np.count_nonzero(talks >= 120)), 120.0)
    grid = np.arange(naive.max_s + 1)
    naive_mean = float(np.dot(naive.pmf(), grid))
    km_mean = float(np.dot(naive.pmf(censored=running), grid))
    assert naive_mean < 90.0
    assert km_mean > naive_mean + 50.0


def test_campaign_estimators_count_each_attempt_once() -> None:
    attempts, handles = history(attempts=100, handles=10)
    est = CampaignEstimators()
    snap = Snapshot(now=100.0, attempts=attempts, handles=handles)
    est.update(snap)
    est.update(snap)
    assert est.contact.count == 100
    assert est.talk.count == 10


def test_campaign_estimators_learn_contact_rate_from_live_outcomes() -> None:
    attempts = [
        Attempt(i, float(i), Outcome.ABANDONED if i % 10 == 0 else Outcome.MACHINE, 10.0)
        for i in range(2000)
    ]
    est = CampaignEstimators(contact_half_life=1e9)
    est.update(Snapshot(now=0.0, attempts=attempts))
    assert abs(est.contact.value - 0.1) < 0.01
    assert abs(est.machine.value - 0.9) < 0.01
    assert est.moving_abandon_rate == 1.0
