"""Logins, session tokens, roles, login throttling and cookie sessions with CSRF, shared by the
ops API and the agents' websocket.

Passwords are hashed with argon2 in a small thread pool, never on the event loop; an unknown login
is hashed against a dummy so that it costs what a wrong password costs. Tokens are random, stored
only as SHA-256 digests, valid on any dialer process because they live in the database; revoking
an agent's tokens is deleting their rows, which every process sees at its next check.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import os
import secrets
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from aiohttp import web
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dialer.store.models import Agent, AuthSession, Role

TOKEN_TTL = dt.timedelta(hours=12)
_hasher = PasswordHasher()
# Rank order: a supervisor may do what an agent may, an admin what a supervisor may.
_RANK = {Role.AGENT.value: 0, Role.SUPERVISOR.value: 1, Role.ADMIN.value: 2}
MAX_PASSWORD_CHARS = 200  # longer inputs are refused before hashing (hashing cost grows with them)

# Cookie sessions (the console to come): the session cookie is HttpOnly; the CSRF cookie is read by
# the page's script and sent back in the header on every unsafe request (double submit).
SESSION_COOKIE = "dialer_session"
CSRF_COOKIE = "dialer_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def hash_password(password: str) -> str:
    if len(password) < 8:
        raise ValueError("password: at least 8 characters")
    return _hasher.hash(password)


def password_matches(stored_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class HasherBusy(Exception):
    """More logins are waiting for a hash than the pool queues: answered 429, not queued."""


class PasswordWork:
    """The bounded queue of password checks, done off the event loop.

    argon2 takes about 64 MB and every core for a moment per hash. It runs in one small worker
    process (`dialer.password_worker`) at the lowest scheduling priority, so that neither its CPU
    nor its memory traffic reaches the process that answers calls; a short queue turns a flood
    into quick refusals instead of latency. `processes=False` runs the same work on a thread
    (unit tests)."""

    def __init__(self, max_waiting: int = 16, processes: bool = True) -> None:
        self.max_waiting = max_waiting
        self._waiting = 0
        self._worker: _Worker | None = _Worker() if processes else None
        self._threads = (
            None
            if processes
            else ThreadPoolExecutor(1, thread_name_prefix="argon2", initializer=_lower_priority)
        )

    def admit(self) -> None:
        """Refuse (HasherBusy) before any other work, the database lookup included, when the
        queue is full: a flood must not take the connections the calls need."""
        if self._waiting >= self.max_waiting:
            raise HasherBusy

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        self.admit()
        self._waiting += 1
        try:
            if self._worker is not None:
                reply = await self._worker.ask(
                    {"op": "verify", "hash": stored_hash, "password": password}
                )
                return reply.get("ok") is True
            assert self._threads is not None
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._threads, _check, stored_hash, password)
        finally:
            self._waiting -= 1

    async def hash(self, password: str) -> str:
        if len(password) < 8:
            raise ValueError("password: at least 8 characters")
        if self._worker is not None:
            return str((await self._worker.ask({"op": "hash", "password": password}))["hash"])
        assert self._threads is not None
        return await asyncio.get_running_loop().run_in_executor(
            self._threads, hash_password, password
        )

    async def aclose(self) -> None:
        if self._worker is not None:
            await self._worker.stop()
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)


class _Worker:
    """The worker process, started on first use and again if it died; one request at a time."""

    def __init__(self) -> None:
        self._proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()

    async def ask(self, request: dict[str, object]) -> dict[str, object]:
        # Shielded: a caller cancelled halfway must not leave its answer in the pipe for the next.
        return await asyncio.shield(self._exchange(request))

    async def _exchange(self, request: dict[str, object]) -> dict[str, object]:
        async with self._lock:
            for attempt in (1, 2):  # a worker that died is started again once
                proc = await self._running()
                assert proc.stdin is not None and proc.stdout is not None
                try:
                    proc.stdin.write(json.dumps(request).encode() + b"\n")
                    await proc.stdin.drain()
                    line = await proc.stdout.readline()
                except (BrokenPipeError, ConnectionResetError):
                    line = b""
                if line:
                    reply: dict[str, object] = json.loads(line)
                    return reply
                self._proc = None
                if attempt == 2:
                    raise RuntimeError("the password worker stopped")
            raise AssertionError("unreachable")

    async def _running(self) -> asyncio.subprocess.Process:
        if self._proc is None or self._proc.returncode is not None:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "dialer.password_worker",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
        return self._proc

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            assert proc.stdin is not None
            proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                proc.kill()
                await proc.wait()


_DUMMY: list[str] = []  # the thread path's dummy hash, made once with the hasher's parameters
_DUMMY_LOCK = threading.Lock()


def _check(stored_hash: str | None, password: str) -> bool:
    """On the thread: whether `password` matches; an unknown login (no hash) does the same work
    against the dummy hash and is refused."""
    if stored_hash is None:
        with _DUMMY_LOCK:
            if not _DUMMY:
                _DUMMY.append(_hasher.hash(secrets.token_urlsafe(16)))
        password_matches(_DUMMY[0], password)
        return False
    return password_matches(stored_hash, password)


def _lower_priority() -> None:
    # Linux: nice is per thread and inherited by the threads argon2 starts from this one. The
    # lowest priority: on a busy machine a login waits, a debtor on the line does not.
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


@dataclass(slots=True)
class _Failures:
    count: int = 0
    first: float = 0.0
    locked_until: float = 0.0


class LoginThrottle:
    """Failed logins per login name and per source address; too many in `window_s` locks the
    key for `lockout_s` (every attempt answered 429 with Retry-After, right password or not).

    In memory, per process; bounded so that random login names cannot grow it without end."""

    MAX_KEYS = 10_000

    def __init__(
        self,
        per_login: int = 5,
        per_address: int = 50,
        window_s: float = 900.0,
        lockout_s: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = {"login": per_login, "address": per_address}
        self.window_s, self.lockout_s, self.clock = window_s, lockout_s, clock
        self._keys: OrderedDict[tuple[str, str], _Failures] = OrderedDict()

    def retry_after(self, login: str, address: str) -> float:
        """Seconds until these may try again (0: they may try now)."""
        now = self.clock()
        waits = [
            f.locked_until - now
            for key in (("login", login.lower()), ("address", address))
            if (f := self._keys.get(key)) is not None and f.locked_until > now
        ]
        return max(waits, default=0.0)

    def failed(self, login: str, address: str) -> None:
        now = self.clock()
        for key in (("login", login.lower()), ("address", address)):
            f = self._keys.get(key)
            if f is None or now - f.first > self.window_s:
                f = _Failures(0, now)
            f.count += 1
            if f.count >= self.limits[key[0]]:
                f.locked_until = now + self.lockout_s
            self._keys[key] = f
            self._keys.move_to_end(key)
        while len(self._keys) > self.MAX_KEYS:
            self._keys.popitem(last=False)

    def succeeded(self, login: str) -> None:
        self._keys.pop(("login", login.lower()), None)

    def locks(self) -> list[dict[str, object]]:
        now = self.clock()
        return [
            {"kind": kind, "key": key, "retry_after_s": round(f.locked_until - now, 1)}
            for (kind, key), f in self._keys.items()
            if f.locked_until > now
        ]

    def lift(self, login: str | None = None, address: str | None = None) -> int:
        """Lift the lockout of a login, an address, or (neither given) all of them."""
        if login is None and address is None:
            lifted = len(self.locks())
            self._keys.clear()
            return lifted
        lifted = 0
        for key in (("login", (login or "").lower()), ("address", address or "")):
            f = self._keys.pop(key, None)
            if f is not None and f.locked_until > self.clock():
                lifted += 1
        return lifted


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: an agent, supervisor or admin."""

    agent_id: int
    login: str
    name: str
    role: str

    def has_role(self, role: str) -> bool:
        return _RANK[self.role] >= _RANK[role]


