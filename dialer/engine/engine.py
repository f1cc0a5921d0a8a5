"""The engine: one runner per owned campaign (pace, claim, originate) and the call router.

Telephony adapters feed `on_event`; the agents' hub calls `agent_ready` and `handle_finished`.
Every state change is committed before the next step, so a restart can reconcile from the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import logging
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy.exc
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dialer import metrics
from dialer.compliance.claiming import ClaimOptions, claim_options
from dialer.compliance.profiles import load_profile
from dialer.domain.retry import RetryRules
from dialer.domain.settings import pacing_error
from dialer.engine.ports import (
    AgentsPort,
    CallEvent,
    CallEventKind,
    CallGone,
    EndedCall,
    OpenCall,
    OriginateRefused,
    OriginateRequest,
    ReadyAgent,
    TelephonyPort,
    TelephonyUnavailable,
)
from dialer.store import attempts, leases
from dialer.store.abandons import abandon_window
from dialer.store.claim import Claimed, callbacks_due, claim_phones, recheck_held
from dialer.store.models import CallAttempt, Campaign, CampaignState
from dialer.supervisor import DEFAULT_BACKOFF, retry
from dialer.telephony import outcomes
from pacing.decision import Decision, Policy, basic_inputs
from pacing.policies import make_policy
from pacing.snapshot import Attempt, CallStage, CallView, Handle, Outcome, Snapshot

log = logging.getLogger("dialer.engine")
Clock = Callable[[], dt.datetime]
# Leave this much of the abandon limit for the safe-harbor message to start playing; the shipped
# dialplan plays it by itself at limit - 0.4 s (DIALER_CONNECT_LIMIT) if the router is late.
SAFE_HARBOR_MARGIN_S = 0.55


_STAGE_NAMES = {
    CallStage.DIALING: "originated",
    CallStage.RINGING: "ringing",
    CallStage.ANSWERED_WAITING: "answered",
}


# A preview account an agent is looking at has an open attempt but no call yet; after this long
# without a dial its agent is taken to be gone and reconciliation closes it like any lost call.
PREVIEW_HOLD_MAX = dt.timedelta(hours=1)


def _held_preview(row: CallAttempt, now: dt.datetime) -> bool:
    created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=dt.UTC)
    return (
        row.agent_id is not None
        and row.originated_at is None
        and row.server is None
        and now - created < PREVIEW_HOLD_MAX
    )


class InvalidPacing:
    """Stands in for the policy of a campaign whose pacing settings do not parse: it launches
    nothing and says why in every decision (saved for GET /api/campaigns/{id}/pacing)."""

    name = "invalid-settings"

    def __init__(self, error: str) -> None:
        self.error = error

    def decide(self, snapshot: Snapshot) -> Decision:
        return Decision(0, self.name, self.error, basic_inputs(snapshot))


def _policy_for(view: CampaignView) -> Policy:
    error = pacing_error(view.dial_mode, view.pacing)
    if error is not None:
        log.error("campaign %d does not dial: %s", view.id, error, extra={"campaign_id": view.id})
        return InvalidPacing(error)
    return make_policy(view.dial_mode, view.pacing)


class PreviewRefused(Exception):
    """A preview attempt that may not be dialed (ended, dialed already, someone else's)."""


# Errors that mean the database is out of reach (stopped, restarting, connections killed), not
# that the write is wrong: only these are retried until it takes the write.
DB_UNREACHABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.DisconnectionError,
)


def _connection_lost(exc: BaseException) -> bool:
    """A driver error raised because the connection went away (e.g. pg_terminate_backend)."""
    return isinstance(exc, sqlalchemy.exc.DBAPIError) and bool(exc.connection_invalidated)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(slots=True)
class Call:
    """A call in flight, as the engine tracks it between the claim and the end."""

    attempt_id: int
    campaign_id: int
    dialed: float  # monotonic
    stage: CallStage = CallStage.DIALING
    answered: float | None = None
    machine: bool = False
    agent_id: int | None = None
    bridged: bool = False
    abandoned: bool = False
    routing: asyncio.Task[None] | None = None
    # Found alive in Asterisk after a restart: this process's telephony never saw its events, so
    # the runner polls Asterisk's channel list until the call is gone.
    adopted: bool = False
    # A due callback's owner: the router offers the call to them first (see `_route`).
    owner: int | None = None
    callback_id: int | None = None  # the callback this call honours: done once it connects
    # A preview call: dialed by `agent_id`, who holds it (reserved) until the answer. `view` is
    # the campaign as it was at the dial: this process may not run the campaign.
    preview: bool = False
    view: CampaignView | None = None
    held: Callable[[], bool] | None = None  # does the agent still hold it (not gone away)?
    agent_channel: str = ""
    connect_failed: bool = False
    # `agent_id` holds the agent for this call (reserved by the router, or the preview's
    # agent): BRIDGED pushes them the pop. False for an adopted call's agent from its row.
    reserved: bool = False
    answered_at: dt.datetime | None = None  # Asterisk's times, kept for the close
    bridged_at: dt.datetime | None = None


