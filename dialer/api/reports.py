"""Ops API for collections reports: GET /api/reports as JSON or CSV, for supervisors.

Translates the query string into a `dialer.reports.ReportQuery`; the figures come from there.
"""

from __future__ import annotations

import datetime as dt

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from dialer import reports
from dialer.auth import require_role
from dialer.errors import UserError


def _engine(request: web.Request) -> AsyncEngine:
    # Imported here: dialer.app imports this module to register the routes.
    from dialer.app import ENGINE

    return request.app[ENGINE]


def _bad_request(detail: str) -> web.Response:
    return web.json_response({"error": "invalid_request", "detail": detail}, status=400)


@require_role("supervisor")
async def get_report(request: web.Request) -> web.Response:
    """GET /api/reports?from=YYYY-MM-DD&to=YYYY-MM-DD&by=campaign|agent|bucket&campaign=ID
    &format=json|csv"""
    q = request.query
    try:
        missing = [name for name in ("from", "to") if not q.get(name)]
        if missing:
            raise UserError(f"{missing[0]}: required, a date like 2026-11-24")
        campaign: int | None = None
        if q.get("campaign"):
            if not q["campaign"].isdigit():
                raise UserError(f"campaign: expected a campaign id, got {q['campaign']!r}")
            campaign = int(q["campaign"])
        fmt = q.get("format", "json")
        if fmt not in ("json", "csv"):
            raise UserError(f"format: expected csv or json, got {fmt!r}")
        query = reports.ReportQuery(
            first_day=reports.parse_day("from", q["from"]),
            last_day=reports.parse_day("to", q["to"]),
            by=reports.parse_group(q.get("by", "campaign")),
            campaign_id=campaign,
        )
        report = await reports.build_report(_engine(request), query, dt.datetime.now(dt.UTC))
    except UserError as exc:
        return _bad_request(str(exc))
    body = reports.render(report, fmt)
    if fmt == "csv":
        name = f"report-{query.by.value}-{query.first_day}-{query.last_day}.csv"
        return web.Response(
            text=body,
            content_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    return web.Response(text=body, content_type="application/json")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/reports", get_report)


_ERROR = {
    "description": "",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
                "required": ["error", "detail"],
            }
        }
    },
}

_NUMBER_OR_NULL = {"type": "number", "nullable": True}  # OpenAPI 3.0.3: no type lists

OPENAPI_PATHS: dict[str, object] = {
    "/api/reports": {
        "get": {
            "summary": "Collections report for a range of UTC days",
            "description": "Dials, live and right-party contacts, promises-to-pay, kept rate, "
            "abandon rate, agent time, occupancy and list penetration, per campaign, per agent "
            "or per aging bucket. Definitions of every figure are in the JSON body "
            "(report.definitions) and in the README.",
            "tags": ["reports"],
            "security": [{"bearer": []}],  # the scheme the document defines
            "parameters": [
                {
                    "name": "from",
                    "in": "query",
                    "required": True,
                    "description": "first UTC day, inclusive",
                    "schema": {"type": "string", "format": "date"},
                },
                {
                    "name": "to",
                    "in": "query",
                    "required": True,
                    "description": "last UTC day, inclusive (at most 366 days after from)",
                    "schema": {"type": "string", "format": "date"},
                },
                {
                    "name": "by",
                    "in": "query",
                    "required": False,
                    "schema": {
                        "type": "string",
                        "enum": ["campaign", "agent", "bucket"],
                        "default": "campaign",
                    },
                },
                {
                    "name": "campaign",
                    "in": "query",
                    "required": False,
                    "description": "only this campaign id",
                    "schema": {"type": "integer"},
                },
                {
                    "name": "format",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string", "enum": ["json", "csv"], "default": "json"},
                },
            ],
            "responses": {
                "200": {
                    "description": "The report",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "report": {
                                        "type": "object",
                                        "properties": {
                                            "by": {"type": "string"},
                                            "from": {"type": "string", "format": "date"},
                                            "to": {"type": "string", "format": "date"},
                                            "campaign_id": {"type": "integer", "nullable": True},
                                            "time_zone": {"type": "string"},
                                            "generated_at": {
                                                "type": "string",
                                                "format": "date-time",
                                            },
                                            "definitions": {
                                                "type": "object",
                                                "additionalProperties": {"type": "string"},
                                            },
                                        },
                                    },
                                    "rows": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "properties": {
                                                **{
                                                    name: _NUMBER_OR_NULL
                                                    for name in reports.FIGURES
                                                },
                                                "ptp_amount": {
                                                    "type": "object",
                                                    "description": "currency -> amount "
                                                    "as a decimal string",
                                                    "additionalProperties": {"type": "string"},
                                                },
                                            },
                                        },
                                    },
                                },
                            }
                        },
                        "text/csv": {"schema": {"type": "string"}},
                    },
                },
                "400": {**_ERROR, "description": "A parameter is wrong; detail names it"},
                "401": {**_ERROR, "description": "No valid token"},
                "403": {**_ERROR, "description": "Needs role supervisor"},
            },
        }
    }
}