async def login(
    sessions: async_sessionmaker[AsyncSession],
    login_name: str,
    password: str,
    now: dt.datetime,
    work: PasswordWork | None = None,
) -> tuple[str, Principal] | None:
    """A new session token for valid credentials, or None. The token is shown once, never stored.

    Known, unknown and inactive logins all cost one hash (in `work`'s pool)."""
    if work is not None:
        work.admit()
    async with sessions() as s:
        agent = (
            await s.execute(select(Agent).where(Agent.login == login_name))
        ).scalar_one_or_none()
    stored = None if agent is None else agent.password_hash
    if work is None:
        ok = password_matches(stored, password) if stored else False
    else:
        ok = await work.verify(stored, password)
    if agent is None or not ok or not agent.active:
        return None
    token = secrets.token_urlsafe(32)
    async with sessions.begin() as s:
        s.add(
            AuthSession(
                token_hash=_digest(token),
                agent_id=agent.id,
                created_at=now,
                expires_at=now + TOKEN_TTL,
            )
        )
        await s.execute(delete(AuthSession).where(AuthSession.expires_at < now))
    return token, Principal(agent.id, agent.login, agent.name, agent.role)


async def principal_for(
    sessions: async_sessionmaker[AsyncSession], token: str, now: dt.datetime
) -> Principal | None:
    async with sessions() as s:
        row = (
            await s.execute(
                select(Agent)
                .join(AuthSession, AuthSession.agent_id == Agent.id)
                .where(
                    AuthSession.token_hash == _digest(token),
                    AuthSession.expires_at > now,
                    Agent.active.is_(True),
                )
            )
        ).scalar_one_or_none()
    return None if row is None else Principal(row.id, row.login, row.name, row.role)


