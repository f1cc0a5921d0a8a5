"""The one wiring place: builds the service's object graph (database, HTTP routes) from settings.

`dialer serve` and the tests call `build_app`; nothing else constructs these objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from sqlalchemy.ext.asyncio import AsyncEngine

from agents_ws.protocol import JsonLimitError, check_tree, loads_checked
from dialer import __version__, auth, metrics
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

log = logging.getLogger("dialer.app")
SETTINGS = web.AppKey("settings", Settings)
ENGINE = web.AppKey("engine", AsyncEngine)

# Request bodies: small for logins, bounded for JSON; uploads (imports) stream with their own cap.
LOGIN_BODY_BYTES = 4 * 1024
JSON_BODY_BYTES = 256 * 1024
STREAMED_UPLOADS = frozenset({"/api/accounts/import", "/api/dnc/import"})
LOOP_LAG_PERIOD_S = 0.25


def _json_error(status: int, code: str, detail: str, field: str | None = None) -> web.Response:
    body: dict[str, str] = {"error": code, "detail": detail}
    if field:
        body["field"] = field
    return web.json_response(body, status=status)


async def healthz(request: web.Request) -> web.Response:
    """503 with the reasons when the process cannot serve or dial as configured: the database or
    its schema unusable, or (with dialing configured) the engine or an AMI connection down. 200
    otherwise, `degraded` with the failing checks when a campaign cannot dial (`dialer doctor`'s
    fast subset: no AMI actions, no account scans)."""
    settings = request.app[SETTINGS]
    runtime = request.app.get(RUNTIME)
    connected = (
        None
        if runtime is None
        else [s.name for s in runtime.pool.servers if s.connection.connected]
    )
    report = await quick_checks(request.app[ENGINE], settings.ami_servers, connected)
    checks = [c.as_json() for c in report.checks]
    problems = {
        c.name: c.detail for c in report.failed if c.name.startswith("database")
    }
    problems.update(runtime.problems() if runtime is not None else {})
    if problems:
        return web.json_response(
            {"status": "unhealthy", "error": "; ".join(f"{k}: {v}" for k, v in problems.items()),
             "problems": problems, "checks": checks},
            status=503,
        )  # fmt: skip
    status = "degraded" if report.failed else "ok"
    return web.json_response({"status": status, "version": __version__, "checks": checks})


def _client_address(request: web.Request) -> str:
    # The socket's peer. Behind a reverse proxy every login shares the proxy's address: set the
    # per-address limit accordingly (forwarded headers are not trusted, anyone can send them).
    return request.remote or "unknown"


async def _read_small(request: web.Request, limit: int) -> bytes | None:
    """The body if it is at most `limit` bytes, else None (read no further than that)."""
    if request.content_length is not None and request.content_length > limit:
        return None
    data = await request.content.read(limit + 1)
    return None if len(data) > limit else data


async def login(request: web.Request) -> web.Response:
    """POST /api/login {"login", "password", "cookie"?} -> {"token", "agent_id", "role", "name"}.

    Throttled per login and per address (429 with Retry-After); with "cookie": true the token is
    also set as an HttpOnly cookie with its CSRF cookie (for cookie-authenticated pages)."""
    raw = await _read_small(request, LOGIN_BODY_BYTES)
    if raw is None:
        metrics.record_login_refused("invalid_request")
        return _json_error(413, "too_large", f"a login body is at most {LOGIN_BODY_BYTES} bytes")
    try:
        body = loads_checked(raw, 2)
        if not isinstance(body, dict):
            raise ValueError("not an object")
        login_name, password = body["login"], body["password"]
        if not isinstance(login_name, str) or not isinstance(password, str):
            raise TypeError("login and password are strings")
        if not 0 < len(login_name) <= 64 or not 0 < len(password) <= auth.MAX_PASSWORD_CHARS:
            raise ValueError("length")
    except (ValueError, KeyError, TypeError):
        metrics.record_login_refused("invalid_request")
        return _json_error(
            400,
            "invalid_request",
            f"send JSON with string fields login (1-64 characters) and password "
            f"(1-{auth.MAX_PASSWORD_CHARS}), no NUL characters",
        )
    throttle = request.app[auth.THROTTLE_KEY]
    address = _client_address(request)
    wait = throttle.retry_after(login_name, address)
    if wait > 0:
        metrics.record_login_refused("locked")
        return _too_many(wait, "too many failed logins: wait, or ask an administrator")
    try:
        found = await auth.login(
            request.app[auth.SESSIONS_KEY],
            login_name,
            password,
            dt.datetime.now(dt.UTC),
            request.app[auth.PASSWORDS_KEY],
        )
    except auth.HasherBusy:
        metrics.record_login_refused("busy")
        return _too_many(1.0, "too many logins at once: retry in a moment")
    if found is None:
        throttle.failed(login_name, address)
        metrics.record_login_refused("wrong_credentials")
        return _json_error(401, "unauthorized", "wrong login or password")
    throttle.succeeded(login_name)
    token, who = found
    response = web.json_response(
        {"token": token, "agent_id": who.agent_id, "role": who.role, "name": who.name}
    )
    if body.get("cookie") is True:
        auth.set_session_cookies(response, token)
    return response


def _too_many(wait: float, detail: str) -> web.Response:
    seconds = max(1, int(wait + 0.999))
    response = _json_error(429, "too_many_requests", f"{detail} (retry after {seconds} s)")
    response.headers["Retry-After"] = str(seconds)
    return response


async def logout(request: web.Request) -> web.Response:
    token = auth.request_token(request)
    if token:
        await auth.logout(request.app[auth.SESSIONS_KEY], token)
    response = web.json_response({"status": "logged out"})
    auth.clear_session_cookies(response)
    return response


@auth.require_role("admin")
async def list_login_locks(request: web.Request) -> web.Response:
    """GET /api/login-locks: the logins and addresses locked out now (admin)."""
    return web.json_response({"locks": request.app[auth.THROTTLE_KEY].locks()})


@auth.require_role("admin")
async def lift_login_locks(request: web.Request) -> web.Response:
    """POST /api/login-locks/lift {"login"?, "address"?}: lift a lockout; {} lifts them all."""
    raw = await _read_small(request, LOGIN_BODY_BYTES)
    try:
        body = loads_checked(raw or b"{}", 2)
        if not isinstance(body, dict) or set(body) - {"login", "address"}:
            raise ValueError("fields")
        login_name, address = body.get("login"), body.get("address")
        if not all(v is None or (isinstance(v, str) and 0 < len(v) <= 64) for v in body.values()):
            raise ValueError("values")
    except ValueError:
        return _json_error(400, "invalid_request", 'send {} or {"login": ...} or {"address": ...}')
    lifted = request.app[auth.THROTTLE_KEY].lift(login_name, address)
    return web.json_response({"lifted": lifted})


async def metrics_page(_request: web.Request) -> web.Response:
    return web.Response(
        body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


@web.middleware
async def input_limits(request: web.Request, handler: auth.Handler) -> web.StreamResponse:
    """Refuse before any handler: bodies over the route's size (by Content-Length; chunked bodies
    stop at the application's client_max_size), and query or path values that no column could
    hold (NUL, lone surrogates), naming the parameter."""
    if request.path not in STREAMED_UPLOADS:
        limit = LOGIN_BODY_BYTES if request.path == "/api/login" else JSON_BODY_BYTES
        if request.content_length is not None and request.content_length > limit:
            return _json_error(413, "too_large", f"the body is at most {limit} bytes")
    for where, values in (("query", request.query), ("path", request.match_info)):
        for name, value in values.items():
            try:
                check_tree({name: value}, 2)
            except JsonLimitError as exc:
                return _json_error(400, "invalid_request", f"{where} {exc}", name[:64])
    return await handler(request)


@web.middleware
async def errors_as_json(request: web.Request, handler: auth.Handler) -> web.StreamResponse:
    """An unexpected fault is a 500 `internal` whose log line names the exception class only:
    a database error's text can quote the row (names, phones, amounts)."""
    try:
        return await handler(request)
    except (web.HTTPException, asyncio.CancelledError):
        raise
    except Exception as exc:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            raise  # the socket may be open already: no HTTP answer fits, aiohttp closes it
        log.error("%s %s failed: %s", request.method, request.rel_url.path, type(exc).__name__)
        return _json_error(500, "internal", "server error: the request was not carried out")


