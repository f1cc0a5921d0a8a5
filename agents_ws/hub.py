"""The hub: every agent's session in this process (state machine, current call, socket) and the
message handlers. It implements `AgentHubApi` for the engine and calls `EnginePort` for the rest.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import zoneinfo
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from agents_ws.engine_port import (
    Ack,
    AgentIdentity,
    AgentSnapshot,
    CallOffer,
    CampaignInfo,
    CampaignLive,
    EnginePort,
    HubListener,
    PortRefused,
    ScreenPop,
    StateChange,
    SupervisorAction,
)
from agents_ws.protocol import (
    PAUSE_REASONS,
    PROTOCOL_VERSION,
    DispositionRequest,
    Envelope,
    ErrorCode,
    JsonObject,
    JsonValue,
    ProtocolError,
    SoftphoneStatus,
    encode,
    opt_int,
    parse_callback,
    parse_disposition,
    parse_pause_reason,
    parse_promise,
    parse_softphone_status,
    parse_wrong_number,
    req_int,
    req_str,
)
from agents_ws.state import (
    WRAP_UP_EXPIRED_CODE,
    AgentState,
    StateMachine,
    WrapUpExpiry,
)

T = TypeVar("T")
log = logging.getLogger("agents_ws.hub")
S = AgentState
# An agent away this long (and not on a call) is logged out, so the floor stays truthful.
OFFLINE_AFTER_S = 15 * 60.0
SUPERVISOR_PUSH_S = 1.0
# The engine's refusals that keep their own code on the socket; any other is `invalid_field`.
_PORT_CODES: dict[str, ErrorCode] = {
    "unavailable": "unavailable",
    "no_phone": "no_phone",
    "call_over": "call_over",
}


class Outlet(Protocol):
    """Where a session's messages go: one websocket connection (see server.py)."""

    def push(self, text: str) -> None: ...

    def close_soon(self, code: int, reason: str) -> None: ...


@dataclass(slots=True)
class AgentSession:
    """One agent in this process; survives socket drops so a reconnect resumes the call."""

    identity: AgentIdentity
    sm: StateMachine = field(default_factory=StateMachine)
    campaign_id: int | None = None
    call: CallOffer | None = None  # the current call, or the last one until the next arrives
    pop: ScreenPop | None = None
    disposed: bool = False  # the current/last call already has a disposition
    outlet: Outlet | None = None
    disconnected_at: float | None = None
    talk_started: float | None = None
    talk_s: float = 0.0
    # The nailed-up channel (telephony watches it): no call is routed to an agent without it,
    # and pacing does not count them as available.
    phone_up: bool = False
    phone_reason: str | None = "connecting"
    revoked: bool = False  # their session was revoked: never offered a call again


def _zone(name: str | None) -> dt.tzinfo:
    if not name:
        return dt.UTC
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return dt.UTC


