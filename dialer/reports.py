"""Collections reports: dials, contacts, promises-to-pay, abandon, agent time and penetration.

Computed from the database for a range of UTC days, per campaign, per agent or per aging bucket.
"""

from __future__ import annotations

import csv
import datetime as dt
import enum
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import Select, and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from dialer.compliance.profiles import ProfileError, load_profile
from dialer.errors import UserError
from dialer.store.abandons import figures, window_counts
from dialer.store.db import make_sessionmaker
from dialer.store.models import (
    Account,
    Agent,
    AgentStateLog,
    CallAttempt,
    Campaign,
    CampaignAccount,
    Disposition,
    PromiseToPay,
    PtpStatus,
)

# Agent states as the agent state log names them; "-" and "_" are treated alike.
TALK_STATES = frozenset({"reserved", "talking", "hold", "on_hold"})
WRAP_STATES = frozenset({"wrap_up"})
IDLE_STATES = frozenset({"ready"})
PAUSE_STATES = frozenset({"paused"})
# Everything but these counts as logged in.
LOGGED_OUT_STATES = frozenset({"offline", "logged_out"})
MAX_DAYS = 366
# Answered, but not by a person we could talk to (dialer.telephony.outcomes.Outcome, AMDSTATUS).
NOT_LIVE_OUTCOMES = ("machine", "hung_up_early")
NOT_LIVE_AMD = ("MACHINE", "HANGUP")


class GroupBy(enum.StrEnum):
    CAMPAIGN = "campaign"
    AGENT = "agent"
    BUCKET = "bucket"


# What each column means; rendered in the JSON report and in the README.
DEFINITIONS: dict[str, str] = {
    "dials": "call attempts created in the range (one row per dial)",
    "live_contacts": "dials answered by a person: answered, and neither the outcome nor AMD says "
    "machine or hung up before classification (abandoned calls included)",
    "right_party_contacts": "dispositions in the range whose code is a right-party contact",
    "contact_rate": "live_contacts / dials (denominator: dials, not unique accounts)",
    "rpc_rate": "right_party_contacts / live_contacts (denominator: live contacts)",
    "ptp_count": "promises-to-pay created in the range",
    "ptp_amount": "amount promised in those promises, per currency",
    "ptp_rate": "ptp_count / right_party_contacts",
    "ptps_due": "promises whose due date is in the range and that were checked: kept + broken "
    "(pending and cancelled ones are left out)",
    "ptps_kept": "of ptps_due, those with status kept",
    "kept_rate": "ptps_kept / ptps_due",
    "abandoned": "live-answered dials not connected to an agent within the limit",
    "connected_to_agent": "live-answered dials bridged to an agent (bridged_at set, not abandoned)",
    "machine_verdicts": "dials AMD classified as a machine",
    "estimated_amd_false_positives": "in campaign rows under a rule that counts them (UK): the "
    "estimate of people AMD took for machines, machine_verdicts x (1 - AMD accuracy)",
    "abandon_rate": "(abandoned + estimated_amd_false_positives) / (abandoned + "
    "estimated_amd_false_positives + connected_to_agent), as the campaign's rule counts it "
    "(dialer.store.abandons, as the API and /metrics); machines and no-answers excluded; empty in "
    "agent rows",
    "talk_s": "seconds in states reserved, talking or on hold, from the agent state log, "
    "clipped to the range",
    "wrap_up_s": "seconds in wrap-up",
    "idle_s": "seconds ready and waiting for a call",
    "paused_s": "seconds paused",
    "logged_in_s": "seconds in any state but offline",
    "occupancy": "(talk_s + wrap_up_s) / logged_in_s",
    "dials_per_agent_hour": "dials / (logged_in_s / 3600)",
    "accounts": "accounts in the campaign(s) (campaign membership, any state); empty in agent rows",
    "accounts_attempted": "unique accounts dialed in the range",
    "list_penetration": "accounts_attempted / accounts; empty in agent rows",
    "saturation": "dials / accounts; empty in agent rows",
}


@dataclass(frozen=True, slots=True)
class ReportQuery:
    """Which report: a range of whole UTC days [first_day, last_day], a grouping, a campaign."""

    first_day: dt.date
    last_day: dt.date
    by: GroupBy = GroupBy.CAMPAIGN
    campaign_id: int | None = None

    def __post_init__(self) -> None:
        if self.last_day < self.first_day:
            raise UserError(f"to: {self.last_day} is before from: {self.first_day}")
        if (self.last_day - self.first_day).days >= MAX_DAYS:
            raise UserError(f"from/to: at most {MAX_DAYS} days per report")

    @property
    def start(self) -> dt.datetime:
        return dt.datetime.combine(self.first_day, dt.time(), tzinfo=dt.UTC)

    @property
    def end(self) -> dt.datetime:
        """Exclusive end: midnight after the last day."""
        return dt.datetime.combine(self.last_day + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)


