"""The OpenAPI 3 document at /api/openapi.json, merged from the route modules' own fragments.

A route module exposes `OPENAPI_PATHS: dict` (paths -> operations), optionally
`OPENAPI_SCHEMAS: dict` (component schemas), and `add_routes(app)`. Adding a module to the API is
adding its name to `MODULES`; optional modules (e.g. reports) are included when importable.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from types import ModuleType

from aiohttp import web

from dialer import __version__
from dialer.api.common import ERROR_SCHEMA, JSON, json_body, reply, responses
from dialer.api.schema import array, integer, obj, string

MODULES: tuple[str, ...] = (
    "dialer.api.campaigns",
    "dialer.api.accounts",
    "dialer.api.dnc",
    "dialer.api.outcomes",
    "dialer.api.agents",
    "dialer.api.phone",
    "dialer.api.evidence",
)
# Modules other engineers own; present when they exist, skipped (not an error) otherwise.
OPTIONAL_MODULES: tuple[str, ...] = ("dialer.api.reports",)
_HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}
DOCUMENT = web.AppKey("openapi_document", dict)

# The core routes dialer.app registers itself, documented here so the document is complete.
CORE_PATHS: JSON = {
    "/api/login": {
        "post": {
            "summary": "Log in; returns a bearer token for the other endpoints",
            "tags": ["auth"],
            "security": [],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "login": {"type": "string", "maxLength": 64},
                                "password": {"type": "string", "maxLength": 200},
                                "cookie": {
                                    "type": "boolean",
                                    "description": "Also set the session and CSRF cookies.",
                                },
                            },
                            "required": ["login", "password"],
                        }
                    }
                },
            },
            "responses": {
                "200": {"description": "token"},
                "400": {"description": "malformed body"},
                "401": {"description": "wrong login or password"},
                "413": {"description": "body over 4 KiB"},
                "429": {"description": "throttled: see the Retry-After header"},
            },
        }
    },
    "/api/login-locks": {
        "get": {
            "summary": "Logins and addresses locked out by failed logins (admin)",
            "tags": ["auth"],
            "responses": responses(
                obj({"locks": array(obj({}, additional=True))}, additional=True)
            ),
        }
    },
    "/api/login-locks/lift": {
        "post": {
            "summary": "Lift the lockout of a login or an address; {} lifts them all (admin)",
            "tags": ["auth"],
            "requestBody": json_body(
                obj({"login": string(64, min_length=1), "address": string(64, min_length=1)})
            ),
            "responses": responses(obj({"lifted": integer()}, additional=True), 400),
        }
    },
}


def load_modules(names: Sequence[str], optional: Sequence[str] = ()) -> list[ModuleType]:
    modules = [importlib.import_module(n) for n in names]
    for name in optional:
        try:
            modules.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise  # the module exists but is broken: say so
    return modules


def build_document(modules: Sequence[ModuleType]) -> JSON:
    """Merge the modules' fragments; a path+method defined twice is a programming error."""
    paths: dict[str, dict[str, object]] = {k: dict(v) for k, v in CORE_PATHS.items()}  # type: ignore[call-overload]
    schemas: dict[str, object] = {"Error": ERROR_SCHEMA}
    for module in modules:
        fragment = getattr(module, "OPENAPI_PATHS", {})
        for path, operations in fragment.items():
            target = paths.setdefault(path, {})
            for method, operation in operations.items():
                if method in _HTTP_METHODS and method in target:
                    raise ValueError(f"{module.__name__}: {method.upper()} {path} defined twice")
                target[method] = operation
        for name, schema in getattr(module, "OPENAPI_SCHEMAS", {}).items():
            if name in schemas and schemas[name] != schema:
                raise ValueError(f"{module.__name__}: component schema {name} defined twice")
            schemas[name] = schema
    for path, operations in paths.items():
        for method, operation in operations.items():
            if method in _HTTP_METHODS and isinstance(operation, dict):
                operation.setdefault("operationId", operation_id(method, path))
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "collections-dialer operations API",
            "version": __version__,
            "description": "Campaigns, accounts, DNC, outcomes and agents. Log in with "
            "POST /api/login and send `Authorization: Bearer TOKEN` (supervisor or admin).",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


def operation_id(method: str, path: str) -> str:
    """`POST /api/campaigns/{campaign_id}/start` -> `postCampaignsByCampaignIdStart`: unique
    because method and path are, stable because both are, for client generators."""
    words = [method.lower()]
    for segment in path.strip("/").split("/"):
        if segment == "api":
            continue
        if segment.startswith("{") and segment.endswith("}"):
            words.append("By")
            segment = segment[1:-1]
        words.extend(part.capitalize() for part in segment.replace("-", "_").split("_") if part)
    return "".join(words)


async def serve_document(request: web.Request) -> web.Response:
    return reply(request.app[DOCUMENT])


def add_ops_routes(
    app: web.Application,
    names: Sequence[str] = MODULES,
    optional: Sequence[str] = OPTIONAL_MODULES,
) -> None:
    """Register every module's routes and the merged document (the one line in dialer.app)."""
    modules = load_modules(names, optional)
    registered = {r.canonical for r in app.router.resources()}
    for module in modules:
        # A module its owner already wired in dialer.app (e.g. reports) is documented only.
        if not registered.intersection(getattr(module, "OPENAPI_PATHS", {})):
            module.add_routes(app)
    app[DOCUMENT] = build_document(modules)
    app.router.add_get("/api/openapi.json", serve_document)
