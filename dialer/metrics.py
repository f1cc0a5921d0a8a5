"""Every Prometheus metric of the service, defined once, and the typed helpers that update them.

The engine, telephony and agents code call only these helpers; labels are bounded ids and codes.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from decimal import Decimal

from prometheus_client import Counter, Gauge, Histogram

from agents_ws.protocol import SoftphoneStatus

log = logging.getLogger(__name__)

# Label vocabularies. A value outside them is counted as "other": a typo or a new code in the
# engine must never create an unbounded number of series, and no free text can reach a label.
# Mirrors dialer.telephony.outcomes.Outcome, CallState (less "ended") and agents_ws.state
# .AgentState (less "offline"); tests/unit/test_metrics.py checks they agree.
OUTCOMES = (
    "human",
    "machine",
    "busy",
    "no_answer",
    "congestion",
    "invalid_number",
    "failed",
    "hung_up_early",
    "abandoned",
    "lost",
)
CALL_STAGES = ("created", "originated", "ringing", "answered", "bridged", "abandoned")
AGENT_STATES = ("logged_in", "ready", "paused", "reserved", "talking", "wrap_up")
PACING_MODES = (
    "preview",
    "progressive",
    "power",
    "warm-up",
    "small-team",
    "predictive",
    "progressive-floor",
    "trunk-limit",
    "vicidial-adaptive",
    "omni-formula",
)
OTHER = "other"
_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_warned: set[str] = set()

# Buckets around the 2 s regulatory limit, where the answer-to-agent latency matters most.
# Buckets from 5 ms: a healthy bridge takes 25-45 ms, which the lowest buckets must resolve; the
# upper ones sit around the 2 s regulatory limit.
BRIDGE_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 5.0,
)  # fmt: skip
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
DB_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

# --- calls -------------------------------------------------------------------------------------
CALLS_ORIGINATED = Counter(
    "dialer_calls_originated_total",
    "Calls originated (one per call attempt sent to Asterisk).",
    ["campaign", "server"],
)
CALLS_ANSWERED_LIVE = Counter(
    "dialer_calls_answered_live_total",
    "Calls answered by a person (AMD human or no AMD), whether bridged or abandoned.",
    ["campaign"],
)
CALLS_BY_OUTCOME = Counter(
    "dialer_call_outcomes_total",
    "Finished call attempts by final outcome.",
    ["campaign", "outcome"],
)
CALLS_ABANDONED = Counter(
    "dialer_calls_abandoned_total",
    "Live-answered calls not connected to an agent within the limit (safe-harbor message played).",
    ["campaign"],
)
CALLS_CONNECTED = Counter(
    "dialer_calls_connected_to_agent_total",
    "Live-answered calls bridged to an agent within the limit.",
    ["campaign"],
)
CALLS_IN_FLIGHT = Gauge(
    "dialer_calls_in_flight",
    "Calls in flight by stage of the call state machine.",
    ["campaign", "stage"],
)
BRIDGE_LATENCY = Histogram(
    "dialer_bridge_latency_seconds",
    "Time from a live answer to the bridge with an agent.",
    ["campaign"],
    buckets=BRIDGE_BUCKETS,
)
ABANDON_RATE = Gauge(
    "dialer_abandon_rate_ratio",
    "Abandoned / (abandoned + connected to an agent) over the campaign's regulatory window.",
    ["campaign"],
)
ABANDON_CAP = Gauge(
    "dialer_abandon_cap_ratio",
    "The abandon-rate cap in force for the campaign (e.g. 0.03).",
    ["campaign"],
)
ABANDON_ESTIMATED = Gauge(
    "dialer_abandon_estimated_calls",
    "Estimated AMD false positives counted as abandoned in the window (UK rule; 0 elsewhere).",
    ["campaign"],
)
CAMPAIGN_RUNNING = Gauge(
    "dialer_campaign_running",
    "1 while this process runs the campaign (holds its lease and it is in state running), else 0.",
    ["campaign"],
)
CAMPAIGN_STALLED = Gauge(
    "dialer_campaign_stalled",
    "1 while the campaign runs and pacing wants calls but none goes out (no Asterisk, a setting, "
    "nothing dialable: the log line says which), else 0.",
    ["campaign"],
)
CAMPAIGN_INFO = Gauge(
    "dialer_campaign_info",
    "1 per campaign this process runs, labelled with its name: join on `campaign` "
    "(group_left(name)) to show names. Campaign names are operations' labels, never debtor data.",
    ["campaign", "name"],
)

# --- agents ------------------------------------------------------------------------------------
AGENTS = Gauge(
    "dialer_agents",
    "Agents by state (logged-in agents only; offline agents are not counted).",
    ["campaign", "state"],
)
WS_CONNECTIONS = Gauge("dialer_websocket_connections", "Open agent websocket connections.")

# --- the desktop's softphone (no per-agent labels: aggregated over agents) ----------------------
SOFTPHONES_REGISTERED = Gauge(
    "dialer_softphones_registered", "Agents' browser softphones registered to Asterisk now."
)
SOFTPHONES_AUDIO_UP = Gauge(
    "dialer_softphones_audio_up", "Agents' browser softphones whose audio session is up now."
)
SOFTPHONE_MOS = Histogram(
    "dialer_softphone_mos",
    "Estimated MOS (E-model, from loss, jitter and round trip) of softphone reports.",
    buckets=(1.0, 2.0, 2.5, 3.0, 3.5, 3.8, 4.0, 4.2, 4.4, 5.0),
)
SOFTPHONE_LOSS = Histogram(
    "dialer_softphone_packet_loss_percent",
    "Inbound packet loss (%) of softphone reports.",
    buckets=(0.0, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0),
)
SOFTPHONE_JITTER = Histogram(
    "dialer_softphone_jitter_seconds",
    "Inbound jitter of softphone reports.",
    buckets=(0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5),
)
SOFTPHONE_RTT = Histogram(
    "dialer_softphone_rtt_seconds",
    "Round trip to Asterisk of softphone reports.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.4, 0.8, 1.5),
)
SOFTPHONE_REJOINS = Counter(
    "dialer_softphone_rejoins_total",
    "Softphones that re-joined their agent session by themselves after losing it.",
)
CALLS_REFUSED_AUDIO_DOWN = Counter(
    "dialer_calls_refused_audio_down_total",
    "Answered calls no agent took while a ready agent of the campaign had their audio down.",
)

# --- pacing ------------------------------------------------------------------------------------
PACING_DECISIONS = Counter(
    "dialer_pacing_decisions_total",
    "Pacing decisions taken, by the rule in force.",
    ["campaign", "mode"],
)
PACING_LAUNCHES = Counter(
    "dialer_pacing_launches_total",
    "Calls the pacing decided to launch, by the rule in force (launches per decision = "
    "rate of this / rate of dialer_pacing_decisions_total).",
    ["campaign", "mode"],
)
PACING_LAST_LAUNCHES = Gauge(
    "dialer_pacing_last_launches",
    "Calls the latest pacing decision launched.",
    ["campaign"],
)
PACING_MODE = Gauge(
    "dialer_pacing_mode",
    "1 for the pacing rule in force for the campaign (warm-up, small-team, predictive, ...), "
    "0 for the others.",
    ["campaign", "mode"],
)
PACING_FREE_AGENTS = Gauge(
    "dialer_pacing_forecast_free_agents",
    "Forecast mean of free agents at the end of the pacing horizon (predictive decisions).",
    ["campaign"],
)
PACING_PREDICTED_ABANDON = Gauge(
    "dialer_pacing_predicted_abandon_ratio",
    "Abandon ratio the pacing forecast for its latest decision.",
    ["campaign"],
)
PACING_TARGET_ABANDON = Gauge(
    "dialer_pacing_target_abandon_ratio",
    "Abandon ratio the pacing aimed at for its latest decision.",
    ["campaign"],
)

# --- money -------------------------------------------------------------------------------------
PTP_CREATED = Counter(
    "dialer_promises_to_pay_total",
    "Promises-to-pay committed.",
    ["campaign", "currency"],
)
PTP_AMOUNT = Counter(
    "dialer_promised_amount_total",
    "Amount promised in promises-to-pay, in units of the label's currency (not cents).",
    ["campaign", "currency"],
)

# --- telephony and storage ---------------------------------------------------------------------
AMI_UP = Gauge(
    "dialer_ami_up", "1 while the AMI connection to the server is logged in.", ["server"]
)
AMI_EVENT_LAG = Histogram(
    "dialer_ami_event_lag_seconds",
    "Delay between an AMI event's timestamp and its handling by the dialer.",
    ["server"],
    buckets=LAG_BUCKETS,
)
DB_WRITE = Histogram(
    "dialer_db_write_duration_seconds",
    "Duration of database write transactions, by operation.",
    ["op"],
    buckets=DB_BUCKETS,
)
DB_ERRORS = Counter(
    "dialer_db_errors_total",
    "Database operations that failed, by operation.",
    ["op"],
)

# --- the process -------------------------------------------------------------------------------
EVENT_LOOP_LAG = Histogram(
    "dialer_event_loop_lag_seconds",
    "How late the event loop ran a timer: everything the loop serves (calls, sockets) waits "
    "this long.",
    buckets=LAG_BUCKETS,
)
LOGIN_REFUSALS = Counter(
    "dialer_login_refusals_total",
    "Refused logins by reason (wrong credentials, locked out, hashing queue full).",
    ["reason"],
)
LOGIN_REASONS = ("wrong_credentials", "locked", "busy", "invalid_request")

# Every metric family the service exports, for the dashboard and alert checks.
ALL_METRICS: tuple[Counter | Gauge | Histogram, ...] = (
    CALLS_ORIGINATED,
    CALLS_ANSWERED_LIVE,
    CALLS_BY_OUTCOME,
    CALLS_ABANDONED,
    CALLS_CONNECTED,
    CALLS_IN_FLIGHT,
    BRIDGE_LATENCY,
    ABANDON_RATE,
    ABANDON_CAP,
    ABANDON_ESTIMATED,
    CAMPAIGN_RUNNING,
    CAMPAIGN_STALLED,
    CAMPAIGN_INFO,
    AGENTS,
    WS_CONNECTIONS,
    PACING_DECISIONS,
    PACING_LAUNCHES,
    PACING_LAST_LAUNCHES,
    PACING_MODE,
    PACING_FREE_AGENTS,
    PACING_PREDICTED_ABANDON,
    PACING_TARGET_ABANDON,
    PTP_CREATED,
    PTP_AMOUNT,
    AMI_UP,
    AMI_EVENT_LAG,
    DB_WRITE,
    DB_ERRORS,
    EVENT_LOOP_LAG,
    LOGIN_REFUSALS,
)


def exported_names() -> frozenset[str]:
    """Every series name a scrape can show, with the suffixes of each metric type."""
    suffixes = {
        "counter": ("_total", "_created"),
        "gauge": ("",),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
    }
    names: set[str] = set()
    for metric in ALL_METRICS:
        for family in metric.describe():
            names.update(family.name + suffix for suffix in suffixes[family.type])
    return frozenset(names)


# --- label checks ------------------------------------------------------------------------------
def _campaign(campaign: int) -> str:
    # Campaign ids, not names: ids are stable across renames and can never carry free text.
    if isinstance(campaign, bool) or not isinstance(campaign, int) or campaign < 0:
        raise ValueError(f"campaign: a campaign id (int >= 0) is required, got {campaign!r}")
    return str(campaign)


def _slug(field: str, value: str) -> str:
    if not isinstance(value, str) or not _SLUG.match(value):
        raise ValueError(f"{field}: expected a short code like 'pbx1', got {value!r}")
    return value


def _known(field: str, value: str, vocabulary: tuple[str, ...]) -> str:
    code = value.strip().lower().replace("-", "_") if isinstance(value, str) else ""
    for known in vocabulary:
        if code == known.replace("-", "_"):
            return known
    if field not in _warned:  # once per field: an engine bug must not flood the logs
        _warned.add(field)
        # The value itself is not logged: it may be anything, even debtor data.
        log.warning("metrics: unknown %s code counted as %r", field, OTHER)
    return OTHER


def _non_negative(field: str, value: float) -> float:
    if not isinstance(value, int | float) or math.isnan(value) or value < 0:
        raise ValueError(f"{field}: expected a number >= 0, got {value!r}")
    return float(value)


# --- helpers the engine, telephony and agents code call ----------------------------------------
def record_originated(campaign: int, server: str) -> None:
    """One Originate sent for the campaign on an Asterisk server."""
    CALLS_ORIGINATED.labels(_campaign(campaign), _slug("server", server)).inc()


def record_answered_live(campaign: int) -> None:
    """A person answered (AMD human, or AMD off); counted once per attempt."""
    CALLS_ANSWERED_LIVE.labels(_campaign(campaign)).inc()


def record_outcome(campaign: int, outcome: str) -> None:
    """An attempt ended with its final outcome (one of OUTCOMES; anything else counts as other)."""
    CALLS_BY_OUTCOME.labels(_campaign(campaign), _known("outcome", outcome, OUTCOMES)).inc()


def record_abandoned(campaign: int) -> None:
    """A live answer got the safe-harbor message: no agent within the limit."""
    CALLS_ABANDONED.labels(_campaign(campaign)).inc()


def record_connected(campaign: int, bridge_latency_s: float) -> None:
    """A live answer was bridged to an agent after `bridge_latency_s` seconds."""
    label = _campaign(campaign)
    CALLS_CONNECTED.labels(label).inc()
    BRIDGE_LATENCY.labels(label).observe(_non_negative("bridge_latency_s", bridge_latency_s))


def observe_bridge_latency(campaign: int, seconds: float) -> None:
    """Answer-to-agent latency alone, for callers that count the connection elsewhere."""
    BRIDGE_LATENCY.labels(_campaign(campaign)).observe(_non_negative("seconds", seconds))


def set_calls_in_flight(campaign: int, counts: Mapping[str, int]) -> None:
    """Calls in flight by stage; stages missing from `counts` are set to 0."""
    _set_by_vocabulary(CALLS_IN_FLIGHT, _campaign(campaign), "stage", counts, CALL_STAGES)


def set_agents_by_state(campaign: int, counts: Mapping[str, int]) -> None:
    """Logged-in agents by state; states missing from `counts` are set to 0, offline is ignored."""
    present = {k: v for k, v in counts.items() if k.strip().lower() != "offline"}
    _set_by_vocabulary(AGENTS, _campaign(campaign), "agent state", present, AGENT_STATES)


def _set_by_vocabulary(
    gauge: Gauge, campaign: str, field: str, counts: Mapping[str, int], vocabulary: tuple[str, ...]
) -> None:
    totals = dict.fromkeys(vocabulary, 0.0)
    other = 0.0
    for code, n in counts.items():
        known = _known(field, code, vocabulary)
        value = _non_negative(f"{field} {code}", n)
        if known == OTHER:
            other += value
        else:
            totals[known] += value
    for code, value in totals.items():
        gauge.labels(campaign, code).set(value)
    if other:
        gauge.labels(campaign, OTHER).set(other)


def set_campaign_running(campaign: int, running: bool) -> None:
    """Whether this process runs the campaign now; the no-agent-ready alert keys on it. The
    engine says so before its first launch, so this is where the campaign's series start."""
    if running:
        init_campaign(campaign)
    CAMPAIGN_RUNNING.labels(_campaign(campaign)).set(1 if running else 0)


