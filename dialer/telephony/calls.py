"""The call state machine: AMI events of one Asterisk server -> calls in flight -> `CallEvent`s.

It owns which attempt each channel belongs to, each call's state with timestamped transitions, and
the reconciliation with Asterisk's own channel list (resync on connect, periodic audit).

The engine's interface (one direction, typed, documented here):

    CallEvent  — a frozen dataclass, delivered in order to a sink `Callable[[CallEvent], None]`
                 (`dialer.telephony.asterisk.Telephony.events` is an asyncio.Queue of them).
    kinds:     ORIGINATED, RINGING, ANSWERED (the line answered; AMD may still be listening),
               HUMAN (a person is waiting: bridge to an agent or play the safe harbor *now*),
               MACHINE, BRIDGED (Asterisk's BridgeEnter of the call into the agent's bridge, not
               the Redirect's reply), CONNECT_FAILED (the dialplan found the agent's channel
               gone, DialerConnectFailed, and plays the safe harbor itself), ABANDONED (safe
               harbor started), ENDED (always last, exactly once per call, carries `outcome`
               and the `bridged`/`abandoned` flags, all three from `outcomes.verdict`),
               UNKNOWN_CHANNEL (Asterisk has a channel the dialer does not know; reported once).

How a channel is tied to its attempt: the Originate's `ChannelId` (and ActionID) is
`dialer-<attempt id>-<token>`; Asterisk makes it the Uniqueid of the Local ;1 half and the
Linkedid of every leg created for the call (the ;2 half, the trunk leg), so each event is mapped
by Uniqueid, then Linkedid, then the `Attempt` header of the dialplan's Dialer* UserEvents. The
attempt id also rides in the channel variable DIALER_ATTEMPT_ID.

States: created -> originated -> ringing -> answered (answered_by human | machine) -> bridged |
abandoned -> ended; an unanswered call goes from originated/ringing straight to ended with
busy / no_answer / congestion / invalid_number / failed. The final outcome is never decided here
by hand: `Call.facts()` collects what Asterisk said and `dialer.telephony.outcomes.verdict` (one
pure function, also used for adopted and reconciled calls) decides. A call the dialer thought
alive that Asterisk no longer has, with nothing known of its end, ends with outcome `lost`.

Adopted calls (placed by a process that died): `adopt` registers the attempt without its channel
token; the first event whose Linkedid names the attempt binds it, and the call is followed like
any other from then on.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import enum
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import ClassVar

from panoramisk.message import Message

from dialer.telephony.outcomes import (
    CallFacts,
    Outcome,
    Stage,
    outcome_of_answered,
    verdict,
)

log = logging.getLogger(__name__)

CHANNEL_ID_PREFIX = "dialer-"
_CHANNEL_ID = re.compile(r"^dialer-(\d+)-")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def channel_id(attempt_id: int, token: str) -> str:
    """The Originate ChannelId/ActionID of an attempt (see the module docstring)."""
    return f"{CHANNEL_ID_PREFIX}{attempt_id}-{token}"


def attempt_of(channel_or_linked_id: str) -> int | None:
    """The attempt id inside a dialer ChannelId/Linkedid, or None for any other channel."""
    match = _CHANNEL_ID.match(channel_or_linked_id)
    return int(match.group(1)) if match else None


class CallState(enum.StrEnum):
    CREATED = "created"
    ORIGINATED = "originated"
    RINGING = "ringing"
    ANSWERED = "answered"
    BRIDGED = "bridged"
    ABANDONED = "abandoned"
    ENDED = "ended"


_RANK = {s: i for i, s in enumerate(CallState)}
_RANK[CallState.ABANDONED] = _RANK[CallState.BRIDGED]  # alternatives at the same step


class AnsweredBy(enum.StrEnum):
    HUMAN = "human"
    MACHINE = "machine"


class CallEventKind(enum.StrEnum):
    ORIGINATED = "originated"
    RINGING = "ringing"
    ANSWERED = "answered"
    HUMAN = "human"
    MACHINE = "machine"
    BRIDGED = "bridged"
    CONNECT_FAILED = "connect_failed"
    ABANDONED = "abandoned"
    ENDED = "ended"
    UNKNOWN_CHANNEL = "unknown_channel"


@dataclass(frozen=True, slots=True)
class CallEvent:
    """One thing that happened to a call, as the engine sees it (no debtor data inside)."""

    kind: CallEventKind
    server: str
    attempt_id: int | None  # None only for an UNKNOWN_CHANNEL that is not the dialer's
    at: dt.datetime  # aware UTC, when the dialer learnt it
    state: CallState
    outcome: Outcome | None = None  # set on ENDED (and on ABANDONED/MACHINE as the verdict)
    answered_by: AnsweredBy | None = None
    agent: str | None = None  # BRIDGED: the agent id the call joined
    channel: str | None = None  # the call's ;1 channel, or the unknown channel
    hangup_cause: int | None = None
    dial_status: str | None = None
    amd_status: str | None = None
    amd_cause: str | None = None
    bridged: bool = False  # ENDED: the verdict's flags (never both)
    abandoned: bool = False


@dataclass(slots=True)
class Call:
    """One attempt in flight on one server, as far as Asterisk has told us."""

    attempt_id: int
    server: str
    channel_id: str  # Originate ChannelId = ActionID = Uniqueid of ;1 = Linkedid of all legs
    trunk: str = "default"
    state: CallState = CallState.CREATED
    transitions: list[tuple[CallState, dt.datetime]] = field(default_factory=list)
    legs: set[str] = field(default_factory=set)  # Uniqueids of the live legs
    channel: str | None = None  # name of the ;1 half (Redirect, Hangup, MixMonitor target)
    answered_by: AnsweredBy | None = None
    outcome: Outcome | None = None
    dial_status: str | None = None
    hangup_cause: int | None = None
    originate_reason: str | None = None
    amd_status: str | None = None
    amd_cause: str | None = None
    agent: str | None = None
    agent_channel: str | None = None
    recording: str | None = None
    uncertain: bool = False  # the Originate got no reply: only Asterisk's channel list can tell
    # The dialer hung up itself: an unanswered call then ended for want of an answer, whatever
    # reason Asterisk's OriginateResponse races in with.
    hangup_requested: bool = False
    originated_mono: float = 0.0
    human_mono: float = 0.0  # monotonic time of the HUMAN event (answer -> agent latency)
    # Facts for the verdict (dialer.telephony.outcomes.CallFacts).
    safe_harbor: bool = False
    connect_failed: bool = False
    stage: Stage | None = None
    abandon_limit_s: float = 2.0
    adopted: bool = False  # placed by another (dead) process; channel_id learnt from events
    ended_mono: float | None = None

    def facts(self, *, end_seen: bool = True) -> CallFacts:
        waited = None
        if self.human_mono and self.ended_mono is not None:
            waited = max(0.0, self.ended_mono - self.human_mono)
        return CallFacts(
            answered=self.at(CallState.ANSWERED) is not None,
            human=self.answered_by is AnsweredBy.HUMAN,
            amd_status=self.amd_status,
            bridged=self.at(CallState.BRIDGED) is not None,
            safe_harbor=self.safe_harbor,
            connect_failed=self.connect_failed,
            stage=self.stage,
            waited_s=waited,
            abandon_limit_s=self.abandon_limit_s,
            dial_status=self.dial_status,
            hangup_cause=self.hangup_cause,
            originate_reason=self.originate_reason,
            hangup_requested=self.hangup_requested,
            end_seen=end_seen,
        )

    @property
    def ended(self) -> bool:
        return self.state is CallState.ENDED

    def at(self, state: CallState) -> dt.datetime | None:
        """When the call entered `state`, or None."""
        for s, when in self.transitions:
            if s is state:
                return when
        return None


@dataclass(frozen=True, slots=True)
class UnknownChannel:
    uniqueid: str
    linkedid: str
    channel: str
    attempt_id: int | None


@dataclass(frozen=True, slots=True)
class ResyncReport:
    """What a resync against Asterisk's channel list found."""

    alive: int  # tracked calls Asterisk still has
    lost: tuple[int, ...]  # attempt ids closed with outcome `lost`
    unknown: tuple[UnknownChannel, ...]  # channels newly reported as unknown
    pending: int  # tracked calls not seen yet but too young to call lost


