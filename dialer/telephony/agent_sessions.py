"""The agents' nailed-up phone sessions on Asterisk: opened at login, watched, opened again when
they drop, adopted after a restart of the dialer, hung up at logout.

It owns which channel (on which server) is each logged-in agent's session and whether it is up;
the agents' hub only mirrors "up or not" (told through `tell`) to route calls and tell the desktop.

What says a session is up or gone (asterisk_conf/extensions.conf, [dialer-agent-session]):
- the dialplan's `DialerAgentSession` UserEvents: `login`/`holding` (up), `logout` (the agent's
  channel hung up: the phone, the network, `core stop`);
- the AMI link: when it drops nothing more is known (a killed Asterisk sends nothing), so every
  session on that server counts as down until the link is back and Asterisk says otherwise;
- an audit (on every reconnect, then every `audit_s`): `Status` with `Variables: DIALER_AGENT`
  lists the channels that really are in [dialer-agent-session]: a session we count up that is
  not there is gone; one we do not know for an agent of ours is adopted; a second one for the
  same agent is hung up.

A session that is down is opened again by itself (Originate of the agent's endpoint) with
exponential backoff; before any Originate the agent's existing session is looked for (the global
`DIALER_AGENT_<id>` the dialplan sets), so a restarted dialer never rings a phone that already
holds a session.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field

from panoramisk.message import Message

from dialer.telephony.ami import AmiConnection, AmiError
from dialer.telephony.asterisk import AsteriskServer
from dialer.telephony.pool import ServerPool

log = logging.getLogger("dialer.telephony.agent_sessions")

AGENT_CONTEXT = "dialer-agent-session"
# ActionID/ChannelId of the session Originates. Not `dialer-<digits>-`: the call tracker must not
# take them for an attempt (dialer.telephony.calls.attempt_of).
ACTION_PREFIX = "dialer-agent-"
MIN_PAUSE_S = 0.05

# Why a session is down, as the desktop and the supervisor see it (`phone_reason`).
CONNECTING = "connecting"
NO_ENDPOINT = "no_endpoint"
HUNG_UP = "phone_hung_up"
ASTERISK_DOWN = "asterisk_down"
LOST = "phone_lost"
NOT_ANSWERED = "phone_not_answered"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Seconds before the n-th consecutive new try (n >= 1): initial * 2**(n-1), at most max_s."""

    initial_s: float = 1.0
    max_s: float = 30.0

    def delay(self, failures: int) -> float:
        if failures <= 0:
            return 0.0
        return min(self.max_s, self.initial_s * 2 ** (failures - 1))