@dataclass(slots=True)
class ReportRow:
    """One group's figures. `key` is a campaign id, agent id or aging bucket (None: no agent)."""

    key: int | str | None
    label: str
    dials: int = 0
    live_contacts: int = 0
    right_party_contacts: int = 0
    ptp_count: int = 0
    ptp_amount: dict[str, Decimal] = field(default_factory=dict)
    ptps_due: int = 0
    ptps_kept: int = 0
    abandoned: int = 0
    connected_to_agent: int = 0
    machine_verdicts: int = 0
    estimated_amd_false_positives: float = 0.0
    talk_s: float = 0.0
    wrap_up_s: float = 0.0
    idle_s: float = 0.0
    paused_s: float = 0.0
    logged_in_s: float = 0.0
    accounts: int | None = None
    accounts_attempted: int = 0
    has_agent_time: bool = True
    has_abandon: bool = True

    @property
    def contact_rate(self) -> float | None:
        return _ratio(self.live_contacts, self.dials)

    @property
    def rpc_rate(self) -> float | None:
        return _ratio(self.right_party_contacts, self.live_contacts)

    @property
    def ptp_rate(self) -> float | None:
        return _ratio(self.ptp_count, self.right_party_contacts)

    @property
    def kept_rate(self) -> float | None:
        return _ratio(self.ptps_kept, self.ptps_due)

    @property
    def abandon_rate(self) -> float | None:
        if not self.has_abandon:
            return None
        counted = self.abandoned + self.estimated_amd_false_positives
        return _ratio(counted, counted + self.connected_to_agent)

    @property
    def occupancy(self) -> float | None:
        if not self.has_agent_time:
            return None
        return _ratio(self.talk_s + self.wrap_up_s, self.logged_in_s)

    @property
    def dials_per_agent_hour(self) -> float | None:
        if not self.has_agent_time:
            return None
        return _ratio(self.dials, self.logged_in_s / 3600.0)

    @property
    def list_penetration(self) -> float | None:
        return None if self.accounts is None else _ratio(self.accounts_attempted, self.accounts)

    @property
    def saturation(self) -> float | None:
        return None if self.accounts is None else _ratio(self.dials, self.accounts)


@dataclass(frozen=True, slots=True)
class Report:
    query: ReportQuery
    generated_at: dt.datetime
    rows: list[ReportRow]

    def currencies(self) -> list[str]:
        return sorted({c for row in self.rows for c in row.ptp_amount})


def _ratio(numerator: float, denominator: float) -> float | None:
    if denominator <= 0:
        return None
    return round(numerator / denominator, 4)


def _state(name: str) -> str:
    return name.strip().lower().replace("-", "_")


# Private query plumbing: the typed stubs of SQLAlchemy 2.1 cannot follow a column chosen at run
# time, so these helpers take whatever column or statement the caller built.
_Col = Any
_S = TypeVar("_S", bound=Select[*tuple[Any, ...]])


class _Keys:
    """The grouping column of each source table for one report kind."""

    def __init__(self, by: GroupBy) -> None:
        self.by = by

    def of(self, campaign_col: _Col, agent_col: _Col) -> _Col:
        if self.by is GroupBy.CAMPAIGN:
            return campaign_col
        if self.by is GroupBy.AGENT:
            return agent_col
        return Account.aging_bucket


def _bucket_join(stmt: _S, by: GroupBy, account_col: _Col) -> _S:
    # The account's bucket today: the report does not keep the bucket the account had then.
    return stmt.join(Account, Account.id == account_col) if by is GroupBy.BUCKET else stmt


