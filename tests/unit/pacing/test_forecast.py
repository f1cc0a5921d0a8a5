import numpy as np

from pacing.forecast import AnswerForecast, AvailabilityForecast
from pacing.stats import poisson_binomial_pmf

from .helpers import snapshot

GRID = np.arange(3601)


def exponential_pmf(mean: float, size: int = 3601) -> np.ndarray:
    """Exponential mass on the 1-second grid, bin k holding [k - 0.5, k + 0.5)."""
    upper = 1.0 - np.exp(-(np.arange(size) + 0.5) / mean)
    pmf = np.diff(np.concatenate([[0.0], upper]))
    return pmf / pmf.sum()


def uniform_pmf(low: float, high: float, size: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.uniform(low, high, 2_000_000)
    return np.bincount(np.rint(x).astype(int), minlength=size)[:size] / len(x)


NO_WRAP = np.array([1.0])


def test_exponential_talk_forecast_equals_the_analytic_probability_at_every_age() -> None:
    f = AvailabilityForecast(exponential_pmf(120.0), NO_WRAP, horizon_s=30)
    t = np.arange(31)
    analytic = 1.0 - np.exp(-t / 120.0)
    for age in (0, 45, 300, 900):
        assert np.max(np.abs(f.talk_table[age] - analytic)) < 0.005


def test_uniform_wrap_forecast_equals_the_conditional_uniform() -> None:
    f = AvailabilityForecast(exponential_pmf(120.0), uniform_pmf(15, 45, 60), horizon_s=30)
    for age in (0, 20, 35):
        for t in (5, 10, 20):
            analytic = min(max((age + t - max(age, 15)) / (45 - max(age, 15)), 0.0), 1.0)
            assert abs(f.wrap_table[age, t] - analytic) < 0.03


def test_talk_then_wrap_forecast_matches_monte_carlo() -> None:
    rng = np.random.default_rng(1)
    sigma2 = float(np.log1p(0.49))
    talk = rng.lognormal(np.log(180.0) - sigma2 / 2, np.sqrt(sigma2), 1_000_000)
    wrap = rng.uniform(15, 45, 1_000_000)
    talk_pmf = np.bincount(np.rint(talk).astype(int).clip(0, 3600), minlength=3601) / len(talk)
    f = AvailabilityForecast(talk_pmf, uniform_pmf(15, 45, 60), horizon_s=32)
    for age in (60, 200, 400):
        alive = talk > age
        rest = talk[alive] + wrap[alive] - age
        for t in (20, 32):
            assert abs(f.talk_table[age, t] - np.mean(rest <= t)) < 0.005


def test_free_agent_moments_are_the_poisson_binomial_of_ready_plus_busy() -> None:
    f = AvailabilityForecast(exponential_pmf(100.0), NO_WRAP, horizon_s=20)
    snap = snapshot(ready=3, talking=[10.0, 50.0, 200.0, 7.0])
    mean, var = f.free_agents(snap)
    probs = f.busy_free_probs(snap)[:, 20]
    pmf = poisson_binomial_pmf(probs)
    k = np.arange(len(pmf))
    assert abs(mean[20] - (3 + np.dot(pmf, k))) < 1e-9
    assert abs(var[20] - (np.dot(pmf, k * k) - np.dot(pmf, k) ** 2)) < 1e-9
    assert mean[0] == 3.0


def test_a_new_call_answers_live_by_h_with_probability_p_times_the_answer_cdf() -> None:
    f = AnswerForecast(0.2, uniform_pmf(4, 20, 241), uniform_pmf(5, 30, 241), horizon_s=30)
    for h in (8, 12, 16):
        assert abs(f.new_call[h] - 0.2 * (h - 4 + 0.5) / 16) < 0.01
    assert abs(f.new_call[25] - 0.2) < 1e-6


def test_a_call_out_for_a_while_is_less_likely_to_answer_live() -> None:
    p = 0.2
    f = AnswerForecast(p, uniform_pmf(4, 20, 241), uniform_pmf(5, 30, 241), horizon_s=30)
    for age in (10, 15):
        s_a = (20 - (age - 0.5)) / 16
        s_n = (30 - (age - 0.5)) / 25
        analytic = p * s_a / (p * s_a + (1 - p) * s_n)
        assert abs(f.eventual[age] - analytic) < 0.01
    assert f.eventual[22] < 1e-3  # past the longest time to answer, it will not answer live