class AgentHub:
    """Sessions, state, calls. Implements `AgentHubApi`; owns the state-log writer task."""

    def __init__(
        self,
        port: EnginePort,
        grace_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.port = port
        self.grace_seconds = grace_seconds
        self.clock = clock
        self.wall = wall
        self.sessions: dict[int, AgentSession] = {}
        # Told the number of open agent sockets whenever it changes (the dialer's metric).
        self.on_sockets: Callable[[int], None] | None = None
        # Each softphone report (metrics), with the agent's previous one (None: first).
        self.on_softphone: (
            Callable[[int, SoftphoneStatus | None, SoftphoneStatus | None], None] | None
        ) = None
        self._softphones: dict[int, SoftphoneStatus] = {}
        # A call found no agent while a ready agent of its campaign had their audio down.
        self.on_refused_audio_down: Callable[[], None] | None = None
        # Told an agent's id whenever their state or campaign changes (the cluster's presence).
        self.on_change: Callable[[int], None] | None = None
        self._calls: dict[str, int] = {}  # call_id -> agent_id
        self._supervisors: set[Outlet] = set()
        self._campaigns_live: list[CampaignLive] = []
        self._log_queue: asyncio.Queue[StateChange] = asyncio.Queue()
        self._listeners: list[HubListener] = []

    def listen(self, listener: HubListener) -> None:
        self._listeners.append(listener)

    # --- engine side (AgentHubApi) -------------------------------------------------------

    def _away_too_long(self, s: AgentSession, now: float) -> bool:
        return s.disconnected_at is not None and now - s.disconnected_at > self.grace_seconds

    def snapshot(self, campaign_id: int | None = None) -> list[AgentSnapshot]:
        now = self.clock()
        return [
            AgentSnapshot(
                s.identity.agent_id,
                s.sm.state,
                s.sm.time_in_state(now),
                s.campaign_id,
                s.outlet is not None,
                s.phone_up,
            )
            for s in self.sessions.values()
            if s.sm.state != S.OFFLINE
            and not s.revoked
            and not self._away_too_long(s, now)
            and (campaign_id is None or s.campaign_id in (None, campaign_id))
        ]

    def _longest_waiting(
        self, campaign_id: int, agent_id: int | None, now: float, exclude: Collection[int] = ()
    ) -> AgentSession | None:
        best: AgentSession | None = None
        candidates = (
            self.sessions.values()
            if agent_id is None
            else [s for s in (self.sessions.get(agent_id),) if s is not None]
        )
        for s in candidates:
            if (
                s.sm.state != S.READY
                or not s.phone_up
                or s.revoked
                or self._away_too_long(s, now)
                or s.campaign_id not in (None, campaign_id)
                or s.identity.agent_id in exclude
            ):
                continue
            if best is None or s.sm.since < best.sm.since:
                best = s
        return best

    def pick(
        self, campaign_id: int, agent_id: int | None = None, *, exclude: Collection[int] = ()
    ) -> AgentIdentity | None:
        """The longest-waiting ready agent of the campaign; with `agent_id`, that agent if
        ready for the campaign, else None. Agents in `exclude` are passed over."""
        best = self._longest_waiting(campaign_id, agent_id, self.clock(), exclude)
        return None if best is None else best.identity

    def holds(self, agent_id: int, call_id: str) -> bool:
        """Whether the agent still holds the call (reserved or talking, not away too long):
        a dialed preview goes to them on the answer only then."""
        s = self.sessions.get(agent_id)
        return (
            s is not None
            and s.call is not None
            and s.call.call_id == call_id
            and s.sm.state in (S.RESERVED, S.TALKING)
            and s.phone_up
            and not self._away_too_long(s, self.clock())
        )

    def reserve(self, offer: CallOffer, agent_id: int | None = None) -> int | None:
        now = self.clock()
        best = self._longest_waiting(offer.campaign_id, agent_id, now)
        if best is None:
            if self.on_refused_audio_down is not None and any(
                s.sm.state == S.READY
                and not s.phone_up
                and s.campaign_id in (None, offer.campaign_id)
                and agent_id in (None, s.identity.agent_id)
                for s in self.sessions.values()
            ):
                # Someone was ready for it but their audio was down.
                self.on_refused_audio_down()
            return None
        self._start_call(best, offer, now)
        return best.identity.agent_id

    def _start_call(self, s: AgentSession, offer: CallOffer, now: float) -> None:
        if s.call is not None:
            self._calls.pop(s.call.call_id, None)
        s.call, s.pop, s.disposed = offer, None, False
        self._calls[offer.call_id] = s.identity.agent_id
        self._move(s, S.RESERVED, now, "preview" if offer.preview else None)

    def release(self, call_id: str, reason: str) -> None:
        s = self._session_for_call(call_id)
        if s is not None and s.sm.state == S.RESERVED:
            self._move(s, S.READY, self.clock(), reason)

    def call_bridged(self, call_id: str, pop: ScreenPop) -> bool:
        s = self._session_for_call(call_id)
        if s is None or s.sm.state not in (S.RESERVED, S.TALKING):
            return False
        if pop or s.pop is None:  # a dialed preview keeps the pop the agent already has
            s.pop = pop
        self._send(s, self._screen_pop_message(s))
        if s.sm.state == S.RESERVED:
            self._move(s, S.TALKING, self.clock())
        return True

    def call_ended(self, call_id: str) -> None:
        s = self._session_for_call(call_id)
        if s is None or s.call is None:
            return
        now = self.clock()
        if s.sm.state == S.TALKING:
            self._move(s, S.WRAP_UP, now, wrap_up_limit_s=s.call.wrap_up_limit_s)
            if s.disposed:  # disposed while talking: nothing left to wrap up
                self._move(s, S.READY, now, "disposed")
        elif s.sm.state == S.RESERVED and s.call.preview:
            # A dialed preview nobody answered (busy, no answer...): the agent records what
            # happened, as after any call.
            s.talk_s, s.talk_started = 0.0, None
            self._move(s, S.WRAP_UP, now, "not_connected", wrap_up_limit_s=s.call.wrap_up_limit_s)
            if s.disposed:
                self._move(s, S.READY, now, "disposed")
        elif s.sm.state == S.RESERVED:
            self._move(s, S.READY, now, "not_connected")

    def channel_up(self, agent_id: int, reason: str = "phone_up") -> None:
        s = self.sessions.get(agent_id)
        if s is None:
            return
        if s.sm.state == S.OFFLINE:
            s.phone_up, s.phone_reason = True, reason
            self._move(s, S.LOGGED_IN, self.clock())
        elif not s.phone_up:
            s.phone_up, s.phone_reason = True, reason
            self._phone_changed(s)

    def channel_down(self, agent_id: int, reason: str = "phone_hung_up") -> None:
        """The agent keeps their state (telephony brings the channel back by itself); until
        then no call is routed to them and pacing counts them as not available."""
        s = self.sessions.get(agent_id)
        if s is None:
            return
        if s.sm.state == S.OFFLINE:  # logging in (the welcome's state will say it)
            s.phone_up, s.phone_reason = False, reason
            return
        if s.phone_up or s.phone_reason != reason:
            s.phone_up, s.phone_reason = False, reason
            self._phone_changed(s)

    def _phone_changed(self, s: AgentSession) -> None:
        now = self.clock()
        self._send(s, self._state_message(s, now))
        self._changed(s)
        if s.phone_up and s.sm.state == S.READY:
            for listener in self._listeners:  # a ready agent is routable again: wake the router
                try:
                    listener.agent_ready(s.campaign_id)
                except Exception:
                    log.exception("hub listener failed")

    def set_campaigns_live(self, campaigns: list[CampaignLive]) -> None:
        self._campaigns_live = list(campaigns)

    def _session_for_call(self, call_id: str) -> AgentSession | None:
        agent_id = self._calls.get(call_id)
        return None if agent_id is None else self.sessions.get(agent_id)

    # --- state changes, pushes, the log ---------------------------------------------------

    def _move(
        self,
        s: AgentSession,
        target: AgentState,
        now: float,
        reason: str | None = None,
        *,
        wrap_up_limit_s: float | None = None,
        re_id: str | None = None,
    ) -> None:
        entered = s.sm.since
        previous = s.sm.move(target, now, reason, wrap_up_limit_s)
        self._durations(s, previous, target, now, now - entered)
        call = s.call if target in (S.RESERVED, S.TALKING, S.WRAP_UP) else None
        self._log_queue.put_nowait(
            StateChange(
                s.identity.agent_id,
                target,
                reason,
                s.campaign_id if call is None else call.campaign_id,
                None if call is None else call.attempt_id,
                self.wall(),
            )
        )
        self._send(s, self._state_message(s, now, re_id))
        self._changed(s)

    def _changed(self, s: AgentSession) -> None:
        if self.on_change is not None:
            try:  # the cluster's trouble must not break the agent's state change
                self.on_change(s.identity.agent_id)
            except Exception:
                log.exception("hub change hook failed")

    def _durations(
        self,
        s: AgentSession,
        previous: AgentState,
        target: AgentState,
        now: float,
        spent: float,
    ) -> None:
        """Talk and wrap-up times for pacing's history, and ready news for the router."""
        if target == S.TALKING:
            s.talk_started = now
        elif target == S.WRAP_UP and s.talk_started is not None:
            s.talk_s, s.talk_started = now - s.talk_started, None
        for listener in self._listeners:
            try:  # the engine's trouble must not break the agent's state change
                if previous == S.WRAP_UP and s.call is not None:
                    listener.handle_finished(s.call.campaign_id, s.talk_s, spent)
                if target == S.READY:
                    listener.agent_ready(s.campaign_id)
            except Exception:
                log.exception("hub listener failed")

    def _send(self, s: AgentSession, message: JsonObject) -> None:
        if s.outlet is not None:
            s.outlet.push(encode(message))

    def _state_message(self, s: AgentSession, now: float, re_id: str | None = None) -> JsonObject:
        remaining = None if s.sm.wrap_up_deadline is None else max(0.0, s.sm.wrap_up_deadline - now)
        in_call = s.sm.state in (S.RESERVED, S.TALKING, S.WRAP_UP)
        return {
            "v": PROTOCOL_VERSION,
            "type": "state",
            "re": re_id,
            "state": s.sm.state.value,
            "reason": s.sm.reason,
            "elapsed_s": round(s.sm.time_in_state(now), 1),
            "campaign_id": s.campaign_id,
            "call_id": s.call.call_id if in_call and s.call else None,
            "wrap_up_remaining_s": None if remaining is None else round(remaining, 1),
            "phone": "up" if s.phone_up else "down",
            "phone_reason": s.phone_reason,
        }

    def _screen_pop_message(self, s: AgentSession) -> JsonObject:
        assert s.call is not None
        return {
            "v": PROTOCOL_VERSION,
            "type": "screen_pop",
            "call": _call_json(s.call),
            "pop": s.pop,
        }

    async def run(self) -> None:
        """The hub's own task: state-log writer, wrap-up expiry, grace, supervisor pushes."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._write_log())
            tg.create_task(self._tick())

    async def _write_log(self) -> None:
        while True:
            change = await self._log_queue.get()
            try:
                await self.port.record_state(change)
            except Exception:  # the log must not stop the floor; the error is reported
                log.exception("agent state log write failed for agent %s", change.agent_id)
            finally:
                self._log_queue.task_done()

    async def flush(self) -> None:
        """Wait until every state change so far is in the state log."""
        await self._log_queue.join()

    async def _tick(self) -> None:
        last_push = 0.0
        while True:
            await asyncio.sleep(0.25)
            now = self.clock()
            for k, s in enumerate(list(self.sessions.values())):
                if k % 50 == 49:  # let socket writers run: a big floor must not stall a tick
                    await asyncio.sleep(0)
                try:
                    await self._expire(s, now)
                except Exception:  # one agent's trouble must not stop the others' timers
                    log.exception("wrap-up/grace check failed for agent %s", s.identity.agent_id)
            if self._supervisors and now - last_push >= SUPERVISOR_PUSH_S:
                last_push = now
                text = encode(self.supervisor_snapshot())
                for outlet in list(self._supervisors):
                    outlet.push(text)

    async def revoke(self, agent_id: int) -> None:
        """The agent's session was revoked (disabled, role changed, password reset): no call is
        routed to them again; off the floor now, or when their current call's wrap-up ends."""
        s = self.sessions.get(agent_id)
        if s is None:
            return
        s.revoked = True
        if s.outlet is not None:
            self._supervisors.discard(s.outlet)
        await self._expire(s, self.clock())

    async def _expire(self, s: AgentSession, now: float) -> None:
        if s.revoked and s.sm.state in (S.LOGGED_IN, S.READY, S.PAUSED):
            self._move(s, S.OFFLINE, now, "revoked")
            await self._port(self.port.close_agent_channel(s.identity))
            return
        if s.sm.wrap_up_expired(now) and s.call is not None:
            call = s.call
            if call.wrap_up_expiry == WrapUpExpiry.AUTO_DISPOSE and not s.disposed:
                try:
                    await self.port.submit_disposition(
                        s.identity,
                        call,
                        DispositionRequest(
                            f"wrapup-expired-{call.call_id}"[:64], WRAP_UP_EXPIRED_CODE, None
                        ),
                    )
                    s.disposed = True
                except Exception as exc:  # the class only: DB errors may quote debtor data
                    log.error(
                        "forced disposition failed: %s",
                        type(exc).__name__,
                        extra={"agent_id": s.identity.agent_id},
                    )
                    return  # retried on the next tick; the agent stays in wrap-up
            if s.sm.wrap_up_expired(now):  # still, after the await
                self._move(s, S.READY, now, "wrap_up_expired")
        if (
            s.disconnected_at is not None
            and now - s.disconnected_at > OFFLINE_AFTER_S
            and s.sm.state in (S.LOGGED_IN, S.READY, S.PAUSED)
        ):
            self._move(s, S.OFFLINE, now, "disconnected")
            s.phone_up, s.phone_reason = False, None
            await self.port.close_agent_channel(s.identity)  # nobody is at that phone

    # --- sockets ------------------------------------------------------------------------

    async def attach(self, identity: AgentIdentity, outlet: Outlet) -> AgentSession:
        """A socket opened: resume (or create) the agent's session and send the welcome."""
        s = self.sessions.get(identity.agent_id)
        if s is None:
            s = self.sessions[identity.agent_id] = AgentSession(identity)
        elif s.outlet is not None and s.outlet is not outlet:
            s.outlet.close_soon(4000, "replaced by a newer connection")
            self._supervisors.discard(s.outlet)
        s.identity, s.outlet, s.disconnected_at = identity, outlet, None
        s.revoked = False  # a new login (a valid token) after a revocation
        self._count_sockets()
        campaigns = await self.port.campaigns()
        self._send(s, self._welcome(s, campaigns))
        if s.sm.state == S.OFFLINE:
            # Logged in either way; calls wait for the phone (telephony's channel_up says when,
            # perhaps during this await: then the agent is logged in already).
            s.phone_up, s.phone_reason = False, "connecting"
            if await self.port.open_agent_channel(identity):
                s.phone_up, s.phone_reason = True, "phone_up"
            if s.sm.state == S.OFFLINE:
                self._move(s, S.LOGGED_IN, self.clock())
        return s

    def detach(self, s: AgentSession, outlet: Outlet) -> None:
        self._supervisors.discard(outlet)
        if s.outlet is outlet:
            s.outlet = None
            s.disconnected_at = self.clock()
            self._count_sockets()
            # The softphone lived in that page: it is gone with it.
            gone = self._softphones.pop(s.identity.agent_id, None)
            if gone is not None and self.on_softphone is not None:
                self.on_softphone(s.identity.agent_id, gone, None)

    def _count_sockets(self) -> None:
        if self.on_sockets is not None:
            self.on_sockets(sum(1 for s in self.sessions.values() if s.outlet is not None))

    def _welcome(self, s: AgentSession, campaigns: list[CampaignInfo]) -> JsonObject:
        now = self.clock()
        in_call = s.call is not None and s.sm.state in (S.RESERVED, S.TALKING, S.WRAP_UP)
        return {
            "v": PROTOCOL_VERSION,
            "type": "welcome",
            "agent": {
                "id": s.identity.agent_id,
                "login": s.identity.login,
                "name": s.identity.name,
                "role": s.identity.role,
                "language": s.identity.language,
            },
            "state": self._state_message(s, now),
            "call": _call_json(s.call) if in_call and s.call else None,
            "pop": s.pop if in_call else None,
            "campaigns": [
                {"id": c.id, "name": c.name, "dial_mode": c.dial_mode} for c in campaigns
            ],
            "pause_reasons": list(PAUSE_REASONS),
        }

    # --- agent messages -------------------------------------------------------------------

    async def handle(self, s: AgentSession, env: Envelope) -> JsonObject | None:
        """One client message; returns the direct reply (or None when a push already answered).
        Raises ProtocolError for anything refused; the connection stays up."""
        now = self.clock()
        kind = env.type
        if kind == "ping":
            return {"v": PROTOCOL_VERSION, "type": "pong", "re": env.id}
        if kind.startswith("supervisor."):
            return await self._supervisor(s, env)
        if kind.startswith("softphone."):
            return await self._softphone(s, env)
        if kind == "state.ready":
            return self._ready(s, env, now)
        if kind == "state.pause":
            reason = parse_pause_reason(env)
            self._require_state(s, (S.LOGGED_IN, S.READY, S.PAUSED, S.WRAP_UP), "pause")
            if s.sm.state == S.WRAP_UP:
                self._require_wrap_up_done(s)
            if s.sm.state == S.PAUSED:
                s.sm.reason = reason
                self._send(s, self._state_message(s, now, env.id))
            else:
                self._move(s, S.PAUSED, now, reason, re_id=env.id)
            return None
        if kind == "state.logout":
            self._require_state(s, (S.LOGGED_IN, S.READY, S.PAUSED), "log out")
            s.phone_up, s.phone_reason = False, None
            self._move(s, S.OFFLINE, now, "logout", re_id=env.id)
            # Offline first, so no call is routed to the channel while it is being hung up.
            await self._port(self.port.close_agent_channel(s.identity))
            return None
        if kind == "preview.next":
            return await self._preview_next(s, env, now)
        # Everything else acts on a call, which must be this agent's.
        call = self._own_call(s, env)
        if kind == "disposition":
            return await self._disposition(s, env, call)
        if kind == "ptp":
            self._require_call_state(s, env)
            today = self.wall().astimezone(_zone(call.time_zone)).date()
            request = parse_promise(env, today)
            return _ack(env, await self._port(self.port.submit_promise(s.identity, call, request)))
        if kind == "callback":
            self._require_call_state(s, env)
            cb = parse_callback(env, s.identity.agent_id)
            return _ack(env, await self._port(self.port.submit_callback(s.identity, call, cb)))
        if kind == "wrong_number":
            self._require_call_state(s, env)
            wn = parse_wrong_number(env)
            return _ack(env, await self._port(self.port.wrong_number(s.identity, call, wn)))
        if kind == "hangup":
            if s.sm.state == S.WRAP_UP:  # the debtor hung up first: the race is not a fault
                raise ProtocolError("call_over", "the call is already over", "call_id")
            self._require_state(s, (S.RESERVED, S.TALKING), "hang up")
            await self._port(self.port.hang_up(s.identity, call))
            return _ack(env, Ack(None))
        if kind in ("preview.dial", "preview.skip"):
            if not call.preview:
                raise ProtocolError("invalid_state", "this call is not a preview", "call_id")
            self._require_state(s, (S.RESERVED,), kind.removeprefix("preview."))
            if kind == "preview.dial":
                await self._port(self.port.dial_preview(s.identity, call))
            else:
                await self._port(self.port.skip_preview(s.identity, call))
                if s.sm.state == S.RESERVED and s.call is call:
                    self._move(s, S.READY, self.clock(), "preview_skipped")
            return _ack(env, Ack(call.attempt_id))
        raise ProtocolError("unknown_type", f"unknown message type {kind!r}", "type")

    async def _softphone(self, s: AgentSession, env: Envelope) -> JsonObject | None:
        """The desktop's softphone: its SIP credentials (after login, fresh each time), and its
        reports. A report of lost audio counts the agent's session down at once (no call is
        routed to them) and hangs it up; the softphone's re-join brings it back."""
        if env.type == "softphone.credentials":
            sip = await self._port(self.port.softphone_credentials(s.identity))
            if sip is None:
                raise ProtocolError(
                    "unavailable", "this agent has no softphone (their phone is a SIP phone)"
                )
            return {
                "v": PROTOCOL_VERSION,
                "type": "softphone.credentials",
                "re": env.id,
                "sip": sip,
            }
        report = parse_softphone_status(env)
        previous = self._softphones.get(s.identity.agent_id)
        self._softphones[s.identity.agent_id] = report
        if self.on_softphone is not None:
            self.on_softphone(s.identity.agent_id, previous, report)
        if report.state == "audio_lost" and (previous is None or previous.state != "audio_lost"):
            await self._port(self.port.softphone_audio_lost(s.identity, "audio_lost"))
        return None

    def softphones(self) -> dict[int, SoftphoneStatus]:
        """The last report of each agent's softphone (metrics read it)."""
        return dict(self._softphones)

    def _ready(self, s: AgentSession, env: Envelope, now: float) -> JsonObject | None:
        campaign_id = opt_int(env.body, "campaign_id")
        self._require_state(s, (S.LOGGED_IN, S.PAUSED, S.WRAP_UP, S.READY), "go ready")
        if s.sm.state == S.WRAP_UP:
            self._require_wrap_up_done(s)
        s.campaign_id = campaign_id
        if s.sm.state == S.READY:  # a campaign change only
            self._send(s, self._state_message(s, now, env.id))
            self._changed(s)
        else:
            self._move(s, S.READY, now, re_id=env.id)
        return None

    async def _preview_next(self, s: AgentSession, env: Envelope, now: float) -> JsonObject:
        self._require_state(s, (S.READY,), "take a preview account")
        campaign_id = opt_int(env.body, "campaign_id") or s.campaign_id
        found = await self._port(self.port.next_preview(s.identity, campaign_id))
        if found is None:
            raise ProtocolError("unavailable", "no account is due for preview now")
        offer, pop = found
        if s.sm.state != S.READY:  # the engine reserved this agent meanwhile: give it back
            await self._port(self.port.skip_preview(s.identity, offer))
            raise ProtocolError("invalid_state", f"state is now {s.sm.state.value}")
        self._start_call(s, offer, self.clock())
        s.pop = pop
        self._send(s, self._screen_pop_message(s))
        return _ack(env, Ack(offer.attempt_id))

    async def _disposition(
        self, s: AgentSession, env: Envelope, call: CallOffer
    ) -> JsonObject | None:
        request = parse_disposition(env)
        ack = await self._port(self.port.submit_disposition(s.identity, call, request))
        self._send(s, _ack(env, ack))  # the ack first, then the state it leads to
        if s.call is call:
            s.disposed = True
            if s.sm.state == S.WRAP_UP:
                now = self.clock()
                if request.pause_after:
                    self._move(s, S.PAUSED, now, request.pause_after)
                else:
                    self._move(s, S.READY, now, "disposed")
        return None

    def _own_call(self, s: AgentSession, env: Envelope) -> CallOffer:
        call_id = req_str(env.body, "call_id", 64)
        if s.call is None or s.call.call_id != call_id:
            raise ProtocolError("not_your_call", f"call {call_id} is not yours", "call_id")
        return s.call

    def _require_call_state(self, s: AgentSession, env: Envelope) -> None:
        # After wrap-up the last call may still be completed (a late promise or callback).
        if s.sm.state == S.OFFLINE:
            raise ProtocolError("invalid_state", f"{env.type} needs a logged-in agent")

    def _require_state(self, s: AgentSession, allowed: tuple[AgentState, ...], what: str) -> None:
        if s.sm.state not in allowed:
            raise ProtocolError("invalid_state", f"cannot {what} while {s.sm.state.value}")

    def _require_wrap_up_done(self, s: AgentSession) -> None:
        if (
            not s.disposed
            and s.call is not None
            and s.call.wrap_up_expiry != WrapUpExpiry.AUTO_READY
        ):
            raise ProtocolError("invalid_state", "send the call's disposition first", "call_id")

    async def _port(self, op: Awaitable[T]) -> T:
        """Await the engine; its refusals become protocol errors naming the field."""
        try:
            return await op
        except PortRefused as exc:
            code = _PORT_CODES.get(exc.code, "invalid_field")
            raise ProtocolError(code, exc.message, exc.field) from exc

    async def _supervisor(self, s: AgentSession, env: Envelope) -> JsonObject | None:
        if not s.identity.supervises:
            raise ProtocolError("forbidden", "needs role supervisor")
        if env.type == "supervisor.subscribe":
            if s.outlet is not None:
                self._supervisors.add(s.outlet)
            snapshot = self.supervisor_snapshot()
            snapshot["re"] = env.id
            return snapshot
        action = SupervisorAction(env.type.removeprefix("supervisor."))
        target = req_int(env.body, "agent_id")
        if target not in self.sessions:
            raise ProtocolError("invalid_field", f"agent {target} is not connected", "agent_id")
        await self._port(self.port.supervise(s.identity, action, target))
        return _ack(env, Ack(None))

    def supervisor_snapshot(self) -> JsonObject:
        now = self.clock()
        agents: list[JsonValue] = []
        for s in sorted(self.sessions.values(), key=lambda x: x.identity.name):
            in_call = s.call is not None and s.sm.state in (S.RESERVED, S.TALKING, S.WRAP_UP)
            agents.append(
                {
                    "agent_id": s.identity.agent_id,
                    "name": s.identity.name,
                    "login": s.identity.login,
                    "role": s.identity.role,  # the supervisor view lists supervisors apart
                    "state": s.sm.state.value,
                    "reason": s.sm.reason,
                    "elapsed_s": round(s.sm.time_in_state(now), 1),
                    "campaign_id": s.campaign_id,
                    "call_id": s.call.call_id if in_call and s.call else None,
                    "connected": s.outlet is not None,
                    "away": self._away_too_long(s, now),
                    "phone": "up" if s.phone_up else "down",
                }
            )
        campaigns: list[JsonValue] = [
            {
                "campaign_id": c.campaign_id,
                "name": c.name,
                "dialing": c.dialing,
                "ringing": c.ringing,
                "talking": c.talking,
                "abandon_rate": c.abandon_rate,
                "decision": c.decision,
            }
            for c in self._campaigns_live
        ]
        return {
            "v": PROTOCOL_VERSION,
            "type": "supervisor.snapshot",
            "agents": agents,
            "campaigns": campaigns,
        }


def _ack(env: Envelope, ack: Ack) -> JsonObject:
    return {
        "v": PROTOCOL_VERSION,
        "type": "ack",
        "re": env.id,
        "for": env.type,
        "record_id": ack.record_id,
        "duplicate": ack.duplicate,
    }


def _call_json(call: CallOffer) -> JsonObject:
    return {
        "call_id": call.call_id,
        "campaign_id": call.campaign_id,
        "account_id": call.account_id,
        "attempt_id": call.attempt_id,
        "phone_id": call.phone_id,
        "time_zone": call.time_zone,
        "wrap_up_limit_s": call.wrap_up_limit_s,
        "preview": call.preview,
    }
