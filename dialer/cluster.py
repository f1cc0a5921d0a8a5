"""The agents of every dialer process on one Postgres, for the engine: presence, remote
reservations and the hub's news travel over LISTEN/NOTIFY, so a campaign reaches any agent.

Each process keeps its agents' websockets in its own hub (`agents_ws.hub`). `ClusterAgents` is the
engine's `AgentsPort`: it wraps this process's `HubAgents` and adds the agents of the other
processes, whose state it learns from their presence messages. Reserving a remote agent is a
request to the process holding the agent's socket, which reserves them in its hub (the screen pop
is built there) and answers; no answer within `reserve_timeout_s` counts as a refusal, so the
router moves on within the abandon limit. The bridge itself needs nothing from that process: the
agent's nailed-up channel is on the shared Asterisk.

Channels (payloads are JSON, under Postgres's 8000-byte limit):
- `dialer_agents`: presence (on each change and every `heartbeat_s`), finished calls, goodbyes;
- `dialer_agents_<node>`: requests to one process (prepare: read a ringing call's screen pop;
  reserve, connected, unreserve, ended) and the replies to its reservations.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import cast

import asyncpg
from sqlalchemy.engine import make_url

from agents_ws.hub import AgentHub, AgentSession
from agents_ws.state import AgentState
from dialer.agent_service import HubAgents, _pacing_state
from dialer.engine.ports import ReadyAgent
from pacing.snapshot import AgentView

log = logging.getLogger("dialer.cluster")
S = AgentState
BROADCAST = "dialer_agents"
MAX_PAYLOAD = 7800  # Postgres refuses NOTIFY payloads of 8000 bytes or more
Json = dict[str, object]


def asyncpg_dsn(database_url: str) -> str:
    """`postgresql+asyncpg://...` (SQLAlchemy) as the `postgresql://...` asyncpg connects to."""
    url = make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def cluster_for(local: HubAgents, database_url: str, name: str) -> ClusterAgents | None:
    """The cluster layer when processes can share the database (Postgres); SQLite means one
    process, which needs none."""
    if make_url(database_url).get_backend_name() != "postgresql":
        return None
    return ClusterAgents(local, asyncpg_dsn(database_url), name)


def node_channel(node: str) -> str:
    return f"{BROADCAST}_{node}"


@dataclass(slots=True)
class RemoteAgent:
    """An agent whose socket is in another process, as its last presence message said."""

    agent_id: int
    node: str
    state: AgentState
    campaign_id: int | None
    channel: str | None
    entered: float  # this process's monotonic clock when the agent entered the state
    seq: int  # the message that said so, for ordering
    phone_up: bool = True  # their nailed-up channel, as their process's telephony sees it


@dataclass(slots=True)
class Held:
    """A local agent reserved by another process's engine, to free if that engine goes away."""

    owner: str  # the node that reserved the agent
    attempt_id: int
    at: float  # monotonic, when reserved
    connected: bool = False


@dataclass(slots=True)
class Pending:
    future: asyncio.Future[bool]
    node: str
    agent_id: int
    attempt_id: int