_servers: set[str] = set()  # AMI servers seen (set_ami_up), for the originate series
_initialised: set[tuple[str, str]] = set()  # (campaign, what) already at 0
_names: dict[str, str] = {}  # campaign -> the name its info series carries


def init_campaign(campaign: int, currencies: Iterable[str] = ()) -> None:
    """Every labelled counter and histogram of the campaign at 0 before its first event, so that
    dashboards show 0 rather than "No data" and increase() sees the first jump. Idempotent;
    call again with the currencies of its accounts once they are known."""
    label = _campaign(campaign)
    todo = [("base", "")]
    todo += [("server", s) for s in sorted(_servers)]
    todo += [("currency", c) for c in currencies if isinstance(c, str) and _CURRENCY.match(c)]
    for kind, value in todo:
        if (label, f"{kind}:{value}") in _initialised:
            continue
        _initialised.add((label, f"{kind}:{value}"))
        if kind == "server":
            CALLS_ORIGINATED.labels(label, value)
        elif kind == "currency":
            PTP_CREATED.labels(label, value)
            PTP_AMOUNT.labels(label, value)
        else:
            for counter in (CALLS_ANSWERED_LIVE, CALLS_ABANDONED, CALLS_CONNECTED):
                counter.labels(label)
            BRIDGE_LATENCY.labels(label)
            for outcome in (*OUTCOMES, OTHER):
                CALLS_BY_OUTCOME.labels(label, outcome)
            for mode in (*PACING_MODES, OTHER):
                PACING_DECISIONS.labels(label, mode)
                PACING_LAUNCHES.labels(label, mode)
            CAMPAIGN_STALLED.labels(label).set(0)


