"""One Asterisk server as the dialer drives it: its AMI connection, its calls, its commands.

It owns the AMI strings of the dialer's commands (Originate, Redirect, Hangup, MixMonitor, ChanSpy)
and the resync/audit loop; `dialer.telephony.pool.ServerPool` spreads calls over several of these.

Commands (all by attempt id; the adapter knows each call's channel):
- `originate(attempt_id, number)`: Local/<number>@dialer-outbound/n into [dialer-answered], async,
  ChannelId/ActionID `dialer-<attempt>-<token>`, DIALER_ATTEMPT_ID in the channel variables.
  Never re-sent. Raises `AmiNotConnected` only when nothing was sent (safe to try elsewhere).
- `connect_agent(attempt_id, agent)`: Redirect to [dialer-connect], exten = agent id: the debtor
  joins the agent's nailed-up channel.
- `play_safe_harbor(attempt_id)`: Redirect to [dialer-safe-harbor].
- `hang_up(attempt_id)`, `start_recording(attempt_id)` (DIALER_RECORD before the bridge,
  MixMonitor after it),
- `spy(attempt_id, supervisor_channel, mode)`: Originate the supervisor's phone into ChanSpy on
  the agent's channel, listening, whispering to the agent, or barging in.
Events go to the `CallSink` given at construction (see dialer.telephony.calls for CallEvent).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import enum
import logging
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from panoramisk.message import Message

from dialer.settings import AmiServer
from dialer.supervisor import keep_running
from dialer.telephony.ami import (
    AmiActionFailed,
    AmiConnection,
    AmiError,
    AmiNotConnected,
    AmiOptions,
)
from dialer.telephony.calls import (
    Call,
    CallSink,
    CallState,
    CallTracker,
    ResyncReport,
    channel_id,
    utcnow,
)

log = logging.getLogger(__name__)

_NUMBER = re.compile(r"^\+?[0-9]{3,20}$")
_AGENT = re.compile(r"^[0-9A-Za-z]+$")
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SpyMode(enum.StrEnum):
    """What a supervisor does on an agent's call (ChanSpy options q, E, w, B)."""

    LISTEN = "listen"  # hears both sides, says nothing
    WHISPER = "whisper"  # heard by the agent only
    BARGE = "barge"  # heard by both


_SPY_OPTIONS = {SpyMode.LISTEN: "qE", SpyMode.WHISPER: "qEw", SpyMode.BARGE: "qEB"}


class CallNotFound(LookupError):
    """The attempt is not in flight on this server (it ended, or was never placed here)."""


@dataclass(frozen=True, slots=True)
class Trunk:
    """A way out to the network with its own channel limit.

    `variables` override the dialplan's DIALER_TRUNK_PREFIX/SUFFIX for calls on this trunk; the
    default trunk sends none, so the dialplan's globals decide.
    """

    name: str = "default"
    max_channels: int | None = None  # None: only the server's limit applies
    variables: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TelephonyOptions:
    """Timing of the telephony layer (seconds)."""

    ami: AmiOptions = field(default_factory=AmiOptions)
    # Longer than the dialplan's ring timeout (25 s) so Asterisk never cuts the ringing first.
    originate_timeout: float = 45.0
    audit_interval: float = 10.0
    lost_grace: float = 3.0
    # A server unreachable this long: its calls in flight are closed as lost.
    give_up_after: float = 60.0


