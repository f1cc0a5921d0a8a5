"""One AMI connection to one Asterisk server, over panoramisk: login, keep-alive, reconnect.

It owns the socket's life (connect, login, ping, backoff) and action timeouts; it never re-sends.

How it is used (see `dialer.telephony.server.AsteriskServer`, which owns one):

    conn = AmiConnection(server_settings, on_event=..., on_up=..., on_down=...)
    task = asyncio.create_task(conn.run())      # connects, logs in, reconnects with backoff
    reply = await conn.send({"Action": "Redirect", ...})

`on_event(message)` is called synchronously for every AMI event (panoramisk `Message`), in
order; `on_up()` is awaited after each successful login (the caller resynchronises there);
`on_down(reason)` is called once each time an established session ends.

Never re-sent: panoramisk queues every action that had no reply when the connection dropped and
sends it again after the next `FullyBooted`. For `Originate` that is a second call to the same
debtor. Here every action in flight when the connection drops fails with `AmiConnectionLost`
and is forgotten: the non-idempotent ones are listed in panoramisk's `forgetable_actions` (so
they are never queued), and the queue is emptied on every disconnect anyway. What an action that
got no reply did is learnt from Asterisk itself (CoreShowChannels) after the reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from panoramisk import Manager
from panoramisk.actions import Action
from panoramisk.ami_protocol import AMIProtocol
from panoramisk.message import Message

from dialer.settings import AmiServer
from dialer.supervisor import Backoff

log = logging.getLogger(__name__)

# Actions whose effect may not be repeated (a call, a transfer, a hang-up, a recording, a spy).
# panoramisk must never queue them for re-sending; see the module docstring.
NON_IDEMPOTENT_ACTIONS: frozenset[str] = frozenset(
    {
        "originate",
        "redirect",
        "bridge",
        "hangup",
        "setvar",
        "mixmonitor",
        "stopmixmonitor",
        "monitor",
        "userevent",
        "playdtmf",
        "atxfer",
        "blindtransfer",
        "command",
        "filter",
    }
)

ActionValue = str | Sequence[str]
ActionFields = Mapping[str, ActionValue]


class AmiError(Exception):
    """An AMI action did not succeed; the message names the server and the action."""


class AmiNotConnected(AmiError):
    """The action was not sent: the server's AMI session is down. Safe to try elsewhere."""


class AmiConnectionLost(AmiError):
    """The connection dropped before the reply: the action may or may not have run.

    It is never re-sent; the caller learns the truth from Asterisk after the reconnect.
    """


class AmiActionTimeout(AmiError):
    """No reply within the action timeout: the action may or may not have run."""


class AmiActionFailed(AmiError):
    """Asterisk answered `Response: Error` (the message says why)."""

    def __init__(self, text: str, reply: Message) -> None:
        super().__init__(text)
        self.reply = reply


@dataclass(frozen=True, slots=True)
class AmiOptions:
    """Timing knobs of one AMI connection (seconds)."""

    connect_timeout: float = 5.0
    action_timeout: float = 5.0
    ping_interval: float = 5.0
    ping_timeout: float = 3.0
    backoff_initial: float = 0.2
    backoff_max: float = 10.0
    # Event classes asked for at login ("Events:" header). The shipped manager.conf filters the
    # event names on the server side as well.
    events: str = "call,user,system"
    # After a login, Asterisk sends FullyBooted once its modules (the dialplan) are loaded; a
    # restarting Asterisk accepts logins before that, and an Originate then finds no extension.
    boot_timeout: float = 60.0


class _Manager(Manager):
    """panoramisk's Manager with its own reconnect loop switched off: `AmiConnection` owns it."""

    def __init__(self, owner: AmiConnection, **config: object) -> None:
        super().__init__(**config)
        self._owner = owner

    def connection_lost(self, exc: object) -> None:
        self._connected = False
        pinger = getattr(self, "pinger", None)
        if pinger is not None:
            pinger.cancel()
            self.pinger = None
        self._owner._lost_from(self, "connection closed" if exc is None else "connection lost")

    def ping(self) -> None:  # pragma: no cover - replaced by AmiConnection's keep-alive
        return None