async def build_report(engine: AsyncEngine, query: ReportQuery, now: dt.datetime) -> Report:
    """The report for `query`; open agent states are counted up to `now` (aware UTC)."""
    if now.tzinfo is None:
        raise ValueError("now: a timezone-aware UTC datetime is required")
    by, keys = query.by, _Keys(query.by)
    start, end = query.start, query.end
    rows: dict[int | str | None, ReportRow] = {}

    def row(key: int | str | None) -> ReportRow:
        if key not in rows:
            rows[key] = ReportRow(
                key=key,
                label="",
                has_agent_time=by is not GroupBy.BUCKET,
                has_abandon=by is not GroupBy.AGENT,
            )
        return rows[key]

    def campaign_filter(col: _Col) -> list[ColumnElement[bool]]:
        return [] if query.campaign_id is None else [col == query.campaign_id]

    sessions = make_sessionmaker(engine)
    async with sessions() as s:
        if query.campaign_id is not None and await s.get(Campaign, query.campaign_id) is None:
            raise UserError(f"campaign: no campaign with id {query.campaign_id}")

        # Dials, live contacts, abandon and unique accounts attempted.
        a = CallAttempt
        key = keys.of(a.campaign_id, a.agent_id)
        # Both the telephony outcome and the raw AMD verdict can say "not a person": either wins.
        live = and_(
            a.answered_at.is_not(None),
            func.coalesce(a.outcome, "").not_in(NOT_LIVE_OUTCOMES),
            func.upper(func.coalesce(a.amd_result, "")).not_in(NOT_LIVE_AMD),
        )
        connected = and_(a.bridged_at.is_not(None), a.abandoned.is_(False))
        dial_stmt = select(
            key,
            func.count(),
            func.sum(case((live, 1), else_=0)),
            func.sum(case((a.abandoned.is_(True), 1), else_=0)),
            func.sum(case((connected, 1), else_=0)),
            func.count(func.distinct(a.account_id)),
            window_counts()[2],
        ).select_from(a)
        dial_stmt = _bucket_join(dial_stmt, by, a.account_id)
        dial_stmt = dial_stmt.where(
            a.created_at >= start, a.created_at < end, *campaign_filter(a.campaign_id)
        )
        for k, dials, n_live, n_abandoned, n_connected, n_accounts, n_machines in await s.execute(
            dial_stmt.group_by(key)
        ):
            r = row(k)
            r.dials, r.live_contacts = int(dials), int(n_live or 0)
            r.abandoned, r.connected_to_agent = int(n_abandoned or 0), int(n_connected or 0)
            r.accounts_attempted = int(n_accounts)
            r.machine_verdicts = int(n_machines or 0)
        if by is GroupBy.CAMPAIGN:
            await _estimate_amd_false_positives(s, rows, start)

        # Right-party contacts, from the agents' dispositions.
        d = Disposition
        key = keys.of(d.campaign_id, d.agent_id)
        rpc_stmt = select(key, func.count()).select_from(d)
        rpc_stmt = _bucket_join(rpc_stmt, by, d.account_id)
        rpc_stmt = rpc_stmt.where(
            d.created_at >= start,
            d.created_at < end,
            d.right_party.is_(True),
            *campaign_filter(d.campaign_id),
        )
        for k, n in await s.execute(rpc_stmt.group_by(key)):
            row(k).right_party_contacts = int(n)

        # Promises made in the range; amounts summed here as Decimals (SQLite keeps them as text).
        p = PromiseToPay
        key = keys.of(p.campaign_id, p.agent_id)
        ptp_stmt = select(key, p.amount, p.currency).select_from(p)
        ptp_stmt = _bucket_join(ptp_stmt, by, p.account_id)
        ptp_stmt = ptp_stmt.where(
            p.created_at >= start, p.created_at < end, *campaign_filter(p.campaign_id)
        )
        for k, amount, currency in await s.execute(ptp_stmt):
            r = row(k)
            r.ptp_count += 1
            r.ptp_amount[currency] = r.ptp_amount.get(currency, Decimal("0.00")) + amount

        # Promises due in the range that have been checked: kept or broken.
        due_stmt = select(key, p.status, func.count()).select_from(p)
        due_stmt = _bucket_join(due_stmt, by, p.account_id)
        due_stmt = due_stmt.where(
            p.due_date >= query.first_day,
            p.due_date <= query.last_day,
            p.status.in_([PtpStatus.KEPT.value, PtpStatus.BROKEN.value]),
            *campaign_filter(p.campaign_id),
        )
        for k, status, n in await s.execute(due_stmt.group_by(key, p.status)):
            r = row(k)
            r.ptps_due += int(n)
            if status == PtpStatus.KEPT.value:
                r.ptps_kept += int(n)

        # Agent time: state intervals overlapping the range, clipped to it (and to `now`).
        if by is not GroupBy.BUCKET:
            g = AgentStateLog
            key = keys.of(g.campaign_id, g.agent_id)
            time_stmt = select(key, g.state, g.started_at, g.ended_at).where(
                g.started_at < end,
                or_(g.ended_at.is_(None), g.ended_at > start),
                *campaign_filter(g.campaign_id),
            )
            if by is GroupBy.CAMPAIGN:
                # Time outside any campaign belongs to no campaign row.
                time_stmt = time_stmt.where(g.campaign_id.is_not(None))
            for k, state, started, ended in await s.execute(time_stmt):
                _add_state_time(row(k), _state(state), started, ended or now, start, min(end, now))

        # Accounts in the campaign(s), for list penetration and saturation.
        if by is not GroupBy.AGENT:
            m = CampaignAccount
            member_key: _Col = m.campaign_id if by is GroupBy.CAMPAIGN else Account.aging_bucket
            member_stmt = select(member_key, func.count()).select_from(m)
            member_stmt = _bucket_join(member_stmt, by, m.account_id)
            member_stmt = member_stmt.where(*campaign_filter(m.campaign_id))
            for k, n in await s.execute(member_stmt.group_by(member_key)):
                # Campaigns without activity get no row of their own unless asked for by id.
                if k in rows or by is GroupBy.BUCKET or query.campaign_id is not None:
                    row(k).accounts = int(n)
            for r in rows.values():
                if r.accounts is None:
                    r.accounts = 0

        await _label_rows(s, by, rows)

    ordered = sorted(rows.values(), key=lambda r: _sort_key(by, r.key))
    return Report(query=query, generated_at=now, rows=ordered)


