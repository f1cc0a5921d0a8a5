"""Logins, session tokens and roles, shared by the ops API and the agents' websocket.

Passwords are hashed with argon2; tokens are random, stored only as SHA-256 digests, valid on any
dialer process because they live in the database.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Awaitable, Callable
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
    sessions: async_sessionmaker[AsyncSession], login_name: str, password: str, now: dt.datetime
) -> tuple[str, Principal] | None:
    """A new session token for valid credentials, or None. The token is shown once, never stored."""
    async with sessions.begin() as s:
        agent = (
            await s.execute(select(Agent).where(Agent.login == login_name, Agent.active.is_(True)))
        ).scalar_one_or_none()
        if agent is None or not password_matches(agent.password_hash, password):
            return None
        token = secrets.token_urlsafe(32)
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


async def logout(sessions: async_sessionmaker[AsyncSession], token: str) -> None:
    async with sessions.begin() as s:
        await s.execute(delete(AuthSession).where(AuthSession.token_hash == _digest(token)))


def bearer_token(request: web.Request) -> str | None:
    """The token from `Authorization: Bearer ...`, or the `token` query parameter (websockets)."""
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header.removeprefix("Bearer ").strip() or None
    return request.query.get("token") or None


PRINCIPAL_KEY: web.RequestKey[Principal] = web.RequestKey("principal", Principal)
SESSIONS_KEY: web.AppKey[async_sessionmaker[AsyncSession]] = web.AppKey("sessions")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def require_role(role: str) -> Callable[[Handler], Handler]:
    """Decorator for aiohttp handlers: 401 without a valid token, 403 below `role`.

    The principal is put in `request[PRINCIPAL_KEY]`.
    """

    def wrap(handler: Handler) -> Handler:
        async def checked(request: web.Request) -> web.StreamResponse:
            token = bearer_token(request)
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