def set_campaign_info(campaign: int, name: str) -> None:
    """`dialer_campaign_info{campaign, name} 1`; a renamed campaign's old series goes."""
    label = _campaign(campaign)
    clean = "".join(ch for ch in str(name) if ch.isprintable())[:120]
    old = _names.get(label)
    if old == clean:
        return
    if old is not None:
        with contextlib.suppress(KeyError):
            CAMPAIGN_INFO.remove(label, old)
    _names[label] = clean
    CAMPAIGN_INFO.labels(label, clean).set(1)


def forget_campaign_info(campaign: int) -> None:
    label = _campaign(campaign)
    old = _names.pop(label, None)
    if old is not None:
        with contextlib.suppress(KeyError):
            CAMPAIGN_INFO.remove(label, old)


def set_campaign_stalled(campaign: int, stalled: bool) -> None:
    """The stalled-campaign alarm (dialer.stall): pacing wants calls, none goes out."""
    CAMPAIGN_STALLED.labels(_campaign(campaign)).set(1 if stalled else 0)


def forget_campaign(campaign: int) -> None:
    """Drops the campaign's live gauges when this process stops running it (lease lost, campaign
    stopped), so no stale calls or agents linger on the dashboards. Counters are kept."""
    label = _campaign(campaign)
    by_code: tuple[tuple[Gauge, tuple[str, ...]], ...] = (
        (CALLS_IN_FLIGHT, CALL_STAGES),
        (AGENTS, AGENT_STATES),
        (PACING_MODE, PACING_MODES),
    )
    for gauge, vocabulary in by_code:
        for code in (*vocabulary, OTHER):
            with contextlib.suppress(KeyError):
                gauge.remove(label, code)
    for single in (
        ABANDON_RATE,
        ABANDON_CAP,
        ABANDON_ESTIMATED,
        PACING_LAST_LAUNCHES,
        PACING_FREE_AGENTS,
        PACING_PREDICTED_ABANDON,
        PACING_TARGET_ABANDON,
    ):
        with contextlib.suppress(KeyError):
            single.remove(label)
    CAMPAIGN_RUNNING.labels(label).set(0)


