import math

import numpy as np

from pacing.stats import erf, expected_positive_part, lognormal_grid_pmf, poisson_binomial_pmf


def test_erf_matches_the_standard_library() -> None:
    x = np.linspace(-4, 4, 81)
    assert np.max(np.abs(erf(x) - np.array([math.erf(v) for v in x]))) < 2e-7


def test_expected_positive_part_of_a_standard_normal_is_one_over_root_two_pi() -> None:
    value = expected_positive_part(np.array([0.0]), np.array([1.0]))[0]
    assert abs(value - 1.0 / math.sqrt(2 * math.pi)) < 1e-6


def test_poisson_binomial_with_equal_probabilities_is_binomial() -> None:
    pmf = poisson_binomial_pmf(np.full(10, 0.3))
    binom = [math.comb(10, k) * 0.3**k * 0.7 ** (10 - k) for k in range(11)]
    assert np.allclose(pmf, binom)


def test_lognormal_grid_keeps_the_mean() -> None:
    pmf = lognormal_grid_pmf(180.0, 0.7, 3601)
    assert abs(float(np.dot(pmf, np.arange(3601))) - 180.0) < 1.0
