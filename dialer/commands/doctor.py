"""`dialer doctor`: checks everything a shift needs and says how to fix each failure.

Database and schema, each Asterisk server (login, dialplan, trunk, a test call), every active
agent's phone, each running campaign (caller ID, profile, pacing, dialable accounts and what
blocks the rest). Exit status 1 when anything would stop the dialer from calling.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging

from dialer.doctor import run_checks
from dialer.settings import load_settings
from dialer.store.db import make_engine


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "doctor",
        help="check the database, Asterisk, agents' phones and campaigns before a shift",
        description="Check everything a shift needs and say how to fix each failure: the "
        "database and its schema; each server in DIALER_AMI_SERVERS (login, the dialplan "
        "contexts the dialer drives, the trunk, a test call into [dialer-doctor]); every active "
        "agent's phone endpoint; each running campaign's caller ID, profile, pacing settings "
        "and dialable accounts, with the accounts each compliance rule blocks right now. "
        "Exit status 0 when all is well, 1 when something stops the dialer from calling.",
    )
    p.add_argument(
        "--campaign",
        type=int,
        action="append",
        metavar="ID",
        help="check this campaign whatever its state (repeatable; default: the running ones)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object instead of text")
    p.add_argument(
        "--timeout", type=float, default=5.0, help="seconds per Asterisk login and action"
    )
    p.set_defaults(func=run)


async def _run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    # The report says what failed; the AMI client's own reconnect warnings would repeat it.
    logging.getLogger("dialer.telephony").setLevel(logging.ERROR)
    engine = make_engine(settings.database_url)
    try:
        report = await run_checks(
            engine, settings.ami_servers, campaigns=args.campaign, timeout_s=args.timeout
        )
    finally:
        await engine.dispose()
    if args.json:
        print(
            json.dumps(
                {"ok": not report.failed, "checks": [c.as_json() for c in report.checks]},
                ensure_ascii=False,
            )
        )
    else:
        print(report.text())
    return 1 if report.failed else 0


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))