def set_abandon_rate(
    campaign: int, rate: float, cap: float | None = None, estimated: float = 0.0
) -> None:
    """The abandon rate over the regulatory window (as the rule counts it, from
    dialer.store.abandons), the cap it must stay under, and how many of its abandons are the
    estimated AMD false positives (UK rule)."""
    label = _campaign(campaign)
    ABANDON_RATE.labels(label).set(_ratio("rate", rate))
    ABANDON_ESTIMATED.labels(label).set(_non_negative("estimated", estimated))
    if cap is not None:
        ABANDON_CAP.labels(label).set(_ratio("cap", cap))


def _ratio(field: str, value: float) -> float:
    number = _non_negative(field, value)
    if number > 1:
        raise ValueError(f"{field}: a ratio between 0 and 1 is required, got {value!r}")
    return number


def record_pacing_decision(campaign: int, decision: Mapping[str, object]) -> None:
    """A pacing Decision, as `Decision.to_dict()` gives it."""
    label = _campaign(campaign)
    launches = decision.get("launches")
    if isinstance(launches, bool) or not isinstance(launches, int) or launches < 0:
        raise ValueError(f"decision.launches: expected an int >= 0, got {launches!r}")
    raw_mode = decision.get("mode_in_force")
    mode = _known("pacing mode", raw_mode if isinstance(raw_mode, str) else "", PACING_MODES)
    PACING_DECISIONS.labels(label, mode).inc()
    PACING_LAUNCHES.labels(label, mode).inc(launches)
    PACING_LAST_LAUNCHES.labels(label).set(launches)
    for known in (*PACING_MODES, OTHER):
        PACING_MODE.labels(label, known).set(1 if known == mode else 0)
    predicted = decision.get("predicted_abandon")
    if isinstance(predicted, int | float) and not isinstance(predicted, bool):
        PACING_PREDICTED_ABANDON.labels(label).set(float(predicted))
    target = decision.get("target_abandon")
    if isinstance(target, int | float) and not isinstance(target, bool):
        PACING_TARGET_ABANDON.labels(label).set(float(target))
    forecast = decision.get("forecast")
    if isinstance(forecast, Mapping):
        free = forecast.get("free_agents_mean")
        if isinstance(free, list) and free and isinstance(free[-1], int | float):
            PACING_FREE_AGENTS.labels(label).set(float(free[-1]))


