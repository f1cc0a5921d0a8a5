"""Agent accounts (admin only): list, create with an argon2-hashed password, update, deactivate.

Password hashes never leave the server. Deactivating an agent, changing their role or setting a
new password ends every session they have (their tokens are deleted, on every process), and their
open sockets close within a second (agents_ws.server's revocation check).
"""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from dialer import auth
from dialer.api import common
from dialer.api.common import JSON, body, fail, path_id, reply, responses
from dialer.api.schema import MAX_ID, array, boolean, integer, obj, string
from dialer.auth import require_role
from dialer.store.models import Agent, Role

LOGIN = r"^[A-Za-z0-9._@-]{1,64}$"
_FIELDS = {
    "name": string(120, min_length=1),
    "role": string(enum=[r.value for r in Role]),
    "endpoint": string(128, nullable=True, description="e.g. PJSIP/agent1001"),
    "language": string(8, min_length=2),
    "active": boolean(),
    "password": string(200, min_length=8),
}
CREATE = obj({"login": string(64, pattern=LOGIN), **_FIELDS}, ["login", "name", "password"])
UPDATE = obj(_FIELDS)
AGENT = obj(
    {
        "id": integer(1, MAX_ID),
        "login": string(),
        "name": string(),
        "role": string(),
        "endpoint": string(nullable=True),
        "language": string(),
        "active": boolean(),
    },
    additional=True,
)


def _json(a: Agent) -> JSON:
    return {
        "id": a.id,
        "login": a.login,
        "name": a.name,
        "role": a.role,
        "endpoint": a.endpoint,
        "language": a.language,
        "active": a.active,
        "created_at": a.created_at,
    }


async def _hash(request: web.Request, password: object) -> str:
    """argon2 in the password pool: a hash takes every core for a moment, never the loop's."""
    try:
        return await request.app[auth.PASSWORDS_KEY].hash(str(password))
    except ValueError as exc:  # the password rule, from auth.hash_password
        fail(400, "invalid_request", str(exc), "password")


@require_role(Role.ADMIN.value)
async def list_agents(request: web.Request) -> web.StreamResponse:
    async with common.sessions(request)() as s:
        rows = (await s.execute(select(Agent).order_by(Agent.id))).scalars().all()
    return reply({"agents": [_json(a) for a in rows]})


@require_role(Role.ADMIN.value)
async def create_agent(request: web.Request) -> web.StreamResponse:
    data = await body(request, CREATE)
    password_hash = await _hash(request, data.pop("password"))
    try:
        async with common.sessions(request).begin() as s:
            agent = Agent(password_hash=password_hash, **data)
            s.add(agent)
            await s.flush()
            out = _json(agent)
    except IntegrityError:
        fail(409, "conflict", f"login {data['login']!r} is taken", "login")
    return reply(out, 201)


@require_role(Role.ADMIN.value)
async def update_agent(request: web.Request) -> web.StreamResponse:
    agent_id = path_id(request, "agent_id")
    data = await body(request, UPDATE)
    if "password" in data:
        data["password_hash"] = await _hash(request, data.pop("password"))
    async with common.sessions(request).begin() as s:
        agent = await s.get(Agent, agent_id)
        if agent is None:
            fail(404, "not_found", f"agent {agent_id} does not exist")
        if agent.id == request[auth.PRINCIPAL_KEY].agent_id and (
            data.get("active") is False or data.get("role", Role.ADMIN.value) != Role.ADMIN.value
        ):
            fail(409, "conflict", "an admin cannot deactivate or demote themself")
        revoke = (
            "password_hash" in data
            or (data.get("active") is False and agent.active)
            or ("role" in data and data["role"] != agent.role)
        )
        for key, value in data.items():
            setattr(agent, key, value)
        if revoke:
            await auth.revoke_agent(s, agent.id)
        await s.flush()
        out = _json(agent)
    if data.get("active") is False or "password_hash" in data:
        # Imported here: the runtime imports the application this module is part of.
        from dialer.runtime import revoke_softphone

        await revoke_softphone(request.app, agent_id)
    return reply(out)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/agents", list_agents)
    app.router.add_post("/api/agents", create_agent)
    app.router.add_patch("/api/agents/{agent_id}", update_agent)


OPENAPI_PATHS: JSON = {
    "/api/agents": {
        "get": {
            "summary": "List agents (admin)",
            "tags": ["agents"],
            "responses": responses(obj({"agents": array(AGENT)}, additional=True)),
        },
        "post": {
            "summary": "Create an agent, supervisor or admin (admin)",
            "tags": ["agents"],
            "requestBody": common.json_body(CREATE),
            "responses": responses(AGENT, 400, 409, ok_status=201),
        },
    },
    "/api/agents/{agent_id}": {
        "parameters": [common.id_param("agent_id", "The agent's id.")],
        "patch": {
            "summary": "Update or deactivate an agent; set a new password (admin)",
            "tags": ["agents"],
            "requestBody": common.json_body(UPDATE),
            "responses": responses(AGENT, 400, 404, 409),
        },
    },
}