class AsteriskServer:
    """One server: connection, tracker, commands. `await start()`, `await close()`."""

    def __init__(
        self,
        settings: AmiServer,
        sink: CallSink,
        *,
        trunks: Sequence[Trunk] = (),
        options: TelephonyOptions | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.options = options or TelephonyOptions()
        self.trunks = {t.name: t for t in (trunks or (Trunk(),))}
        self.tracker = CallTracker(
            settings.name, sink, clock=clock, lost_grace=self.options.lost_grace
        )
        self.connection = AmiConnection(
            settings,
            on_event=self.tracker.handle,
            on_up=self._on_up,
            on_down=self._on_down,
            options=self.options.ami,
        )
        self.last_resync: ResyncReport | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._give_up: asyncio.TimerHandle | None = None
        self._resync_lock = asyncio.Lock()
        self._synced = False

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def connected(self) -> bool:
        """Logged in and resynchronised: only then does the server take new calls."""
        return self.connection.connected and self._synced

    # ----------------------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Start connecting (returns at once; `wait_connected` waits for the first login)."""
        # Owned here (`close` reads them); an unexpected error restarts the loop after the
        # shared backoff rather than ending it silently.
        self._tasks = [
            asyncio.create_task(
                keep_running(f"AMI {self.name}", self.connection.run), name=f"ami-{self.name}"
            ),
            asyncio.create_task(
                keep_running(f"AMI audit {self.name}", self._audit), name=f"ami-audit-{self.name}"
            ),
        ]

    async def wait_connected(self, within_s: float) -> None:
        """Until logged in (and fully booted); TimeoutError naming the last error otherwise."""
        deadline = asyncio.get_running_loop().time() + within_s
        while not self.connected:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(
                    f"AMI {self.name}: not connected after {within_s:.1f} s "
                    f"({self.connection.last_error})"
                )
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        if self._give_up is not None:
            self._give_up.cancel()
        await self.connection.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _on_up(self) -> None:
        if self._give_up is not None:
            self._give_up.cancel()
            self._give_up = None
        report = await self.resync(after_reconnect=True)
        log.info(
            "AMI %s: resync: %d alive, %d lost, %d unknown",
            self.name,
            report.alive,
            len(report.lost),
            len(report.unknown),
            extra={"server": self.name},
        )

    def _on_down(self, reason: str) -> None:
        self._synced = False
        log.warning(
            "AMI %s: down (%s); out of rotation", self.name, reason, extra={"server": self.name}
        )
        loop = asyncio.get_running_loop()
        if self._give_up is None:
            self._give_up = loop.call_later(self.options.give_up_after, self._expire)

    def _expire(self) -> None:
        self._give_up = None
        if not self.connected:
            lost = self.tracker.close_all_lost()
            log.warning(
                "AMI %s: unreachable for %.0f s: %d calls closed as lost",
                self.name,
                self.options.give_up_after,
                len(lost),
                extra={"server": self.name},
            )

    async def _audit(self) -> None:
        # The periodic audit keeps counts honest: no ghost channels, no calls stuck in flight.
        while True:
            await asyncio.sleep(self.options.audit_interval)
            if not self.connection.connected:
                continue
            with contextlib.suppress(AmiError):
                await self.resync()

    async def resync(self, *, after_reconnect: bool = False) -> ResyncReport:
        """Compare the calls in flight with Asterisk's channel list (CoreShowChannels)."""
        async with self._resync_lock:
            entries: list[Message] = await self.connection.send_list(
                {"Action": "CoreShowChannels"}, limit_s=max(5.0, self.options.ami.action_timeout)
            )
            report = self.tracker.resync(entries, after_reconnect=after_reconnect)
            self.last_resync = report
            # Back in rotation only once Asterisk's view and ours agree (after a reconnect).
            self._synced = self.connection.connected
            return report

    # ------------------------------------------------------------------------------ capacity
    @property
    def max_channels(self) -> int:
        return self.settings.max_channels

    def free_capacity(self, trunk: str = "default") -> int:
        """Calls this server can still take on `trunk` (0 when its AMI is down)."""
        if not self.connected:
            return 0
        free = self.max_channels - self.tracker.in_flight
        limit = self.trunks.get(trunk)
        if limit is None:
            return 0
        if limit.max_channels is not None:
            free = min(free, limit.max_channels - self.tracker.in_flight_on(trunk))
        return max(0, free)

    # ------------------------------------------------------------------------------ commands
    async def originate(
        self,
        attempt_id: int,
        number: str,
        *,
        trunk: str = "default",
        caller_id: str | None = None,
        variables: Mapping[str, str] | None = None,
        abandon_limit_s: float = 2.0,
    ) -> Call:
        """Place the call. Returns the tracked call (see the module docstring for errors)."""
        if not _NUMBER.match(number):
            raise ValueError(
                f"attempt {attempt_id}: number must be 3-20 digits, optionally with a leading +"
            )
        if trunk not in self.trunks:
            raise ValueError(
                f"attempt {attempt_id}: trunk {trunk!r} is not configured on "
                f"{self.name} (have: {', '.join(self.trunks)})"
            )
        extra = {**self.trunks[trunk].variables, **(variables or {})}
        for key in extra:
            if not _VARIABLE.match(key):
                raise ValueError(f"attempt {attempt_id}: bad channel variable name {key!r}")
        if not self.connected:
            raise AmiNotConnected(f"AMI {self.name}: not in rotation; Originate not sent")
        cid = channel_id(attempt_id, secrets.token_hex(4))
        call = self.tracker.expect(attempt_id, cid, trunk=trunk, abandon_limit_s=abandon_limit_s)
        fields: dict[str, str | list[str]] = {
            "Action": "Originate",
            "ActionID": cid,
            "Channel": f"Local/{number}@dialer-outbound/n",
            "Context": "dialer-answered",
            "Exten": "s",
            "Priority": "1",
            "Async": "true",
            "Timeout": str(int(self.options.originate_timeout * 1000)),
            "ChannelId": cid,
            "OtherChannelId": f"{cid}-2",
            "Variable": [f"DIALER_ATTEMPT_ID={attempt_id}"]
            + [f"{k}={v}" for k, v in extra.items()],
        }
        if caller_id:
            fields["CallerID"] = caller_id
        try:
            await self.connection.send(fields)
        except AmiNotConnected:
            self.tracker.forget(call)
            raise
        except AmiActionFailed:
            self.tracker.originate_refused(call)
            raise
        except AmiError as exc:
            # Written, no reply: maybe placed. Never re-sent; the resync will tell.
            log.warning(
                "AMI %s: Originate unconfirmed (%s)",
                self.name,
                exc,
                extra={"server": self.name, "attempt_id": attempt_id},
            )
            self.tracker.originate_uncertain(call)
            return call
        self.tracker.originate_queued(call)
        return call

    async def record(self, attempt_id: int) -> str | None:
        """The dialplan's AstDB record of how the attempt ended (family `dialer`), or None when
        Asterisk has none. Read with DBGet (the dialer's "reporting" write privilege)."""
        try:
            replies = await self.connection.send_list(
                {"Action": "DBGet", "Family": "dialer", "Key": f"call-{attempt_id}"}
            )
        except AmiActionFailed:
            return None  # "Database entry not found"
        for reply in replies:
            if reply.get("Event") == "DBGetResponse":
                return str(reply.get("Val", "")) or None
        return None

    def call(self, attempt_id: int) -> Call:
        call = self.tracker.calls.get(attempt_id)
        if call is None:
            raise CallNotFound(f"attempt {attempt_id} is not in flight on {self.name}")
        return call

    async def connect_agent(self, attempt_id: int, agent: str) -> None:
        """Bridge the answered debtor into the agent's nailed-up channel."""
        if not _AGENT.match(agent):
            raise ValueError(f"attempt {attempt_id}: agent id must be letters and digits")
        await self._redirect(attempt_id, "dialer-connect", agent)

    async def play_safe_harbor(self, attempt_id: int) -> None:
        """No agent is free: play the recorded message (the call counts as abandoned)."""
        await self._redirect(attempt_id, "dialer-safe-harbor", "s")

    async def _redirect(self, attempt_id: int, context: str, exten: str) -> None:
        call = self.call(attempt_id)
        await self.connection.send(
            {
                "Action": "Redirect",
                "Channel": call.channel or call.channel_id,
                "Context": context,
                "Exten": exten,
                "Priority": "1",
            }
        )

    async def hang_up(self, attempt_id: int, cause: int = 16) -> None:
        call = self.call(attempt_id)
        call.hangup_requested = True
        await self.connection.send(
            {"Action": "Hangup", "Channel": call.channel or call.channel_id, "Cause": str(cause)}
        )

    async def start_recording(self, attempt_id: int) -> str:
        """Record the agent's conversation to `dialer/<attempt id>.wav` (Asterisk's monitor dir).

        Before the bridge: sets DIALER_RECORD=yes, and the shipped dialplan starts MixMonitor as
        the call joins the agent (only the "call" write privilege needed). Once bridged: the
        MixMonitor action, which Asterisk files under the "system" write privilege.
        """
        call = self.call(attempt_id)
        target = call.channel or call.channel_id
        file = f"dialer/{attempt_id}.wav"
        if call.state is CallState.BRIDGED:
            await self.connection.send(
                {"Action": "MixMonitor", "Channel": target, "File": file, "Options": "b"}
            )
        else:
            await self.connection.send(
                {"Action": "Setvar", "Channel": target, "Variable": "DIALER_RECORD", "Value": "yes"}
            )
        call.recording = file
        return file

    async def spy(self, attempt_id: int, supervisor_channel: str, mode: SpyMode) -> str:
        """Ring the supervisor's phone into ChanSpy on the call's agent; returns its ChannelId."""
        call = self.call(attempt_id)
        target = call.agent_channel or call.channel
        if target is None:
            raise CallNotFound(f"attempt {attempt_id} has no channel to spy on yet")
        spy_id = f"dialer-spy-{attempt_id}-{secrets.token_hex(4)}"
        self.tracker.ignore_channel(spy_id)
        await self.connection.send(
            {
                "Action": "Originate",
                "ActionID": spy_id,
                "Channel": supervisor_channel,
                "Application": "ChanSpy",
                "Data": f"{target},{_SPY_OPTIONS[mode]}",
                "Async": "true",
                "ChannelId": spy_id,
                "Timeout": "30000",
            }
        )
        return spy_id