def record_ptp(campaign: int, currency: str, amount: Decimal) -> None:
    """A promise-to-pay committed: one more promise and `amount` more promised in `currency`."""
    if not isinstance(currency, str) or not _CURRENCY.match(currency):
        raise ValueError(f"currency: an ISO 4217 code like 'USD' is required, got {currency!r}")
    if not isinstance(amount, Decimal) or not amount.is_finite() or amount <= 0:
        raise ValueError(f"amount: a positive Decimal is required, got {amount!r}")
    label = _campaign(campaign)
    PTP_CREATED.labels(label, currency).inc()
    PTP_AMOUNT.labels(label, currency).inc(float(amount))


def set_ami_up(server: str, up: bool) -> None:
    name = _slug("server", server)
    _servers.add(name)
    AMI_UP.labels(name).set(1 if up else 0)


@contextlib.contextmanager
def timed_db_write(op: str) -> Iterator[None]:
    """Time a write transaction; a failure counts in the errors instead."""
    start = time.perf_counter()
    try:
        yield
    except Exception:
        record_db_error(op)
        raise
    observe_db_write(op, time.perf_counter() - start)


def observe_ami_event_lag(server: str, seconds: float) -> None:
    # A clock skew between Asterisk and the dialer can make the lag negative: count it as 0.
    lag = max(float(seconds), 0.0) if not math.isnan(seconds) else 0.0
    AMI_EVENT_LAG.labels(_slug("server", server)).observe(lag)


