"""Ops API for the evidence record of claim decisions: GET /api/evidence as JSON or CSV.

The same records and the same rendering as `dialer evidence export`; for supervisors.
"""

from __future__ import annotations

import datetime as dt

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from dialer.api.common import JSON, fail, responses
from dialer.auth import require_role
from dialer.evidence_export import render
from dialer.store import evidence
from dialer.store.db import make_sessionmaker

# Records per response at most: a bigger export goes through the CLI or narrower ranges.
MAX_ROWS = 50_000


def _engine(request: web.Request) -> AsyncEngine:
    # Imported here: dialer.app imports the API modules to register the routes.
    from dialer.app import ENGINE

    return request.app[ENGINE]


def _id(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if not raw:
        return None
    if not raw.isdigit() or len(raw) > 18:
        fail(400, "invalid_request", f"{name}: expected an id, got {raw!r}", name)
    return int(raw)


def _day(request: web.Request, name: str) -> dt.date | None:
    raw = request.query.get(name)
    if not raw:
        return None
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        fail(400, "invalid_request", f"{name}: expected a date like 2026-11-24, got {raw!r}", name)


@require_role("supervisor")
async def get_evidence(request: web.Request) -> web.Response:
    """GET /api/evidence?account=ID&campaign=ID&from=YYYY-MM-DD&to=YYYY-MM-DD&format=json|csv"""
    fmt = request.query.get("format", "json")
    if fmt not in ("json", "csv"):
        fail(400, "invalid_request", f"format: expected csv or json, got {fmt!r}", "format")
    account, campaign = _id(request, "account"), _id(request, "campaign")
    first, last = _day(request, "from"), _day(request, "to")
    if account is None and (first is None or last is None):
        fail(400, "invalid_request", "from: an account, or a from-to range, is required", "from")
    since = None if first is None else dt.datetime.combine(first, dt.time(), dt.UTC)
    until = None
    if last is not None:
        if last >= dt.date.max:
            fail(400, "invalid_request", "to: too far ahead", "to")
        until = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), dt.UTC)
    if since is not None and until is not None and until <= since:
        fail(400, "invalid_request", "to: before from", "to")
    query = evidence.EvidenceQuery(account, campaign, since, until)
    async with make_sessionmaker(_engine(request))() as s:
        rows = []
        async for row in evidence.export(s, query):
            rows.append(row)
            if len(rows) > MAX_ROWS:
                fail(400, "invalid_request", f"more than {MAX_ROWS} records: narrow the range",
                     "from")  # fmt: skip
    body = render(rows, fmt)
    if fmt == "csv":
        return web.Response(
            text=body,
            content_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="evidence.csv"'},
        )
    return web.Response(text=body, content_type="application/json")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/evidence", get_evidence)


def _param(name: str, description: str, schema: JSON) -> JSON:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema}  # fmt: skip


_RESPONSES = responses(None, 400)
_RESPONSES["200"] = {
    "description": "The records: JSON {records: [...]} or CSV",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"records": {"type": "array", "items": {"type": "object"}}},
                "required": ["records"],
            }
        },
        "text/csv": {"schema": {"type": "string"}},
    },
}
OPENAPI_PATHS: JSON = {
    "/api/evidence": {
        "get": {
            "summary": "Evidence records of claim decisions, per account or date range",
            "description": "Every claim decision, allowed or refused, with the profile and its "
            "content hash, the zones assumed, each rule's verdict and counts, the DNC check, "
            "caller ID, dial mode and who launched; hash-chained per campaign. An account, or "
            "both from and to, is required.",
            "tags": ["compliance"],
            "parameters": [
                _param("account", "only this account id", {"type": "integer", "minimum": 0}),
                _param("campaign", "only this campaign id", {"type": "integer", "minimum": 0}),
                _param("from", "first UTC day, inclusive", {"type": "string", "format": "date"}),
                _param("to", "last UTC day, inclusive", {"type": "string", "format": "date"}),
                _param(
                    "format", "json (default) or csv", {"type": "string", "enum": ["json", "csv"]}
                ),
            ],
            "responses": _RESPONSES,
        }
    }
}
