"""The one wiring place: builds the service's object graph (database, HTTP routes) from settings.

`dialer serve` and the tests call `build_app`; nothing else constructs these objects.
"""

from __future__ import annotations

import datetime as dt

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from sqlalchemy.ext.asyncio import AsyncEngine

from dialer import __version__, auth
from dialer.agent_service import DbAgentPort, add_agent_routes
from dialer.api.openapi import add_ops_routes
from dialer.api.reports import add_routes as add_report_routes
from dialer.runtime import RUNTIME as RUNTIME_KEY
from dialer.runtime import add_dialing
from dialer.settings import Settings
from dialer.store.db import make_engine, make_sessionmaker
from dialer.store.migrate import check_schema

SETTINGS = web.AppKey("settings", Settings)
ENGINE = web.AppKey("engine", AsyncEngine)


async def healthz(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    try:
        await check_schema(engine)
    except Exception as exc:  # the health check reports, it does not crash
        return web.json_response({"status": "unhealthy", "error": str(exc)}, status=503)
    # With dialing configured: the engine and the connections it needs (AMI) must be up too.
    runtime = request.app.get(RUNTIME_KEY)
    problems = runtime.problems() if runtime is not None else {}
    if problems:
        return web.json_response(
            {"status": "unhealthy", "error": "; ".join(f"{k}: {v}" for k, v in problems.items()),
             "problems": problems},
            status=503,
        )  # fmt: skip
    return web.json_response({"status": "ok", "version": __version__})


async def login(request: web.Request) -> web.Response:
    """POST /api/login {"login", "password"} -> {"token", "agent_id", "role", "name"}."""
    try:
        body = await request.json()
        login_name, password = str(body["login"]), str(body["password"])
        if "\x00" in login_name or "\x00" in password:
            raise ValueError("NUL character")
    except (ValueError, KeyError, TypeError):
        return web.json_response(
            {"error": "invalid_request", "detail": "send JSON with fields login and password"},
            status=400,
        )
    found = await auth.login(
        request.app[auth.SESSIONS_KEY], login_name, password, dt.datetime.now(dt.UTC)
    )
    if found is None:
        return web.json_response(
            {"error": "unauthorized", "detail": "wrong login or password"}, status=401
        )
    token, who = found
    return web.json_response(
        {"token": token, "agent_id": who.agent_id, "role": who.role, "name": who.name}
    )


async def logout(request: web.Request) -> web.Response:
    token = auth.bearer_token(request)
    if token:
        await auth.logout(request.app[auth.SESSIONS_KEY], token)
    return web.json_response({"status": "logged out"})


async def metrics(_request: web.Request) -> web.Response:
    return web.Response(
        body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


async def build_app(settings: Settings, engine: AsyncEngine | None = None) -> web.Application:
    """The aiohttp application. Refuses to build on a schema that is behind."""
    engine = engine or make_engine(settings.database_url)
    await check_schema(engine)
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[SETTINGS] = settings
    app[ENGINE] = engine
    app[auth.SESSIONS_KEY] = make_sessionmaker(engine)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/api/login", login)
    app.router.add_post("/api/logout", logout)
    # Feature route tables, each in its own module (ops API, agents' websocket, ...).
    add_report_routes(app)
    hub = add_agent_routes(app, settings)
    add_ops_routes(app)
    if settings.ami_servers:
        # With Asterisk configured, the service dials: pool, engine and their links to the hub.
        assert isinstance(hub.port, DbAgentPort)
        add_dialing(app, settings, hub.port)
    return app