def observe_db_write(op: str, seconds: float) -> None:
    DB_WRITE.labels(_slug("op", op)).observe(_non_negative("seconds", seconds))


def record_db_error(op: str) -> None:
    DB_ERRORS.labels(_slug("op", op)).inc()


def set_ws_connections(n: int) -> None:
    WS_CONNECTIONS.set(_non_negative("n", n))


def observe_loop_lag(seconds: float) -> None:
    EVENT_LOOP_LAG.observe(_non_negative("seconds", seconds))


def record_login_refused(reason: str) -> None:
    LOGIN_REFUSALS.labels(_known("reason", reason, LOGIN_REASONS)).inc()


def softphone_report(
    agent_id: int,
    previous: SoftphoneStatus | None,
    current: SoftphoneStatus | None,
    every: Mapping[int, SoftphoneStatus],
) -> None:
    """One softphone report (`current` None: its page went away); `every` is the hub's last
    report of each agent, from which the gauges are recounted."""
    del agent_id  # never a label
    SOFTPHONES_REGISTERED.set(sum(1 for r in every.values() if r.registered))
    SOFTPHONES_AUDIO_UP.set(sum(1 for r in every.values() if r.state == "ready"))
    if current is None:
        return
    if (
        current.rejoined
        and current.state == "ready"
        and (previous is None or previous.state != "ready")
    ):
        SOFTPHONE_REJOINS.inc()
    if current.state != "ready":
        return
    for value, histogram, scale in (
        (current.mos, SOFTPHONE_MOS, 1.0),
        (current.loss_pct, SOFTPHONE_LOSS, 1.0),
        (current.jitter_ms, SOFTPHONE_JITTER, 0.001),
        (current.rtt_ms, SOFTPHONE_RTT, 0.001),
    ):
        if value is not None and math.isfinite(value):
            histogram.observe(value * scale)


def count_refused_audio_down() -> None:
    CALLS_REFUSED_AUDIO_DOWN.inc()
