"""A simulated Asterisk speaking real AMI over TCP on loopback, for tests, benchmarks and the demo.

It owns simulated channels and calls: Originate plays out the shipped dialplan's event sequence.

What it implements (enough for `dialer.telephony`, not a general Asterisk):
- AMI login (one user), Ping, Logoff, Events, Filter (regex on the event text, as Asterisk's
  legacy filters), Originate (async; to `Local/<number>@dialer-outbound/n` plays a debtor call,
  with `Application` it makes a plain up channel, e.g. a supervisor's ChanSpy; into
  `dialer-agent-session` it is an agent's phone in the holding bridge, with the dialplan's
  DialerAgentSession login/holding/logout UserEvents), Redirect (to
  `dialer-connect,<agent>` or `dialer-safe-harbor`), Hangup, CoreShowChannels, Status (with
  `Variables`), Setvar, Getvar (also the global `DIALER_AGENT_<id>` of an agent's session),
  MixMonitor, StopMixMonitor, UserEvent.
- The events Asterisk 22 sends for such a call with the shipped dialplan and
  `timestampevents = yes`: Newchannel, VarSet (optional), Newstate, DialBegin/DialEnd,
  OriginateResponse, BridgeEnter/BridgeLeave, the dialplan's Dialer* UserEvents (DialerAmd,
  DialerAwaitingAgent, DialerConnecting, DialerSafeHarbor, DialerMachine, DialerDialResult,
  DialerCallEnd) and Hangup with Cause.
- What each debtor does comes from a pluggable `BehaviourModel` (dialer.simpbx.behaviour).
- Faults for tests: `cut_after_next_originate()` places the call and then drops the TCP
  connection before the reply is written; `restart()` forgets every channel without a Hangup
  event and refuses connections for a while, as an Asterisk restart does; `stop_accepting()`.

Durations are simulated seconds multiplied by `time_scale` (0 plays a call as fast as possible).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field

from dialer.simpbx.behaviour import Behaviour, BehaviourModel, Fate, TestbedNumbers

log = logging.getLogger(__name__)

EOL = "\r\n"
_LOCAL_OUTBOUND = re.compile(r"^Local/([^@]+)@dialer-outbound(?:/n)?$")

# Channel states as Asterisk names them (ChannelState / ChannelStateDesc).
DOWN, RING, RINGING, UP = 0, 4, 5, 6
_STATE_DESC = {DOWN: "Down", RING: "Ring", RINGING: "Ringing", UP: "Up"}

# Originate failure reasons (the `Reason` of OriginateResponse).
REASON_HANGUP, REASON_ANSWERED = 1, 4

Fields = dict[str, str | list[str]]


@dataclass(slots=True)
class SimChannel:
    name: str
    uniqueid: str
    linkedid: str
    context: str
    exten: str
    state: int = DOWN
    priority: str = "1"
    caller_num: str = "<unknown>"
    application: str = ""
    application_data: str = ""
    variables: dict[str, str] = field(default_factory=dict)
    created: float = field(default_factory=time.monotonic)
    bridge: str = ""
    call: SimCall | None = None
    agent_session: bool = False  # an agent's phone originated into dialer-agent-session


@dataclass(slots=True)
class SimCall:
    action_id: str
    number: str
    behaviour: Behaviour
    attempt: str
    local1: SimChannel
    local2: SimChannel | None = None
    trunk: SimChannel | None = None
    answered: bool = False
    stage: str = "dialing"
    amd_result: str = ""
    redirect: asyncio.Future[tuple[str, str]] | None = None
    awaiting_since: float = 0.0
    task: asyncio.Task[None] | None = None
    agent: SimChannel | None = None  # the agent's session channel once connected


@dataclass(frozen=True, slots=True)
class PlacedCall:
    """What `Originate` started, for tests that count calls on the PBX's side."""

    action_id: str
    channel_id: str
    number: str
    attempt: str


class AmiSession:
    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.authenticated = False
        self.events = True
        self.filters: list[re.Pattern[str]] = []

    def wants(self, text: str) -> bool:
        if not (self.authenticated and self.events):
            return False
        return not self.filters or any(f.search(text) for f in self.filters)

    def write(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)


def render(fields: Mapping[str, str | Sequence[str]]) -> bytes:
    """One AMI message as bytes (keys in insertion order, repeated keys for lists)."""
    lines: list[str] = []
    for key, value in fields.items():
        if isinstance(value, str):
            lines.append(f"{key}: {value}")
        else:
            lines.extend(f"{key}: {v}" for v in value)
    return (EOL.join(lines) + EOL + EOL).encode()