class AmiConnection:
    """One AMI session to one server, re-established with exponential backoff until closed."""

    def __init__(
        self,
        server: AmiServer,
        *,
        on_event: Callable[[Message], None],
        on_up: Callable[[], Awaitable[None]] | None = None,
        on_down: Callable[[str], None] | None = None,
        options: AmiOptions | None = None,
    ) -> None:
        self.server = server
        self.options = options or AmiOptions()
        self.on_event = on_event
        # Further readers of the same events (e.g. the agents' session events), after on_event.
        self.listeners: list[Callable[[Message], None]] = []
        # Told True after each login and False when the session ends (e.g. the up/down metric).
        self.state_listeners: list[Callable[[bool], None]] = []
        self._on_up = on_up
        self._on_down = on_down
        self._manager: _Manager | None = None
        self._protocol: AMIProtocol | None = None
        self._pending: dict[str, Action] = {}
        self._lost_event = asyncio.Event()
        self._up = False
        self._closing = False
        self.sessions = 0  # successful logins so far (1 after the first connect)
        self.last_error: str | None = None

    @property
    def name(self) -> str:
        return self.server.name

    @property
    def connected(self) -> bool:
        """True while logged in and the keep-alive answers."""
        return self._up

    # ------------------------------------------------------------------------------ lifecycle
    async def run(self) -> None:
        """Connect, log in, keep alive; on any loss wait (backoff with jitter) and start again."""
        # The process's one backoff policy (dialer.supervisor), with this connection's bounds.
        policy = Backoff(initial=self.options.backoff_initial, maximum=self.options.backoff_max)
        delays = policy.delays()
        while not self._closing:
            try:
                await self._connect_and_login()
            except (OSError, TimeoutError, AmiError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "AMI %s: cannot connect (%s)",
                    self.name,
                    self.last_error,
                    extra={"server": self.name},
                )
                self._teardown()
                await asyncio.sleep(next(delays))
                continue
            delays = policy.delays()
            self.last_error = None
            self._up = True
            self.sessions += 1
            log.info("AMI %s: logged in", self.name, extra={"server": self.name})
            for tell in self.state_listeners:
                tell(True)
            pinger = asyncio.create_task(self._keep_alive(), name=f"ami-ping-{self.name}")
            try:
                if self._on_up is not None:
                    try:
                        await self._on_up()
                    except AmiError as exc:  # the session died during the resync: next one
                        log.warning(
                            "AMI %s: resync interrupted (%s)",
                            self.name,
                            exc,
                            extra={"server": self.name},
                        )
                await self._lost_event.wait()
            finally:
                pinger.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pinger
                was_up = self._up
                self._up = False
                self._teardown()
                if was_up:
                    for tell in self.state_listeners:
                        tell(False)
                if was_up and self._on_down is not None:
                    self._on_down(self.last_error or "connection lost")
            if not self._closing:
                await asyncio.sleep(next(delays))

    async def close(self) -> None:
        """Log off and stop reconnecting. `run()` returns soon after."""
        self._closing = True
        if self._up:
            with contextlib.suppress(AmiError, OSError):
                await self.send({"Action": "Logoff"}, limit_s=1.0)
        self.drop("closed")

    def drop(self, reason: str = "dropped") -> None:
        """Close the socket now (dead keep-alive, fault tests); `run()` reconnects unless closed."""
        self._lost(reason)
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.abort()

    async def _connect_and_login(self) -> None:
        loop = asyncio.get_running_loop()
        self._lost_event = asyncio.Event()
        manager = _Manager(
            self,
            host=self.server.host,
            port=self.server.port,
            loop=loop,
            # Belt and braces with the queue flush in `_lost`: these are never queued.
            forgetable_actions=tuple(NON_IDEMPOTENT_ACTIONS | {"ping", "login", "logoff"}),
        )
        booted = loop.create_future()

        def on_booted(_manager: Manager, _message: Message) -> None:
            if not booted.done():
                booted.set_result(None)

        manager.register_event("FullyBooted", on_booted)
        manager.register_event("*", self._dispatch)
        _transport, protocol = await asyncio.wait_for(
            loop.create_connection(AMIProtocol, self.server.host, self.server.port),
            self.options.connect_timeout,
        )
        # What panoramisk's Manager.connection_made does, minus its reconnect scheduling.
        protocol.queue.clear()
        protocol.factory = manager
        protocol.log = manager.log
        protocol.config = manager.config
        protocol.encoding = manager.encoding = manager.config["encoding"]
        manager.responses = protocol.responses = {}
        manager.protocol = protocol
        manager._connected = True
        self._manager = manager
        self._protocol = protocol
        reply = await self._send_raw(
            {
                "Action": "Login",
                "Username": self.server.username,
                "Secret": self.server.secret,
                "Events": self.options.events,
            },
            limit_s=self.options.connect_timeout,
        )
        if not reply.success:
            raise AmiActionFailed(f"AMI {self.name}: login refused: {reply.message}", reply)
        try:
            await asyncio.wait_for(asyncio.shield(booted), self.options.boot_timeout)
        except TimeoutError as exc:
            raise AmiError(
                f"AMI {self.name}: no FullyBooted within "
                f"{self.options.boot_timeout:.0f} s of the login"
            ) from exc

    def _teardown(self) -> None:
        if self._protocol is not None:
            with contextlib.suppress(Exception):
                self._protocol.transport.abort()
        self._fail_pending()
        self._manager = None
        self._protocol = None

    def _lost_from(self, manager: _Manager, reason: str) -> None:
        # A late callback from an earlier session's socket must not end the current one.
        if manager is self._manager:
            self._lost(reason)

    def _lost(self, reason: str) -> None:
        if not self._lost_event.is_set():  # the first reason of a session's end is the real one
            self.last_error = reason
        self._fail_pending()
        self._lost_event.set()

    def _fail_pending(self) -> None:
        # Nothing is ever re-sent (module docstring): forget the queue, fail the callers.
        if self._manager is not None:
            self._manager.awaiting_actions.clear()
        pending, self._pending = self._pending, {}
        for action in pending.values():
            if not action.future.done():
                action.future.set_exception(
                    AmiConnectionLost(
                        f"AMI {self.name}: connection lost before the reply to "
                        f"{action['action']}; not re-sent"
                    )
                )
                # Nobody may await it any more (the caller timed out): no "never retrieved" noise.
                action.future.exception()

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(self.options.ping_interval)
            try:
                await self._send_raw({"Action": "Ping"}, limit_s=self.options.ping_timeout)
            except AmiActionTimeout:
                log.warning(
                    "AMI %s: keep-alive unanswered, reconnecting",
                    self.name,
                    extra={"server": self.name},
                )
                self.drop("keep-alive timeout")
                return
            except AmiError:
                return

    def _dispatch(self, _manager: Manager, message: Message) -> None:
        self.on_event(message)
        for listener in self.listeners:
            listener(message)

    # -------------------------------------------------------------------------------- actions
    async def send(self, fields: ActionFields, *, limit_s: float | None = None) -> Message:
        """Send one action and return its reply; raise AmiActionFailed on `Response: Error`."""
        if not self._up:
            raise AmiNotConnected(f"AMI {self.name}: not connected; {fields['Action']} not sent")
        reply = await self._send_raw(fields, limit_s=limit_s)
        if reply.response == "Error":
            raise AmiActionFailed(
                f"AMI {self.name}: {fields['Action']} failed: {reply.message}", reply
            )
        return reply

    async def send_list(
        self, fields: ActionFields, *, limit_s: float | None = None
    ) -> list[Message]:
        """Send an action answered by an event list (CoreShowChannels) and return all of it."""
        if not self._up:
            raise AmiNotConnected(f"AMI {self.name}: not connected; {fields['Action']} not sent")
        result = await self._send_raw(fields, limit_s=limit_s, as_list=True)
        return list(result)

    async def _send_raw(
        self, fields: ActionFields, *, limit_s: float | None, as_list: bool = False
    ) -> Message:
        protocol = self._protocol
        if protocol is None or protocol.closed:
            raise AmiNotConnected(f"AMI {self.name}: not connected; {fields['Action']} not sent")
        # as_list=False: an async Originate completes on its "queued" acknowledgement, so the
        # later OriginateResponse arrives as an ordinary event for the call tracker.
        action = Action(dict(fields), as_list=as_list)
        self._pending[action.id] = action
        future = protocol.send(action, as_list=as_list)
        limit = self.options.action_timeout if limit_s is None else limit_s
        started = time.monotonic()
        try:
            reply: Message = await asyncio.wait_for(asyncio.shield(future), limit)
            return reply
        except TimeoutError as exc:
            raise AmiActionTimeout(
                f"AMI {self.name}: no reply to {fields['Action']} within {limit:.1f} s "
                f"(waited {time.monotonic() - started:.1f} s); not re-sent"
            ) from exc
        finally:
            self._pending.pop(action.id, None)
            if future.done() and not future.cancelled():
                future.exception()  # retrieved: no "exception never retrieved" warnings