async def _watch_loop_lag(period: float) -> None:
    """How late a timer fires: the loop's stall, which calls and sockets feel (a metric)."""
    loop = asyncio.get_running_loop()
    while True:
        start = loop.time()
        await asyncio.sleep(period)
        metrics.observe_loop_lag(max(0.0, loop.time() - start - period))


async def _process_tasks(app: web.Application) -> AsyncIterator[None]:
    lag = asyncio.create_task(_watch_loop_lag(LOOP_LAG_PERIOD_S), name="loop-lag")
    yield
    lag.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await lag
    await app[auth.PASSWORDS_KEY].aclose()


async def build_app(settings: Settings, engine: AsyncEngine | None = None) -> web.Application:
    """The aiohttp application. Refuses to build on a schema that is behind."""
    engine = engine or make_engine(settings.database_url)
    await check_schema(engine)
    app = web.Application(
        client_max_size=JSON_BODY_BYTES,
        middlewares=[errors_as_json, input_limits, auth.csrf_middleware],
    )
    app[SETTINGS] = settings
    app[ENGINE] = engine
    app[auth.SESSIONS_KEY] = make_sessionmaker(engine)
    app[auth.PASSWORDS_KEY] = auth.PasswordWork()
    app[auth.THROTTLE_KEY] = auth.LoginThrottle(
        per_login=settings.login_failures_per_login,
        per_address=settings.login_failures_per_address,
        window_s=settings.login_lockout_seconds,
        lockout_s=settings.login_lockout_seconds,
    )
    app.cleanup_ctx.append(_process_tasks)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_page)
    app.router.add_post("/api/login", login)
    app.router.add_post("/api/logout", logout)
    app.router.add_get("/api/login-locks", list_login_locks)
    app.router.add_post("/api/login-locks/lift", lift_login_locks)
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
