"""DNC endpoints: list, add (with optional expiry), remove, and import an uploaded list.

Numbers are normalised to E.164 with the service's default region before they are stored, so an
entry matches the phones the importer stored.
"""

from __future__ import annotations

import datetime as dt

from aiohttp import web
from sqlalchemy import select

from dialer.api import common
from dialer.api.accounts import _spool
from dialer.api.common import JSON, body, fail, path_id, reply, responses
from dialer.api.schema import MAX_ID, array, integer, obj, string
from dialer.auth import require_role
from dialer.errors import UserError
from dialer.importer.dnc import add_numbers, import_dnc
from dialer.importer.parse import normalise_phone
from dialer.store.models import Campaign, DncEntry, Role

ADD = obj(
    {
        "number": string(32, min_length=1, description="Any format; stored as E.164."),
        "reason": string(200, nullable=True),
        "source": string(64, min_length=1),
        "campaign_id": integer(1, MAX_ID, nullable=True, description="Only this campaign."),
        "expires_at": string(fmt="date-time", nullable=True, description="Null: never."),
    },
    ["number"],
)
ENTRY = obj(
    {
        "id": integer(1, MAX_ID),
        "number": string(),
        "source": string(),
        "campaign_id": integer(1, MAX_ID, nullable=True),
        "reason": string(nullable=True),
        "expires_at": string(fmt="date-time", nullable=True),
        "created_at": string(fmt="date-time"),
    },
    additional=True,
)


def _json(e: DncEntry) -> JSON:
    return {
        "id": e.id,
        "number": e.number,
        "source": e.source,
        "scope": e.scope,
        "campaign_id": e.campaign_id,
        "reason": e.reason,
        "expires_at": e.expires_at,
        "created_at": e.created_at,
    }


@require_role(Role.SUPERVISOR.value)
async def list_dnc(request: web.Request) -> web.StreamResponse:
    limit = common.query_int(request, "limit", 100, 1, 1000)
    offset = common.query_int(request, "offset", 0, 0, 10**9)
    query = select(DncEntry).order_by(DncEntry.id)
    raw = request.query.get("number")
    if raw:
        try:
            number = normalise_phone(raw, common.settings(request).default_region)[0]
        except ValueError as exc:
            fail(400, "invalid_request", f"number: {exc}", "number")
        query = query.where(DncEntry.number == number)
    if request.query.get("active") == "true":
        now = dt.datetime.now(dt.UTC)
        query = query.where((DncEntry.expires_at.is_(None)) | (DncEntry.expires_at > now))
    async with common.sessions(request)() as s:
        rows = (await s.execute(query.limit(limit).offset(offset))).scalars().all()
    return reply({"entries": [_json(e) for e in rows]})


@require_role(Role.SUPERVISOR.value)
async def add_dnc(request: web.Request) -> web.StreamResponse:
    data = await body(request, ADD)
    try:
        number = normalise_phone(str(data["number"]), common.settings(request).default_region)[0]
    except ValueError as exc:
        fail(400, "invalid_request", f"number: {exc}", "number")
    expires = data.get("expires_at")
    expires_at = (
        dt.datetime.fromisoformat(str(expires).replace("Z", "+00:00")).astimezone(dt.UTC)
        if expires
        else None
    )
    campaign_id = data.get("campaign_id")
    async with common.sessions(request).begin() as s:
        if campaign_id is not None and await s.get(Campaign, campaign_id) is None:
            fail(404, "not_found", f"campaign {campaign_id} does not exist", "campaign_id")
        await add_numbers(
            s,
            [(number, expires_at, data.get("reason"))],  # type: ignore[list-item]
            source=str(data.get("source", "internal")),
            campaign_id=campaign_id,  # type: ignore[arg-type]
            now=dt.datetime.now(dt.UTC),
        )
        scope = (
            DncEntry.campaign_id.is_(None) if campaign_id is None
            else DncEntry.campaign_id == campaign_id
        )  # fmt: skip
        entry = (
            await s.execute(
                select(DncEntry).where(
                    DncEntry.number == number,
                    DncEntry.source == str(data.get("source", "internal")),
                    scope,
                )
            )
        ).scalar_one()
        return reply(_json(entry), 201)


@require_role(Role.SUPERVISOR.value)
async def delete_dnc(request: web.Request) -> web.StreamResponse:
    entry_id = path_id(request, "entry_id")
    async with common.sessions(request).begin() as s:
        entry = await s.get(DncEntry, entry_id)
        if entry is None:
            fail(404, "not_found", f"DNC entry {entry_id} does not exist")
        await s.delete(entry)
    return reply({"deleted": entry_id})


@require_role(Role.SUPERVISOR.value)
async def import_dnc_list(request: web.Request) -> web.StreamResponse:
    source = request.query.get("source", "uploaded")
    if not 0 < len(source) <= 64 or "\x00" in source:
        fail(400, "invalid_request", "source: 1 to 64 characters", "source")
    campaign_id = common.query_optional_int(request, "campaign_id")
    if campaign_id is not None:
        async with common.sessions(request)() as s:
            if await s.get(Campaign, campaign_id) is None:
                fail(404, "not_found", f"campaign {campaign_id} does not exist", "campaign_id")
    path = await _spool(request)
    try:
        with path.open("rb") as handle:
            report = await import_dnc(
                common.engine(request),
                handle,
                source=source,
                default_region=common.settings(request).default_region,
                campaign_id=campaign_id,
            )
    except UserError as exc:
        fail(400, "invalid_file", str(exc), "file")
    except UnicodeDecodeError:
        fail(400, "invalid_file", "the file is not UTF-8 text", "file")
    finally:
        path.unlink(missing_ok=True)
    return reply(report.as_dict())


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/dnc", list_dnc)
    app.router.add_post("/api/dnc", add_dnc)
    app.router.add_delete("/api/dnc/{entry_id}", delete_dnc)
    app.router.add_post("/api/dnc/import", import_dnc_list)


OPENAPI_PATHS: JSON = {
    "/api/dnc": {
        "get": {
            "summary": "List DNC entries",
            "tags": ["dnc"],
            "parameters": [
                common.query_param("number", string(32), "Only this number (any format)."),
                common.query_param("active", string(enum=["true", "false"]), "Unexpired only."),
                common.query_param("limit", integer(1, 1000), "Page size (default 100)."),
                common.query_param("offset", integer(0, 10**9), "Skip this many."),
            ],
            "responses": responses(obj({"entries": array(ENTRY)}, additional=True), 400),
        },
        "post": {
            "summary": "Add a number (refreshes the expiry if the source already lists it)",
            "tags": ["dnc"],
            "requestBody": common.json_body(ADD),
            "responses": responses(ENTRY, 400, 404, ok_status=201),
        },
    },
    "/api/dnc/{entry_id}": {
        "parameters": [common.id_param("entry_id", "The entry's id.")],
        "delete": {
            "summary": "Remove an entry",
            "tags": ["dnc"],
            "responses": responses(None, 404),
        },
    },
    "/api/dnc/import": {
        "post": {
            "summary": "Import a DNC list: CSV with number[, expires_at][, reason]",
            "tags": ["dnc"],
            "parameters": [
                common.query_param("source", string(64, min_length=1), "The list's origin."),
                common.query_param("campaign_id", integer(1, MAX_ID), "Only this campaign."),
            ],
            "requestBody": {
                "required": True,
                "content": {"text/csv": {"schema": {"type": "string"}}},
            },
            "responses": responses(obj({}, additional=True), 400, 404, 413, 415),
        }
    },
}