def _add_state_time(
    r: ReportRow,
    state: str,
    started: dt.datetime,
    ended: dt.datetime,
    range_start: dt.datetime,
    range_end: dt.datetime,
) -> None:
    seconds = (min(ended, range_end) - max(started, range_start)).total_seconds()
    if seconds <= 0 or state in LOGGED_OUT_STATES:
        return
    r.logged_in_s += seconds
    if state in TALK_STATES:
        r.talk_s += seconds
    elif state in WRAP_STATES:
        r.wrap_up_s += seconds
    elif state in IDLE_STATES:
        r.idle_s += seconds
    elif state in PAUSE_STATES:
        r.paused_s += seconds


_BUCKET_ORDER = {
    b: i for i, b in enumerate(("current", "1-30", "31-60", "61-90", "91-120", "120+"))
}


def _sort_key(by: GroupBy, key: int | str | None) -> tuple[int, int | str]:
    if key is None:
        return (1, 0)  # the "no agent" row last
    if by is GroupBy.BUCKET:
        return (0, _BUCKET_ORDER.get(str(key), len(_BUCKET_ORDER)))
    return (0, key)


async def _estimate_amd_false_positives(
    s: AsyncSession, rows: Mapping[int | str | None, ReportRow], start: dt.datetime
) -> None:
    """Each campaign row's estimated AMD false positives as its rule counts them: the same
    function as the API's, /metrics' and the pacing snapshot's (dialer.store.abandons)."""
    ids = [k for k in rows if isinstance(k, int)]
    if not ids:
        return
    for cid, profile, caps in await s.execute(
        select(Campaign.id, Campaign.compliance_profile, Campaign.caps).where(Campaign.id.in_(ids))
    ):
        try:
            window = load_profile(profile).abandon
        except ProfileError:
            continue
        r = rows[cid]
        found = figures(window, caps, start, r.abandoned, r.connected_to_agent, r.machine_verdicts)
        r.estimated_amd_false_positives = round(found.totals.estimated, 4)


async def _label_rows(
    s: AsyncSession, by: GroupBy, rows: Mapping[int | str | None, ReportRow]
) -> None:
    ids = [k for k in rows if isinstance(k, int)]
    names: dict[int, str] = {}
    if by is GroupBy.CAMPAIGN and ids:
        result = await s.execute(select(Campaign.id, Campaign.name).where(Campaign.id.in_(ids)))
        names = {k: v for k, v in result}
    elif by is GroupBy.AGENT and ids:
        # The agent's login: staff, not debtor data.
        result = await s.execute(select(Agent.id, Agent.login).where(Agent.id.in_(ids)))
        names = {k: v for k, v in result}
    for k, r in rows.items():
        if k is None:
            r.label = "(no agent)" if by is GroupBy.AGENT else "(none)"
        elif isinstance(k, int):
            r.label = names.get(k, f"#{k}")
        else:
            r.label = str(k)


