"""What a shift needs, checked: database and schema, each Asterisk server, agents' phones and the
running campaigns; every failure says how to fix it. `dialer doctor`, `/healthz` and the
campaign start path share these checks, so they never disagree about why nothing dials.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from dialer.compliance.claiming import claim_options
from dialer.compliance.profiles import ProfileError, load_profile
from dialer.domain.settings import CampaignSettings, SettingsError
from dialer.settings import AmiServer
from dialer.store.claim import _candidates  # the claim's own view of an account, read-only here
from dialer.store.db import make_sessionmaker
from dialer.store.migrate import current_revision, head_revision
from dialer.store.models import Agent, Campaign, CampaignAccount, CampaignState, MemberState, Role
from dialer.telephony.ami import AmiConnection, AmiError, AmiOptions
from dialer.telephony.softphones import SOFTPHONE

# Contexts (and an extension in each) that the dialer's AMI actions and events rely on
# (asterisk_conf/extensions.conf); a missing one means a dialplan that is not the shipped one.
REQUIRED_DIALPLAN: tuple[tuple[str, str], ...] = (
    ("dialer-outbound", "_[+0-9]."),
    ("dialer-answered", "s"),
    ("dialer-connect", "_[0-9A-Za-z]!"),
    ("dialer-safe-harbor", "s"),
    ("dialer-agent-session", "login"),
    ("dialer-doctor", "answer"),
)
# The test originate: a Local channel into [dialer-doctor] that answers and hangs up at once.
TEST_CHANNEL = "Local/answer@dialer-doctor/n"
# Device states (DEVICE_STATE()) that mean an endpoint cannot take a call now. UNKNOWN is not
# among them: Asterisk says it for endpoints it has no state for, which may well answer.
NOT_CONFIGURED = frozenset({"INVALID"})
NOT_REACHABLE = frozenset({"UNAVAILABLE"})
SCAN_LIMIT = 20_000  # accounts a campaign check evaluates (the claim itself scans far fewer)
SCAN_BATCH = 1_000


@dataclass(frozen=True, slots=True)
class Check:
    """One finding. `ok` False is a failure (non-zero exit); `warning` findings do not fail."""

    name: str
    ok: bool
    detail: str
    fix: str | None = None
    warning: bool = False

    @property
    def status(self) -> str:
        return "ok" if self.ok else "warn" if self.warning else "fail"

    def as_json(self) -> dict[str, object]:
        out: dict[str, object] = {"name": self.name, "status": self.status, "detail": self.detail}
        if self.fix:
            out["fix"] = self.fix
        return out


def ok(name: str, detail: str) -> Check:
    return Check(name, True, detail)


def fail(name: str, detail: str, fix: str) -> Check:
    return Check(name, False, detail, fix)


def warn(name: str, detail: str, fix: str) -> Check:
    return Check(name, False, detail, fix, warning=True)


@dataclass(slots=True)
class Report:
    checks: list[Check] = field(default_factory=list)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok and not c.warning]

    def text(self) -> str:
        lines = []
        for c in self.checks:
            lines.append(f"[{c.status.upper():>4}] {c.name}: {c.detail}")
            if c.fix and not c.ok:
                lines.append(f"       fix: {c.fix}")
        verdict = (
            "everything a shift needs is in place"
            if not self.failed
            else f"{len(self.failed)} problem(s) stop the dialer from calling"
        )
        return "\n".join([*lines, verdict])


# --- database ----------------------------------------------------------------------------------
async def check_database(engine: AsyncEngine) -> list[Check]:
    """Reachable, and the schema at the revision this code needs."""
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:  # any driver error: the message says what (host, auth, file)
        return [
            fail(
                "database",
                f"cannot connect: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}",
                "check DIALER_DATABASE_URL (postgresql+asyncpg://USER:PASS@HOST/DB) and that "
                "the server is up",
            )
        ]
    current, head = await current_revision(engine), head_revision()
    if current != head:
        return [
            ok("database", "reachable"),
            fail(
                "database schema",
                f"at {current or 'nothing (empty database)'}, this dialer needs {head}",
                "run `dialer migrate`",
            ),
        ]
    return [ok("database", "reachable"), ok("database schema", f"at {head} (latest)")]


# --- Asterisk ----------------------------------------------------------------------------------
class AmiProbe:
    """One short-lived AMI session for the checks; or, on the start path, read-only actions over
    a connection the dialing pool holds (`connection`, never closed here)."""

    def __init__(
        self, server: AmiServer, timeout_s: float = 5.0, connection: AmiConnection | None = None
    ) -> None:
        self.server = server
        self.timeout_s = timeout_s
        options = AmiOptions(
            connect_timeout=timeout_s, action_timeout=timeout_s, boot_timeout=timeout_s
        )
        self.owned = connection is None
        self.conn = connection or AmiConnection(server, on_event=lambda _m: None, options=options)
        self._task: asyncio.Task[None] | None = None

    async def open(self) -> str | None:
        """None when logged in, else why not (the connection's own last error)."""
        self._task = asyncio.create_task(self.conn.run(), name=f"doctor-ami-{self.server.name}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        while not self.conn.connected and loop.time() < deadline:
            if self.conn.last_error is not None:
                break
            await asyncio.sleep(0.05)
        if self.conn.connected:
            return None
        return self.conn.last_error or f"no login within {self.timeout_s:.0f} s"

    async def close(self) -> None:
        if not self.owned:
            return
        with contextlib.suppress(Exception):
            await self.conn.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def getvar(self, variable: str) -> str:
        reply = await self.conn.send({"Action": "Getvar", "Variable": variable})
        value = reply.get("Value")
        return "" if value in (None, "(null)") else str(value)

    async def device_state(self, device: str) -> str:
        return (await self.getvar(f"DEVICE_STATE({device})")).upper() or "UNKNOWN"

    async def has_extension(self, context: str, extension: str | None = None) -> bool:
        """Whether the context (and the extension in it) is loaded. The first reply says so;
        the listing itself follows as events, which this probe ignores."""
        fields = {"Action": "ShowDialPlan", "Context": context}
        if extension is not None:
            fields["Extension"] = extension
        try:
            await self.conn.send(fields)
        except AmiError as exc:
            if "Did not find" in str(exc) or "not found" in str(exc).lower():
                return False
            raise
        return True


async def check_ami_server(probe: AmiProbe) -> list[Check]:
    """Login, the dialplan the dialer drives, the trunk, and a test originate."""
    name = f"asterisk {probe.server.name}"
    why = await probe.open()
    if why is not None:
        return [
            fail(
                f"{name} login",
                f"cannot log in to {probe.server.redacted()}: {why}",
                "start Asterisk, and check DIALER_AMI_SERVERS (host, port, user and secret "
                "as in manager.conf [dialer]; bindaddr/permit must let this host in)",
            )
        ]
    checks = [ok(f"{name} login", f"logged in to {probe.server.redacted()}")]
    try:
        missing = []
        for ctx, ext in REQUIRED_DIALPLAN:
            if not await probe.has_extension(ctx):
                missing.append(f"context [{ctx}]")
            elif not await probe.has_extension(ctx, ext):
                missing.append(f"extension {ext} in [{ctx}]")
        if missing:
            checks.append(
                fail(
                    f"{name} dialplan",
                    f"missing {', '.join(missing)}",
                    "install asterisk_conf/extensions.conf on this server (see "
                    "asterisk_conf/README.md) and run `dialplan reload`",
                )
            )
        else:
            checks.append(ok(f"{name} dialplan", "every context the dialer drives is loaded"))
        checks.append(await check_trunk(probe, name))
        checks.append(await _test_originate(probe, name))
    except AmiError as exc:
        checks.append(
            fail(
                f"{name} actions",
                str(exc),
                "give the manager.conf user the shipped permissions (read system,call,user; "
                "write originate,call,reporting)",
            )
        )
    return checks


async def check_trunk(probe: AmiProbe, name: str) -> Check:
    prefix = await probe.getvar("DIALER_TRUNK_PREFIX")
    suffix = await probe.getvar("DIALER_TRUNK_SUFFIX")
    if not prefix:
        return fail(
            f"{name} trunk",
            "DIALER_TRUNK_PREFIX is not set in the dialplan's [globals]",
            "set DIALER_TRUNK_PREFIX/DIALER_TRUNK_SUFFIX in extensions.conf",
        )
    shown = f"{prefix}<number>{suffix}"
    if prefix.upper().startswith("LOCAL/") and suffix.startswith("@"):
        context = suffix[1:].split("/", 1)[0]
        # A context reached through a Local channel: it must exist (the sandbox's sim-pstn).
        if not await probe.has_extension(context):
            return fail(
                f"{name} trunk",
                f"{shown}: dialplan context {context} not found",
                f"define [{context}] or point DIALER_TRUNK_SUFFIX at the trunk",
            )
        return ok(f"{name} trunk", f"{shown} (dialplan context {context})")
    endpoint = suffix[1:] if suffix.startswith("@") else ""
    technology = prefix.rstrip("/")
    if endpoint:
        state = await probe.device_state(f"{technology}/{endpoint}")
        if state in NOT_CONFIGURED:
            return fail(
                f"{name} trunk",
                f"{shown}: endpoint {technology}/{endpoint} is not configured ({state})",
                f"define endpoint {endpoint} in pjsip.conf (see asterisk_conf/README.md) or set "
                "DIALER_TRUNK_SUFFIX to the trunk's endpoint",
            )
        if state in NOT_REACHABLE:
            return fail(
                f"{name} trunk",
                f"{shown}: endpoint {technology}/{endpoint} is not reachable ({state})",
                "check the trunk's registration/qualify (`pjsip show endpoint "
                f"{endpoint}` in the Asterisk console)",
            )
        return ok(f"{name} trunk", f"{shown}: {technology}/{endpoint} {state}")
    return ok(f"{name} trunk", shown)


async def _test_originate(probe: AmiProbe, name: str) -> Check:
    try:
        await probe.conn.send(
            {
                "Action": "Originate",
                "Channel": TEST_CHANNEL,
                "Application": "NoOp",
                "Data": "dialer doctor",
                "Timeout": str(int(probe.timeout_s * 1000)),
                "Async": "false",
            },
            limit_s=probe.timeout_s + 2,
        )
    except AmiError as exc:
        return fail(
            f"{name} test call",
            f"an Originate to {TEST_CHANNEL} failed: {exc}",
            "check the manager.conf user may originate (write = originate,...) and that "
            "[dialer-doctor] is in extensions.conf",
        )
    return ok(f"{name} test call", f"{TEST_CHANNEL} answered")


# --- agents' phones ----------------------------------------------------------------------------
async def check_agents(
    sessions: async_sessionmaker[AsyncSession], probes: Sequence[AmiProbe]
) -> list[Check]:
    """Every active agent has a phone endpoint, known to Asterisk and reachable."""
    async with sessions() as s:
        agents = (
            (
                await s.execute(
                    select(Agent)
                    .where(Agent.active.is_(True), Agent.role == Role.AGENT.value)
                    .order_by(Agent.id)
                )
            )
            .scalars()
            .all()
        )
    if not agents:
        return [
            fail(
                "agents",
                "no active agent login",
                "add one: `dialer agent add LOGIN --name NAME --phone PJSIP/ENDPOINT`",
            )
        ]
    checks: list[Check] = []
    connected = [p for p in probes if p.conn.connected]
    for agent in agents:
        name = f"agent {agent.login}"
        if not agent.endpoint:
            checks.append(
                fail(
                    f"{name} phone",
                    "no phone endpoint: the dialer cannot call the agent's phone, so Ready "
                    "stays disabled",
                    f"`dialer agent update {agent.login} --phone PJSIP/ENDPOINT` (the endpoint "
                    "in pjsip.conf; see asterisk_conf/README.md)",
                )
            )
            continue
        if agent.endpoint == SOFTPHONE:
            # The desktop's WebRTC phone: provisioned at each login, it has no device to ask
            # about beforehand; the desktop shows its own state.
            checks.append(ok(f"{name} phone", "the desktop's softphone (registers at login)"))
            continue
        if not connected:
            checks.append(
                warn(
                    f"{name} phone",
                    f"{agent.endpoint}: not checked (no Asterisk server reachable)",
                    "fix the Asterisk checks above",
                )
            )
            continue
        try:
            states = [await p.device_state(agent.endpoint) for p in connected]
        except AmiError as exc:
            checks.append(
                warn(f"{name} phone", f"{agent.endpoint}: not checked ({exc})", "run again")
            )
            continue
        usable = [s for s in states if s not in NOT_CONFIGURED | NOT_REACHABLE]
        if usable:
            checks.append(ok(f"{name} phone", f"{agent.endpoint} {usable[0]}"))
        elif all(s in NOT_CONFIGURED for s in states):
            checks.append(
                fail(
                    f"{name} phone",
                    f"{agent.endpoint} is not configured on any Asterisk server "
                    f"({', '.join(sorted(set(states)))})",
                    "define the endpoint in pjsip.conf (asterisk_conf/pjsip.conf has the "
                    f"template), or `dialer agent update {agent.login} --phone ...` with the "
                    "right name",
                )
            )
        else:
            # A softphone registers when the agent opens it: before the shift this is normal.
            checks.append(
                warn(
                    f"{name} phone",
                    f"{agent.endpoint} is configured but not registered/reachable now",
                    "open the agent's softphone (or check its registration) before going Ready",
                )
            )
    return checks


# --- campaigns ---------------------------------------------------------------------------------
def campaign_problems(campaign: Campaign) -> list[Check]:
    """What in the campaign row alone stops it from dialing (no I/O): profile, caller ID,
    pacing settings. Shared by the start path (API and CLI) and the doctor."""
    name = f"campaign {campaign.id} ({campaign.name})"
    problems: list[Check] = []
    try:
        load_profile(campaign.compliance_profile)
    except ProfileError as exc:
        problems.append(
            fail(
                f"{name} profile",
                str(exc),
                f"`dialer campaign update {campaign.id} --profile CODE` "
                "(dialer/compliance/profiles/)",
            )
        )
    if not campaign.caller_id and not campaign.caller_id_pool:
        problems.append(
            fail(
                f"{name} caller ID",
                "no caller ID: the rules require an identifiable, returnable number",
                f"`dialer campaign update {campaign.id} --caller-id +E164` (a number the "
                "debtor can call back)",
            )
        )
    mode = campaign.dial_mode or "predictive"
    try:
        CampaignSettings.of(campaign)
    except SettingsError as exc:
        problems.append(
            fail(
                f"{name} pacing" if exc.field.startswith("pacing") else f"{name} settings",
                str(exc),
                f"`dialer campaign update {campaign.id} --set pacing='{{...}}'` with knobs "
                f"valid for {mode}"
                if exc.field.startswith("pacing")
                else f"`dialer campaign update {campaign.id} ...` (fix {exc.field})",
            )
        )
    try:
        claim_options(campaign)
    except ProfileError as exc:
        problems.append(
            fail(f"{name} settings", str(exc), f"`dialer campaign update {campaign.id} ...`")
        )
    return problems


@dataclass(slots=True)
class Dialable:
    """A campaign's accounts as the claim would judge them now."""

    members: int = 0
    scanned: int = 0
    dialable: int = 0
    resting: int = 0  # dialable but their retry time has not come
    on_call: int = 0
    done: int = 0
    blocked: Counter[str] = field(default_factory=Counter)
    active_total: int = 0

    def describe(self) -> str:
        parts = [f"{self.dialable} dialable now of {self.members} accounts"]
        if self.scanned < self.active_total:
            parts.append(f"(first {self.scanned} active accounts checked)")
        if self.resting:
            parts.append(f"{self.resting} waiting for their retry time")
        if self.on_call:
            parts.append(f"{self.on_call} on a call")
        if self.done:
            parts.append(f"{self.done} done")
        for reason, n in self.blocked.most_common():
            parts.append(f"{n} blocked: {reason}")
        return "; ".join(parts)


async def dialable_accounts(
    s: AsyncSession, campaign: Campaign, now: dt.datetime, limit: int = SCAN_LIMIT
) -> Dialable:
    """Judge the campaign's active accounts with the claim's own rule (nothing is written)."""
    found = Dialable()
    counts = dict(
        (
            await s.execute(
                select(CampaignAccount.state, func.count())
                .where(CampaignAccount.campaign_id == campaign.id)
                .group_by(CampaignAccount.state)
            )
        ).all()
    )
    found.members = sum(int(n) for n in counts.values())
    found.done = int(counts.get(MemberState.DONE.value, 0))
    found.active_total = int(counts.get(MemberState.ACTIVE.value, 0))
    rule = claim_options(campaign).rule
    rows = (
        await s.execute(
            select(CampaignAccount.account_id, CampaignAccount.next_attempt_at)
            .where(
                CampaignAccount.campaign_id == campaign.id,
                CampaignAccount.state == MemberState.ACTIVE.value,
            )
            .order_by(CampaignAccount.account_id)
            .limit(limit)
        )
    ).all()
    due_at = {acc: when for acc, when in rows}
    ids = list(due_at)
    for start in range(0, len(ids), SCAN_BATCH):
        batch = ids[start : start + SCAN_BATCH]
        candidates, still_open = await _candidates(s, campaign.id, batch, now)
        for acc_id in batch:
            found.scanned += 1
            if acc_id in still_open:
                found.on_call += 1
                continue
            candidate = candidates.get(acc_id)
            if candidate is None:
                continue
            choice = rule(candidate, now)
            if choice.phone is None:
                found.blocked[choice.reason or "blocked"] += 1
                continue
            when = due_at[acc_id]
            if when is not None and when.tzinfo is None:
                when = when.replace(tzinfo=dt.UTC)
            if when is not None and when > now:
                found.resting += 1
            else:
                found.dialable += 1
    return found


async def check_campaigns(
    sessions: async_sessionmaker[AsyncSession],
    now: dt.datetime,
    only: Iterable[int] | None = None,
) -> list[Check]:
    """Each running campaign (or those in `only`): settings, then dialable accounts."""
    async with sessions() as s:
        query = select(Campaign).order_by(Campaign.id)
        wanted = list(only) if only is not None else None
        if wanted is None:
            query = query.where(Campaign.state == CampaignState.RUNNING.value)
        else:
            query = query.where(Campaign.id.in_(wanted))
        campaigns = (await s.execute(query)).scalars().all()
        if not campaigns:
            return [ok("campaigns", "none running")] if wanted is None else []
        checks: list[Check] = []
        for campaign in campaigns:
            name = f"campaign {campaign.id} ({campaign.name})"
            problems = campaign_problems(campaign)
            checks.extend(problems)
            if any(p.name.endswith(("profile", "settings")) for p in problems):
                continue
            found = await dialable_accounts(s, campaign, now)
            if found.dialable:
                checks.append(ok(f"{name} accounts", found.describe()))
            elif not found.members:
                checks.append(
                    fail(
                        f"{name} accounts",
                        "no accounts in the campaign",
                        f"`dialer import FILE.csv --campaign {campaign.id}`",
                    )
                )
            else:
                fix = (
                    "see the reasons: "
                    + (
                        "wait for the calling window, or "
                        if any("window" in r for r in found.blocked)
                        else ""
                    )
                    + "import more accounts (`dialer import FILE.csv --campaign ID`)"
                )
                checks.append(
                    fail(f"{name} accounts", f"nothing to dial now: {found.describe()}", fix)
                )
        return checks


# --- everything --------------------------------------------------------------------------------
async def run_checks(
    engine: AsyncEngine,
    servers: Sequence[AmiServer],
    *,
    now: dt.datetime | None = None,
    campaigns: Iterable[int] | None = None,
    timeout_s: float = 5.0,
) -> Report:
    report = Report()
    report.checks.extend(await check_database(engine))
    db_ready = not report.failed
    probes = [AmiProbe(server, timeout_s) for server in servers]
    try:
        if not servers:
            report.checks.append(
                fail(
                    "asterisk",
                    "no Asterisk server configured: `dialer serve` will not dial",
                    "set DIALER_AMI_SERVERS=ami://USER:SECRET@HOST:PORT (manager.conf [dialer])",
                )
            )
        for probe in probes:
            report.checks.extend(await check_ami_server(probe))
        if db_ready:
            sessions = make_sessionmaker(engine)
            report.checks.extend(await check_agents(sessions, probes))
            report.checks.extend(
                await check_campaigns(sessions, now or dt.datetime.now(dt.UTC), campaigns)
            )
    finally:
        for probe in probes:
            await probe.close()
    return report


# --- the fast subset /healthz runs -------------------------------------------------------------
async def quick_checks(
    engine: AsyncEngine, servers: Sequence[AmiServer], connected: Sequence[str] | None
) -> Report:
    """What a health probe can afford on every call: no AMI actions, no account scans.
    `connected`: the names of the servers the dialing pool is logged in to (None: no pool)."""
    report = Report()
    try:
        current, head = await current_revision(engine), head_revision()
    except Exception as exc:  # the probe reports, it does not crash
        report.checks.append(
            fail("database", f"{type(exc).__name__}: {str(exc)[:200]}", "check the database")
        )
        return report
    if current != head:
        report.checks.append(
            fail(
                "database schema",
                f"at {current or 'nothing (empty database)'}, this dialer needs {head}",
                "run `dialer migrate`",
            )
        )
        return report
    report.checks.append(ok("database", f"reachable, schema at {head}"))
    if not servers:
        report.checks.append(
            fail(
                "asterisk",
                "no Asterisk server configured: this process does not dial",
                "set DIALER_AMI_SERVERS and restart",
            )
        )
    for server in servers:
        up = connected is not None and server.name in connected
        report.checks.append(
            ok(f"asterisk {server.name} login", "logged in")
            if up
            else fail(
                f"asterisk {server.name} login",
                f"not logged in to {server.redacted()}",
                "run `dialer doctor` for the cause",
            )
        )
    sessions = make_sessionmaker(engine)
    async with sessions() as s:
        running = (
            (await s.execute(select(Campaign).where(Campaign.state == CampaignState.RUNNING.value)))
            .scalars()
            .all()
        )
        for campaign in running:
            report.checks.extend(campaign_problems(campaign))
        no_phone = (
            (
                await s.execute(
                    select(Agent.login).where(
                        Agent.active.is_(True),
                        Agent.role == Role.AGENT.value,
                        or_(Agent.endpoint.is_(None), Agent.endpoint == ""),
                    )
                )
            )
            .scalars()
            .all()
        )
    for login in no_phone:
        report.checks.append(
            fail(
                f"agent {login} phone",
                "no phone endpoint",
                f"`dialer agent update {login} --phone PJSIP/ENDPOINT`",
            )
        )
    return report


# --- the start path ----------------------------------------------------------------------------
def start_refusals(
    campaign: Campaign, servers: Sequence[AmiServer], connected: Sequence[str] | None
) -> list[Check]:
    """Why the campaign may not start now: its own settings, then whether this process can
    dial at all (`connected`: servers logged in, None when not known here)."""
    problems = campaign_problems(campaign)
    if not servers:
        problems.append(
            fail(
                "asterisk",
                "no Asterisk server is configured, so nothing would be dialed",
                "set DIALER_AMI_SERVERS=ami://USER:SECRET@HOST:PORT for `dialer serve` (and "
                "for this command)",
            )
        )
    elif connected is not None and not connected:
        problems.append(
            fail(
                "asterisk",
                "no Asterisk server is connected ("
                + ", ".join(s.name for s in servers)
                + " configured), so nothing would be dialed",
                "start Asterisk or fix DIALER_AMI_SERVERS; `dialer doctor` says which",
            )
        )
    return problems


def refusal_text(problems: Sequence[Check]) -> str:
    return "; ".join(f"{p.detail} (fix: {p.fix})" if p.fix else p.detail for p in problems)


async def pool_trunk_refusals(connections: Sequence[AmiConnection]) -> list[Check]:
    """The trunk, checked over the first connection the dialing pool is logged in to: refused
    only on a clear answer (an Asterisk that cannot say, e.g. a simulated one, is no refusal)."""
    for conn in connections:
        if not conn.connected:
            continue
        probe = AmiProbe(conn.server, 2.0, connection=conn)
        try:
            check = await check_trunk(probe, f"asterisk {conn.server.name}")
        except AmiError:
            return []
        return [] if check.ok else [check]
    return []