@dataclass(slots=True)
class CampaignView:
    """The parts of a campaign row a runner needs, reloaded every tick."""

    id: int
    name: str
    state: str
    dial_mode: str
    pacing: dict[str, Any]
    max_concurrent_calls: int | None
    caller_id: str | None
    amd_enabled: bool
    machine_action: str
    abandon_limit_s: float
    record_calls: bool
    retry_rules: dict[str, Any]
    compliance_profile: str
    calling_window: dict[str, Any] = field(default_factory=dict)
    caps: dict[str, Any] = field(default_factory=dict)
    caller_id_pool: list[Any] = field(default_factory=list)
    updated_at: dt.datetime | None = None

    @classmethod
    def of(cls, c: Campaign) -> CampaignView:
        return cls(
            c.id,
            c.name,
            c.state,
            c.dial_mode,
            dict(c.pacing),
            c.max_concurrent_calls,
            c.caller_id,
            c.amd_enabled,
            c.machine_action,
            c.abandon_limit_s,
            c.record_calls,
            dict(c.retry_rules),
            c.compliance_profile,
            dict(c.calling_window),
            dict(c.caps),
            list(c.caller_id_pool),
            c.updated_at,
        )


@dataclass(slots=True)
class CampaignRun:
    """A runner's memory: pacing history, the window's counts, the latest decision."""

    view: CampaignView
    policy: Policy
    rules: RetryRules
    history: deque[Attempt] = field(default_factory=lambda: deque(maxlen=5000))
    handles: deque[Handle] = field(default_factory=lambda: deque(maxlen=5000))
    window_abandoned: float = 0.0
    window_connected: float = 0.0
    window_estimated: float = 0.0  # the estimated part of window_abandoned (AMD false positives)
    window_refreshed: float = float("-inf")
    decision: Decision | None = None
    decision_saved: float = float("-inf")
    lease_renewed: float = float("-inf")
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    options: ClaimOptions | None = None
    options_version: dt.datetime | None = None


