"""Small vectorised numerics the pacing code needs and numpy lacks: the normal CDF, the expected
positive part of a normal, Poisson-binomial distributions and distributions on a 1-second grid."""

from __future__ import annotations

import numpy as np

from pacing.snapshot import FloatArray

_SQRT2 = float(np.sqrt(2.0))
_INV_SQRT_2PI = float(1.0 / np.sqrt(2.0 * np.pi))


def erf(x: FloatArray) -> FloatArray:
    """Abramowitz-Stegun 7.1.26 (absolute error below 1.5e-7): numpy has no erf."""
    sign = np.sign(x)
    ax = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * ax)
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    return np.asarray(sign * (1.0 - poly * np.exp(-ax * ax)), dtype=np.float64)


def normal_cdf(z: FloatArray) -> FloatArray:
    return np.asarray(0.5 * (1.0 + erf(z / _SQRT2)), dtype=np.float64)


def expected_positive_part(mean: FloatArray, var: FloatArray) -> FloatArray:
    """E[max(X, 0)] for X ~ Normal(mean, var), elementwise."""
    sd = np.sqrt(np.maximum(var, 1e-9))
    z = mean / sd
    pdf = _INV_SQRT_2PI * np.exp(-0.5 * z * z)
    return np.asarray(mean * normal_cdf(z) + sd * pdf, dtype=np.float64)


def poisson_binomial_pmf(probs: FloatArray) -> FloatArray:
    """Exact distribution of the number of successes among independent Bernoulli trials."""
    pmf = np.zeros(len(probs) + 1)
    pmf[0] = 1.0
    for i, p in enumerate(np.asarray(probs, dtype=np.float64)):
        pmf[1 : i + 2] = pmf[1 : i + 2] * (1.0 - p) + pmf[0 : i + 1] * p
        pmf[0] *= 1.0 - p
    return pmf


def lognormal_grid_pmf(mean: float, cv: float, size: int) -> FloatArray:
    """A lognormal with the given mean and coefficient of variation, as mass on the 1-second grid
    (bin k holds [k - 0.5, k + 0.5)), renormalised to the grid."""
    sigma2 = np.log1p(cv * cv)
    mu = np.log(mean) - sigma2 / 2.0
    edges = np.arange(size + 1, dtype=np.float64) - 0.5
    edges[0] = 1e-12
    z = (np.log(edges) - mu) / np.sqrt(sigma2)
    cdf = normal_cdf(z)
    cdf[0] = 0.0
    pmf = np.diff(cdf)
    total = pmf.sum()
    return pmf / total if total > 0 else pmf