@dataclass(slots=True)
class _Phone:
    agent_id: int
    endpoint: str | None
    server: str | None = None
    channel: str | None = None
    up: bool = False
    reason: str = CONNECTING
    originating: str | None = None  # ActionID of the Originate waiting for the phone's answer
    originated_at: float = 0.0
    failures: int = 0  # consecutive Originates that did not bring the session up
    next_try: float = 0.0
    version: int = 0  # bumped on every change, so that an audit never undoes a newer event
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class AgentSessions:
    """The sessions of the agents logged in to this process. `run()` is its task (audits and
    new tries); `open`/`close` at login and logout; `tell(agent_id, up, reason)` on changes."""

    def __init__(
        self,
        pool: ServerPool,
        tell: Callable[[int, bool, str], None],
        *,
        retry: RetryPolicy | None = None,
        audit_s: float = 5.0,
        ring_timeout_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pool = pool
        self.tell = tell
        self.retry = retry or RetryPolicy()
        self.audit_s = audit_s
        self.ring_timeout_s = ring_timeout_s
        self.clock = clock
        self._phones: dict[int, _Phone] = {}
        # Originates whose agent logged out before the phone answered: hung up when it does.
        self._orphans: set[str] = set()
        # Agents who logged out while a server was unreachable: their sessions there are hung up
        # by the audit once it is back (unless they logged in again meanwhile).
        self._unwanted: set[int] = set()
        self._wake = asyncio.Event()
        self._audit_due: set[str] = set()  # servers whose link came back: audit them first
        self._tasks: set[asyncio.Task[None]] = set()
        for server in pool.servers:
            server.connection.listeners.append(functools.partial(self._on_event, server.name))
            server.connection.state_listeners.append(functools.partial(self._on_link, server.name))

    # --- what the agents' side asks ---------------------------------------------------------

    def is_up(self, agent_id: int) -> bool:
        phone = self._phones.get(agent_id)
        return phone is not None and phone.up

    def channel_of(self, agent_id: int) -> str | None:
        phone = self._phones.get(agent_id)
        return phone.channel if phone is not None and phone.up else None

    async def open(self, agent_id: int, endpoint: str | None) -> bool:
        """The agent logged in: adopt their session if Asterisk has one, else ring their phone.
        True when the session is up now (adopted); otherwise `tell` says when it comes up."""
        phone = self._phones.get(agent_id)
        if phone is None:
            phone = self._phones[agent_id] = _Phone(agent_id, endpoint)
        phone.endpoint = endpoint
        self._unwanted.discard(agent_id)
        if not endpoint:
            phone.reason = NO_ENDPOINT
            self._tell(agent_id, False, NO_ENDPOINT)
            return False
        async with phone.lock:
            if phone.up or phone.originating is not None:
                return phone.up
            if await self._adopt_existing(phone):
                return True
            phone.next_try = self.clock()
            await self._originate(phone)
        return phone.up

    async def close(self, agent_id: int) -> None:
        """The agent logged out: stop watching and hang up every session of theirs."""
        phone = self._phones.pop(agent_id, None)
        if phone is not None and phone.originating is not None:
            self._orphans.add(phone.originating)
        if len(self._connected()) < len(self.pool.servers):
            self._unwanted.add(agent_id)
        for server in self._connected():
            try:
                channels = (await self._sessions_on(server.connection)).get(agent_id, [])
            except AmiError as exc:
                log.warning(
                    "agent %d: sessions not listed on %s: %s",
                    agent_id,
                    server.name,
                    exc,
                    extra={"agent_id": agent_id, "server": server.name},
                )
                channels = [phone.channel] if phone and phone.channel else []
            for channel in channels:
                await self._hang_up(server.name, channel, agent_id)

    async def drop(self, agent_id: int, why: str) -> None:
        """Something Asterisk does not see yet says the session's audio is gone (the browser's
        softphone lost its websocket or its media, or its credentials were revoked): count it
        down now, so no call is routed to it, and hang its channel up, so that the softphone's
        next login replaces it rather than racing it."""
        phone = self._phones.get(agent_id)
        if phone is None:
            return
        server, channel = phone.server, phone.channel
        if phone.up:
            self._down(phone, why)
        if server and channel:
            await self._hang_up(server, channel, agent_id)

    # --- the task ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Audit every `audit_s` (and at once when a link comes back) and open the sessions that
        are due again, until cancelled."""
        next_audit = self.clock()
        try:
            while True:
                now = self.clock()
                # Due new tries count only while a server can take them (else: the link's
                # comeback wakes us); never less than a short pause, so that a try that cannot
                # go yet (its agent's login holds the lock) is not spun on.
                due = [
                    p.next_try
                    for p in self._phones.values()
                    if self._wants_try(p) and self._connected()
                ]
                wait = max(MIN_PAUSE_S, min([next_audit - now, *(t - now for t in due)]))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._wake.wait()
                self._wake.clear()
                now = self.clock()
                if self._audit_due or now >= next_audit:
                    await self._audit()
                    next_audit = self.clock() + self.audit_s
                await self._try_due()
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _wants_try(self, phone: _Phone) -> bool:
        return not phone.up and phone.originating is None and bool(phone.endpoint)

    async def _try_due(self) -> None:
        now = self.clock()
        for phone in list(self._phones.values()):
            if (
                phone.originating is not None
                and now - phone.originated_at > self.ring_timeout_s + 10
            ):
                # No OriginateResponse at all (lost with the link, say): count it as unanswered.
                self._failed(phone, NOT_ANSWERED)
            if not self._wants_try(phone) or now < phone.next_try or not self._connected():
                continue
            if phone.lock.locked():
                continue
            async with phone.lock:
                if self._wants_try(phone) and not await self._adopt_existing(phone):
                    await self._originate(phone)

    async def _audit(self) -> None:
        self._audit_due.clear()
        servers = self._connected()
        if len(servers) == len(self.pool.servers):
            unwanted, self._unwanted = self._unwanted, set()  # every server is audited now
        else:
            unwanted = set(self._unwanted)
        for server in servers:
            versions = {a: p.version for a, p in self._phones.items()}
            try:
                found = await self._sessions_on(server.connection)
            except AmiError as exc:
                log.warning(
                    "agent sessions not listed on %s: %s",
                    server.name,
                    exc,
                    extra={"server": server.name},
                )
                continue
            for agent_id in [a for a in unwanted if a not in self._phones]:
                for channel in found.get(agent_id, []):
                    await self._hang_up(server.name, channel, agent_id)
            for agent_id, phone in list(self._phones.items()):
                if versions.get(agent_id) != phone.version or phone.originating is not None:
                    continue  # changed while Asterisk answered, or a session on its way up
                channels = found.get(agent_id, [])
                if phone.up and phone.server == server.name and phone.channel not in channels:
                    log.warning(
                        "agent %d: session gone from %s",
                        agent_id,
                        server.name,
                        extra={"agent_id": agent_id, "server": server.name},
                    )
                    self._down(phone, LOST)
                elif not phone.up and channels:
                    self._up(phone, server.name, channels[-1], "adopted")
                if phone.up and phone.server == server.name:
                    for extra in channels:
                        if extra != phone.channel:
                            log.warning(
                                "agent %d: a second session on %s, hung up",
                                agent_id,
                                server.name,
                                extra={"agent_id": agent_id},
                            )
                            await self._hang_up(server.name, extra, agent_id)

    # --- AMI ---------------------------------------------------------------------------------

    def _connected(self) -> list[AsteriskServer]:
        return [s for s in self.pool.servers if s.connection.connected]

    async def _sessions_on(self, connection: AmiConnection) -> dict[int, list[str]]:
        """Agent id -> the channels in [dialer-agent-session] carrying DIALER_AGENT=<id>."""
        entries = await connection.send_list(
            {"Action": "Status", "Variables": "DIALER_AGENT"}, limit_s=5.0
        )
        found: dict[int, list[str]] = {}
        for entry in entries:
            if entry.get("Event") != "Status" or entry.get("Context") != AGENT_CONTEXT:
                continue
            agent_id = _agent_variable(entry.get("Variable"))
            if agent_id is not None:
                found.setdefault(agent_id, []).append(str(entry.get("Channel", "")))
        return found

    async def _adopt_existing(self, phone: _Phone) -> bool:
        """Asterisk may hold the agent's session already (this process restarted): the global
        the dialplan sets at login names it."""
        for server in self._connected():
            connection = server.connection
            try:
                reply = await connection.send(
                    {"Action": "Getvar", "Variable": f"DIALER_AGENT_{phone.agent_id}"}, limit_s=2.0
                )
                channel = str(reply.get("Value") or "")
                if not channel:
                    continue
                status = await connection.send_list(
                    {"Action": "Status", "Channel": channel, "Variables": "DIALER_AGENT"},
                    limit_s=2.0,
                )
            except AmiError:
                continue  # no such channel (a stale global), or the link went down
            if any(
                e.get("Event") == "Status" and _agent_variable(e.get("Variable")) == phone.agent_id
                for e in status
            ):
                self._up(phone, server.name, channel, "adopted")
                return True
        return False

    async def _originate(self, phone: _Phone) -> None:
        servers = self._connected()
        if not servers or not phone.endpoint or self._phones.get(phone.agent_id) is not phone:
            return  # nowhere to ring, or the agent logged out meanwhile
        preferred = [s for s in servers if s.name == phone.server] or servers
        server = preferred[0]
        action_id = f"{ACTION_PREFIX}{phone.agent_id}-{secrets.token_hex(4)}"
        phone.originating, phone.originated_at = action_id, self.clock()
        phone.server, phone.version = server.name, phone.version + 1
        try:
            await server.connection.send(
                {
                    "Action": "Originate",
                    "ActionID": action_id,
                    "Channel": phone.endpoint,
                    "Context": AGENT_CONTEXT,
                    "Exten": "login",
                    "Priority": "1",
                    "Async": "true",
                    "Timeout": str(int(self.ring_timeout_s * 1000)),
                    "Variable": f"DIALER_AGENT={phone.agent_id}",
                }
            )
            if self._phones.get(phone.agent_id) is not phone:
                self._orphans.add(action_id)  # logged out while it was being sent
        except AmiError as exc:
            log.warning(
                "agent %d: session Originate failed: %s",
                phone.agent_id,
                exc,
                extra={"agent_id": phone.agent_id, "server": server.name},
            )
            if phone.originating == action_id:
                self._failed(phone, NOT_ANSWERED)

    async def _hang_up(self, server_name: str, channel: str, agent_id: int) -> None:
        for server in self.pool.servers:
            if server.name != server_name:
                continue
            try:
                await server.connection.send(
                    {"Action": "Hangup", "Channel": channel, "Cause": "16"}, limit_s=2.0
                )
            except AmiError as exc:  # gone already, or the link is down: nothing to hang up
                log.info(
                    "agent %d: session not hung up on %s: %s",
                    agent_id,
                    server_name,
                    type(exc).__name__,
                    extra={"agent_id": agent_id},
                )

    # --- what Asterisk says ------------------------------------------------------------------

    def _on_event(self, server: str, message: Message) -> None:
        name = message.get("Event")
        if name == "OriginateResponse":
            self._originate_response(server, message)
        elif name == "UserEvent" and message.get("UserEvent") == "DialerAgentSession":
            try:
                agent_id = int(str(message.get("Agent", "")))
            except ValueError:
                return
            phone = self._phones.get(agent_id)
            if phone is None:
                return  # not logged in here (another process's agent, or logged out)
            channel = str(message.get("AgentChannel", ""))
            state = message.get("State")
            if state in ("login", "holding"):
                if phone.up and phone.channel == channel:
                    return  # back to holding after a call
                old = phone.channel if phone.up else None
                self._up(phone, server, channel, "phone_up")
                if old and old != channel:  # a newer session replaces an older one
                    self._spawn(self._hang_up(server, old, agent_id))
            elif state == "logout" and phone.channel == channel and phone.server == server:
                self._down(phone, HUNG_UP)

    def _originate_response(self, server: str, message: Message) -> None:
        action_id = str(message.get("ActionID", ""))
        if not action_id.startswith(ACTION_PREFIX):
            return
        success = message.get("Response") == "Success"
        if action_id in self._orphans:
            self._orphans.discard(action_id)
            channel = str(message.get("Channel", ""))
            if success and channel:  # answered after the agent logged out
                self._spawn(self._hang_up(server, channel, 0))
            return
        phone = next((p for p in self._phones.values() if p.originating == action_id), None)
        if phone is None:
            return
        if success:
            # Answered; the dialplan's login event (which follows) names the session's channel.
            return
        self._failed(phone, NOT_ANSWERED)

    def _on_link(self, server: str, up: bool) -> None:
        if up:
            self._audit_due.add(server)
            self._wake.set()
            return
        for phone in self._phones.values():
            if phone.server != server:
                continue
            if phone.originating is not None:
                self._orphans.add(phone.originating)
                phone.originating = None
            if phone.up:
                self._down(phone, ASTERISK_DOWN)
            phone.next_try = self.clock()

    # --- state changes -----------------------------------------------------------------------

    def _up(self, phone: _Phone, server: str, channel: str, why: str) -> None:
        was_up = phone.up
        phone.up, phone.server, phone.channel, phone.reason = True, server, channel, why
        phone.originating, phone.failures = None, 0
        phone.version += 1
        if not was_up:
            log.info(
                "agent %d: phone session up (%s)",
                phone.agent_id,
                why,
                extra={"agent_id": phone.agent_id, "server": server},
            )
            self._tell(phone.agent_id, True, why)

    def _down(self, phone: _Phone, why: str) -> None:
        phone.up, phone.channel, phone.reason = False, None, why
        phone.version += 1
        phone.next_try = self.clock() + self.retry.delay(phone.failures)
        log.warning(
            "agent %d: phone session down (%s)",
            phone.agent_id,
            why,
            extra={"agent_id": phone.agent_id},
        )
        self._tell(phone.agent_id, False, why)
        self._wake.set()

    def _failed(self, phone: _Phone, why: str) -> None:
        phone.originating = None
        phone.failures += 1
        phone.reason = why
        phone.version += 1
        phone.next_try = self.clock() + self.retry.delay(phone.failures)
        log.warning(
            "agent %d: phone did not answer; next try in %.0f s",
            phone.agent_id,
            phone.next_try - self.clock(),
            extra={"agent_id": phone.agent_id},
        )
        self._tell(phone.agent_id, False, why)
        self._wake.set()

    def _tell(self, agent_id: int, up: bool, why: str) -> None:
        try:  # the hub's trouble must not stop the watcher
            self.tell(agent_id, up, why)
        except Exception:
            log.exception("agent session change not delivered", extra={"agent_id": agent_id})

    def _spawn(self, work: Coroutine[object, object, None]) -> None:
        task = asyncio.get_running_loop().create_task(work, name="agent-session-hangup")
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("agent session task failed: %r", task.exception())


def _agent_variable(value: object) -> int | None:
    """`DIALER_AGENT=<id>` (Status's `Variable` field; a list when several were asked) -> id."""
    items = value if isinstance(value, list) else [value]
    for item in items:
        key, _, raw = str(item or "").partition("=")
        if key == "DIALER_AGENT":
            try:
                return int(raw)
            except ValueError:
                return None
    return None