class SimPbx:
    """The simulated PBX. `await start()`, then point an `AmiServer` at `host`/`port`."""

    def __init__(
        self,
        model: BehaviourModel | None = None,
        *,
        username: str = "dialer",
        secret: str = "simpbx",
        host: str = "127.0.0.1",
        port: int = 0,
        time_scale: float = 1.0,
        ring_timeout: float = 25.0,
        connect_limit: float = 1.6,
        safe_harbor_seconds: float = 3.0,
        varset_events: bool = False,
        auto_connect_agent: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.model = model or TestbedNumbers()
        self.username = username
        self.secret = secret
        self.host = host
        self.port = port
        self.time_scale = time_scale
        self.ring_timeout = max(15.0, ring_timeout)
        self.connect_limit = connect_limit
        self.safe_harbor_seconds = safe_harbor_seconds
        self.varset_events = varset_events
        # Capture/benchmark mode: every human is connected to this agent without a Redirect.
        self.auto_connect_agent = auto_connect_agent
        self.clock = clock
        self.channels: dict[str, SimChannel] = {}  # by name
        self.placed: list[PlacedCall] = []
        self.redirect_latencies: list[float] = []  # seconds, DialerAwaitingAgent -> Redirect
        self.actions_received: list[str] = []
        self._by_uniqueid: dict[str, SimChannel] = {}
        self._sessions: set[AmiSession] = set()
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._seq = itertools.count(1)
        self._uid = itertools.count(1)
        self._cut_originates = 0
        self._silenced: set[str] = set()
        self._accepting = True
        self._capture: list[bytes] | None = None
        self._boot = time.monotonic()
        # False: logins succeed but FullyBooted is held back (Asterisk still loading modules).
        self.fully_booted = True

    # ----------------------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for session in list(self._sessions):
            session.writer.close()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    @property
    def url(self) -> str:
        return f"ami://{self.username}:{self.secret}@{self.host}:{self.port}"

    def live_calls(self) -> list[SimCall]:
        return [c.call for c in self.channels.values() if c.call and c.call.local1 is c]

    # --------------------------------------------------------------------------------- faults
    def cut_after_next_originate(self) -> None:
        """The next Originate is carried out, then the connection drops before the reply."""
        self._cut_originates += 1

    def silence(self, action: str) -> None:
        """Actions of this name are received and then ignored: no reply, no effect."""
        self._silenced.add(action.lower())

    def unsilence(self, action: str) -> None:
        self._silenced.discard(action.lower())

    def vanish_channels(self) -> int:
        """Every channel disappears without a Hangup event (the ghosts an audit must catch)."""
        for task in list(self._tasks):
            task.cancel()
        count = len(self.channels)
        self.channels.clear()
        self._by_uniqueid.clear()
        return count

    def drop_connections(self) -> None:
        """Abort every AMI session (a network cut); channels live on."""
        for session in list(self._sessions):
            session.writer.transport.abort()

    async def restart(self, down_seconds: float = 1.0, *, graceful: bool = False) -> None:
        """Asterisk restarts: sessions end, channels vanish without Hangup events, it comes back.

        `graceful` sends the Shutdown event first, as `core restart` does.
        """
        self._accepting = False
        if graceful:
            self._broadcast(
                {
                    "Event": "Shutdown",
                    "Privilege": "system,all",
                    "Shutdown": "Cleanly",
                    "Restart": "True",
                }
            )
        for task in list(self._tasks):
            task.cancel()
        self.drop_connections()
        self.channels.clear()
        self._by_uniqueid.clear()
        await asyncio.sleep(down_seconds)
        self._boot = time.monotonic()
        self._accepting = True

    def stop_accepting(self) -> None:
        self._accepting = False

    def start_accepting(self) -> None:
        self._accepting = True

    # ------------------------------------------------------------------------------- sessions
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._accepting:
            writer.transport.abort()
            return
        session = AmiSession(writer)
        self._sessions.add(session)
        try:
            writer.write(b"Asterisk Call Manager/9.0.0\r\n")
            while True:
                try:
                    raw = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                self._handle(session, self._parse(raw.decode(errors="replace")))
                if writer.is_closing():
                    return
        except asyncio.LimitOverrunError:
            writer.transport.abort()
        finally:
            self._sessions.discard(session)
            writer.close()

    @staticmethod
    def _parse(text: str) -> Fields:
        fields: Fields = {}
        for line in text.split("\r\n"):
            key, sep, value = line.partition(":")
            if not sep:
                continue
            key, value = key.strip().lower(), value.strip()
            old = fields.get(key)
            if old is None:
                fields[key] = value
            elif isinstance(old, list):
                old.append(value)
            else:
                fields[key] = [old, value]
        return fields

    def _reply(
        self, session: AmiSession, action_id: str, ok: bool, message: str, **extra: str
    ) -> None:
        out: dict[str, str] = {"Response": "Success" if ok else "Error"}
        if action_id:
            out["ActionID"] = action_id
        out["Message"] = message
        out.update(extra)
        session.write(render(out))

    def _handle(self, session: AmiSession, fields: Fields) -> None:
        action = str(fields.get("action", "")).lower()
        aid = str(fields.get("actionid", ""))
        self.actions_received.append(action)
        if action == "login":
            if fields.get("username") == self.username and fields.get("secret") == self.secret:
                session.authenticated = True
                session.events = str(fields.get("events", "on")).lower() != "off"
                self._reply(session, aid, True, "Authentication accepted")
                if self.fully_booted:
                    self._send_fully_booted(session)
            else:
                self._reply(session, aid, False, "Authentication failed")
                session.writer.close()
            return
        if not session.authenticated:
            self._reply(session, aid, False, "Permission denied")
            return
        if action in self._silenced:
            return
        handler = getattr(self, f"_action_{action}", None)
        if handler is None:
            self._reply(session, aid, False, "Invalid/unknown command")
            return
        handler(session, aid, fields)

    def _send_fully_booted(self, session: AmiSession) -> None:
        uptime = str(int(time.monotonic() - self._boot))
        session.write(
            render(
                {
                    "Event": "FullyBooted",
                    "Privilege": "system,all",
                    "Uptime": uptime,
                    "LastReload": uptime,
                    "Status": "Fully Booted",
                }
            )
        )

    def finish_boot(self) -> None:
        """Asterisk finished loading: FullyBooted goes to every logged-in session."""
        self.fully_booted = True
        for session in self._sessions:
            if session.authenticated:
                self._send_fully_booted(session)

    def _action_ping(self, session: AmiSession, aid: str, fields: Fields) -> None:
        session.write(
            render(
                {
                    "Response": "Success",
                    "ActionID": aid,
                    "Ping": "Pong",
                    "Timestamp": f"{self.clock():.6f}",
                }
            )
        )

    def _action_logoff(self, session: AmiSession, aid: str, fields: Fields) -> None:
        session.write(
            render({"Response": "Goodbye", "ActionID": aid, "Message": "Thanks for all the fish."})
        )
        session.writer.close()

    def _action_events(self, session: AmiSession, aid: str, fields: Fields) -> None:
        session.events = str(fields.get("eventmask", "on")).lower() != "off"
        session.write(
            render(
                {
                    "Response": "Success",
                    "ActionID": aid,
                    "Events": "On" if session.events else "Off",
                }
            )
        )

    def _action_filter(self, session: AmiSession, aid: str, fields: Fields) -> None:
        pattern = str(fields.get("filter", ""))
        try:
            session.filters.append(re.compile(pattern))
        except re.error as exc:
            self._reply(session, aid, False, f"Filter Not Added: {exc}")
            return
        self._reply(session, aid, True, "Filter Added Successfully")

    def _action_userevent(self, session: AmiSession, aid: str, fields: Fields) -> None:
        out: Fields = {"Event": "UserEvent", "Privilege": "user,all"}
        for key, value in fields.items():
            if key not in ("action", "actionid"):
                out[key.capitalize()] = value
        self._reply(session, aid, True, "Event Sent")
        self._broadcast(out)

    def _action_coreshowchannels(self, session: AmiSession, aid: str, fields: Fields) -> None:
        session.write(
            render(
                {
                    "Response": "Success",
                    "ActionID": aid,
                    "EventList": "start",
                    "Message": "Channels will follow",
                }
            )
        )
        for ch in list(self.channels.values()):
            out = {"Event": "CoreShowChannel", "ActionID": aid}
            out.update(self._chan(ch))
            out.update(
                {
                    "BridgeId": ch.bridge,
                    "Application": ch.application,
                    "ApplicationData": ch.application_data,
                    "Duration": _hms(time.monotonic() - ch.created),
                    "BridgedChannel": "",
                    "BridgedUniqueID": "",
                }
            )
            session.write(render(out))
        session.write(
            render(
                {
                    "Event": "CoreShowChannelsComplete",
                    "ActionID": aid,
                    "EventList": "Complete",
                    "ListItems": str(len(self.channels)),
                }
            )
        )

    def _action_status(self, session: AmiSession, aid: str, fields: Fields) -> None:
        """Channel status, with the channel variables named in `Variables` (as Asterisk does)."""
        wanted = [v.strip() for v in str(fields.get("variables", "")).split(",") if v.strip()]
        name = str(fields.get("channel", ""))
        if name:
            one = self._find(name)
            if one is None:
                self._reply(session, aid, False, "No such channel")
                return
            chosen = [one]
        else:
            chosen = list(self.channels.values())
        self._reply(session, aid, True, "Channel status will follow", EventList="start")
        for ch in chosen:
            out: dict[str, str | Sequence[str]] = {"Event": "Status", "ActionID": aid}
            out.update(self._chan(ch))
            out.update({"Application": ch.application, "BridgeID": ch.bridge})
            values = [f"{v}={ch.variables.get(v, '')}" for v in wanted]
            if values:
                out["Variable"] = values if len(values) > 1 else values[0]
            session.write(render(out))
        session.write(
            render(
                {
                    "Event": "StatusComplete",
                    "ActionID": aid,
                    "EventList": "Complete",
                    "ListItems": str(len(chosen)),
                    "Items": str(len(chosen)),
                }
            )
        )

    def _find(self, ident: str) -> SimChannel | None:
        return self.channels.get(ident) or self._by_uniqueid.get(ident)

    def _action_getvar(self, session: AmiSession, aid: str, fields: Fields) -> None:
        var = str(fields.get("variable", ""))
        if not fields.get("channel") and var.startswith("DIALER_AGENT_"):
            # The global the shipped dialplan sets at an agent's login: their session's channel.
            agent = self.channels.get(f"PJSIP/agent{var.removeprefix('DIALER_AGENT_')}-session")
            value = agent.name if agent is not None and agent.agent_session else ""
            self._reply(session, aid, True, "Result will follow", Variable=var, Value=value)
            return
        ch = self._find(str(fields.get("channel", "")))
        if ch is None:
            self._reply(session, aid, False, "No such channel")
            return
        self._reply(
            session, aid, True, "Result will follow", Variable=var, Value=ch.variables.get(var, "")
        )

    def _action_setvar(self, session: AmiSession, aid: str, fields: Fields) -> None:
        ch = self._find(str(fields.get("channel", "")))
        if ch is None:
            self._reply(session, aid, False, "No such channel")
            return
        ch.variables[str(fields.get("variable", ""))] = str(fields.get("value", ""))
        self._reply(session, aid, True, "Variable Set")

    def _action_mixmonitor(self, session: AmiSession, aid: str, fields: Fields) -> None:
        ch = self._find(str(fields.get("channel", "")))
        if ch is None:
            self._reply(session, aid, False, "No such channel")
            return
        ch.variables["MIXMONITOR_FILENAME"] = str(fields.get("file", ""))
        self._reply(session, aid, True, "")

    def _action_stopmixmonitor(self, session: AmiSession, aid: str, fields: Fields) -> None:
        ch = self._find(str(fields.get("channel", "")))
        if ch is None:
            self._reply(session, aid, False, "No such channel")
            return
        self._reply(session, aid, True, "")

    def _action_hangup(self, session: AmiSession, aid: str, fields: Fields) -> None:
        ch = self._find(str(fields.get("channel", "")))
        if ch is None:
            self._reply(session, aid, False, "No such channel")
            return
        cause = str(fields.get("cause", "16")) or "16"
        self._reply(session, aid, True, "Channel Hungup")
        if ch.call is not None:
            call = ch.call
            if call.task is not None:
                call.task.cancel()
            self._end_call(call, cause)
        elif ch.agent_session:
            self._agent_logout(ch, cause)
        else:
            self._hangup(ch, cause)

    def _action_redirect(self, session: AmiSession, aid: str, fields: Fields) -> None:
        ch = self._find(str(fields.get("channel", "")))
        context = str(fields.get("context", ""))
        exten = str(fields.get("exten", ""))
        if ch is None:
            self._reply(session, aid, False, f"Channel does not exist: {fields.get('channel')}")
            return
        call = ch.call
        if call is None or call.redirect is None or call.redirect.done():
            self._reply(session, aid, False, "Redirect failed: channel not awaiting a decision")
            return
        if context not in ("dialer-connect", "dialer-safe-harbor"):
            self._reply(session, aid, False, f"Redirect failed: unknown context {context}")
            return
        self.redirect_latencies.append(time.monotonic() - call.awaiting_since)
        call.redirect.set_result((context, exten))
        self._reply(session, aid, True, "Redirect successful")

    def _action_originate(self, session: AmiSession, aid: str, fields: Fields) -> None:
        channel = str(fields.get("channel", ""))
        variables = _variables(fields.get("variable"))
        channel_id = str(fields.get("channelid", "")) or self._new_uniqueid()
        if channel_id in self._by_uniqueid:
            self._reply(session, aid, False, "Originate failed: ChannelId already in use")
            return
        cut = self._cut_originates > 0
        if cut:
            self._cut_originates -= 1
        match = _LOCAL_OUTBOUND.match(channel)
        if match is not None:
            number = match.group(1)
            ch1 = self._new_channel(
                f"Local/{number}@dialer-outbound-{next(self._seq):08x};1",
                channel_id,
                channel_id,
                str(fields.get("context", "")),
                str(fields.get("exten", "s")),
                variables,
            )
            call = SimCall(
                aid,
                number,
                self.model.behaviour(number),
                variables.get("DIALER_ATTEMPT_ID", ""),
                ch1,
            )
            ch1.call = call
            self.placed.append(PlacedCall(aid, channel_id, number, call.attempt))
            call.task = self._spawn(self._run_call(call, str(fields.get("otherchannelid", ""))))
        elif str(fields.get("context", "")) == "dialer-agent-session":
            agent = variables.get("DIALER_AGENT", "")
            if not agent:
                self._reply(session, aid, False, "Originate failed: DIALER_AGENT is not set")
                return
            ch = self._agent_session(agent, channel_id, variables)
            self.placed.append(PlacedCall(aid, channel_id, channel, ""))
            self._spawn(self._originate_response(aid, ch, ok=True))
        else:
            # A supervisor's phone running ChanSpy, or any plain channel: answered at once.
            tech = channel.split("/", 1)[0] or "PJSIP"
            ch = self._new_channel(
                f"{channel}-{next(self._seq):08x}"
                if "/" in channel
                else f"{tech}/x-{next(self._seq):08x}",
                channel_id,
                channel_id,
                "",
                "s",
                variables,
            )
            ch.application = str(fields.get("application", ""))
            ch.application_data = str(fields.get("data", ""))
            self.placed.append(PlacedCall(aid, channel_id, channel, ""))
            self._set_state(ch, UP)
            self._spawn(self._originate_response(aid, ch, ok=True))
        if cut:
            # The fault under test: the call is placed, the reply never leaves.
            session.writer.transport.abort()
            return
        self._reply(session, aid, True, "Originate successfully queued")

    async def _originate_response(
        self, aid: str, ch: SimChannel, *, ok: bool, reason: int = REASON_ANSWERED
    ) -> None:
        await asyncio.sleep(0)
        self._originate_event(aid, ch, ok, reason)

    def _originate_event(self, aid: str, ch: SimChannel, ok: bool, reason: int) -> None:
        self._broadcast(
            {
                "Event": "OriginateResponse",
                "Privilege": "call,all",
                "ActionID": aid,
                "Response": "Success" if ok else "Failure",
                "Channel": ch.name,
                "Context": ch.context,
                "Exten": ch.exten,
                "Application": ch.application,
                "Data": ch.application_data,
                "Reason": str(reason),
                "Uniqueid": ch.uniqueid if ok else "<null>",
                "CallerIDNum": "<unknown>",
                "CallerIDName": "<unknown>",
            }
        )

    # ---------------------------------------------------------------------------- the calls
    async def _sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds * self.time_scale))

    async def _run_call(self, call: SimCall, other_id: str) -> None:
        b = call.behaviour
        ch1 = call.local1
        ch2 = self._new_channel(
            ch1.name[:-1] + "2",
            other_id or self._new_uniqueid(),
            ch1.linkedid,
            "dialer-outbound",
            call.number,
            dict(ch1.variables),
            call=call,
        )
        call.local2 = ch2
        trunk = self._new_channel(
            f"Local/{call.number}@sim-pstn-{next(self._seq):08x};1",
            self._new_uniqueid(),
            ch1.linkedid,
            "sim-pstn",
            call.number,
            {},
            call=call,
        )
        call.trunk = trunk
        self._event("DialBegin", ch2, dest=trunk, DialString=f"{call.number}@sim-pstn")
        if b.fate is Fate.INVALID:
            await self._sleep(0.05)
            await self._fail(call, "CHANUNAVAIL", "1")
            return
        if b.fate is Fate.BUSY:
            await self._sleep(b.ring_seconds)
            await self._fail(call, "BUSY", "17")
            return
        if b.fate is Fate.CONGESTION:
            await self._sleep(b.ring_seconds)
            await self._fail(call, "CONGESTION", "34")
            return
        if b.fate is not Fate.SILENT_HANGUP:
            self._set_state(trunk, RINGING)
            self._set_state(ch2, RINGING)
            self._set_state(ch1, RINGING)
        if b.fate is Fate.NO_ANSWER or b.ring_seconds >= self.ring_timeout:
            await self._sleep(self.ring_timeout)
            await self._fail(call, "NOANSWER", "")
            return
        await self._sleep(b.ring_seconds)
        # Answered: the trunk leg answers, Dial ends, both halves of the Local channel go up.
        self._set_state(trunk, UP)
        self._event("DialEnd", ch2, dest=trunk, DialStatus="ANSWER")
        self._set_state(ch2, UP)
        self._set_state(ch1, UP)
        call.answered = True
        call.stage = "answered"
        bridge = f"sim-bridge-{next(self._seq)}"
        self._bridge_enter(ch2, bridge)
        self._bridge_enter(trunk, bridge)
        self._originate_event(call.action_id, ch1, True, REASON_ANSWERED)
        ch1.context, ch1.exten = "dialer-answered", "s"
        talk_left = b.talk_seconds
        if b.fate is Fate.SILENT_HANGUP:
            status, cause = (
                ("HANGUP", "HANGUP") if talk_left < 2.5 else ("MACHINE", "INITIALSILENCE-2500-2500")
            )
            amd = min(talk_left, 2.5)
        elif b.fate is Fate.MACHINE:
            status, cause, amd = "MACHINE", "LONGGREETING-1500-1500", b.amd_seconds
        else:
            status, cause, amd = "HUMAN", "HUMAN-800-800", b.amd_seconds
        call.stage = "amd"
        await self._sleep(amd)
        talk_left -= amd
        call.amd_result = status
        self._user_event(call, "DialerAmd", AmdStatus=status, AmdCause=cause)
        if status == "HANGUP":
            self._end_call(call, "16")
            return
        if status == "MACHINE":
            call.stage = "machine"
            self._user_event(call, "DialerMachine", Action="hangup")
            self._end_call(call, "16")
            return
        wait = max(0.0, self.connect_limit - 0.8)
        call.stage = "awaiting-agent"
        loop = asyncio.get_running_loop()
        call.redirect = loop.create_future()
        call.awaiting_since = time.monotonic()
        self._user_event(call, "DialerAwaitingAgent", Amd=status, Wait=f"{wait:g}")
        decision: tuple[str, str] = ("dialer-safe-harbor", "s")
        if self.auto_connect_agent is not None:
            decision = ("dialer-connect", self.auto_connect_agent)
        else:
            with contextlib.suppress(TimeoutError):
                decision = await asyncio.wait_for(
                    asyncio.shield(call.redirect), wait * self.time_scale if wait else 0.001
                )
        call.redirect = None
        if decision[0] == "dialer-connect":
            call.stage = "connecting"
            agent = self._agent_channel(decision[1])
            ch1.context, ch1.exten = "dialer-connect", decision[1]
            self._user_event(call, "DialerConnecting", Agent=decision[1], AgentChannel=agent.name)
            call.stage = "connected"
            agent_bridge = f"sim-agent-bridge-{next(self._seq)}"
            call.agent = agent
            self._bridge_enter(agent, agent_bridge)
            self._bridge_enter(ch1, agent_bridge)
            await self._sleep(max(0.0, talk_left))
            self._bridge_leave(ch1)
            self._end_call(call, "16")
            return
        call.stage = "safe-harbor"
        ch1.context, ch1.exten = "dialer-safe-harbor", "s"
        self._user_event(call, "DialerSafeHarbor", Stage="start")
        await self._sleep(self.safe_harbor_seconds)
        self._user_event(call, "DialerSafeHarbor", Stage="played", PlaybackStatus="SUCCESS")
        self._end_call(call, "16")

    async def _fail(self, call: SimCall, dial_status: str, cause: str) -> None:
        trunk, ch2, ch1 = call.trunk, call.local2, call.local1
        if trunk is not None:
            self._hangup(trunk, cause or "16")
        if ch2 is not None:
            self._event("DialEnd", ch2, dest=trunk, DialStatus=dial_status)
            self._user_event(
                call, "DialerDialResult", DialStatus=dial_status, HangupCause=cause, channel=ch2
            )
            self._hangup(ch2, cause or "16")
        self._hangup(ch1, cause or "16")
        self._originate_event(call.action_id, ch1, False, REASON_HANGUP)

    def _end_call(self, call: SimCall, cause: str) -> None:
        # The hangup handler of an answered call reports once, before the ;1 half goes away.
        for ch in (call.trunk, call.local2):
            if ch is not None and ch.name in self.channels:
                self._bridge_leave(ch)
                self._hangup(ch, cause)
        if call.local1.name in self.channels:
            if call.answered:
                self._user_event(
                    call,
                    "DialerCallEnd",
                    Stage=call.stage,
                    Amd=call.amd_result or "OFF",
                    HangupCause=cause,
                )
            self._bridge_leave(call.local1)
            self._agent_back_to_hold(call)
            self._hangup(call.local1, cause)
            if not call.answered:
                self._originate_event(call.action_id, call.local1, False, REASON_HANGUP)

    def _agent_session(self, agent: str, channel_id: str, variables: dict[str, str]) -> SimChannel:
        """The agent's phone answers into `[dialer-agent-session]` and waits in the holding bridge,
        reporting `DialerAgentSession` login then holding, as the shipped dialplan does."""
        name = f"PJSIP/agent{agent}-session"
        old = self.channels.get(name)
        if old is not None:
            self._agent_logout(old, "16")
        ch = self._new_channel(
            name, channel_id, channel_id, "dialer-agent-session", "login", dict(variables)
        )
        ch.variables["DIALER_AGENT"] = agent
        ch.agent_session = True
        self._set_state(ch, UP)
        self._agent_event(ch, "login")
        self._agent_event(ch, "holding")
        return ch

    def _agent_event(self, ch: SimChannel, state: str) -> None:
        out: dict[str, str] = {
            "Event": "UserEvent",
            "Privilege": "user,all",
            "Timestamp": f"{self.clock():.6f}",
            **self._chan(ch),
            "UserEvent": "DialerAgentSession",
            "Agent": ch.variables.get("DIALER_AGENT", ""),
            "State": state,
            "AgentChannel": ch.name,
        }
        self._broadcast(out)

    def _agent_logout(self, ch: SimChannel, cause: str) -> None:
        if ch.name not in self.channels:
            return
        self._bridge_leave(ch)
        self._agent_event(ch, "logout")
        self._hangup(ch, cause)

    def _agent_back_to_hold(self, call: SimCall) -> None:
        """After a connected call the agent's channel returns to the holding bridge."""
        agent, call.agent = call.agent, None
        if agent is not None and agent.name in self.channels:
            self._bridge_leave(agent)
            if agent.agent_session:
                # Only a real session reports; capture mode's stand-in agent stays silent.
                agent.context, agent.exten = "dialer-agent-session", "hold"
                self._agent_event(agent, "holding")

    def _agent_channel(self, agent: str) -> SimChannel:
        name = f"PJSIP/agent{agent}-session"
        ch = self.channels.get(name)
        if ch is None:
            ch = self._new_channel(
                name,
                self._new_uniqueid(),
                "",
                "dialer-agent-session",
                "login",
                {"DIALER_AGENT": agent},
            )
            ch.linkedid = ch.uniqueid
            self._set_state(ch, UP)
        return ch

    # ------------------------------------------------------------------------------- events
    def _new_uniqueid(self) -> str:
        return f"{self._boot_epoch()}.{next(self._uid)}"

    def _boot_epoch(self) -> int:
        return int(self.clock() - (time.monotonic() - self._boot))

    def _new_channel(
        self,
        name: str,
        uniqueid: str,
        linkedid: str,
        context: str,
        exten: str,
        variables: dict[str, str],
        *,
        call: SimCall | None = None,
    ) -> SimChannel:
        ch = SimChannel(
            name, uniqueid, linkedid or uniqueid, context, exten, variables=variables, call=call
        )
        self.channels[name] = ch
        self._by_uniqueid[uniqueid] = ch
        self._event("Newchannel", ch)
        if self.varset_events:
            for var, value in variables.items():
                self._event("VarSet", ch, Variable=var, Value=value)
        return ch

    def _set_state(self, ch: SimChannel, state: int) -> None:
        ch.state = state
        self._event("Newstate", ch)

    def _bridge_enter(self, ch: SimChannel, bridge: str) -> None:
        ch.bridge = bridge
        self._broadcast(
            {
                "Event": "BridgeEnter",
                "Privilege": "call,all",
                "Timestamp": f"{self.clock():.6f}",
                "BridgeUniqueid": bridge,
                "BridgeType": "basic",
                "BridgeTechnology": "simple_bridge",
                "BridgeNumChannels": "2",
                **self._chan(ch),
            }
        )

    def _bridge_leave(self, ch: SimChannel) -> None:
        if not ch.bridge:
            return
        bridge, ch.bridge = ch.bridge, ""
        self._broadcast(
            {
                "Event": "BridgeLeave",
                "Privilege": "call,all",
                "Timestamp": f"{self.clock():.6f}",
                "BridgeUniqueid": bridge,
                "BridgeType": "basic",
                "BridgeTechnology": "simple_bridge",
                "BridgeNumChannels": "1",
                **self._chan(ch),
            }
        )

    def _hangup(self, ch: SimChannel, cause: str) -> None:
        if self.channels.pop(ch.name, None) is None:
            return
        self._by_uniqueid.pop(ch.uniqueid, None)
        self._broadcast(
            {
                "Event": "Hangup",
                "Privilege": "call,all",
                "Timestamp": f"{self.clock():.6f}",
                **self._chan(ch),
                "Cause": cause,
                "Cause-txt": _CAUSE_TXT.get(cause, "Unknown"),
            }
        )

    def _user_event(
        self, call: SimCall, name: str, *, channel: SimChannel | None = None, **headers: str
    ) -> None:
        ch = channel or call.local1
        out: dict[str, str] = {
            "Event": "UserEvent",
            "Privilege": "user,all",
            "Timestamp": f"{self.clock():.6f}",
            **self._chan(ch),
            "UserEvent": name,
            "Attempt": call.attempt,
        }
        out.update(headers)
        self._broadcast(out)

    def _event(
        self, name: str, ch: SimChannel, *, dest: SimChannel | None = None, **extra: str
    ) -> None:
        out: dict[str, str] = {
            "Event": name,
            "Privilege": "call,all",
            "Timestamp": f"{self.clock():.6f}",
            **self._chan(ch),
        }
        if dest is not None:
            out.update(self._chan(dest, "Dest"))
        out.update(extra)
        self._broadcast(out)

    @staticmethod
    def _chan(ch: SimChannel, prefix: str = "") -> dict[str, str]:
        return {
            f"{prefix}Channel": ch.name,
            f"{prefix}ChannelState": str(ch.state),
            f"{prefix}ChannelStateDesc": _STATE_DESC[ch.state],
            f"{prefix}CallerIDNum": ch.caller_num,
            f"{prefix}CallerIDName": "<unknown>",
            f"{prefix}ConnectedLineNum": "<unknown>",
            f"{prefix}ConnectedLineName": "<unknown>",
            f"{prefix}Language": "en",
            f"{prefix}AccountCode": "",
            f"{prefix}Context": ch.context,
            f"{prefix}Exten": ch.exten,
            f"{prefix}Priority": ch.priority,
            f"{prefix}Uniqueid": ch.uniqueid,
            f"{prefix}Linkedid": ch.linkedid,
        }

    def _broadcast(self, fields: Mapping[str, str | Sequence[str]]) -> None:
        data = render(fields)
        if self._capture is not None:
            self._capture.append(data)
        if not self._sessions:
            return
        text: str | None = None
        for session in self._sessions:
            if session.filters:
                text = text or data.decode()
            if session.wants(text or ""):
                session.write(data)

    def _spawn(self, coro: Coroutine[object, object, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------------------------ capture
    async def capture(
        self,
        calls: int,
        *,
        first_attempt: int = 1,
        number: Callable[[int], str] = lambda i: f"5551{i % 100:02d}",
    ) -> bytes:
        """Play `calls` calls at once (no TCP) and return the AMI event stream they produce.

        Benchmarks replay it; the Originate ActionID and ChannelId of attempt N are
        `channel_id_for(N)`.
        """
        self._capture = []
        done: list[asyncio.Task[None]] = []
        for i in range(calls):
            attempt = first_attempt + i
            cid = channel_id_for(attempt)
            num = number(i)
            ch1 = self._new_channel(
                f"Local/{num}@dialer-outbound-{next(self._seq):08x};1",
                cid,
                cid,
                "dialer-answered",
                "s",
                {"DIALER_ATTEMPT_ID": str(attempt)},
            )
            call = SimCall(cid, num, self.model.behaviour(num), str(attempt), ch1)
            ch1.call = call
            call.task = self._spawn(self._run_call(call, ""))
            done.append(call.task)
        await asyncio.gather(*done, return_exceptions=True)
        stream, self._capture = b"".join(self._capture), None
        return stream

    def broadcast_raw(self, data: bytes) -> None:
        """Write pre-rendered AMI messages to every logged-in session (benchmark replay)."""
        for session in self._sessions:
            if session.authenticated:
                session.write(data)


def channel_id_for(attempt: int, token: str = "bench") -> str:
    """The ChannelId/ActionID naming the dialer uses (dialer.telephony.calls.channel_id)."""
    return f"dialer-{attempt}-{token}"


def _variables(raw: str | list[str] | None) -> dict[str, str]:
    items = [] if raw is None else [raw] if isinstance(raw, str) else raw
    out: dict[str, str] = {}
    for item in items:
        for part in item.split(","):
            key, sep, value = part.partition("=")
            if sep:
                out[key.strip()] = value.strip()
    return out


def _hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


_CAUSE_TXT = {
    "1": "Unallocated (unassigned) number",
    "16": "Normal Clearing",
    "17": "User busy",
    "19": "No user responding",
    "21": "Call Rejected",
    "34": "Circuit/channel congestion",
}