# --- renderers ---------------------------------------------------------------------------------
KEY_COLUMN = {GroupBy.CAMPAIGN: "campaign_id", GroupBy.AGENT: "agent_id", GroupBy.BUCKET: "bucket"}
LABEL_COLUMN = {GroupBy.CAMPAIGN: "campaign", GroupBy.AGENT: "agent", GroupBy.BUCKET: "bucket"}
FIGURES: tuple[str, ...] = (
    "dials",
    "live_contacts",
    "right_party_contacts",
    "contact_rate",
    "rpc_rate",
    "ptp_count",
    "ptp_rate",
    "ptps_due",
    "ptps_kept",
    "kept_rate",
    "abandoned",
    "connected_to_agent",
    "machine_verdicts",
    "estimated_amd_false_positives",
    "abandon_rate",
    "talk_s",
    "wrap_up_s",
    "idle_s",
    "paused_s",
    "logged_in_s",
    "occupancy",
    "dials_per_agent_hour",
    "accounts",
    "accounts_attempted",
    "list_penetration",
    "saturation",
)
_TIME_FIGURES = frozenset({"talk_s", "wrap_up_s", "idle_s", "paused_s", "logged_in_s"})


def row_figures(report: Report, r: ReportRow) -> dict[str, int | float | str | None]:
    """One row as plain values: ids, label, every figure; agent time empty where it has no sense."""
    by = report.query.by
    out: dict[str, int | float | str | None] = {}
    if by is not GroupBy.BUCKET:
        out[KEY_COLUMN[by]] = r.key
    out[LABEL_COLUMN[by]] = r.label
    for name in FIGURES:
        value: int | float | None = getattr(r, name)
        if name in _TIME_FIGURES:
            value = round(float(value), 3) if r.has_agent_time and value is not None else None
        out[name] = value
    return out


def render_json(report: Report) -> str:
    q = report.query
    body = {
        "report": {
            "by": q.by.value,
            "from": q.first_day.isoformat(),
            "to": q.last_day.isoformat(),
            "campaign_id": q.campaign_id,
            "time_zone": "UTC",
            "generated_at": report.generated_at.isoformat(),
            "definitions": DEFINITIONS,
        },
        "rows": [
            {
                **row_figures(report, r),
                "ptp_amount": {c: str(v) for c, v in sorted(r.ptp_amount.items())},
            }
            for r in report.rows
        ],
    }
    return json.dumps(body, indent=2)


def render_csv(report: Report) -> str:
    """One line per row; promised amounts get one column per currency (ptp_amount_USD, ...)."""
    currencies = report.currencies()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    first = list(row_figures(report, report.rows[0]).keys()) if report.rows else _header(report)
    writer.writerow([*first, *(f"ptp_amount_{c}" for c in currencies)])
    for r in report.rows:
        figures = row_figures(report, r)
        writer.writerow(
            [
                *("" if v is None else v for v in figures.values()),
                *(str(r.ptp_amount.get(c, Decimal("0.00"))) for c in currencies),
            ]
        )
    return out.getvalue()


def _header(report: Report) -> list[str]:
    by = report.query.by
    head = [] if by is GroupBy.BUCKET else [KEY_COLUMN[by]]
    return [*head, LABEL_COLUMN[by], *FIGURES]


def render(report: Report, fmt: str) -> str:
    if fmt == "json":
        return render_json(report)
    if fmt == "csv":
        return render_csv(report)
    raise UserError(f"format: expected csv or json, got {fmt!r}")


async def resolve_campaign(engine: AsyncEngine, value: str) -> int:
    """A campaign id from an id or a campaign name."""
    sessions = make_sessionmaker(engine)
    async with sessions() as s:
        if value.isdigit():
            found = await s.get(Campaign, int(value))
            if found is not None:
                return found.id
        by_name = (
            await s.execute(select(Campaign.id).where(Campaign.name == value))
        ).scalar_one_or_none()
    if by_name is None:
        raise UserError(f"campaign: no campaign with id or name {value!r}")
    return by_name


def parse_day(field_name: str, value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except (TypeError, ValueError):
        raise UserError(f"{field_name}: expected a date like 2026-11-24, got {value!r}") from None


def parse_group(value: str) -> GroupBy:
    try:
        return GroupBy(value)
    except ValueError:
        choices = ", ".join(g.value for g in GroupBy)
        raise UserError(f"by: expected one of {choices}, got {value!r}") from None


def columns(report: Report) -> Sequence[str]:
    """The CSV header of `report`."""
    return [*_header(report), *(f"ptp_amount_{c}" for c in report.currencies())]