async def live_tokens(
    sessions: async_sessionmaker[AsyncSession], digests: list[str], now: dt.datetime
) -> dict[str, str]:
    """Of these token digests, the ones still valid, with their agent's current role: one query
    for every socket of a process (see agents_ws.server's revocation check)."""
    if not digests:
        return {}
    async with sessions() as s:
        rows = await s.execute(
            select(AuthSession.token_hash, Agent.role)
            .join(Agent, Agent.id == AuthSession.agent_id)
            .where(
                AuthSession.token_hash.in_(digests),
                AuthSession.expires_at > now,
                Agent.active.is_(True),
            )
        )
        return {str(h): str(r) for h, r in rows}


def token_digest(token: str) -> str:
    return _digest(token)


async def revoke_agent(s: AsyncSession, agent_id: int) -> None:
    """End every session of the agent (in the caller's transaction): every process's next token
    check fails, and sockets close at their process's next revocation check."""
    await s.execute(delete(AuthSession).where(AuthSession.agent_id == agent_id))


async def logout(sessions: async_sessionmaker[AsyncSession], token: str) -> None:
    async with sessions.begin() as s:
        await s.execute(delete(AuthSession).where(AuthSession.token_hash == _digest(token)))


def bearer_token(request: web.Request) -> str | None:
    """The token from `Authorization: Bearer ...`; never from the URL (URLs end up in logs,
    proxies and browser history)."""
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header.removeprefix("Bearer ").strip() or None
    return None


def cookie_token(request: web.Request) -> str | None:
    """The session cookie's token; only trusted once `csrf_middleware` has let the request by."""
    return request.cookies.get(SESSION_COOKIE) or None


def request_token(request: web.Request) -> str | None:
    return bearer_token(request) or cookie_token(request)


def set_session_cookies(response: web.StreamResponse, token: str) -> str:
    """Cookies for a browser page: the session (HttpOnly) and its CSRF token (readable by the
    page, sent back as X-CSRF-Token). Both Secure and SameSite=Strict. Returns the CSRF token."""
    csrf = secrets.token_urlsafe(32)
    max_age = int(TOKEN_TTL.total_seconds())
    common = {"path": "/", "secure": True, "samesite": "Strict", "max_age": max_age}
    response.set_cookie(SESSION_COOKIE, token, httponly=True, **common)  # type: ignore[arg-type]
    response.set_cookie(CSRF_COOKIE, csrf, httponly=False, **common)  # type: ignore[arg-type]
    return csrf


def clear_session_cookies(response: web.StreamResponse) -> None:
    for name in (SESSION_COOKIE, CSRF_COOKIE):
        response.del_cookie(name, path="/")


@web.middleware
async def csrf_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Double-submit CSRF check: a request authenticated by the session cookie (no Authorization
    header) that changes something must echo the CSRF cookie in X-CSRF-Token. A bearer request
    needs no check: another site cannot make a browser send that header."""
    if (
        request.method not in SAFE_METHODS
        and SESSION_COOKIE in request.cookies
        and bearer_token(request) is None
    ):
        sent = request.headers.get(CSRF_HEADER, "")
        expected = request.cookies.get(CSRF_COOKIE, "")
        if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
            raise web.HTTPForbidden(
                text='{"error": "csrf", "detail": "send the dialer_csrf cookie\'s value in '
                'the X-CSRF-Token header"}',
                content_type="application/json",
            )
    return await handler(request)


PRINCIPAL_KEY: web.RequestKey[Principal] = web.RequestKey("principal", Principal)
SESSIONS_KEY: web.AppKey[async_sessionmaker[AsyncSession]] = web.AppKey("sessions")
PASSWORDS_KEY: web.AppKey[PasswordWork] = web.AppKey("passwords", PasswordWork)
THROTTLE_KEY: web.AppKey[LoginThrottle] = web.AppKey("login_throttle", LoginThrottle)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def require_role(role: str) -> Callable[[Handler], Handler]:
    """Decorator for aiohttp handlers: 401 without a valid token, 403 below `role`.

    The principal is put in `request[PRINCIPAL_KEY]`.
    """

    def wrap(handler: Handler) -> Handler:
        async def checked(request: web.Request) -> web.StreamResponse:
            token = request_token(request)
            principal = None
            if token:
                principal = await principal_for(
                    request.app[SESSIONS_KEY], token, dt.datetime.now(dt.UTC)
                )
            if principal is None:
                raise web.HTTPUnauthorized(
                    text='{"error": "unauthorized", "detail": "log in first: POST /api/login"}',
                    content_type="application/json",
                )
            if not principal.has_role(role):
                raise web.HTTPForbidden(
                    text=f'{{"error": "forbidden", "detail": "needs role {role}"}}',
                    content_type="application/json",
                )
            request[PRINCIPAL_KEY] = principal
            return await handler(request)

        checked.__name__ = getattr(handler, "__name__", "handler")
        checked.__doc__ = handler.__doc__
        return checked

    return wrap
