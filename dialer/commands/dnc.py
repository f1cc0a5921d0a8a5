"""`dialer dnc add|import|list`: the do-not-call list, with optional expiry per number.

Numbers are normalised to E.164 with the settings' default region, like imported phones.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
from pathlib import Path

from sqlalchemy import or_, select

from dialer.errors import UserError
from dialer.importer.dnc import add_numbers, import_dnc, parse_expiry
from dialer.importer.parse import normalise_phone
from dialer.settings import load_settings
from dialer.store.db import make_engine, make_sessionmaker
from dialer.store.migrate import SchemaBehindError, check_schema
from dialer.store.models import DncEntry


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("dnc", help="add, import and list do-not-call numbers")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="add one number")
    add.add_argument("number")
    add.add_argument("--expires", metavar="DATE", help="YYYY-MM-DD or ISO timestamp; default never")
    add.add_argument("--reason")
    imp = actions.add_parser("import", help="import a CSV list: number[,expires_at][,reason]")
    imp.add_argument("file")
    for a in (add, imp):
        a.add_argument("--source", default="internal", help="who asked (default internal)")
        a.add_argument("--campaign", type=int, metavar="ID", help="only for this campaign")
    lst = actions.add_parser("list", help="list active entries")
    lst.add_argument("--all", action="store_true", help="include expired entries")
    p.set_defaults(func=run)


async def _run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    engine = make_engine(settings.database_url)
    now = dt.datetime.now(dt.UTC)
    try:
        try:
            await check_schema(engine)
        except SchemaBehindError as exc:
            raise UserError(str(exc)) from exc
        if args.action == "add":
            try:
                number = normalise_phone(args.number, settings.default_region)[0]
                expires = parse_expiry(args.expires or "")
            except ValueError as exc:
                raise UserError(str(exc)) from exc
            async with make_sessionmaker(engine).begin() as s:
                added, _ = await add_numbers(
                    s, [(number, expires, args.reason)], source=args.source,
                    campaign_id=args.campaign, now=now,
                )  # fmt: skip
            print(f"{number}: {'added' if added else 'updated'}")
        elif args.action == "import":
            with Path(args.file).open("rb") as handle:  # noqa: ASYNC230 - a CLI reading its input file
                report = await import_dnc(
                    engine, handle, source=args.source,
                    default_region=settings.default_region, campaign_id=args.campaign,
                )  # fmt: skip
            print(f"{report.rows} rows: {report.added} added, {report.updated} updated, "
                  f"{len(report.rejected)} rejected")  # fmt: skip
            for r in report.rejected[:20]:
                print(f"  line {r['row']}: {r['reason']}")
        else:
            query = select(DncEntry).order_by(DncEntry.id)
            if not args.all:
                query = query.where(or_(DncEntry.expires_at.is_(None), DncEntry.expires_at > now))
            async with make_sessionmaker(engine)() as s:
                for e in (await s.execute(query)).scalars():
                    until = e.expires_at.isoformat() if e.expires_at else "never"
                    print(f"{e.number}\t{e.source}\t{e.campaign_id or '-'}\tuntil {until}")
    finally:
        await engine.dispose()
    return 0


def run(args: argparse.Namespace) -> int:
    if args.action == "import" and not Path(args.file).is_file():
        raise UserError(f"{args.file}: no such file")
    return asyncio.run(_run(args))
