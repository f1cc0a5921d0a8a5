"""Agent-availability and answer forecasts: conditional survival of talk and wrap-up given the time
already spent, and the live answers expected from calls in flight, on a 1-second horizon grid."""

from __future__ import annotations

import numpy as np

from pacing.snapshot import AgentState, CallStage, FloatArray, Snapshot

_RESERVED = int(AgentState.RESERVED)
_TALKING = int(AgentState.TALKING)
_WRAP = int(AgentState.WRAP_UP)
_RINGING = int(CallStage.RINGING)
# Rows whose survival falls below this are too thin to condition on; older ages reuse the last
# well-supported row (the residual-time distribution of the oldest ages seen).
_MIN_SURVIVAL = 1e-3


def _conditional_talk_table(talk_pmf: FloatArray, wrap_cdf: FloatArray, horizon: int) -> FloatArray:
    """T[a, j] = P(T + W <= a + j | T > a): a talking agent `a` s in, free within `j` s.

    Only talk bins in (a, a + j] can finish talk and wrap-up within j, so each column is a short
    recurrence: c_j[a] = c_{j-1}[a + 1] + F_W(j - 1) p_T[a + 1].
    """
    n = len(talk_pmf)
    padded = np.concatenate([talk_pmf, np.zeros(horizon + 1)])
    survival = np.concatenate([1.0 - np.cumsum(talk_pmf), np.zeros(horizon + 1)])
    wrap_f = np.concatenate([wrap_cdf, np.ones(max(0, horizon + 1 - len(wrap_cdf)))])
    length = n + horizon
    col = np.zeros(length)
    table = np.zeros((n, horizon + 1))
    for j in range(1, horizon + 1):
        nxt = np.zeros(length)
        nxt[:-1] = col[1:] + wrap_f[j - 1] * padded[1:length]
        col = nxt
        table[:, j] = col[:n]
    surv = survival[:n]
    ok = surv >= _MIN_SURVIVAL
    last_ok = int(np.nonzero(ok)[0][-1]) if ok.any() else 0
    table[ok] /= surv[ok, None]
    table[~ok] = table[last_ok]
    return np.clip(table, 0.0, 1.0)


def _conditional_wrap_table(wrap_pmf: FloatArray, horizon: int) -> FloatArray:
    """W[a, j] = P(W <= a + j | W > a)."""
    cdf = np.cumsum(wrap_pmf)
    n = len(cdf)
    ext = np.concatenate([cdf, np.ones(horizon + 1)])
    idx = np.arange(n)[:, None] + np.arange(horizon + 1)[None, :]
    surv = 1.0 - cdf
    ok = surv >= _MIN_SURVIVAL
    last_ok = int(np.nonzero(ok)[0][-1]) if ok.any() else 0
    table = np.zeros((n, horizon + 1))
    table[ok] = (ext[idx[ok]] - cdf[ok, None]) / surv[ok, None]
    table[~ok] = table[last_ok]
    return np.clip(table, 0.0, 1.0)


class AvailabilityForecast:
    """For each busy agent, P(free within t s | time already in talk or wrap-up), and the mean and
    variance of the number of free agents at each horizon (ready agents count as free now)."""

    def __init__(self, talk_pmf: FloatArray, wrap_pmf: FloatArray, horizon_s: int = 32) -> None:
        self.horizon_s = horizon_s
        self.talk_table = _conditional_talk_table(talk_pmf, np.cumsum(wrap_pmf), horizon_s)
        self.wrap_table = _conditional_wrap_table(wrap_pmf, horizon_s)

    def busy_free_probs(self, snapshot: Snapshot) -> FloatArray:
        """Rows: busy agents (reserved, talking, wrap-up); columns: horizons 0..horizon_s."""
        states = snapshot.agent_states
        secs = snapshot.agent_seconds
        counts = snapshot.agent_counts()
        talk_age = secs[states == _TALKING]
        if counts[_RESERVED]:
            # A reserved agent is about to start talking: elapsed talk is zero.
            talk_age = np.concatenate([talk_age, np.zeros(counts[_RESERVED])])
        t_idx = np.minimum(np.rint(talk_age).astype(np.int64), len(self.talk_table) - 1)
        w_idx = np.minimum(
            np.rint(secs[states == _WRAP]).astype(np.int64), len(self.wrap_table) - 1
        )
        return np.concatenate([self.talk_table[t_idx], self.wrap_table[w_idx]])

    def free_agents(self, snapshot: Snapshot) -> tuple[FloatArray, FloatArray]:
        """Mean and variance of free agents at horizons 0..horizon_s (Poisson-binomial moments)."""
        probs = self.busy_free_probs(snapshot)
        ready = float(snapshot.ready)
        mean = ready + probs.sum(axis=0)
        var = (probs * (1.0 - probs)).sum(axis=0)
        return mean, var


class AnswerForecast:
    """Live answers expected from calls already dialed, given how long each has been out.

    A call unresolved after e s answers live by e + h with probability
    p (F_A(e + h) - F_A(e)) / (p S_A(e) + (1 - p) S_N(e)), where A is the time to a live answer
    and N the time to the end of a call that is not answered live.
    """

    def __init__(
        self, contact: float, answer_pmf: FloatArray, no_answer_pmf: FloatArray, horizon_s: int
    ) -> None:
        self.contact = contact
        f_a = np.cumsum(answer_pmf)
        f_n = np.cumsum(no_answer_pmf)
        n = len(f_a)
        ext = np.concatenate([f_a, np.ones(horizon_s + 1)])
        idx = np.arange(n)[:, None] + np.arange(horizon_s + 1)[None, :]
        # A call at age e has not resolved, so its time to resolve is > e - 0.5 on this grid.
        s_a = 1.0 - np.concatenate([[0.0], f_a[:-1]])
        s_n = 1.0 - np.concatenate([[0.0], f_n[:-1]])
        f_prev = 1.0 - s_a
        denom = contact * s_a + (1.0 - contact) * s_n
        safe = np.where(denom > 1e-9, denom, 1.0)
        self.table = np.where(
            (denom > 1e-9)[:, None], contact * (ext[idx] - f_prev[:, None]) / safe[:, None], 0.0
        )
        self.table = np.clip(self.table, 0.0, 1.0)
        self.eventual = np.where(denom > 1e-9, contact * s_a / safe, 0.0)
        # A call dialed now: answers live by h with probability p F_A(h).
        self.new_call = contact * ext[: horizon_s + 1]

    def pending(self, snapshot: Snapshot) -> tuple[FloatArray, FloatArray, float]:
        """Mean and variance of live answers by each horizon from pending calls, plus the mean
        number they will eventually produce."""
        pending = snapshot.call_stages <= _RINGING
        ages = np.minimum(
            np.rint(snapshot.call_seconds[pending]).astype(np.int64), len(self.table) - 1
        )
        q = self.table[ages]
        return q.sum(axis=0), (q * (1.0 - q)).sum(axis=0), float(self.eventual[ages].sum())
