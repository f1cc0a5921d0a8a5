"""Online estimators that behave with little data: contact probability, answering-machine rate
and empirical duration distributions (time to answer, talk, wrap-up), fed from snapshot history."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from pacing.snapshot import FloatArray, Outcome, Snapshot
from pacing.stats import lognormal_grid_pmf


class RateEstimator:
    """Exponentially weighted Beta estimate of a probability.

    The prior (mean, weight in pseudo-observations) answers before data arrives; the half-life in
    observations lets the estimate follow a contact rate that drifts over the day.
    """

    def __init__(self, prior_mean: float, prior_weight: float = 10.0, half_life: float = 1000.0):
        self.prior_mean = prior_mean
        self.prior_weight = prior_weight
        self._decay = 0.5 ** (1.0 / half_life)
        self._hits = 0.0
        self._weight = 0.0
        self.count = 0

    def update(self, hit: bool) -> None:
        self._hits = self._hits * self._decay + (1.0 if hit else 0.0)
        self._weight = self._weight * self._decay + 1.0
        self.count += 1

    @property
    def value(self) -> float:
        return (self.prior_mean * self.prior_weight + self._hits) / (
            self.prior_weight + self._weight
        )


class DurationEstimator:
    """Empirical distribution of a duration on a 1-second grid, over the last `capacity` samples.

    Little data is handled by mixing in a lognormal prior worth `prior_weight` samples and by a
    Gaussian kernel whose width shrinks as samples accumulate (Silverman's rule).
    """

    def __init__(
        self,
        prior_mean: float,
        prior_cv: float = 0.7,
        prior_weight: float = 5.0,
        max_s: int = 3600,
        capacity: int = 2000,
    ) -> None:
        self.max_s = max_s
        self.prior_weight = prior_weight
        self._prior = lognormal_grid_pmf(prior_mean, prior_cv, max_s + 1)
        self._samples = np.zeros(capacity)
        self._next = 0
        self.count = 0  # samples ever seen; the window holds min(count, capacity)
        self._cache: FloatArray | None = None
        self._cache_count = -1

    def update(self, seconds: float) -> None:
        self._samples[self._next] = min(max(seconds, 0.0), float(self.max_s))
        self._next = (self._next + 1) % len(self._samples)
        self.count += 1

    @property
    def window(self) -> FloatArray:
        return self._samples[: min(self.count, len(self._samples))]

    def mean(self) -> float:
        w = self.window
        prior_mean = float(np.dot(self._prior, np.arange(self.max_s + 1)))
        total = self.prior_weight + len(w)
        return (prior_mean * self.prior_weight + float(w.sum())) / total

    def pmf(self, censored: FloatArray | None = None) -> FloatArray:
        """Mass on bins 0..max_s (bin k holds [k - 0.5, k + 0.5)).

        `censored` are durations still running (agents talking now, `s` in): early in a shift only
        short calls have finished, so without them the estimate is biased short. They enter a
        Kaplan-Meier estimate; without them the result is cached until new samples arrive.
        """
        if censored is None and self._cache is not None and self._cache_count == self.count:
            return self._cache
        w = self.window
        hist = np.bincount(np.rint(w).astype(np.int64), minlength=self.max_s + 1).astype(float)
        if len(w) >= 2:
            sd = float(np.std(w))
            iqr = float(np.subtract(*np.percentile(w, [75, 25]))) / 1.34
            spread = min(sd, iqr) if iqr > 0 else sd
            bandwidth = 0.9 * spread * len(w) ** -0.2
            if bandwidth > 0.5:
                half = int(3 * bandwidth) + 1
                x = np.arange(-half, half + 1, dtype=float)
                kernel = np.exp(-0.5 * (x / bandwidth) ** 2)
                smoothed = np.convolve(hist, kernel / kernel.sum(), mode="full")
                # Mass smoothed below zero folds back onto the smallest durations.
                below = smoothed[:half][::-1]
                hist = smoothed[half : half + self.max_s + 1].copy()
                hist[: len(below)] += below
        events = hist + self.prior_weight * self._prior
        if censored is not None and len(censored):
            pmf = self._kaplan_meier(events, censored)
        else:
            pmf = events / events.sum()
        if censored is None:
            self._cache = pmf
            self._cache_count = self.count
        return pmf

    def _kaplan_meier(self, events: FloatArray, censored: FloatArray) -> FloatArray:
        # A call running for c s is known to last longer than c: it is at risk up to bin c.
        lost = np.bincount(
            np.minimum(np.floor(censored).astype(np.int64), self.max_s), minlength=self.max_s + 1
        ).astype(float)
        at_risk = np.cumsum((events + lost)[::-1])[::-1]
        hazard = np.divide(events, at_risk, out=np.zeros_like(events), where=at_risk > 0)
        survival = np.cumprod(1.0 - np.clip(hazard, 0.0, 1.0))
        pmf = -np.diff(np.concatenate([[1.0], survival]))
        # What is left beyond the last running call follows the prior's tail.
        rest = float(survival[-1])
        if rest > 1e-12:
            last = int(np.max(np.floor(censored)))
            tail = self._prior.copy()
            tail[: last + 1] = 0.0
            total = tail.sum()
            pmf = pmf + (rest * tail / total if total > 0 else 0.0)
        return np.asarray(pmf / pmf.sum(), dtype=np.float64)

    def cdf(self) -> FloatArray:
        """P(duration <= k) for k on the grid."""
        return np.cumsum(self.pmf())


@dataclass(frozen=True, slots=True)
class EstimatorPriors:
    contact_rate: float = 0.15
    machine_rate: float = 0.2
    answer_s: float = 12.0
    no_answer_s: float = 18.0
    talk_s: float = 180.0
    wrap_s: float = 30.0


class CampaignEstimators:
    """Every estimator one campaign needs, fed by the history carried in snapshots.

    It remembers the last attempt and handle `seq` consumed, so each record counts once however
    often the owner shows it.
    """

    def __init__(
        self,
        priors: EstimatorPriors | None = None,
        contact_half_life: float = 1000.0,
        recent_live: int = 100,
    ) -> None:
        p = priors or EstimatorPriors()
        self.contact = RateEstimator(p.contact_rate, half_life=contact_half_life)
        self.machine = RateEstimator(p.machine_rate, half_life=contact_half_life)
        self.answer_time = DurationEstimator(p.answer_s, prior_cv=0.5, max_s=240)
        self.no_answer_time = DurationEstimator(p.no_answer_s, prior_cv=0.5, max_s=240)
        self.talk = DurationEstimator(p.talk_s, prior_cv=0.7, prior_weight=10.0)
        self.wrap = DurationEstimator(p.wrap_s, prior_cv=0.4, max_s=1200)
        self.recent_abandons: deque[bool] = deque(maxlen=recent_live)
        self.live_answers = 0
        self._attempt_seq = -1
        self._handle_seq = -1

    def update(self, snapshot: Snapshot) -> None:
        attempts = snapshot.attempts
        if attempts and attempts[-1].seq > self._attempt_seq:
            # Walk back to the first unseen record; history is in increasing seq.
            i = len(attempts)
            while i > 0 and attempts[i - 1].seq > self._attempt_seq:
                i -= 1
            for k in range(i, len(attempts)):
                a = attempts[k]
                live = a.outcome is Outcome.CONNECTED or a.outcome is Outcome.ABANDONED
                self.contact.update(live)
                if live:
                    self.live_answers += 1
                    self.answer_time.update(a.seconds_to_outcome)
                    self.recent_abandons.append(a.outcome is Outcome.ABANDONED)
                    self.machine.update(False)
                else:
                    self.no_answer_time.update(a.seconds_to_outcome)
                    if a.outcome is Outcome.MACHINE:
                        self.machine.update(True)
            self._attempt_seq = attempts[-1].seq
        handles = snapshot.handles
        if handles and handles[-1].seq > self._handle_seq:
            i = len(handles)
            while i > 0 and handles[i - 1].seq > self._handle_seq:
                i -= 1
            for k in range(i, len(handles)):
                self.talk.update(handles[k].talk_s)
                self.wrap.update(handles[k].wrap_s)
            self._handle_seq = handles[-1].seq

    @property
    def moving_abandon_rate(self) -> float:
        n = len(self.recent_abandons)
        return sum(self.recent_abandons) / n if n else 0.0
