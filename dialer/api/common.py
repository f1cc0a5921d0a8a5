"""What every ops API handler shares: JSON in and out, errors that name the field, path ids.

Errors are JSON `{"error": code, "detail": text, "field": name}` with a 4xx status; a handler never
lets a bad input reach the database.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from decimal import Decimal
from typing import NoReturn

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from agents_ws.protocol import JsonLimitError, loads_checked
from dialer import auth
from dialer.api.schema import MAX_ID, Invalid, JsonSchema, validate
from dialer.settings import Settings

JSON = dict[str, object]
# No request body nests deeper (a campaign's calling window is 4 levels); deeper is refused
# before validation, whose walk is recursive.
MAX_JSON_DEPTH = 20


def _default(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def dumps(value: object) -> str:
    return json.dumps(value, default=_default, ensure_ascii=False)


def reply(value: object, status: int = 200) -> web.Response:
    return web.json_response(value, status=status, dumps=dumps)


def fail(status: int, code: str, detail: str, field: str | None = None) -> NoReturn:
    body: JSON = {"error": code, "detail": detail}
    if field:
        body["field"] = field
    raise _http(status)(text=dumps(body), content_type="application/json")


def _http(status: int) -> type[web.HTTPException]:
    classes: dict[int, type[web.HTTPException]] = {
        400: web.HTTPBadRequest,
        404: web.HTTPNotFound,
        409: web.HTTPConflict,
        413: web.HTTPRequestEntityTooLarge,
        415: web.HTTPUnsupportedMediaType,
        422: web.HTTPUnprocessableEntity,
        429: web.HTTPTooManyRequests,
    }
    return classes[status]


def sessions(request: web.Request) -> async_sessionmaker[AsyncSession]:
    return request.app[auth.SESSIONS_KEY]


def engine(request: web.Request) -> AsyncEngine:
    from dialer.app import ENGINE  # dialer.app imports this package: resolve at call time

    return request.app[ENGINE]


def settings(request: web.Request) -> Settings:
    from dialer.app import SETTINGS

    return request.app[SETTINGS]


async def body(request: web.Request, schema: JsonSchema) -> JSON:
    """The request's JSON body, validated against `schema` (400 naming the field otherwise)."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        fail(413, "too_large", f"the body is at most {request.client_max_size} bytes")
    try:
        value = loads_checked(raw or b"null", MAX_JSON_DEPTH)
    except JsonLimitError as exc:
        fail(400, "invalid_request", str(exc), exc.field or None)
    except (ValueError, UnicodeDecodeError):
        fail(400, "invalid_json", "the body is not JSON")
    try:
        validate(value, schema)
    except Invalid as exc:
        fail(400, "invalid_request", str(exc), exc.field or None)
    assert isinstance(value, dict)
    return value


def path_id(request: web.Request, name: str) -> int:
    raw = request.match_info[name]
    if not raw.isdigit() or not 0 < int(raw) <= MAX_ID:
        fail(404, "not_found", f"{name} must be a positive integer")
    return int(raw)


def query_int(
    request: web.Request, name: str, default: int, low: int = 0, high: int = MAX_ID
) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        fail(400, "invalid_request", f"{name}: expected an integer", name)
    if not low <= value <= high:
        fail(400, "invalid_request", f"{name}: between {low} and {high}", name)
    return value


def query_str(request: web.Request, name: str, max_length: int) -> str | None:
    raw = request.query.get(name)
    if raw in (None, ""):
        return None
    if len(raw) > max_length:
        fail(400, "invalid_request", f"{name}: at most {max_length} characters", name)
    return raw


def query_optional_int(request: web.Request, name: str) -> int | None:
    if request.query.get(name) in (None, ""):
        return None
    return query_int(request, name, 0, 1)


def query_time(request: web.Request, name: str) -> dt.datetime | None:
    raw = request.query.get(name)
    if not raw:
        return None
    try:
        value = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
        if value.tzinfo is None:
            fail(400, "invalid_request", f"{name}: needs a time zone (e.g. Z)", name)
        return value.astimezone(dt.UTC)
    except (ValueError, OverflowError):
        fail(400, "invalid_request", f"{name}: an ISO 8601 timestamp with zone", name)


def query_enum(
    request: web.Request, name: str, allowed: Mapping[str, object] | list[str]
) -> str | None:
    raw = request.query.get(name)
    if raw in (None, ""):
        return None
    if raw not in allowed:
        fail(400, "invalid_request", f"{name}: one of {', '.join(allowed)}", name)
    return raw


# OpenAPI building blocks shared by the modules' path fragments.
ERROR_SCHEMA: JsonSchema = {
    "type": "object",
    "properties": {
        "error": {"type": "string"},
        "detail": {"type": "string"},
        "field": {"type": "string"},
    },
    "required": ["error", "detail"],
}


def responses(ok: JsonSchema | None = None, *codes: int, ok_status: int = 200) -> JSON:
    """An operation's responses: the success body plus the listed error statuses."""
    out: JSON = {
        str(ok_status): {
            "description": "OK",
            **({"content": {"application/json": {"schema": ok}}} if ok is not None else {}),
        },
        "401": {"description": "not logged in", "content": _error_content()},
        "403": {"description": "role too low", "content": _error_content()},
    }
    for code in codes:
        out[str(code)] = {"description": _REASONS.get(code, "error"), "content": _error_content()}
    return out


_REASONS = {
    400: "invalid request (the body names the field)",
    404: "not found",
    409: "conflict with the current state",
    413: "too large",
    415: "unsupported media type",
}


def _error_content() -> JSON:
    return {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}


def id_param(name: str, description: str) -> JSON:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID, "example": 1},
    }


def query_param(name: str, schema: JsonSchema, description: str) -> JSON:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


def json_body(schema: JsonSchema) -> JSON:
    return {"required": True, "content": {"application/json": {"schema": schema}}}