class Engine:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        telephony: TelephonyPort,
        agents: AgentsPort,
        *,
        owner: str,
        tick_hz: float = 4.0,
        lease_ttl: dt.timedelta = dt.timedelta(seconds=15),
        clock: Clock = utcnow,
        options_for: Callable[[CampaignView], ClaimOptions] = claim_options,
        recordings_dir: str = "/var/spool/asterisk/monitor",
    ) -> None:
        self.sessions = sessions
        self.telephony = telephony
        self.agents = agents
        self.owner = owner
        self.tick_s = 1.0 / tick_hz
        self.lease_ttl = lease_ttl
        self.clock = clock
        self.options_for = options_for
        self.recordings_dir = recordings_dir
        self.calls: dict[int, Call] = {}
        self.runs: dict[int, CampaignRun] = {}
        self._seq = itertools.count()
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner_tasks: dict[int, asyncio.Task[None]] = {}
        self._stop = asyncio.Event()
        # What keeps the engine from dialing now, for /healthz ("database": why); empty: fine.
        self.problems: dict[str, str] = {}
        # A campaign runner that failed is started again no sooner than this (loop time).
        self._restart_at: dict[int, float] = {}
        self._restart_delays: dict[int, Iterator[float]] = {}

    # -- time ---------------------------------------------------------------------------------
    @staticmethod
    def mono() -> float:
        return asyncio.get_running_loop().time()

    def _db_down(self, exc: BaseException) -> None:
        self.problems["database"] = f"{type(exc).__name__}: {exc}"[:300]

    def _db_up(self) -> None:
        self.problems.pop("database", None)

    # -- lifecycle ----------------------------------------------------------------------------
    async def run(self) -> None:
        """Own every running campaign whose lease this process can take, until `stop()`.

        A failure to reach the database does not end it: it is reported (`problems`, /healthz)
        and tried again with the shared backoff; calls in flight and their routers carry on."""
        self._stop = asyncio.Event()
        delays = DEFAULT_BACKOFF.delays()
        try:
            while not self._stop.is_set():
                wait = min(1.0, self.lease_ttl.total_seconds() / 3)
                try:
                    await self._adopt_campaigns()
                except Exception as exc:
                    log.warning("engine cannot reach the database: %s", type(exc).__name__)
                    self._db_down(exc)
                    wait = next(delays)
                else:
                    self._db_up()
                    delays = DEFAULT_BACKOFF.delays()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), timeout=wait)
        finally:
            self._stop.set()
            # Runners finish the tick they are in (never cut a transaction in half), then stop.
            runners = list(self._runner_tasks.values())
            if runners:
                _, pending = await asyncio.wait(runners, timeout=5.0)
                for task in pending:
                    task.cancel()
            # Routers finish too (at most the abandon limit): a debtor being connected gets the
            # agent or the safe harbor, and the bridge is recorded.
            routing = list(self._tasks)
            if routing:
                await asyncio.wait(routing, timeout=3.0)
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*runners, *self._tasks, return_exceptions=True)
            for cid in list(self.runs):
                await leases.release(self.sessions, cid, self.owner)

    def stop(self) -> None:
        """Ask `run()` to return after the current ticks; calls in flight stay with Asterisk."""
        self._stop.set()

    async def _adopt_campaigns(self) -> None:
        async with self.sessions() as s:
            rows = (
                await s.execute(
                    select(Campaign.id).where(
                        Campaign.state.in_(
                            [CampaignState.RUNNING.value, CampaignState.PAUSED.value]
                        )
                    )
                )
            ).scalars()
            wanted = list(rows)
        now = self.mono()
        for cid in wanted:
            task = self._runner_tasks.get(cid)
            if task is not None and not task.done():
                continue
            # (A runner catches and logs its own errors: its task never holds an exception.)
            if task is not None and now < self._restart_at.get(cid, 0.0):
                continue
            if await leases.acquire(self.sessions, cid, self.owner, self.clock(), self.lease_ttl):
                log.info("campaign lease taken", extra={"campaign_id": cid})
                self._runner_tasks[cid] = asyncio.create_task(
                    self._run_campaign(cid), name=f"campaign-{cid}"
                )

    async def _load(self, campaign_id: int) -> CampaignView | None:
        async with self.sessions() as s:
            row = await s.get(Campaign, campaign_id)
            return None if row is None else CampaignView.of(row)

    async def _run_campaign(self, campaign_id: int) -> None:
        view = await self._load(campaign_id)
        if view is None:
            return
        run = CampaignRun(
            view,
            _policy_for(view),
            RetryRules.from_campaign(view.retry_rules),
        )
        self.runs[campaign_id] = run
        try:
            await self.reconcile(campaign_id)
            while not self._stop.is_set():
                started = self.mono()
                if not await self._tick(run):
                    return
                self._restart_delays.pop(campaign_id, None)
                self._db_up()
                self.problems.pop("telephony", None)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._stop.wait(), max(0.0, self.tick_s - (self.mono() - started))
                    )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Restarted by `run` after the shared backoff (the lease is still ours).
            if isinstance(exc, TelephonyUnavailable):
                log.warning(
                    "campaign waits for Asterisk: %s", exc, extra={"campaign_id": campaign_id}
                )
                self.problems["telephony"] = str(exc)
            else:
                log.exception("campaign runner failed", extra={"campaign_id": campaign_id})
                self._db_down(exc)
            delays = self._restart_delays.setdefault(campaign_id, DEFAULT_BACKOFF.delays())
            self._restart_at[campaign_id] = self.mono() + next(delays)
        else:
            self._restart_delays.pop(campaign_id, None)
        finally:
            self.runs.pop(campaign_id, None)
            metrics.forget_campaign(campaign_id)

    # -- one tick -----------------------------------------------------------------------------
    async def _tick(self, run: CampaignRun) -> bool:
        """Pace, claim and originate once. False when the runner should stop."""
        now, mono = self.clock(), self.mono()
        view = await self._load(run.view.id)
        if view is None:
            return False
        if (view.dial_mode, view.pacing) != (run.view.dial_mode, run.view.pacing):
            run.policy = _policy_for(view)  # settings changed: a fixed campaign dials again
        run.view = view
        if mono - run.lease_renewed >= self.lease_ttl.total_seconds() / 3:
            if not await leases.acquire(self.sessions, view.id, self.owner, now, self.lease_ttl):
                log.warning("campaign lease lost", extra={"campaign_id": view.id})
                return False
            run.lease_renewed = mono
        in_flight = [c for c in self.calls.values() if c.campaign_id == view.id]
        if view.state != CampaignState.RUNNING.value:
            if (
                view.state in (CampaignState.STOPPED.value, CampaignState.FINISHED.value)
                and not in_flight
            ):
                await leases.release(self.sessions, view.id, self.owner)
                return False
            return True
        if mono - run.window_refreshed >= 5.0:
            await self._refresh_window(run, now)
            run.window_refreshed = mono
        snapshot = Snapshot.build(
            now=mono,
            agents=self.agents.views(view.id),
            calls=[CallView(c.stage, mono - c.dialed) for c in in_flight if not c.bridged],
            attempts=list(run.history),
            handles=list(run.handles),
            window_abandoned=run.window_abandoned,
            window_connected=run.window_connected,
            window_estimated=run.window_estimated,
            trunk_free=self.telephony.free_channels(),
        )
        decision = run.policy.decide(snapshot)
        run.decision = decision
        self._publish(run, in_flight, decision)
        launches = decision.launches
        if view.max_concurrent_calls is not None:
            launches = min(launches, view.max_concurrent_calls - len(in_flight))
        if launches > 0:
            await self._launch(run, launches, now, mono)
        if mono - run.decision_saved >= 1.0:
            await leases.save_decision(
                self.sessions, view.id, self.owner, self.decision_dict(run), now
            )
            run.decision_saved = mono
        return True

    def _publish(self, run: CampaignRun, in_flight: list[Call], decision: Decision) -> None:
        cid = run.view.id
        metrics.set_campaign_running(cid, run.view.state == CampaignState.RUNNING.value)
        metrics.record_pacing_decision(cid, decision.to_dict())
        stages: dict[str, int] = {}
        for call in in_flight:
            name = (
                "abandoned"
                if call.abandoned
                else "bridged"
                if call.bridged
                else _STAGE_NAMES[call.stage]
            )
            stages[name] = stages.get(name, 0) + 1
        metrics.set_calls_in_flight(cid, stages)
        agents: dict[str, int] = {}
        for view in self.agents.views(cid):
            agents[view.state.name.lower()] = agents.get(view.state.name.lower(), 0) + 1
        metrics.set_agents_by_state(cid, agents)

    def decision_dict(self, run: CampaignRun) -> dict[str, Any]:
        out: dict[str, Any] = run.decision.to_dict() if run.decision else {}
        out["owner"] = self.owner
        out["calls_in_flight"] = sum(1 for c in self.calls.values() if c.campaign_id == run.view.id)
        return out

    async def _refresh_window(self, run: CampaignRun, now: dt.datetime) -> None:
        # Counted as the profile's rule counts it (window, AMD false positives): the one function
        # the API, /metrics and the reports share.
        window = load_profile(run.view.compliance_profile).abandon
        async with self.sessions() as s:
            found = await abandon_window(s, run.view.id, window, run.view.caps, now)
        run.window_abandoned = found.totals.abandoned
        run.window_connected = found.totals.connected
        run.window_estimated = found.totals.estimated
        metrics.set_abandon_rate(run.view.id, found.rate, window.max_rate, found.totals.estimated)

    async def _launch(self, run: CampaignRun, count: int, now: dt.datetime, mono: float) -> None:
        view = run.view
        if run.options is None or run.options_version != view.updated_at:
            # Compliance, order and caller ID are rebuilt only when the campaign changed.
            run.options, run.options_version = self.options_for(view), view.updated_at
        opts = run.options
        with metrics.timed_db_write("claim"):
            async with self.sessions.begin() as s:
                result = await claim_phones(
                    s,
                    view.id,
                    count,
                    now,
                    opts.rule,
                    order=opts.order,
                    caller_id=view.caller_id,
                    caller_id_for=opts.caller_id_for,
                )
        for claimed in result.claimed:
            self.calls[claimed.attempt_id] = Call(
                claimed.attempt_id,
                view.id,
                mono,
                owner=claimed.callback_owner,
                callback_id=claimed.callback_id,
            )
        if result.blocked:
            log.debug("claim blocked %s", result.blocked, extra={"campaign_id": view.id})
        await asyncio.gather(*(self._originate(run, c) for c in result.claimed))

    async def _originate(self, run: CampaignRun, claimed: Claimed) -> None:
        with contextlib.suppress(OriginateRefused):
            await self._send_originate(
                run.view,
                claimed.attempt_id,
                claimed.account_id,
                claimed.number,
                claimed.caller_id,
                amd=run.view.amd_enabled,
            )

    async def _send_originate(
        self,
        view: CampaignView,
        attempt_id: int,
        account_id: int,
        number: str,
        caller_id: str | None,
        *,
        amd: bool,
    ) -> None:
        """One Originate (predictive or preview alike); refused -> the attempt ends `failed`
        and OriginateRefused is raised again for the caller."""
        request = OriginateRequest(
            attempt_id=attempt_id,
            campaign_id=view.id,
            number=number,
            caller_id=caller_id or view.caller_id,
            amd=amd,
            machine_action=view.machine_action,
            record=view.record_calls,
            variables={
                "DIALER_CAMPAIGN_ID": str(view.id),
                "DIALER_ACCOUNT_ID": str(account_id),
            },
            abandon_limit_s=view.abandon_limit_s,
        )
        try:
            server = await self.telephony.originate(request)
        except OriginateRefused as exc:
            log.warning("originate refused: %s", exc, extra={"attempt_id": attempt_id})
            await self._close(attempt_id, "failed", self.clock())
            raise
        metrics.record_originated(view.id, server)
        async with self.sessions.begin() as s:
            await attempts.stamp(s, attempt_id, server=server, originated_at=self.clock())

    # -- preview ------------------------------------------------------------------------------
    async def dial_preview(
        self,
        attempt_id: int,
        campaign_id: int,
        agent: ReadyAgent,
        held: Callable[[], bool] | None = None,
    ) -> None:
        """Dial the preview account `agent` holds (its open attempt, claimed by `next_preview`).

        The call is tracked here, in the agent's process, whoever runs the campaign. On a human
        answer it goes straight to `agent` (no pacing, no abandon: the agent is guaranteed)
        unless `held()` says the agent let go meanwhile; then it is routed like any call.
        Raises PreviewRefused when the attempt cannot be dialed, OriginateRefused when no server
        took it (the attempt is then closed `failed`)."""
        async with self.sessions() as s:
            attempt = await s.get(CallAttempt, attempt_id)
            campaign = await s.get(Campaign, campaign_id)
            if attempt is None or campaign is None or attempt.campaign_id != campaign_id:
                raise PreviewRefused(f"attempt {attempt_id} is not of campaign {campaign_id}")
            if attempt.ended_at is not None:
                raise PreviewRefused(f"attempt {attempt_id} already ended ({attempt.outcome})")
            if attempt.agent_id != agent.agent_id:
                raise PreviewRefused(f"attempt {attempt_id} is not held by this agent")
            if attempt.originated_at is not None or attempt_id in self.calls:
                raise PreviewRefused(f"attempt {attempt_id} was dialed already")
            if campaign.state != CampaignState.RUNNING.value:
                raise PreviewRefused(f"campaign {campaign_id} is {campaign.state}, not running")
            view = CampaignView.of(campaign)
            # Checked again at the dial: the agent may have looked at the account for a while.
            try:
                rule = self.options_for(view).rule
            except ValueError as exc:
                raise PreviewRefused(f"campaign {campaign_id} settings: {exc}") from exc
            # The agent's click launches this call: its evidence record says so (kept even when
            # the check refuses the dial).
            blocked = await recheck_held(s, attempt_id, self.clock(), rule, agent_id=agent.agent_id)
            await s.commit()
            if blocked is not None:
                raise PreviewRefused(f"this account may not be called now: {blocked}")
            callback = await callbacks_due(s, [attempt.account_id], campaign_id, self.clock())
            account_id, number, caller_id = attempt.account_id, attempt.number, attempt.caller_id
        cb_id, _owner = callback.get(account_id, (None, None))
        if attempt_id in self.calls:  # a second dial raced this one through the checks
            raise PreviewRefused(f"attempt {attempt_id} was dialed already")
        self.calls[attempt_id] = Call(
            attempt_id,
            campaign_id,
            self.mono(),
            agent_id=agent.agent_id,
            callback_id=cb_id,
            preview=True,
            view=view,
            held=held,
            agent_channel=agent.channel,
            reserved=True,
        )
        # No AMD: the agent hears a machine themself and the debtor hears no AMD silence.
        await self._send_originate(view, attempt_id, account_id, number, caller_id, amd=False)

    # -- events from telephony ----------------------------------------------------------------
    async def on_event(self, event: CallEvent) -> None:
        call = self.calls.get(event.attempt_id)
        if call is None:
            return  # another process's call, or one already closed
        if event.kind is CallEventKind.ORIGINATED:
            async with self.sessions.begin() as s:
                await attempts.stamp(
                    s,
                    call.attempt_id,
                    **{
                        k: v
                        for k, v in (
                            ("server", event.server),
                            ("uniqueid", event.uniqueid),
                            ("linkedid", event.linkedid),
                            ("channel", event.channel),
                        )
                        if v is not None
                    },
                )
        elif event.kind is CallEventKind.RINGING:
            call.stage = CallStage.RINGING
        elif event.kind is CallEventKind.ANSWERED:
            await self._answered(call, event)
        elif event.kind is CallEventKind.MACHINE:
            call.machine = True
            async with self.sessions.begin() as s:
                await attempts.stamp(
                    s,
                    call.attempt_id,
                    answered_at=event.at,
                    amd_result=event.amd_result or "MACHINE",
                    amd_cause=event.amd_cause,
                )
            run = self.runs.get(call.campaign_id)
            await self.telephony.machine(
                call.attempt_id, run.view.machine_action if run else "hangup"
            )
        elif event.kind is CallEventKind.BRIDGED:
            await self._bridged(call, event)
        elif event.kind is CallEventKind.CONNECT_FAILED:
            # The dialplan found the agent's channel gone and plays the safe harbor itself: the
            # call is abandoned and the agent, never connected, is freed and told why.
            call.connect_failed = call.abandoned = True
            await self._free_agent(call, "agent_channel_lost")
        elif event.kind is CallEventKind.ABANDONED:
            # The safe harbor started, perhaps by the dialplan's own clock: no agent may take it.
            # A Redirect already on its way is left to finish: Asterisk's BridgeEnter, the
            # dialplan's DialerConnectFailed or the hang-up says what became of it.
            call.abandoned = True
            if (
                call.routing is not None
                and not call.routing.done()
                and not call.bridged
                and call.agent_id is None
            ):
                call.routing.cancel()
        elif event.kind is CallEventKind.ENDED:
            await self._ended(call, event)

    async def _answered(self, call: Call, event: CallEvent) -> None:
        call.stage = CallStage.ANSWERED_WAITING
        call.answered = self.mono()
        call.answered_at = event.at
        metrics.record_answered_live(call.campaign_id)
        # Route first: the debtor is waiting, and the 2-second clock runs from the answer. The
        # stamp below records the event's time (taken when telephony received it), so writing it
        # after the router started changes nothing in the record.
        call.routing = asyncio.create_task(self._route(call), name=f"route-{call.attempt_id}")
        self._tasks.add(call.routing)
        call.routing.add_done_callback(self._routed)
        async with self.sessions.begin() as s:
            await attempts.stamp(
                s,
                call.attempt_id,
                answered_at=event.at,
                amd_result=event.amd_result,
                amd_cause=event.amd_cause,
            )

    def _routed(self, task: asyncio.Task[None]) -> None:
        """Owner of the router tasks: reads each one's result (an error is logged, never lost)."""
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("router failed", exc_info=task.exception())

    def agent_ready(self, campaign_id: int) -> None:
        """The hub tells the router an agent of the campaign became ready."""
        run = self.runs.get(campaign_id)
        if run is not None:
            run.ready.set()

    def handle_finished(self, campaign_id: int, talk_s: float, wrap_s: float) -> None:
        """The hub reports a finished call's talk and wrap-up durations (pacing's history)."""
        run = self.runs.get(campaign_id)
        if run is not None:
            run.handles.append(Handle(next(self._seq), self.mono(), talk_s, wrap_s))

    async def _route(self, call: Call) -> None:
        """Bridge to the longest-waiting ready agent within the limit, else the safe harbor."""
        run = self.runs.get(call.campaign_id)
        view = run.view if run is not None else call.view
        limit = view.abandon_limit_s if view is not None else 2.0
        assert call.answered is not None
        deadline = call.answered + max(0.0, limit - SAFE_HARBOR_MARGIN_S)
        if call.preview:
            if await self._route_preview(call, run):
                return
            await self._free_agent(call, "connect_failed")
        # Agents whose reservation failed since the last wait (taken by another router between
        # `longest_waiting` and `reserve`, e.g. another process's, or no longer ready): the router
        # asks again at once for another ready agent rather than wait ~100 ms for one to free up.
        lost: set[int] = set()
        while True:
            # A due callback's owner first when ready; never wait for them while the debtor
            # waits (the next round asks again, so an owner freed in time still wins).
            agent = self.agents.longest_waiting(call.campaign_id, prefer=call.owner)
            if agent is not None and agent.agent_id in lost:
                agent = None  # still taken to be ready: wait for a change rather than spin
            if agent is not None and await self._reserve(agent.agent_id, call.attempt_id):
                # The call holds the agent from here: every way it ends frees them (`_ended`,
                # CONNECT_FAILED, a refused Redirect below).
                call.agent_id, call.reserved = agent.agent_id, True
                if call.attempt_id not in self.calls or call.abandoned:
                    # Ended, or the dialplan's own safe harbor started, while we reserved.
                    gone = call.attempt_id not in self.calls
                    await self._free_agent(call, "debtor_hung_up" if gone else "not_connected")
                    return
                try:
                    await self.telephony.bridge(call.attempt_id, agent)
                except asyncio.CancelledError:
                    raise  # the call ended meanwhile: `_ended` frees the agent
                except CallGone:
                    await self._free_agent(call, "debtor_hung_up")
                    return  # its ENDED follows
                except Exception as exc:
                    # Refused for a reason of the call's, not the agent's: no other agent will
                    # do better; the safe harbor (or the dialplan's own) follows.
                    log.warning(
                        "redirect to the agent refused: %s",
                        exc,
                        extra={"attempt_id": call.attempt_id, "agent_id": agent.agent_id},
                    )
                    await self._free_agent(call, "connect_failed")
                    break
                else:
                    # Connected only when Asterisk says so (BRIDGED); the agent stays reserved
                    # until then, or until CONNECT_FAILED or the hang-up frees them.
                    return
            remaining = deadline - self.mono()
            if remaining <= 0 or call.attempt_id not in self.calls:
                break
            if agent is not None:
                lost.add(agent.agent_id)
                continue
            lost.clear()
            if run is not None:
                run.ready.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(run.ready.wait(), timeout=min(remaining, 0.1))
            else:
                await asyncio.sleep(min(remaining, 0.05))
        if call.attempt_id in self.calls and not call.abandoned:
            await self._play_safe_harbor(call)

    async def _reserve(self, agent_id: int, attempt_id: int) -> bool:
        try:
            return await self.agents.reserve(agent_id, attempt_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The screen pop could not be read (the database is away): the agent is not taken,
            # and the debtor gets another agent or the safe harbor within the limit.
            log.warning("reserving an agent failed: %s", type(exc).__name__,
                        extra={"attempt_id": attempt_id, "agent_id": agent_id})  # fmt: skip
            return False

    async def _play_safe_harbor(self, call: Call) -> None:
        try:
            await self.telephony.safe_harbor(call.attempt_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The call is gone, or AMI is down: the dialplan plays the message by itself when
            # its wait runs out, and its DialerSafeHarbor (or the hang-up) decides the outcome.
            log.warning(
                "safe-harbor redirect failed: %s", exc, extra={"attempt_id": call.attempt_id}
            )

    async def _free_agent(self, call: Call, reason: str) -> None:
        """The agent the call held was never connected: back to ready, told `reason`."""
        agent_id, call.agent_id = call.agent_id, None
        reserved, call.reserved = call.reserved, False
        if agent_id is None or call.bridged or not reserved:
            return
        if call.preview:
            # The agent who dialed keeps the account: wrap-up to record what happened.
            await self.agents.call_ended(agent_id, call.attempt_id)
            return
        await self.agents.unreserve(agent_id, reason)

    async def _route_preview(self, call: Call, run: CampaignRun | None) -> bool:
        """The agent who dialed holds the call (reserved): bridge it to them. False when they
        let go (logged out, channel lost) or the bridge failed: then the call is routed as any."""
        agent_id = call.agent_id
        if agent_id is None or (call.held is not None and not call.held()):
            log.warning("preview agent gone at the answer", extra={"attempt_id": call.attempt_id})
            return False
        try:
            await self.telephony.bridge(call.attempt_id, ReadyAgent(agent_id, call.agent_channel))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("preview bridge failed: %s", exc, extra={"attempt_id": call.attempt_id})
            return False
        return True  # BRIDGED (Asterisk's BridgeEnter) pushes the pop; the agent holds it

    async def _bridged(self, call: Call, event: CallEvent) -> None:
        """Asterisk put the debtor in the agent's bridge: the agent talks and sees the pop."""
        call.bridged, call.bridged_at = True, event.at
        agent_id = call.agent_id
        if agent_id is None and event.agent is not None and event.agent.isdigit():
            agent_id = call.agent_id = int(event.agent)  # adopted: only Asterisk knows who
        run = self.runs.get(call.campaign_id)
        if agent_id is not None and call.reserved:
            await self.agents.connected(agent_id, call.attempt_id)
        if call.answered is not None:
            metrics.record_connected(call.campaign_id, max(0.0, self.mono() - call.answered))
        path = None
        view = run.view if run is not None else call.view
        if view is not None and view.record_calls:
            path = await self.telephony.start_recording(call.attempt_id)
        async with self.sessions.begin() as s:
            await attempts.stamp(
                s, call.attempt_id, bridged_at=event.at, agent_id=agent_id, recording_path=path
            )
            if call.callback_id is not None:
                await attempts.callback_done(s, call.callback_id)
        if run is not None:
            run.window_connected += 1

    async def _ended(self, call: Call, event: CallEvent) -> None:
        if call.routing is not None and not call.routing.done():
            call.routing.cancel()
            await asyncio.gather(call.routing, return_exceptions=True)
        # Telephony's verdict (one pure function of what Asterisk said) is the outcome.
        call.bridged, call.abandoned = event.bridged, event.abandoned
        outcome = event.outcome or "failed"
        agent_id = call.agent_id
        if agent_id is not None and not event.bridged:
            await self._free_agent(call, "debtor_hung_up")
        if agent_id is not None and event.bridged:
            # Wrap-up at once, from memory: the close below may wait for the database.
            await self.agents.call_ended(agent_id, call.attempt_id)
        await self._close(
            call.attempt_id,
            outcome,
            event.at,
            event.hangup_cause,
            event.dial_status,
            bridged=event.bridged,
            abandoned=event.abandoned,
        )

    async def _close(
        self,
        attempt_id: int,
        outcome: str,
        at: dt.datetime,
        hangup_cause: int | None = None,
        dial_status: str | None = None,
        *,
        bridged: bool = False,
        abandoned: bool = False,
    ) -> None:
        call = self.calls.get(attempt_id)
        run = self.runs.get(call.campaign_id) if call else None
        rules = (
            run.rules
            if run
            else RetryRules.from_campaign(call.view.retry_rules)
            if call is not None and call.view is not None
            else RetryRules()
        )

        async def write() -> bool:
            with metrics.timed_db_write("close_attempt"):
                async with self.sessions.begin() as s:
                    return await attempts.close(
                        s,
                        attempt_id,
                        outcome,
                        at,
                        rules,
                        abandoned=abandoned,
                        hangup_cause=hangup_cause,
                        dial_status=dial_status,
                        answered_at=call.answered_at if call else None,
                        bridged_at=call.bridged_at if call and bridged else None,
                        agent_id=call.agent_id if call and bridged else None,
                    )

        # Persisted before it is forgotten, retried until the database takes it: a close lost
        # from memory would leave the attempt open for ever (and pacing counts it in flight
        # meanwhile, which errs on the side of fewer calls).
        closed = await retry(
            write,
            what=f"closing attempt {attempt_id}",
            retry_on=DB_UNREACHABLE,
            retry_if=_connection_lost,
            on_failure=self._db_down,
        )
        self._db_up()
        self.calls.pop(attempt_id, None)
        if closed and call is not None:
            metrics.record_outcome(call.campaign_id, outcome)
            if abandoned:
                metrics.record_abandoned(call.campaign_id)
        if call is None or run is None:
            return
        mono = self.mono()
        if bridged:
            kind = Outcome.CONNECTED
        elif abandoned:
            kind = Outcome.ABANDONED
            run.window_abandoned += 1
        elif call.machine:
            kind = Outcome.MACHINE
        else:
            kind = Outcome.NO_ANSWER
        to_outcome = (call.answered if call.answered is not None else mono) - call.dialed
        run.history.append(Attempt(next(self._seq), mono, kind, max(0.0, to_outcome)))

    # -- recovery -----------------------------------------------------------------------------
    async def reconcile(self, campaign_id: int) -> int:
        """Close the campaign's open attempts Asterisk no longer has; adopt the live ones.

        Calls Asterisk no longer has are closed with the real outcome from Asterisk's own
        record of them (the dialplan's AstDB entry, `PoolTelephony.ended`), else by the verdict
        of what their row says (bridged: `human`), else `lost`, which rests the phone as long as
        an abandon would (it may have been one). Returns how many were closed as `lost`.
        Nothing is ever re-dialed here. Raises TelephonyUnavailable while a server that may hold
        one of them is not connected: the runner is then started again after the backoff.
        """
        now = self.clock()
        async with self.sessions() as s:
            open_rows = [
                a
                for a in await attempts.open_attempts(s)
                if a.campaign_id == campaign_id and not _held_preview(a, now)
            ]
        known = [a for a in open_rows if a.id not in self.calls]
        if not known:
            return 0
        view = self.runs[campaign_id].view if campaign_id in self.runs else None
        limit = view.abandon_limit_s if view is not None else 2.0
        # Telephony follows them first and lists Asterisk's channels second, so a call that
        # ends in between is still seen ending; those it still has are followed like our own.
        opened = [
            OpenCall(
                row.id,
                answered=row.answered_at is not None,
                bridged=row.bridged_at is not None,
                abandon_limit_s=limit,
                campaign_id=row.campaign_id,
                account_id=row.account_id,
                server=row.server,
            )
            for row in known
        ]
        live = await self.telephony.adopt(opened)
        recorded = await self.telephony.ended([c for c in opened if c.attempt_id not in live])
        run = self.runs.get(campaign_id)
        rules = run.rules if run is not None else RetryRules()
        mono = self.mono()
        closed = 0
        for row in known:
            if row.id in live:
                stage = CallStage.ANSWERED_WAITING if row.answered_at else CallStage.RINGING
                self.calls[row.id] = Call(
                    row.id,
                    campaign_id,
                    mono,
                    stage=stage,
                    bridged=row.bridged_at is not None,
                    agent_id=row.agent_id,
                    adopted=True,
                )
                continue
            record = recorded.get(row.id)
            if record is None:
                guess = outcomes.verdict(
                    outcomes.CallFacts(
                        answered=row.answered_at is not None,
                        bridged=row.bridged_at is not None,
                        end_seen=False,
                    )
                )
                record = EndedCall(row.id, guess.outcome.value, guess.bridged, guess.abandoned)
            async with self.sessions.begin() as s:
                if await attempts.close(
                    s,
                    row.id,
                    record.outcome,
                    now,
                    rules,
                    abandoned=record.abandoned,
                    hangup_cause=record.hangup_cause,
                    dial_status=record.dial_status,
                    answered_at=now if record.bridged or record.abandoned else None,
                    bridged_at=now if record.bridged else None,
                    agent_id=row.agent_id if record.bridged else None,
                ):
                    metrics.record_outcome(campaign_id, record.outcome)
                    if record.abandoned:
                        metrics.record_abandoned(campaign_id)
                    if record.outcome == "lost":
                        closed += 1
        if closed:
            log.warning("closed %d lost attempts", closed, extra={"campaign_id": campaign_id})
        return closed
