"""`dialer report`: a collections report (per campaign, agent or aging bucket) as CSV or JSON.

Reads the database in the settings; the figures and their definitions live in `dialer.reports`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from pathlib import Path

from dialer import reports
from dialer.errors import UserError
from dialer.settings import load_settings
from dialer.store.db import make_engine
from dialer.store.migrate import SchemaBehindError, check_schema


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "report",
        help="collections report for a range of days, as CSV or JSON",
        description="Dials, contacts, promises-to-pay, kept rate, abandon rate, agent time, "
        "occupancy and list penetration for whole UTC days FROM..TO (inclusive), per campaign, "
        "agent or aging bucket. See the README for each figure's definition.",
    )
    p.add_argument("--campaign", help="only this campaign (id or name); default: all")
    p.add_argument(
        "--from", dest="first_day", required=True, metavar="YYYY-MM-DD", help="first UTC day"
    )
    p.add_argument("--to", dest="last_day", metavar="YYYY-MM-DD", help="default: same as --from")
    p.add_argument("--by", choices=[g.value for g in reports.GroupBy], default="campaign")
    p.add_argument("--format", choices=["csv", "json"], default="csv")
    p.add_argument("--output", "-o", metavar="FILE", help="write here instead of stdout")
    p.set_defaults(func=run)


async def _report(args: argparse.Namespace) -> str:
    first = reports.parse_day("from", args.first_day)
    last = reports.parse_day("to", args.last_day) if args.last_day else first
    settings = load_settings(args.config)
    engine = make_engine(settings.database_url)
    try:
        try:
            await check_schema(engine)
        except SchemaBehindError as exc:
            raise UserError(str(exc)) from exc
        campaign = await reports.resolve_campaign(engine, args.campaign) if args.campaign else None
        query = reports.ReportQuery(first, last, reports.parse_group(args.by), campaign)
        report = await reports.build_report(engine, query, dt.datetime.now(dt.UTC))
    finally:
        await engine.dispose()
    return reports.render(report, args.format)


def run(args: argparse.Namespace) -> int:
    text = asyncio.run(_report(args))
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0
