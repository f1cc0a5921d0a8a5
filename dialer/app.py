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
from dialer.doctor import quick_checks
from dialer.live import add_live_figures
from dialer.runtime import RUNTIME, add_dialing
from dialer.settings import Settings
from dialer.stall import add_stall_watch
from dialer.store.db import make_engine, make_sessionmaker
from dialer.store.migrate import check_schema

SETTINGS = web.AppKey("settings", Settings)
ENGINE = web.AppKey("engine", AsyncEngine)


async def healthz(request: web.Request) -> web.Response:
    """503 when the database or its schema is not usable (the process cannot serve); 200
    otherwise, `degraded` with the failing checks when it cannot dial (`dialer doctor`'s fast
    subset: no AMI actions, no account scans)."""
    settings = request.app[SETTINGS]
    runtime = request.app.get(RUNTIME)
    connected = (
        None
        if runtime is None
        else [s.name for s in runtime.pool.servers if s.connection.connected]
    )
    report = await quick_checks(request.app[ENGINE], settings.ami_servers, connected)
    checks = [c.as_json() for c in report.checks]
    if any(c.name.startswith("database") for c in report.failed):
        error = "; ".join(c.detail for c in report.failed)
        return web.json_response(
            {"status": "unhealthy", "error": error, "checks": checks}, status=503
        )
    status = "degraded" if report.failed else "ok"
    return web.json_response({"status": status, "version": __version__, "checks": checks})


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
        add_stall_watch(app)
        add_live_figures(app)
    return app
