"""`dialer demo`: the self-contained demo (embedded SQLite, simulated PBX, simulated agents).

It owns the command line only; dialer.demo.run does the work.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from dialer import logs
from dialer.demo.run import DemoOptions, run_demo
from dialer.errors import UserError
from dialer.settings import AmiServer, SettingsError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo",
        help="run the self-contained demo",
        description="Run the dialer against a built-in simulated PBX with a fresh embedded "
        "SQLite database, a seeded predictive campaign and 10 simulated agents; print live "
        "figures and a closing report. One agent seat (agent10) is left for you at /agent/ "
        "unless --headless.",
    )
    p.add_argument(
        "--duration", type=float, default=120.0, help="seconds to run (default 120; Ctrl-C ends)"
    )
    p.add_argument(
        "--headless", action="store_true", help="no live figures; all 10 agents are simulated"
    )
    p.add_argument("--json", type=Path, metavar="OUT", help="write the closing report as JSON")
    p.add_argument("--port", type=int, default=8080, help="HTTP port (default 8080; 0: any free)")
    p.add_argument(
        "--workdir",
        type=Path,
        help="directory for the demo's SQLite file (default: a temporary directory)",
    )
    p.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="simulated PBX time scale (1 = real time, 0.5 = calls play twice as fast)",
    )
    p.add_argument("--seed", type=int, default=7, help="random seed of debtors and agents")
    p.add_argument(
        "--asterisk",
        nargs="?",
        const="",
        metavar="AMI_URL",
        help="dial through a real Asterisk running asterisk_conf/ with the testbed instead of "
        "the simulated PBX: ami://USER:SECRET@HOST:PORT (default: $ASTERISK_AMI_URL, which "
        "`sudo scripts/asterisk-sandbox start` prints)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    asterisk_url: str | None = None
    if args.asterisk is not None:
        asterisk_url = args.asterisk or os.environ.get("ASTERISK_AMI_URL", "")
        if not asterisk_url:
            raise UserError(
                "--asterisk: give the AMI URL (ami://USER:SECRET@HOST:PORT) or set "
                "ASTERISK_AMI_URL; `sudo scripts/asterisk-sandbox start` starts a sandbox "
                "running asterisk_conf/ with the testbed and prints it"
            )
        try:
            AmiServer.parse(asterisk_url)
        except SettingsError as exc:
            raise UserError(f"--asterisk: {exc}") from exc
    if args.duration <= 0:
        raise UserError(f"--duration: must be more than 0 seconds, got {args.duration:g}")
    if args.time_scale <= 0:
        raise UserError(f"--time-scale: must be more than 0, got {args.time_scale:g}")
    if args.workdir is not None and not args.workdir.is_dir():
        raise UserError(f"--workdir: {args.workdir} is not a directory")
    logs.configure("text", "WARNING")
    logging.getLogger("dialer.demo").setLevel(logging.INFO)
    options = DemoOptions(
        duration_s=args.duration,
        headless=args.headless,
        json_out=args.json,
        port=args.port,
        workdir=args.workdir,
        time_scale=args.time_scale,
        seed=args.seed,
        asterisk_url=asterisk_url,
    )
    try:
        asyncio.run(run_demo(options))
    except KeyboardInterrupt:
        # Ctrl-C before the demo was running (while it set up): nothing to report.
        print("demo interrupted before it started", file=sys.stderr)
        return 130
    return 0