CallSink = Callable[[CallEvent], None]

_UP = "6"
_FIRST_HALF = re.compile(r"^dialer-\d+-[0-9a-f]+$")  # a ;1 half's Uniqueid ("<id>-2": the ;2)
_RINGING_STATES = frozenset({"4", "5"})  # Ring, Ringing
# Contexts of channels that are the dialer's own but not calls (agents' nailed-up sessions).
DEFAULT_IGNORED_CONTEXTS = frozenset({"dialer-agent-session", "sim-agent-phone"})


class CallTracker:
    """Calls of one server. Feed it every AMI event with `handle`; it emits `CallEvent`s."""

    def __init__(
        self,
        server: str,
        sink: CallSink,
        *,
        clock: Callable[[], dt.datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
        lost_grace: float = 3.0,
        failure_grace: float = 1.0,
        ignored_contexts: Iterable[str] = DEFAULT_IGNORED_CONTEXTS,
    ) -> None:
        self.server = server
        self._sink = sink
        self._clock = clock
        self._mono = monotonic
        # A call whose Originate is younger than this is not called lost when its channel is
        # missing from the list: Asterisk may not have created it yet.
        self.lost_grace = lost_grace
        # How long a failed OriginateResponse that came before its channels' events waits for
        # them (their Hangup cause tells an invalid number from a plain failure).
        self.failure_grace = failure_grace
        self.ignored_contexts = frozenset(ignored_contexts)
        self.calls: dict[int, Call] = {}  # in flight (not ended)
        self._by_uid: dict[str, Call] = {}
        self._by_cid: dict[str, Call] = {}
        self._reported_unknown: set[str] = set()
        self._ignored_uids: set[str] = set()
        # ChannelIds of calls ended lately (monotonic time): their channels may still be listed
        # by a CoreShowChannels taken just before the Hangup, and are not "unknown".
        self._recently_ended: dict[str, float] = {}
        self.events_handled = 0

    # ------------------------------------------------------------------ commands from the adapter
    def expect(
        self, attempt_id: int, cid: str, *, trunk: str = "default", abandon_limit_s: float = 2.0
    ) -> Call:
        """Register an attempt about to be originated (state `created`). `abandon_limit_s`:
        the campaign's limit, after which a person never connected counts as abandoned."""
        if attempt_id in self.calls:
            raise ValueError(f"attempt {attempt_id} is already in flight on {self.server}")
        call = Call(attempt_id, self.server, cid, trunk=trunk, abandon_limit_s=abandon_limit_s)
        call.transitions.append((CallState.CREATED, self._clock()))
        call.originated_mono = self._mono()
        self.calls[attempt_id] = call
        self._by_cid[cid] = call
        return call

    def adopt(
        self,
        attempt_id: int,
        *,
        answered: bool = False,
        bridged: bool = False,
        abandon_limit_s: float = 2.0,
    ) -> Call:
        """Follow a call another (dead) process placed: what its database row says happened
        (`answered`, `bridged`) stands in for the events this process never saw. The channel is
        bound by the first event (or channel listed) whose Linkedid names the attempt."""
        existing = self.calls.get(attempt_id)
        if existing is not None:
            return existing
        call = Call(attempt_id, self.server, "", adopted=True, abandon_limit_s=abandon_limit_s)
        now = self._clock()
        call.transitions.append((CallState.ORIGINATED, now))
        call.state = CallState.ORIGINATED
        if answered or bridged:
            call.transitions.append((CallState.ANSWERED, now))
            call.state = CallState.ANSWERED
        if bridged:
            call.transitions.append((CallState.BRIDGED, now))
            call.state = CallState.BRIDGED
        call.originated_mono = self._mono()
        self.calls[attempt_id] = call
        return call

    def drop_adopted(self, attempt_ids: Iterable[int]) -> None:
        """Stop following adopted calls that are not on this server (nothing seen of them)."""
        for attempt_id in attempt_ids:
            call = self.calls.get(attempt_id)
            if call is not None and call.adopted and not call.channel_id:
                del self.calls[attempt_id]

    def originate_queued(self, call: Call) -> None:
        """Asterisk acknowledged the Originate."""
        self._advance(call, CallState.ORIGINATED, CallEventKind.ORIGINATED)

    def originate_uncertain(self, call: Call) -> None:
        """The Originate was written but its reply never came (connection cut, timeout).

        It is not re-sent. The call stays in flight; the next resync finds its channels (and
        follows it) or, after `lost_grace`, closes it as lost.
        """
        call.uncertain = True
        call.originated_mono = self._mono()
        self._advance(call, CallState.ORIGINATED, CallEventKind.ORIGINATED)

    def originate_refused(self, call: Call) -> None:
        """Asterisk answered the Originate with an error: nothing was dialed."""
        self._finish(call)

    def forget(self, call: Call) -> None:
        """Drop a call that was never sent (the server went down before the Originate left)."""
        if not call.legs and call.state is CallState.CREATED:
            self.calls.pop(call.attempt_id, None)
            self._by_cid.pop(call.channel_id, None)

    def ignore_channel(self, uniqueid: str) -> None:
        """A channel the dialer made that is not a call (a supervisor's spy): never unknown."""
        self._ignored_uids.add(uniqueid)

    def close_all_lost(self) -> list[int]:
        """Close every call in flight as lost (the server stayed unreachable)."""
        lost = [c.attempt_id for c in list(self.calls.values())]
        for attempt_id in lost:
            self._finish(self.calls[attempt_id], end_seen=False)
        return lost

    # ------------------------------------------------------------------------- AMI events
    def handle(self, message: Message) -> None:
        """Apply one AMI event (a panoramisk Message). Unrelated events cost a dict lookup."""
        store = message._store  # lowercased key -> (key, value): the fastest way in
        ev = store.get("event")
        if ev is None:
            return
        handler = self._handlers.get(ev[1])
        if handler is None:
            return
        self.events_handled += 1
        handler(self, store)

    def _call_for(self, store: dict[str, tuple[str, str]]) -> Call | None:
        uid = store.get("uniqueid")
        if uid is not None:
            call = self._by_uid.get(uid[1])
            if call is not None:
                return call
            linked = store.get("linkedid")
            if linked is not None:
                call = self._by_cid.get(linked[1])
                if call is None:
                    call = self._by_cid.get(uid[1])
                if call is None:
                    call = self._bind_adopted(linked[1])
                if call is not None:
                    # A new leg of a known call (the ;2 half, the trunk leg).
                    call.legs.add(uid[1])
                    self._by_uid[uid[1]] = call
                    if uid[1] == call.channel_id:
                        call.channel = store["channel"][1]
                    return call
        return None

    def _bind_adopted(self, linked: str) -> Call | None:
        """An adopted call's first event: its Linkedid is the ;1 half's Uniqueid (the token the
        dead process chose)."""
        attempt = attempt_of(linked)
        call = self.calls.get(attempt) if attempt is not None else None
        if call is None or not call.adopted or call.channel_id or not _FIRST_HALF.match(linked):
            return None
        call.channel_id = linked
        self._by_cid[linked] = call
        return call

    def _on_newchannel(self, store: dict[str, tuple[str, str]]) -> None:
        call = self._call_for(store)
        if call is None:
            self._maybe_unknown(store)
            return
        if call.state is CallState.CREATED:
            # The event beat the Originate's acknowledgement.
            self._advance(call, CallState.ORIGINATED, CallEventKind.ORIGINATED)

    def _on_newstate(self, store: dict[str, tuple[str, str]]) -> None:
        call = self._call_for(store)
        if call is None:
            return
        state = store.get("channelstate", ("", ""))[1]
        if state in _RINGING_STATES:
            if _RANK[call.state] < _RANK[CallState.RINGING]:
                self._advance(call, CallState.RINGING, CallEventKind.RINGING)
        elif state == _UP and store["uniqueid"][1] == call.channel_id:
            self._answered(call)

    def _on_dialend(self, store: dict[str, tuple[str, str]]) -> None:
        call = self._call_for(store)
        if call is not None:
            status = store.get("dialstatus")
            if status is not None and status[1]:
                call.dial_status = status[1]

    def _on_originateresponse(self, store: dict[str, tuple[str, str]]) -> None:
        aid = store.get("actionid")
        call = self._by_cid.get(aid[1]) if aid is not None else None
        if call is None or call.ended:
            return
        reason = store.get("reason", ("", ""))[1]
        call.originate_reason = reason
        if store.get("response", ("", ""))[1] == "Success":
            self._answered(call)
        elif not call.legs and not self._end_later(call):
            # No channel seen yet: either none was ever created (no Hangup will come), or
            # Asterisk delivered this response before the channels' Newchannel/Hangup events
            # (they travel on another stasis topic; an unallocated number fails within a
            # millisecond, with Reason 0 like a channel that never was). `_end_later` waits a
            # moment for those events, whose Hangup cause tells an invalid number from a plain
            # failure; without an event loop (unit tests) the call ends now.
            # With legs still up, their Hangup events are sure to follow and end the call; the
            # periodic audit closes it should they never come.
            self._finish(call)

    def _end_later(self, call: Call) -> bool:
        """End `call` by what is known after `failure_grace` seconds unless its channels'
        events end it first. False when no event loop runs (the caller ends it now)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False

        def end_if_silent() -> None:
            if not call.ended and not call.legs:
                self._finish(call)

        loop.call_later(self.failure_grace, end_if_silent)
        return True

    def _on_hangup(self, store: dict[str, tuple[str, str]]) -> None:
        call = self._call_for(store)
        uid = store["uniqueid"][1]
        if call is None:
            self._reported_unknown.discard(uid)
            self._ignored_uids.discard(uid)
            return
        call.legs.discard(uid)
        self._by_uid.pop(uid, None)
        cause = store.get("cause")
        # Cause 0 means "not set" (a leg torn down by its partner): it never hides a real cause
        # (e.g. 1, unallocated number) reported by another leg of the same call.
        if cause is not None and cause[1].isdigit() and int(cause[1]) != 0:
            answered = _RANK[call.state] >= _RANK[CallState.ANSWERED]
            # Unanswered: the first leg to go (the trunk) says why; answered: the ;1 half.
            if (not answered and call.hangup_cause is None) or (
                answered and uid == call.channel_id
            ):
                call.hangup_cause = int(cause[1])
        if uid == call.channel_id or not call.legs:
            self._finish(call)

    def _on_bridgeenter(self, store: dict[str, tuple[str, str]]) -> None:
        call = self._call_for(store)
        if call is None or store["uniqueid"][1] != call.channel_id:
            return
        # The ;1 half running Bridge() in [dialer-connect] joins the agent's channel: that, and
        # not the Redirect's reply, is the connection (the Redirect may land on a channel about
        # to hang up, or on an agent whose channel is gone).
        if store.get("context", ("", ""))[1] != "dialer-connect":
            return
        if _RANK[call.state] < _RANK[CallState.BRIDGED]:
            self._advance(call, CallState.BRIDGED, CallEventKind.BRIDGED)

    def _on_userevent(self, store: dict[str, tuple[str, str]]) -> None:
        name = store.get("userevent", ("", ""))[1]
        call = self._call_for(store)
        if call is None:
            attempt = store.get("attempt")
            if attempt is None or not attempt[1].isdigit():
                return
            call = self.calls.get(int(attempt[1]))
            if call is None:
                return
        if name == "DialerAwaitingAgent":
            self._answered(call)
            amd = store.get("amd", ("", ""))[1]
            if call.amd_status is None and amd and amd != "OFF":
                call.amd_status = amd
            call.answered_by = AnsweredBy.HUMAN
            call.human_mono = self._mono()
            self._emit(call, CallEventKind.HUMAN)
        elif name == "DialerAmd":
            self._answered(call)
            call.amd_status = store.get("amdstatus", ("", ""))[1] or None
            call.amd_cause = store.get("amdcause", ("", ""))[1] or None
            verdict = outcome_of_answered(call.amd_status)
            if verdict is Outcome.MACHINE:
                call.answered_by = AnsweredBy.MACHINE
                call.outcome = Outcome.MACHINE
                self._emit(call, CallEventKind.MACHINE)
            elif verdict is Outcome.HUNG_UP_EARLY:
                call.outcome = Outcome.HUNG_UP_EARLY
        elif name == "DialerConnecting":
            call.agent = store.get("agent", ("", ""))[1] or None
            call.agent_channel = store.get("agentchannel", ("", ""))[1] or None
        elif name == "DialerSafeHarbor":
            if _RANK[call.state] < _RANK[CallState.ABANDONED]:
                call.safe_harbor = True
                call.outcome = Outcome.ABANDONED
                self._advance(call, CallState.ABANDONED, CallEventKind.ABANDONED)
        elif name == "DialerConnectFailed":
            # The agent's channel was gone when the call reached [dialer-connect]: the dialplan
            # plays the safe harbor itself (its DialerSafeHarbor follows). Abandoned, whatever
            # the debtor does next; the agent was never connected.
            if _RANK[call.state] < _RANK[CallState.BRIDGED] and not call.connect_failed:
                call.connect_failed = True
                call.agent = store.get("agent", ("", ""))[1] or call.agent
                self._emit(call, CallEventKind.CONNECT_FAILED)
        elif name == "DialerCallEnd":
            with contextlib.suppress(ValueError):
                call.stage = Stage(store.get("stage", ("", ""))[1])
        elif name == "DialerDialResult":
            status = store.get("dialstatus", ("", ""))[1]
            if status:
                call.dial_status = status
            cause = store.get("hangupcause", ("", ""))[1]
            if cause.isdigit():
                call.hangup_cause = int(cause)

    def _on_shutdown(self, store: dict[str, tuple[str, str]]) -> None:
        # Asterisk is stopping or restarting: whatever is still up is about to be cut (its
        # Hangup events, if any arrive, say nothing about the debtor). Lost, not "no answer".
        lost = self.close_all_lost()
        if lost:  # (each with what was seen of it: a bridged call stays bridged)
            log.warning(
                "AMI %s: Asterisk shutting down; %d calls lost",
                self.server,
                len(lost),
                extra={"server": self.server},
            )

    _handlers: ClassVar[dict[str, Callable[[CallTracker, dict[str, tuple[str, str]]], None]]] = {
        "Shutdown": _on_shutdown,
        "Newchannel": _on_newchannel,
        "Newstate": _on_newstate,
        "DialEnd": _on_dialend,
        "OriginateResponse": _on_originateresponse,
        "Hangup": _on_hangup,
        "BridgeEnter": _on_bridgeenter,
        "UserEvent": _on_userevent,
    }

    # ----------------------------------------------------------------------- transitions
    def _answered(self, call: Call) -> None:
        if _RANK[call.state] < _RANK[CallState.ANSWERED]:
            self._advance(call, CallState.ANSWERED, CallEventKind.ANSWERED)

    def _advance(self, call: Call, state: CallState, kind: CallEventKind) -> None:
        # States only move forward: a late acknowledgement never takes a ringing call back.
        if _RANK[state] <= _RANK[call.state]:
            return
        call.state = state
        call.transitions.append((state, self._clock()))
        self._emit(call, kind)

    def _finish(self, call: Call, *, end_seen: bool = True) -> None:
        """End the call with `outcomes.verdict` of what was seen (`end_seen` False: Asterisk
        dropped it without telling how it ended)."""
        if call.ended:
            return
        call.ended_mono = self._mono()
        result = verdict(call.facts(end_seen=end_seen))
        self._end(call, result.outcome, bridged=result.bridged, abandoned=result.abandoned)

    def _end(
        self, call: Call, outcome: Outcome, *, bridged: bool = False, abandoned: bool = False
    ) -> None:
        if call.ended:
            return
        call.outcome = outcome
        call.state = CallState.ENDED
        call.transitions.append((CallState.ENDED, self._clock()))
        if call.channel_id:
            self._recently_ended[call.channel_id] = self._mono()
        self.calls.pop(call.attempt_id, None)
        self._by_cid.pop(call.channel_id, None)
        for uid in call.legs:
            self._by_uid.pop(uid, None)
        call.legs.clear()
        self._emit(call, CallEventKind.ENDED, bridged=bridged, abandoned=abandoned)

    def _emit(
        self, call: Call, kind: CallEventKind, *, bridged: bool = False, abandoned: bool = False
    ) -> None:
        self._sink(
            CallEvent(
                kind=kind,
                server=self.server,
                attempt_id=call.attempt_id,
                at=call.transitions[-1][1] if kind.value == call.state.value else self._clock(),
                state=call.state,
                outcome=call.outcome,
                answered_by=call.answered_by,
                agent=call.agent,
                channel=call.channel,
                hangup_cause=call.hangup_cause,
                dial_status=call.dial_status,
                amd_status=call.amd_status,
                amd_cause=call.amd_cause,
                bridged=bridged,
                abandoned=abandoned,
            )
        )

    def _maybe_unknown(self, store: dict[str, tuple[str, str]]) -> None:
        uid = store["uniqueid"][1]
        context = store.get("context", ("", ""))[1]
        linked = store.get("linkedid", ("", ""))[1]
        if (
            uid in self._reported_unknown
            or uid in self._ignored_uids
            or linked in self._ignored_uids
            or linked in self._recently_ended
            or context in self.ignored_contexts
        ):
            return
        attempt = attempt_of(linked) or attempt_of(uid)
        if attempt is None:
            # Not a dialer call (someone else's channel, an agent's phone): not ours to judge
            # from a single event; the audit reports it if it lingers.
            return
        self._report_unknown(UnknownChannel(uid, linked, store["channel"][1], attempt))

    def _report_unknown(self, unknown: UnknownChannel) -> None:
        self._reported_unknown.add(unknown.uniqueid)
        log.warning(
            "AMI %s: channel %s is not a call this dialer knows",
            self.server,
            unknown.uniqueid,
            extra={"server": self.server, "attempt_id": unknown.attempt_id},
        )
        self._sink(
            CallEvent(
                kind=CallEventKind.UNKNOWN_CHANNEL,
                server=self.server,
                attempt_id=unknown.attempt_id,
                at=self._clock(),
                state=CallState.ENDED,
                channel=unknown.channel,
            )
        )

    # ---------------------------------------------------------------------------- resync
    def resync(self, entries: Iterable[Message], *, after_reconnect: bool = False) -> ResyncReport:
        """Reconcile with CoreShowChannels' list (the CoreShowChannel events).

        Tracked calls found there are followed (their missed progress is caught up from the
        channel's state and context); tracked calls missing from it are closed as `lost`, except
        those whose Originate is younger than `lost_grace` (the next audit decides); channels
        nobody knows are reported once each (not those of calls that just ended: the list may
        predate their Hangup). `after_reconnect` is informational (logged by the caller).
        """
        now = self._mono()
        seen: set[int] = set()
        live_uids: set[str] = set()
        unknown: list[UnknownChannel] = []
        for entry in entries:
            store = entry._store
            if store.get("event", ("", ""))[1] != "CoreShowChannel":
                continue
            uid = store["uniqueid"][1]
            live_uids.add(uid)
            call = self._call_for(store)
            if call is None:
                context = store.get("context", ("", ""))[1]
                linked = store.get("linkedid", ("", ""))[1]
                if (
                    uid in self._reported_unknown
                    or uid in self._ignored_uids
                    or linked in self._ignored_uids
                    or linked in self._recently_ended
                    or context in self.ignored_contexts
                ):
                    continue
                item = UnknownChannel(
                    uid, linked, store["channel"][1], attempt_of(linked) or attempt_of(uid)
                )
                unknown.append(item)
                continue
            seen.add(call.attempt_id)
            if uid == call.channel_id:
                self._catch_up(call, store)
        lost: list[int] = []
        pending = 0
        for call in list(self.calls.values()):
            if call.attempt_id in seen:
                # Forget legs that ended while we were not listening.
                for uid in [u for u in call.legs if u not in live_uids]:
                    call.legs.discard(uid)
                    self._by_uid.pop(uid, None)
                continue
            # A young call may have been created after the list was taken: next audit decides.
            young = now - call.originated_mono < self.lost_grace
            if call.state is CallState.CREATED or young:
                pending += 1
                continue
            lost.append(call.attempt_id)
            self._finish(call, end_seen=False)
        self._reported_unknown &= live_uids
        horizon = now - 60.0
        self._recently_ended = {k: t for k, t in self._recently_ended.items() if t > horizon}
        for item in unknown:
            self._report_unknown(item)
        return ResyncReport(len(seen), tuple(lost), tuple(unknown), pending)

    def _catch_up(self, call: Call, store: dict[str, tuple[str, str]]) -> None:
        call.channel = store["channel"][1]
        call.uncertain = False
        if call.state is CallState.CREATED:
            self._advance(call, CallState.ORIGINATED, CallEventKind.ORIGINATED)
        state = store.get("channelstate", ("", ""))[1]
        if state in _RINGING_STATES and _RANK[call.state] < _RANK[CallState.RINGING]:
            self._advance(call, CallState.RINGING, CallEventKind.RINGING)
        if state != _UP:
            return
        self._answered(call)
        context = store.get("context", ("", ""))[1]
        in_bridge = bool(store.get("bridgeid", ("", ""))[1])
        if (
            context == "dialer-connect"
            and in_bridge
            and _RANK[call.state] < _RANK[CallState.BRIDGED]
        ):
            self._advance(call, CallState.BRIDGED, CallEventKind.BRIDGED)
        elif context == "dialer-safe-harbor" and _RANK[call.state] < _RANK[CallState.ABANDONED]:
            call.safe_harbor = True
            call.outcome = Outcome.ABANDONED
            self._advance(call, CallState.ABANDONED, CallEventKind.ABANDONED)
        elif context == "dialer-machine" and call.answered_by is None:
            call.answered_by = AnsweredBy.MACHINE
            call.outcome = Outcome.MACHINE
            self._emit(call, CallEventKind.MACHINE)

    # ------------------------------------------------------------------------------ views
    @property
    def in_flight(self) -> int:
        return len(self.calls)

    def in_flight_on(self, trunk: str) -> int:
        return sum(1 for c in self.calls.values() if c.trunk == trunk)
