"""Campaign endpoints: create, update, start/pause/stop, list, the latest pacing decision.

Each campaign carries its abandon rate over its profile's regulatory window (30 rolling days for
US, the calendar day for UK), computed from call attempts, so operations see what pacing enforces.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from dialer.api import common
from dialer.api.common import JSON, body, fail, path_id, reply, responses
from dialer.api.schema import (
    Invalid,
    JsonSchema,
    array,
    boolean,
    integer,
    number,
    obj,
    string,
    validate,
)
from dialer.auth import require_role
from dialer.compliance.profiles import DAYS, ProfileError, available_profiles, load_profile
from dialer.compliance.windows import parse_narrowing
from dialer.doctor import pool_trunk_refusals, refusal_text, start_refusals
from dialer.domain.settings import (
    CAP_KEYS,
    EXTRA_CAP_KEYS,
    ORDERING_NAMES,
    CampaignSettings,
    SettingsError,
)
from dialer.store.abandons import abandon_window
from dialer.store.models import (
    Campaign,
    CampaignLease,
    CampaignState,
    DialMode,
    Role,
)

E164 = r"^\+[1-9][0-9]{6,14}$"
_INTERVAL = array(string(5, pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$|^24:00$"), 2)
_DAY_WINDOW: dict[str, object] = {"type": "array", "maxItems": 4, "items": _INTERVAL}

FIELDS: dict[str, dict[str, object]] = {
    "name": string(120, min_length=1),
    "dial_mode": string(enum=[m.value for m in DialMode]),
    "compliance_profile": string(enum=available_profiles()),
    "calling_window": obj(
        {d: _DAY_WINDOW for d in DAYS},
        description="Narrows the profile's window: day -> [[start, end], ...]; [] closes the day.",
    ),
    "caps": obj({k: integer(0, 10_000, nullable=True) for k in CAP_KEYS}),
    "claim_order": array(string(enum=list(ORDERING_NAMES)), 7),
    "caller_id": string(32, pattern=E164, nullable=True),
    "caller_id_pool": array(string(32, pattern=E164), 500),
    "caller_id_match_area": boolean("Prefer pool numbers in the debtor's area code."),
    "amd_accuracy": {**number(0, 1), "nullable": True},
    "wireless_consent_required": boolean(
        "TCPA: the dialer launches calls to wireless (or possibly wireless) numbers only with a "
        "consent on record; otherwise only an agent's click (preview) may."
    ),
    # Which knobs apply depends on dial_mode: checked against it after the schema (check_settings).
    "pacing": {
        "type": "object",
        "additionalProperties": True,
        "description": "Pacing knobs for the dial mode (power: lines_per_agent; predictive: "
        "pacing.policies.PredictiveSettings).",
    },
    "retry_rules": obj(
        {},
        additional={"oneOf": [number(0, 10**8), string(enum=["next_day"])]},
        description="Seconds before retrying a phone, per outcome, or 'next_day'.",
    ),
    "max_concurrent_calls": integer(1, 10_000, nullable=True),
    "abandon_limit_s": number(0.5, 10),
    "amd_enabled": boolean(),
    "machine_action": string(enum=["hangup", "message", "agent"]),
    "record_calls": boolean(),
    "wrap_up_limit_s": integer(0, 3600),
    "wrap_up_expiry": string(enum=["auto_ready", "auto_pause"]),
    "dispositions": array(
        obj(
            {
                "code": string(32, min_length=1),
                "label": string(120),
                "contact": boolean(),
                "rpc": boolean(),
            },
            ["code"],
            additional=True,
        ),
        200,
    ),
    "scripts": obj({}, additional=string(20_000)),
}
CREATE = obj(FIELDS, ["name"])
UPDATE = obj(FIELDS)
ABANDON = obj(
    {
        "rate": {"type": "number", "nullable": True},
        "abandoned": integer(),
        "connected": integer(),
        "max_rate": number(0, 1),
        "estimated_amd_false_positives": number(0),
        "machine_verdicts": integer(),
        "amd_accuracy": {"type": "number", "nullable": True},
        "window": string(),
        "since": string(fmt="date-time"),
    },
    additional=True,
)
CAMPAIGN = obj(
    {
        **FIELDS,
        "id": integer(1),
        "state": string(enum=[s.value for s in CampaignState]),
        "abandon": ABANDON,
    },
    additional=True,
)
PACING = obj(
    {
        "campaign_id": integer(1),
        "owner": string(nullable=True),
        "lease_expires_at": string(fmt="date-time", nullable=True),
        "updated_at": string(fmt="date-time", nullable=True),
        "decision": {"type": "object"},
    },
    additional=True,
)
TRANSITIONS = {
    "start": ({"draft", "paused", "stopped"}, CampaignState.RUNNING),
    "pause": ({"running"}, CampaignState.PAUSED),
    "stop": ({"draft", "running", "paused"}, CampaignState.STOPPED),
}


def check_fields(data: JSON, schema: JsonSchema) -> None:
    """Raise Invalid naming the field: the schema, then the calling window's narrowing (the rest
    of the settings are parsed whole by `check_settings`). Shared by the API and the CLI."""
    validate(data, schema)
    try:
        if "calling_window" in data:
            parse_narrowing(data["calling_window"])  # type: ignore[arg-type]
    except ProfileError as exc:
        raise Invalid(str(exc).split(":")[0], str(exc).split(": ", 1)[-1]) from exc


def check_settings(campaign: Campaign) -> CampaignSettings:
    """The campaign's settings as the engine and preview will read them: Invalid naming the field
    when they cannot be used (pacing for the dial mode, retry rules, caps, claim order)."""
    try:
        return CampaignSettings.of(campaign)
    except SettingsError as exc:
        raise Invalid(exc.field, exc.detail) from exc


def _check_settings(campaign: Campaign) -> None:
    try:
        check_settings(campaign)
    except Invalid as exc:
        fail(400, "invalid_request", str(exc), exc.field)


async def _checked_body(request: web.Request, schema: JsonSchema) -> JSON:
    data = await body(request, schema)
    try:
        check_fields(data, schema)
    except Invalid as exc:
        fail(400, "invalid_request", str(exc), exc.field or None)
    return data


def apply_fields(campaign: Campaign, data: JSON) -> None:
    caps = dict(campaign.caps or {})
    for key, value in data.items():
        if key == "caps":
            assert isinstance(value, dict)
            for k in CAP_KEYS:
                caps.pop(k, None)
            caps.update(value)
        elif key in EXTRA_CAP_KEYS:
            caps[key] = value
        else:
            setattr(campaign, key, value)
    campaign.caps = caps


async def abandon_stats(s: AsyncSession, campaign: Campaign, now: dt.datetime) -> JSON:
    """The abandon window as the profile's rule counts it (dialer.store.abandons: the engine's
    pacing snapshot, /metrics and the reports use the same function)."""
    try:
        window = load_profile(campaign.compliance_profile).abandon
    except ProfileError:
        return {"rate": None, "abandoned": 0, "connected": 0, "window": "unknown profile"}
    found = await abandon_window(s, campaign.id, window, campaign.caps, now)
    return found.to_dict()


def as_json(campaign: Campaign) -> JSON:
    caps = dict(campaign.caps or {})
    extra = {k: caps.pop(k) for k in EXTRA_CAP_KEYS if k in caps}
    return {
        "id": campaign.id,
        "name": campaign.name,
        "state": campaign.state,
        "dial_mode": campaign.dial_mode,
        "compliance_profile": campaign.compliance_profile,
        "calling_window": campaign.calling_window or {},
        "caps": {k: v for k, v in caps.items() if k in CAP_KEYS},
        "claim_order": extra.get("claim_order", ["priority"]),
        "caller_id": campaign.caller_id,
        "caller_id_pool": campaign.caller_id_pool or [],
        "caller_id_match_area": bool(extra.get("caller_id_match_area", False)),
        "amd_accuracy": extra.get("amd_accuracy"),
        "wireless_consent_required": bool(extra.get("wireless_consent_required", False)),
        "pacing": campaign.pacing or {},
        "retry_rules": campaign.retry_rules or {},
        "max_concurrent_calls": campaign.max_concurrent_calls,
        "abandon_limit_s": campaign.abandon_limit_s,
        "amd_enabled": campaign.amd_enabled,
        "machine_action": campaign.machine_action,
        "record_calls": campaign.record_calls,
        "wrap_up_limit_s": campaign.wrap_up_limit_s,
        "wrap_up_expiry": campaign.wrap_up_expiry,
        "dispositions": campaign.dispositions or [],
        "scripts": campaign.scripts or {},
        "created_at": campaign.created_at,
        "updated_at": campaign.updated_at,
    }


async def _full(s: AsyncSession, campaign: Campaign) -> JSON:
    return {
        **as_json(campaign),
        "abandon": await abandon_stats(s, campaign, dt.datetime.now(dt.UTC)),
    }


async def _get(s: AsyncSession, campaign_id: int) -> Campaign:
    campaign = await s.get(Campaign, campaign_id)
    if campaign is None:
        fail(404, "not_found", f"campaign {campaign_id} does not exist")
    return campaign


@require_role(Role.SUPERVISOR.value)
async def list_campaigns(request: web.Request) -> web.StreamResponse:
    async with common.sessions(request)() as s:
        rows = (await s.execute(select(Campaign).order_by(Campaign.id))).scalars().all()
        return reply({"campaigns": [await _full(s, c) for c in rows]})


@require_role(Role.SUPERVISOR.value)
async def create_campaign(request: web.Request) -> web.StreamResponse:
    data = await _checked_body(request, CREATE)
    try:
        async with common.sessions(request).begin() as s:
            campaign = Campaign(
                name=data["name"], caps={}, calling_window={}, pacing={}, retry_rules={}
            )
            apply_fields(campaign, data)
            _check_settings(campaign)
            s.add(campaign)
            await s.flush()
            out = await _full(s, campaign)
    except IntegrityError:
        fail(409, "conflict", f"a campaign named {data['name']!r} exists", "name")
    return reply(out, 201)


@require_role(Role.SUPERVISOR.value)
async def get_campaign(request: web.Request) -> web.StreamResponse:
    campaign_id = path_id(request, "campaign_id")
    async with common.sessions(request)() as s:
        return reply(await _full(s, await _get(s, campaign_id)))


@require_role(Role.SUPERVISOR.value)
async def update_campaign(request: web.Request) -> web.StreamResponse:
    campaign_id = path_id(request, "campaign_id")
    data = await _checked_body(request, UPDATE)
    try:
        async with common.sessions(request).begin() as s:
            campaign = await _get(s, campaign_id)
            apply_fields(campaign, data)
            _check_settings(campaign)
            await s.flush()
            out = await _full(s, campaign)
    except IntegrityError:
        fail(409, "conflict", "a campaign with that name exists", "name")
    return reply(out)


async def _refuse_if_it_cannot_dial(request: web.Request, campaign: Campaign) -> None:
    """409 naming every reason a running campaign would launch nothing (no caller ID, bad
    profile or pacing, no Asterisk configured or connected, the dialplan's trunk missing or
    unreachable), each with its fix."""
    from dialer.runtime import RUNTIME  # the runtime imports the API's neighbours: call time

    runtime = request.app.get(RUNTIME)
    connected = (
        None
        if runtime is None
        else [s.name for s in runtime.pool.servers if s.connection.connected]
    )
    problems = start_refusals(campaign, common.settings(request).ami_servers, connected)
    if runtime is not None and connected:
        problems += await pool_trunk_refusals([s.connection for s in runtime.pool.servers])
    if problems:
        body = {
            "error": "cannot_dial",
            "detail": f"campaign {campaign.id} cannot dial: {refusal_text(problems)}",
            "reasons": [p.as_json() for p in problems],
        }
        raise web.HTTPConflict(text=common.dumps(body), content_type="application/json")


def _transition(action: str) -> Any:
    allowed, target = TRANSITIONS[action]

    @require_role(Role.SUPERVISOR.value)
    async def handler(request: web.Request) -> web.StreamResponse:
        campaign_id = path_id(request, "campaign_id")
        async with common.sessions(request).begin() as s:
            campaign = await _get(s, campaign_id)
            if campaign.state not in allowed:
                fail(409, "conflict", f"cannot {action} a campaign that is {campaign.state}")
            if action == "start":
                await _refuse_if_it_cannot_dial(request, campaign)
            campaign.state = target.value
            await s.flush()
            return reply(await _full(s, campaign))

    handler.__name__ = f"{action}_campaign"
    return handler


@require_role(Role.SUPERVISOR.value)
async def pacing_decision(request: web.Request) -> web.StreamResponse:
    campaign_id = path_id(request, "campaign_id")
    async with common.sessions(request)() as s:
        await _get(s, campaign_id)
        lease = await s.get(CampaignLease, campaign_id)
    return reply(
        {
            "campaign_id": campaign_id,
            "owner": lease.owner if lease else None,
            "lease_expires_at": lease.expires_at if lease else None,
            "updated_at": lease.updated_at if lease else None,
            "decision": (lease.last_decision or {}) if lease else {},
        }
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/campaigns", list_campaigns)
    app.router.add_post("/api/campaigns", create_campaign)
    app.router.add_get("/api/campaigns/{campaign_id}", get_campaign)
    app.router.add_patch("/api/campaigns/{campaign_id}", update_campaign)
    for action in TRANSITIONS:
        app.router.add_post(f"/api/campaigns/{{campaign_id}}/{action}", _transition(action))
    app.router.add_get("/api/campaigns/{campaign_id}/pacing", pacing_decision)


_ID = common.id_param("campaign_id", "The campaign's id.")
_ONE: JsonSchema = {"$ref": "#/components/schemas/Campaign"}
OPENAPI_SCHEMAS = {"Campaign": CAMPAIGN, "CampaignCreate": CREATE, "CampaignUpdate": UPDATE}
OPENAPI_PATHS: JSON = {
    "/api/campaigns": {
        "get": {
            "summary": "List campaigns, each with its abandon rate over the regulatory window",
            "tags": ["campaigns"],
            "responses": responses(obj({"campaigns": array(_ONE)}, additional=True)),
        },
        "post": {
            "summary": "Create a campaign (state draft)",
            "tags": ["campaigns"],
            "requestBody": common.json_body({"$ref": "#/components/schemas/CampaignCreate"}),
            "responses": responses(_ONE, 400, 409, ok_status=201),
        },
    },
    "/api/campaigns/{campaign_id}": {
        "parameters": [_ID],
        "get": {
            "summary": "One campaign",
            "tags": ["campaigns"],
            "responses": responses(_ONE, 404),
        },
        "patch": {
            "summary": "Update a campaign's settings (only the fields sent)",
            "tags": ["campaigns"],
            "requestBody": common.json_body({"$ref": "#/components/schemas/CampaignUpdate"}),
            "responses": responses(_ONE, 400, 404, 409),
        },
    },
    **{
        f"/api/campaigns/{{campaign_id}}/{action}": {
            "parameters": [_ID],
            "post": {
                "summary": f"{action.capitalize()} the campaign"
                + (
                    " (409 `cannot_dial`, with `reasons`, while it could not dial: no caller "
                    "ID, bad profile or pacing, no Asterisk server configured or connected, no "
                    "trunk in its dialplan)"
                    if action == "start"
                    else ""
                ),
                "tags": ["campaigns"],
                "responses": responses(_ONE, 404, 409),
            },
        }
        for action in TRANSITIONS
    },
    "/api/campaigns/{campaign_id}/pacing": {
        "parameters": [_ID],
        "get": {
            "summary": "The latest pacing decision (empty when the campaign has not run)",
            "tags": ["campaigns"],
            "responses": responses(PACING, 404),
        },
    },
}
