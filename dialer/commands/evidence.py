"""`dialer evidence export|verify|prune`: the record of every claim decision.

Export per account or date range as CSV or JSON; verify walks each campaign's hash chain and
re-evaluates every record from its stored inputs; prune applies the retention setting.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from pathlib import Path
from typing import TextIO

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dialer.compliance.evidence import chain_hash, replay
from dialer.errors import UserError
from dialer.evidence_export import render
from dialer.settings import load_settings
from dialer.store import evidence
from dialer.store.db import make_engine, make_sessionmaker
from dialer.store.migrate import SchemaBehindError, check_schema


def _day(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date YYYY-MM-DD") from exc


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "evidence",
        help="export, verify and prune the evidence record of every claim decision",
        description="Every claim decision, allowed or refused, is recorded with its inputs and "
        "each rule's verdict, hash-chained per campaign.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    exp = actions.add_parser("export", help="records of one account and/or a date range")
    exp.add_argument("--account", type=int, metavar="ID", help="only this account")
    exp.add_argument("--campaign", type=int, metavar="ID", help="only this campaign")
    exp.add_argument("--from", dest="first", type=_day, metavar="DATE", help="first UTC day")
    exp.add_argument("--to", dest="last", type=_day, metavar="DATE", help="last UTC day")
    exp.add_argument("--format", choices=("csv", "json"), default="csv")
    exp.add_argument("-o", "--output", metavar="FILE", help="default: standard output")
    actions.add_parser(
        "verify",
        help="check every chain (a changed, removed or inserted record is found) and "
        "re-evaluate every record from its stored inputs",
    )
    pr = actions.add_parser("prune", help="delete records past retention")
    pr.add_argument(
        "--older-than", type=int, metavar="DAYS",
        help="default: the evidence_retention_days setting",
    )  # fmt: skip
    p.set_defaults(func=run)


def query_of(args: argparse.Namespace) -> evidence.EvidenceQuery:
    since = None if args.first is None else dt.datetime.combine(args.first, dt.time(), dt.UTC)
    until = (
        None
        if args.last is None
        else dt.datetime.combine(args.last + dt.timedelta(days=1), dt.time(), dt.UTC)
    )
    if since is not None and until is not None and until <= since:
        raise UserError("--to is before --from")
    return evidence.EvidenceQuery(args.account, args.campaign, since, until)


async def _export(
    args: argparse.Namespace, sessions: async_sessionmaker[AsyncSession], out: TextIO
) -> None:
    async with sessions() as s:
        rows = [row async for row in evidence.export(s, query_of(args))]
    out.write(render(rows, args.format))


async def _run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    engine = make_engine(settings.database_url)
    try:
        try:
            await check_schema(engine)
        except SchemaBehindError as exc:
            raise UserError(str(exc)) from exc
        sessions = make_sessionmaker(engine)
        if args.action == "export":
            if args.output:
                with Path(args.output).open("w", newline="") as out:  # noqa: ASYNC230 - CLI output
                    await _export(args, sessions, out)
            else:
                await _export(args, sessions, sys.stdout)
            return 0
        if args.action == "verify":
            async with sessions() as s:
                report = await evidence.verify(s, chain_hash, replay)
            print(f"{report.records} records in {report.chains} chains")
            for record_id, what in report.breaks:
                print(f"  record {record_id if record_id is not None else '-'}: {what}")
            for record_id, what in report.mismatches:
                print(f"  record {record_id}: re-evaluation differs: {what}")
            if report.ok:
                print("ok: every chain is intact and every record re-evaluates to its decision")
                return 0
            return 1
        days = args.older_than if args.older_than is not None else settings.evidence_retention_days
        if days < 0:
            raise UserError("--older-than: a number of days >= 0")
        before = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
        async with sessions.begin() as s:
            deleted = await evidence.prune(s, before)
        print(f"{deleted} records older than {before.date().isoformat()} deleted")
        return 0
    finally:
        await engine.dispose()


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))