class ClusterAgents:
    """The engine's `AgentsPort` (dialer/engine/ports.py) over every process's agents.

    `run()` owns the LISTEN connection (reconnecting when it drops), the presence publisher and
    the expiry of silent processes; cancel it to stop."""

    def __init__(
        self,
        local: HubAgents,
        dsn: str,
        name: str,
        *,
        heartbeat_s: float = 1.0,
        expiry_s: float = 4.0,
        reserve_timeout_s: float = 0.3,
        hold_s: float = 10.0,
        debounce_s: float = 0.002,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`dsn`: asyncpg's `postgresql://` URL (see `asyncpg_dsn`); `name`: the process's name,
        for logs. `hold_s`: how long a remote engine may keep one of our agents reserved
        without connecting a call."""
        self.local = local
        self.hub: AgentHub = local.hub
        self.dsn = dsn
        self.name = name
        self.node = uuid.uuid4().hex[:12]
        self.channel = node_channel(self.node)
        self.heartbeat_s = heartbeat_s
        self.expiry_s = expiry_s
        self.reserve_timeout_s = reserve_timeout_s
        self.hold_s = hold_s
        self.debounce_s = debounce_s
        self.clock = clock
        self.remote: dict[int, RemoteAgent] = {}
        self._seen: dict[str, float] = {}  # node -> when it last spoke
        self._names: dict[str, str] = {}  # node -> process name, for logs
        self._held: dict[int, Held] = {}  # our agents reserved by other engines
        self._reserved: dict[int, tuple[str, int]] = {}  # remote agent -> (node, attempt)
        self._pending: dict[int, Pending] = {}
        self._suspect: dict[int, str] = {}  # remote agent -> node: refused or unanswered
        self._rids = itertools.count(1)
        self._seqs = itertools.count(1)
        self._dirty: set[int] = set()
        self._wake = asyncio.Event()
        self._published: set[int] = set()  # agents our last presence listed
        self._conn: asyncpg.Connection | None = None
        self._send_lock = asyncio.Lock()
        self._listening = asyncio.Event()
        self._dropped: asyncio.Event = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        # Hangs up a call this process placed (the telephony's), for an agent of another one.
        self.on_hang_up: Callable[[int], Awaitable[None]] | None = None
        local.hub.on_change = self._changed
        local.hub.listen(self)

    # --- the engine's port --------------------------------------------------------------

    def views(self, campaign_id: int) -> list[AgentView]:
        views = self.local.views(campaign_id)
        now = self.clock()
        for r in self.remote.values():
            if r.campaign_id in (None, campaign_id) and not self._is_local(r.agent_id):
                views.append(
                    AgentView(_pacing_state(r.state, r.phone_up), max(0.0, now - r.entered))
                )
        return views

    def longest_waiting(self, campaign_id: int, prefer: int | None = None) -> ReadyAgent | None:
        best = self.local.longest_waiting(campaign_id, prefer)
        if prefer is not None:
            if best is not None and best.agent_id == prefer:
                return best
            r = self.remote.get(prefer)
            if r is not None and self._remote_ready(r, campaign_id):
                assert r.channel is not None
                return ReadyAgent(prefer, r.channel)
        now = self.clock()
        waited = -1.0
        if best is not None:
            s = self.hub.sessions.get(best.agent_id)
            waited = self.hub.clock() - s.sm.since if s is not None else 0.0
        for r in self.remote.values():
            if self._remote_ready(r, campaign_id) and now - r.entered > waited:
                assert r.channel is not None
                best, waited = ReadyAgent(r.agent_id, r.channel), now - r.entered
        return best

    async def reserve(self, agent_id: int, attempt_id: int) -> bool:
        r = self.remote.get(agent_id)
        if r is None or self._is_local(agent_id):
            return await self.local.reserve(agent_id, attempt_id)
        started = self.clock()
        loop = asyncio.get_running_loop()
        rid = next(self._rids)
        pending = Pending(loop.create_future(), r.node, agent_id, attempt_id)
        self._pending[rid] = pending
        ok = False
        try:
            await self._send(
                node_channel(r.node),
                {"k": "reserve", "rid": rid, "agent": agent_id, "attempt": attempt_id},
            )
            async with asyncio.timeout(self.reserve_timeout_s):
                ok = await pending.future
        except TimeoutError:
            log.warning(
                "no answer to a remote reservation in %.0f ms",
                self.reserve_timeout_s * 1000,
                extra={"agent_id": agent_id, "attempt_id": attempt_id, "node": r.node},
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            log.warning("remote reservation not sent", extra={"agent_id": agent_id})
        finally:
            self._pending.pop(rid, None)
        log.debug("remote reserve %s in %.1f ms", ok, (self.clock() - started) * 1000)
        if ok:
            self._reserved[agent_id] = (r.node, attempt_id)
            r.state, r.entered = S.RESERVED, self.clock()
        else:  # not picked again until their process speaks
            self._suspect[agent_id] = r.node
        return ok

    async def connected(self, agent_id: int, attempt_id: int) -> None:
        held = self._reserved.get(agent_id)
        if held is None:
            return await self.local.connected(agent_id, attempt_id)
        await self._forward(held[0], "connected", agent_id, attempt_id)

    async def unreserve(self, agent_id: int, reason: str = "not_connected") -> None:
        held = self._reserved.pop(agent_id, None)
        if held is None:
            return await self.local.unreserve(agent_id, reason)
        await self._forward(held[0], "unreserve", agent_id, held[1])

    async def call_ended(self, agent_id: int, attempt_id: int) -> None:
        held = self._reserved.pop(agent_id, None)
        r = self.remote.get(agent_id)
        if held is not None:
            await self._forward(held[0], "ended", agent_id, attempt_id)
        elif r is not None and not self._is_local(agent_id):
            # A call adopted from a process that died: its agent is still on theirs.
            await self._forward(r.node, "ended", agent_id, attempt_id)
        else:
            await self.local.call_ended(agent_id, attempt_id)

    def prepare(self, attempt_id: int) -> None:
        """The call rings: every process holding agents reads its offer and screen pop now, so
        that whichever process reserves the agent at the answer reads nothing then."""
        self.local.prepare(attempt_id)
        for node in sorted({r.node for r in self.remote.values()}):
            self._spawn(
                self._send(node_channel(node), {"k": "prepare", "attempt": attempt_id}), "prepare"
            )

    # --- the agents' side of a call another process placed ----------------------------------

    async def hang_up(self, attempt_id: int) -> bool:
        """One of our agents hangs up a call another process placed (only the process that
        placed a call can hang it up): ask that process, or every process when it is gone (the
        one that adopted the call has it). False when the request could not be sent."""
        owner = next((h.owner for h in self._held.values() if h.attempt_id == attempt_id), None)
        channel = node_channel(owner) if owner in self._seen else BROADCAST
        try:
            await self._send(channel, {"k": "hangup", "attempt": attempt_id})
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False
        return True

    # --- the hub's news (HubListener) -----------------------------------------------------

    def agent_ready(self, campaign_id: int | None) -> None:
        # Other processes learn it from our presence message, which follows within debounce_s.
        return None

    def handle_finished(self, campaign_id: int, talk_s: float, wrap_s: float) -> None:
        """Pacing's history belongs to the campaign's owner, which may be another process."""
        self._spawn(
            self._send(
                BROADCAST,
                {"k": "finished", "campaign": campaign_id, "talk": talk_s, "wrap": wrap_s},
            ),
            "finished",
        )

    # --- helpers over the local hub -------------------------------------------------------

    def _is_local(self, agent_id: int) -> bool:
        """An agent connected here too (an old client on two processes): ours wins."""
        s = self.hub.sessions.get(agent_id)
        return s is not None and s.sm.state != S.OFFLINE

    def _remote_ready(self, r: RemoteAgent, campaign_id: int) -> bool:
        return (
            r.state == S.READY
            and r.phone_up
            and r.agent_id not in self._suspect
            and r.channel is not None
            and r.campaign_id in (None, campaign_id)
            and r.agent_id not in self._reserved
            and not self._is_local(r.agent_id)
        )

    def _entry(self, s: AgentSession, now: float) -> list[object] | None:
        """The agent as presence lists them, or None when pacing would not count them."""
        if s.sm.state == S.OFFLINE or (
            s.disconnected_at is not None and now - s.disconnected_at > self.hub.grace_seconds
        ):
            return None
        return [
            s.identity.agent_id,
            s.sm.state.value,
            round(s.sm.time_in_state(now), 3),
            s.campaign_id,
            s.identity.channel,
            s.phone_up,
        ]

    def _changed(self, agent_id: int) -> None:
        self._dirty.add(agent_id)
        self._wake.set()

    # --- sending --------------------------------------------------------------------------

    async def _send(self, channel: str, message: Json) -> None:
        message["from"] = self.node
        payload = json.dumps(message, separators=(",", ":"))
        async with self._send_lock:
            conn = self._conn
            if conn is None or conn.is_closed():
                raise asyncpg.InterfaceError("the cluster connection is down")
            try:
                await conn.execute("SELECT pg_notify($1, $2)", channel, payload)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                self._dropped.set()
                raise

    async def _forward(
        self, node: str, kind: str, agent_id: int, attempt_id: int, *, strict: bool = False
    ) -> None:
        try:
            await self._send(
                node_channel(node), {"k": kind, "agent": agent_id, "attempt": attempt_id}
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            if strict:
                raise
            # The agent's process frees them itself when nobody follows a reservation up.
            log.warning("could not forward %s", kind, extra={"agent_id": agent_id})

    async def _publish(self, full: bool) -> None:
        """Presence: every agent (`full`, the heartbeat) or the changed ones, in chunks that fit
        a NOTIFY. Built under the send lock so that a later message never carries older news."""
        async with self._send_lock:
            conn = self._conn
            if conn is None:
                return
            now = self.hub.clock()
            ids = set(self.hub.sessions) if full else self._dirty & set(self.hub.sessions)
            self._dirty.clear()
            entries, gone = [], []
            for agent_id in sorted(ids):
                entry = self._entry(self.hub.sessions[agent_id], now)
                if entry is None:
                    gone.append(agent_id)
                else:
                    entries.append(entry)
            present = {cast(int, e[0]) for e in entries}
            if full:
                gone = sorted(self._published - present)
                self._published = present
            else:
                self._published = (self._published | present) - set(gone)
            for chunk in _chunks(entries, gone, self.name, full):
                chunk["seq"] = next(self._seqs)
                chunk["from"] = self.node
                payload = json.dumps(chunk, separators=(",", ":"))
                try:
                    await conn.execute("SELECT pg_notify($1, $2)", BROADCAST, payload)
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    self._dropped.set()
                    self._published.clear()
                    raise

    # --- receiving ------------------------------------------------------------------------

    def _notified(self, _conn: object, _pid: int, channel: str, payload: str) -> None:
        try:
            message = json.loads(payload)
            origin = str(message["from"])
            kind = str(message["k"])
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable cluster message on %s", channel)
            return
        if origin == self.node:
            return
        self._seen[origin] = self.clock()
        try:
            self._dispatch(origin, kind, message)
        except (KeyError, TypeError, ValueError):
            log.warning("malformed cluster message %r from %s", kind, origin)

    def _dispatch(self, origin: str, kind: str, m: Json) -> None:
        if kind == "presence":
            self._presence(origin, m)
        elif kind == "bye":
            self._forget(origin, "said goodbye")
        elif kind == "finished":
            self.local.handle_finished(_int(m["campaign"]), _float(m["talk"]), _float(m["wrap"]))
        elif kind == "reply":
            self._reply(origin, m)
        elif kind == "reserve":
            self._spawn(self._serve_reserve(origin, m), "reserve")
        elif kind == "hangup":
            self._spawn(self._serve_hangup(_int(m["attempt"])), kind)
        elif kind == "prepare":
            self.local.prepare(_int(m["attempt"]))
        elif kind in ("connected", "unreserve", "ended"):
            self._spawn(self._serve_call(origin, kind, _int(m["agent"]), _int(m["attempt"])), kind)

    def _presence(self, origin: str, m: Json) -> None:
        seq = _int(m["seq"])
        self._names[origin] = str(m.get("name", origin))
        now = self.clock()
        for agent_id in [a for a, node in self._suspect.items() if node == origin]:
            del self._suspect[agent_id]  # the process speaks again: its refusals are old news
        for agent_id in cast(list[int], m.get("gone", [])):
            old = self.remote.get(agent_id)
            if old is not None and old.node == origin and old.seq < seq:
                del self.remote[agent_id]
        woken: set[int | None] = set()
        for raw in cast(list[list[object]], m.get("agents", [])):
            agent_id, state = _int(raw[0]), AgentState(str(raw[1]))
            tis = _float(raw[2])
            campaign_id = None if raw[3] is None else _int(raw[3])
            channel = None if raw[4] is None else str(raw[4])
            phone_up = bool(raw[5]) if len(raw) > 5 else True
            r = self.remote.get(agent_id)
            if r is not None and r.node == origin and r.seq > seq:
                continue
            newly_ready = (
                state == S.READY
                and phone_up
                and (
                    r is None
                    or r.state != S.READY
                    or r.campaign_id != campaign_id
                    or not r.phone_up
                )
            )
            self.remote[agent_id] = RemoteAgent(
                agent_id, origin, state, campaign_id, channel, now - tis, seq, phone_up
            )
            if state == S.READY:  # whatever we reserved them for is over
                self._reserved.pop(agent_id, None)
            if newly_ready:
                woken.add(campaign_id)
        for campaign_id in sorted(woken, key=lambda c: -1 if c is None else c):
            self.local.agent_ready(campaign_id)

    def _reply(self, origin: str, m: Json) -> None:
        pending = self._pending.pop(_int(m["rid"]), None)
        ok = bool(m["ok"])
        if pending is not None and pending.node == origin and not pending.future.done():
            pending.future.set_result(ok)
        elif ok:
            # Too late: the router moved on. Give the agent back to their process.
            self._spawn(
                self._forward(origin, "unreserve", _int(m["agent"]), _int(m["attempt"])),
                "late-unreserve",
            )

    async def _serve_reserve(self, origin: str, m: Json) -> None:
        agent_id, attempt_id = _int(m["agent"]), _int(m["attempt"])
        ok = False
        try:
            ok = await self.local.reserve(agent_id, attempt_id)
        except Exception:
            log.exception("remote reservation failed", extra={"attempt_id": attempt_id})
        if ok:
            self._held[agent_id] = Held(origin, attempt_id, self.clock())
        await self._send(
            node_channel(origin),
            {"k": "reply", "rid": m["rid"], "ok": ok, "agent": agent_id, "attempt": attempt_id},
        )

    async def _serve_call(self, origin: str, kind: str, agent_id: int, attempt_id: int) -> None:
        held = self._held.get(agent_id)
        if held is not None and held.attempt_id != attempt_id:
            held = None  # a late or duplicate message about an older call
        if kind == "ended":
            # From the engine that placed the call, or the one that adopted it after a crash;
            # the hub ignores a call the agent no longer holds.
            if held is not None:
                del self._held[agent_id]
            await self.local.call_ended(agent_id, attempt_id)
            return
        if held is None or held.owner != origin:
            return  # not (or no longer) that engine's reservation
        if kind == "connected":
            held.connected = True
            await self.local.connected(agent_id, attempt_id)
        else:
            del self._held[agent_id]
            await self.local.unreserve(agent_id)

    async def _serve_hangup(self, attempt_id: int) -> None:
        if self.on_hang_up is None:
            return
        try:
            await self.on_hang_up(attempt_id)
        except LookupError:  # not placed here, or over already
            log.debug("no call to hang up", extra={"attempt_id": attempt_id})

    async def _release(self, agent_id: int, held: Held, why: str) -> None:
        """Free an agent whose remote engine stopped following their call up."""
        self._held.pop(agent_id, None)
        s = self.hub.sessions.get(agent_id)
        if s is None or s.call is None or s.call.attempt_id != held.attempt_id:
            return
        log.warning("freeing an agent: %s", why, extra={"agent_id": agent_id})
        if s.sm.state == S.RESERVED:
            await self.local.unreserve(agent_id)
        elif s.sm.state == S.TALKING:
            await self.local.call_ended(agent_id, held.attempt_id)

    def _forget(self, node: str, why: str) -> None:
        self._seen.pop(node, None)
        gone = [a for a, r in self.remote.items() if r.node == node]
        for agent_id in gone:
            del self.remote[agent_id]
            self._reserved.pop(agent_id, None)
            self._suspect.pop(agent_id, None)
        for agent_id, held in list(self._held.items()):
            if held.owner == node:
                self._spawn(self._release(agent_id, held, f"its engine {why}"), "release")
        log.info("process %s %s: %d agent(s) dropped", self._names.get(node, node), why, len(gone))

    def _spawn(self, work: Coroutine[object, object, None], name: str) -> None:
        async def guarded() -> None:
            try:
                await work
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                log.warning("cluster %s not sent: the connection is down", name)
            except Exception:
                log.exception("cluster %s failed", name)

        task = asyncio.get_running_loop().create_task(guarded(), name=f"cluster-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- the tasks --------------------------------------------------------------------------

    async def wait_listening(self) -> None:
        await self._listening.wait()

    async def run(self) -> None:
        connection = asyncio.create_task(self._connection(), name="cluster-connection")
        workers = [
            asyncio.create_task(self._publisher(), name="cluster-presence"),
            asyncio.create_task(self._expiry(), name="cluster-expiry"),
        ]
        try:
            # None of them ends unless it fails; `wait` (unlike a task group) leaves the
            # connection open when we are cancelled, for the goodbye below.
            done, _ = await asyncio.wait(
                [connection, *workers], return_when=asyncio.FIRST_EXCEPTION
            )
            for task in done:
                task.result()
        finally:
            for task in [*workers, *self._tasks]:
                task.cancel()
            await asyncio.gather(*workers, *self._tasks, return_exceptions=True)
            await self._goodbye()
            connection.cancel()
            await asyncio.gather(connection, return_exceptions=True)

    async def _goodbye(self) -> None:
        """Tell the others at once that our agents are gone (else they wait for the expiry):
        on our connection, or on a new one when a cancelled send left it unusable."""
        payload = json.dumps({"k": "bye", "from": self.node})
        with contextlib.suppress(Exception):
            async with asyncio.timeout(0.5), self._send_lock:
                assert self._conn is not None
                await self._conn.execute("SELECT pg_notify($1, $2)", BROADCAST, payload)
                return
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1.0):
                conn = await asyncpg.connect(self.dsn)
                try:
                    await conn.execute("SELECT pg_notify($1, $2)", BROADCAST, payload)
                finally:
                    await conn.close()

    async def _connection(self) -> None:
        """One LISTEN connection for the life of the process, opened again when it drops."""
        delay = 0.2
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self.dsn, timeout=5.0)
                self._dropped.clear()
                conn.add_termination_listener(lambda _c: self._dropped.set())
                await conn.add_listener(BROADCAST, self._notified)
                await conn.add_listener(self.channel, self._notified)
                self._conn = conn
                self._listening.set()
                self._changed(-1)  # a full presence at once: others may have expired us
                log.info("cluster listening as %s (%s)", self.node, self.name)
                delay = 0.2
                await self._dropped.wait()
                log.warning("cluster connection dropped; reconnecting")
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                log.warning("cluster connection failed: %s", type(exc).__name__)
            finally:
                self._listening.clear()
                if self._conn is conn:
                    self._conn = None
                if conn is not None and not conn.is_closed():
                    conn.terminate()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _publisher(self) -> None:
        next_beat = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, next_beat - self.clock())):
                    await self._wake.wait()
            self._wake.clear()
            full = self.clock() >= next_beat or -1 in self._dirty
            if not full:
                await asyncio.sleep(self.debounce_s)  # let a burst of changes share a message
            try:
                await self._publish(full)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                log.warning("presence not sent: the connection is down")
            if full:
                next_beat = self.clock() + self.heartbeat_s

    async def _expiry(self) -> None:
        while True:
            await asyncio.sleep(min(0.25, self.heartbeat_s / 2))
            now = self.clock()
            for node, seen in list(self._seen.items()):
                if now - seen > self.expiry_s:
                    self._forget(node, f"silent for {now - seen:.1f} s")
            for agent_id, held in list(self._held.items()):
                if not held.connected and now - held.at > self.hold_s:
                    await self._release(agent_id, held, "reserved and never connected")


def _chunks(entries: list[list[object]], gone: list[int], name: str, full: bool) -> list[Json]:
    """Presence messages, each under the NOTIFY payload limit."""
    chunks: list[Json] = []
    current: Json = {"k": "presence", "name": name, "hb": full, "agents": [], "gone": gone}
    size = len(json.dumps(current)) + 60
    for entry in entries:
        length = len(json.dumps(entry)) + 1
        agents = cast(list[list[object]], current["agents"])
        if agents and size + length > MAX_PAYLOAD:
            chunks.append(current)
            current = {"k": "presence", "name": name, "hb": full, "agents": [], "gone": []}
            size = len(json.dumps(current)) + 60
            agents = cast(list[list[object]], current["agents"])
        agents.append(entry)
        size += length
    chunks.append(current)
    return chunks


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return value


def _float(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    return float(value)
