"""The aiohttp edge of the agents' side: the /ws/agent websocket, per-connection limits, and the
static desktop (/agent/) and supervisor (/supervisor/) pages.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from aiohttp import WSMsgType, web

from agents_ws.engine_port import EnginePort
from agents_ws.hub import AgentHub, AgentSession
from agents_ws.protocol import (
    MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    ProtocolError,
    decode,
    encode,
)
from agents_ws.state import AgentState

log = logging.getLogger("agents_ws.server")

STATIC_DIR: Final = Path(__file__).parent / "static"
# The softphone's SIP library, installed by `make install` (npm ci, pinned by package-lock.json);
# served as it ships (ES modules), never copied into the repository.
# DIALER_SIPJS_DIR: where an installed image keeps it (Dockerfile).
SIPJS_DIR: Final = Path(
    os.environ.get("DIALER_SIPJS_DIR")
    or Path(__file__).resolve().parent.parent / "node_modules" / "sip.js" / "lib"
)
HUB: Final = web.AppKey("agent_hub", AgentHub)
HEARTBEAT_S: Final = 20.0  # websocket pings; a client silent for 2x this is dropped
# Frames above the hard limit close the socket (aiohttp); between the soft limit (MAX_MESSAGE_BYTES)
# and the hard one the client gets an error and the connection stays up.
HARD_LIMIT_BYTES: Final = 4 * MAX_MESSAGE_BYTES
RATE_PER_S: Final = 20.0
RATE_BURST: Final = 40.0
OUTBOX_LIMIT: Final = 512  # queued messages before a stuck client is dropped
SUBPROTOCOL: Final = "dialer.v1"
_TOKEN_PREFIX: Final = "bearer."
# Open sockets' tokens are checked this often (one query for all of them), so that a disabled,
# demoted or re-passworded agent's socket closes within a second, whichever process revoked it.
REVOCATION_CHECK_S: Final = 0.5
CLOSE_REVOKED: Final = 4001  # the desktop shows the reason and returns to the login form
REVOKED_TEXT: Final = "your session has ended (account changed by an administrator): log in again"
SOCKETS: Final = web.AppKey("agent_sockets", dict)
# Agents whose socket dropped but who are still on the floor (the grace period): their last token,
# so that a revocation takes them off the floor too, before they come back.
PARKED: Final = web.AppKey("agent_parked_tokens", dict)
# Tokens -> the role each still has, for those still valid (the rest were revoked or expired).
TokenCheck = Callable[[list[str]], Awaitable[dict[str, str]]]


class RateLimiter:
    """Token bucket per connection: `rate` messages a second, bursts up to `burst`."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.stamp = burst, now

    def allow(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class WsOutlet:
    """One socket's outbound queue and its writer, so the hub can push without awaiting."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        # Unbounded so the close marker always fits; the length is capped by hand in push().
        self._queue: asyncio.Queue[str | tuple[int, str]] = asyncio.Queue()
        self._closing = False

    def push(self, text: str) -> None:
        if self._closing:
            return
        if self._queue.qsize() >= OUTBOX_LIMIT:
            self.close_soon(1008, "client too slow")
            return
        self._queue.put_nowait(text)

    def close_soon(self, code: int, reason: str) -> None:
        if not self._closing:
            self._closing = True
            self._queue.put_nowait((code, reason))

    async def run(self) -> None:
        while True:
            item = await self._queue.get()
            if isinstance(item, tuple):
                await self.ws.close(code=item[0], message=item[1].encode())
                return
            try:
                await self.ws.send_str(item)
            except (ConnectionResetError, RuntimeError):
                return


def token_from(request: web.Request) -> str | None:
    """Bearer header (programs) or a `bearer.TOKEN` subprotocol (browsers); never the URL, which
    proxies and access logs keep, and never a cookie (another site could open the socket)."""
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header.removeprefix("Bearer ").strip() or None
    for proto in request.headers.get("Sec-WebSocket-Protocol", "").split(","):
        proto = proto.strip()
        if proto.startswith(_TOKEN_PREFIX):
            return proto.removeprefix(_TOKEN_PREFIX) or None
    return None


@dataclass(slots=True)
class OpenSocket:
    """What the revocation check needs to know of one open socket."""

    token: str
    agent_id: int
    role: str
    outlet: WsOutlet


async def _watch_revocations(
    app: web.Application, hub: AgentHub, check: TokenCheck, period: float
) -> None:
    """Close the sockets whose token was revoked or whose agent's role changed, and take agents
    whose socket dropped off the floor when their token is revoked meanwhile."""
    sockets: dict[WsOutlet, OpenSocket] = app[SOCKETS]
    parked: dict[int, OpenSocket] = app[PARKED]
    while True:
        await asyncio.sleep(period)
        for agent_id in list(parked):
            s = hub.sessions.get(agent_id)
            if s is None or s.revoked or s.outlet is not None or s.sm.state == AgentState.OFFLINE:
                del parked[agent_id]
        if not sockets and not parked:
            continue
        current = list(sockets.values())
        away = list(parked.values())
        try:
            valid = await check(sorted({o.token for o in current + away}))
        except Exception as exc:  # the database away: keep the sockets, try again
            log.warning("token revocation check failed: %s", type(exc).__name__)
            continue
        revoked: list[int] = []
        for sock in current:
            if valid.get(sock.token) == sock.role or sockets.get(sock.outlet) is not sock:
                continue
            sockets.pop(sock.outlet, None)
            log.info("closing a revoked session's socket", extra={"agent_id": sock.agent_id})
            sock.outlet.push(_error(ProtocolError("session_revoked", REVOKED_TEXT), None))
            sock.outlet.close_soon(CLOSE_REVOKED, "session revoked")
            revoked.append(sock.agent_id)
        for sock in away:
            if valid.get(sock.token) != sock.role and parked.get(sock.agent_id) is sock:
                del parked[sock.agent_id]
                revoked.append(sock.agent_id)
        for agent_id in revoked:
            try:
                await hub.revoke(agent_id)
            except Exception:
                log.exception("revoking agent %s in the hub failed", agent_id)


async def agent_socket(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB]
    token = token_from(request)
    identity = await hub.port.authenticate(token) if token else None
    if identity is None:
        raise web.HTTPUnauthorized(
            text='{"error": "unauthorized", "detail": "log in first: POST /api/login"}',
            content_type="application/json",
        )
    ws = web.WebSocketResponse(
        heartbeat=HEARTBEAT_S, max_msg_size=HARD_LIMIT_BYTES, protocols=(SUBPROTOCOL,)
    )
    await ws.prepare(request)
    outlet = WsOutlet(ws)
    sockets: dict[WsOutlet, OpenSocket] = request.app[SOCKETS]
    assert token is not None
    opened = OpenSocket(token, identity.agent_id, identity.role, outlet)
    sockets[outlet] = opened
    request.app[PARKED].pop(identity.agent_id, None)
    writer = asyncio.create_task(outlet.run(), name=f"ws-writer-{identity.agent_id}")
    limiter = RateLimiter(RATE_PER_S, RATE_BURST, time.monotonic())
    last_limited_error = 0.0
    session = None
    try:
        session = await hub.attach(identity, outlet)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                now = time.monotonic()
                if not limiter.allow(now):
                    if now - last_limited_error >= 1.0:  # one error a second, not one per frame
                        last_limited_error = now
                        outlet.push(_error(ProtocolError("rate_limited", _RATE_TEXT), None))
                    continue
                await _on_text(hub, session, outlet, msg.data)
            elif msg.type == WSMsgType.BINARY:
                outlet.push(_error(ProtocolError("bad_json", "send JSON in text frames"), None))
            elif msg.type == WSMsgType.ERROR:
                log.info("agent %s socket error: %s", identity.agent_id, ws.exception())
                break
    finally:
        if sockets.pop(outlet, None) is not None and session is not None:
            request.app[PARKED][identity.agent_id] = opened  # still on the floor for a while
        if session is not None:
            hub.detach(session, outlet)
        outlet.close_soon(1000, "bye")
        try:
            await asyncio.wait_for(writer, timeout=2.0)
        except (TimeoutError, asyncio.CancelledError):
            writer.cancel()
    return ws


_RATE_TEXT = f"more than {RATE_PER_S:.0f} messages a second; slow down"


async def _on_text(hub: AgentHub, session: AgentSession, outlet: WsOutlet, raw: str) -> None:
    msg_id: str | None = None
    try:
        env = decode(raw)
        msg_id = env.id
        reply = await hub.handle(session, env)
        if reply is not None:
            outlet.push(encode(reply))
    except ProtocolError as exc:
        outlet.push(_error(exc, msg_id or exc.re))
    except Exception as exc:  # a bug or the database: tell the agent, keep the socket
        # The class only: a database error's text can quote the row (names, notes, amounts).
        log.error(
            "%s handling failed: %s",
            msg_type(raw),
            type(exc).__name__,
            extra={"agent_id": session.identity.agent_id},
        )
        outlet.push(
            _error(ProtocolError("internal", "not saved: server error, please retry"), msg_id)
        )


def msg_type(raw: str) -> str:
    """The message's type for a log line, without logging anything else it carries."""
    try:
        kind = json.loads(raw).get("type")
    except (ValueError, AttributeError, RecursionError):
        return "message"
    return kind if isinstance(kind, str) and len(kind) <= 40 else "message"


def _error(exc: ProtocolError, msg_id: str | None) -> str:
    return encode(exc.to_json(msg_id))


async def _redirect_agent(_request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/agent/")


async def _redirect_supervisor(_request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/supervisor/")


async def _agent_page(_request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC_DIR / "agent.html", headers={"Cache-Control": "no-cache"})


async def _supervisor_page(_request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC_DIR / "supervisor.html", headers={"Cache-Control": "no-cache"})


def add_agents_ws_routes(
    app: web.Application,
    port: EnginePort,
    grace_seconds: float,
    token_check: TokenCheck | None = None,
) -> AgentHub:
    """Mount /ws/agent, /agent/, /supervisor/ and /agent/static/; the hub's task lives with the
    app. Returns the hub (the engine's `AgentHubApi`), also stored as `app[HUB]`.

    `token_check` (tokens -> role of those still valid) closes revoked sessions' sockets."""
    hub = AgentHub(port, grace_seconds)
    app[HUB] = hub
    app[SOCKETS] = {}
    app[PARKED] = {}
    app.router.add_get("/ws/agent", agent_socket)
    app.router.add_get("/agent", _redirect_agent)
    app.router.add_get("/agent/", _agent_page)
    app.router.add_get("/supervisor", _redirect_supervisor)
    app.router.add_get("/supervisor/", _supervisor_page)
    app.router.add_static("/agent/static/", STATIC_DIR)
    if SIPJS_DIR.is_dir():
        app.router.add_static("/agent/vendor/sip.js/", SIPJS_DIR)
    else:
        log.warning("softphone library missing (%s): run make install", SIPJS_DIR)

    async def hub_task(_app: web.Application) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(hub.run(), name="agent-hub")]
        if token_check is not None:
            watch = _watch_revocations(app, hub, token_check, REVOCATION_CHECK_S)
            tasks.append(asyncio.create_task(watch, name="agent-revocations"))
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app.cleanup_ctx.append(hub_task)
    return hub


__all__ = ["HUB", "PROTOCOL_VERSION", "add_agents_ws_routes"]
