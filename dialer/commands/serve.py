"""`dialer serve`: the production entry point (HTTP API, agents' websockets, metrics)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal

from aiohttp import web

from dialer import logs
from dialer.app import build_app
from dialer.errors import UserError
from dialer.settings import load_settings
from dialer.store.db import make_engine
from dialer.store.migrate import SchemaBehindError

log = logging.getLogger("dialer.serve")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="run the dialer service",
        description="Run the dialer: HTTP API, agent desktop and websockets, /metrics, and with "
        "DIALER_AMI_SERVERS set the engine that dials. Refuses to start on a database schema "
        "that is behind (run `dialer migrate`); `dialer doctor` checks the rest of a set-up.",
    )
    p.add_argument("--host", help="bind address (default: DIALER_HTTP_HOST)")
    p.add_argument("--port", type=int, help="port (default: DIALER_HTTP_PORT)")
    p.set_defaults(func=run)


async def _serve(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    logs.configure(settings.log_format, settings.log_level)
    engine = make_engine(settings.database_url)
    try:
        app = await build_app(settings, engine)
    except SchemaBehindError as exc:
        await engine.dispose()
        raise UserError(str(exc)) from exc
    runner = web.AppRunner(app, access_log_class=logs.AccessLog)
    await runner.setup()
    host, port = args.host or settings.http_host, args.port or settings.http_port
    await web.TCPSite(runner, host, port).start()
    log.info("dialer listening on http://%s:%s", host, port)
    if not settings.ami_servers:
        # Said once at start, and by /healthz ("degraded") for as long as it lasts.
        log.warning(
            "no Asterisk server configured (DIALER_AMI_SERVERS): this process serves the API "
            "and desktops but dials nothing; `dialer doctor` checks a set-up"
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await runner.cleanup()
    await engine.dispose()
    return 0


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_serve(args))
