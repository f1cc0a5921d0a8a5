"""`GET /api/agent/phone`: whether the logged-in agent's phone can be put on line, and why not.

The desktop asks while the agent is offline, so that "no phone configured", "not registered"
and "not answering" each get their own message instead of a bare "disconnected"; the server
logs each change of that status (agent id only).
"""

from __future__ import annotations

import logging

from aiohttp import web
from sqlalchemy import select

from dialer.api import common
from dialer.api.common import JSON, reply, responses
from dialer.api.schema import obj, string
from dialer.auth import PRINCIPAL_KEY, require_role
from dialer.doctor import NOT_CONFIGURED, NOT_REACHABLE
from dialer.store.models import Agent, Role
from dialer.telephony.ami import AmiError
from dialer.telephony.softphones import SOFTPHONE

log = logging.getLogger("dialer.phone")

STATUSES = ("missing", "not_configured", "unreachable", "ok", "unknown")
# Last status logged per agent: one line per change, not one per poll.
_LOGGED = web.AppKey("phone_status_logged", dict)


async def device_state(request: web.Request, endpoint: str) -> str | None:
    """DEVICE_STATE() of the endpoint on the first server the dialing pool is logged in to;
    None when this process has no connected Asterisk."""
    from dialer.runtime import RUNTIME  # the runtime imports the API's neighbours: call time

    runtime = request.app.get(RUNTIME)
    if runtime is None:
        return None
    for server in runtime.pool.servers:
        if not server.connection.connected:
            continue
        try:
            found = await server.connection.send(
                {"Action": "Getvar", "Variable": f"DEVICE_STATE({endpoint})"}, limit_s=2.0
            )
        except AmiError:
            continue
        return str(found.get("Value") or "UNKNOWN").upper()
    return None


@require_role(Role.AGENT.value)
async def my_phone(request: web.Request) -> web.StreamResponse:
    principal = request[PRINCIPAL_KEY]
    async with common.sessions(request)() as s:
        endpoint = (
            await s.execute(select(Agent.endpoint).where(Agent.id == principal.agent_id))
        ).scalar_one_or_none()
    device: str | None = None
    from dialer.runtime import RUNTIME

    if RUNTIME not in request.app:
        # This process does not dial (no DIALER_AMI_SERVERS): it never calls a phone.
        status, detail = "unknown", "this dialer process has no Asterisk configured"
    elif not endpoint:
        status = "missing"
        detail = (
            "No phone is configured for you: an administrator runs "
            f"`dialer agent update {principal.login} --phone PJSIP/...`"
        )
    elif endpoint == SOFTPHONE:
        # The desktop's own WebRTC phone, provisioned at login: its panel shows its state.
        status, detail = "ok", "the desktop's softphone"
    else:
        device = await device_state(request, endpoint)
        if device is None:
            status, detail = "unknown", "this dialer process has no connected Asterisk"
        elif device in NOT_CONFIGURED:
            status = "not_configured"
            detail = f"{endpoint} is not an endpoint Asterisk knows (pjsip.conf)"
        elif device in NOT_REACHABLE:
            status = "unreachable"
            detail = f"{endpoint} is not registered: open or check the softphone"
        else:
            status = "ok"
            detail = f"{endpoint} is reachable ({device}); answer its call to start the shift"
    logged = request.app[_LOGGED]
    if logged.get(principal.agent_id) != status:
        logged[principal.agent_id] = status
        if status in ("missing", "not_configured", "unreachable"):
            log.warning(
                "agent %d cannot be put on line: phone %s",
                principal.agent_id,
                status.replace("_", " "),
                extra={"agent_id": principal.agent_id},
            )
    return reply({"endpoint": endpoint, "status": status, "device_state": device, "detail": detail})


def add_routes(app: web.Application) -> None:
    app[_LOGGED] = {}
    app.router.add_get("/api/agent/phone", my_phone)


PHONE = obj(
    {
        "endpoint": string(128, nullable=True),
        "status": string(enum=list(STATUSES)),
        "device_state": string(32, nullable=True),
        "detail": string(400),
    },
    ["endpoint", "status", "detail"],
)
OPENAPI_SCHEMAS = {"AgentPhone": PHONE}
OPENAPI_PATHS: JSON = {
    "/api/agent/phone": {
        "get": {
            "summary": "Whether the logged-in agent's phone can be put on line, and why not",
            "tags": ["agents"],
            "operationId": "getMyPhone",
            "responses": responses({"$ref": "#/components/schemas/AgentPhone"}),
        }
    }
}
