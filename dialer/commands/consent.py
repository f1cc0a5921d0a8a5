"""`dialer consent add|revoke|list`: consents to automatic calls to a number (TCPA).

A campaign with `wireless_consent_required` lets the dialer itself launch calls to a wireless (or
possibly wireless) number only while a consent for it is on record; otherwise only an agent's
click in a preview campaign may call it. Numbers are normalised to E.164 like imported phones.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt

from sqlalchemy import or_, select, update

from dialer.errors import UserError
from dialer.importer.parse import normalise_phone
from dialer.settings import load_settings
from dialer.store.db import make_engine, make_sessionmaker
from dialer.store.migrate import SchemaBehindError, check_schema
from dialer.store.models import Consent


def _when(value: str | None, name: str) -> dt.datetime:
    if not value:
        return dt.datetime.now(dt.UTC)
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise UserError(f"{name}: expected YYYY-MM-DD or an ISO timestamp") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("consent", help="record, revoke and list consents to automatic calls")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="record a consent for a number")
    add.add_argument("number")
    add.add_argument("--source", default="internal", help="where it came from (default internal)")
    add.add_argument("--scope", default="autodialed_calls", help="what it covers")
    add.add_argument("--given", metavar="WHEN", help="YYYY-MM-DD or ISO timestamp; default now")
    rev = actions.add_parser("revoke", help="revoke every active consent of a number")
    rev.add_argument("number")
    rev.add_argument("--at", metavar="WHEN", help="YYYY-MM-DD or ISO timestamp; default now")
    lst = actions.add_parser("list", help="list consents")
    lst.add_argument("--all", action="store_true", help="include revoked ones")
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
        sessions = make_sessionmaker(engine)
        if args.action in ("add", "revoke"):
            try:
                number = normalise_phone(args.number, settings.default_region)[0]
            except ValueError as exc:
                raise UserError(f"number: {exc}") from exc
            async with sessions.begin() as s:
                if args.action == "add":
                    given = _when(args.given, "--given")
                    s.add(Consent(number=number, scope=args.scope, source=args.source,
                                  given_at=given, created_at=now))  # fmt: skip
                    print(f"{number}: consent recorded from {given.isoformat()}")
                else:
                    at = _when(args.at, "--at")
                    result = await s.execute(
                        update(Consent)
                        .where(Consent.number == number, Consent.revoked_at.is_(None))
                        .values(revoked_at=at)
                    )
                    print(f"{number}: {result.rowcount} consent(s) revoked")  # type: ignore[attr-defined]
            return 0
        query = select(Consent).order_by(Consent.id)
        if not args.all:
            query = query.where(or_(Consent.revoked_at.is_(None), Consent.revoked_at > now))
        async with sessions() as s:
            for c in (await s.execute(query)).scalars():
                until = c.revoked_at.isoformat() if c.revoked_at else "-"
                print(f"{c.number}\t{c.scope}\t{c.source}\tgiven {c.given_at.isoformat()}\t"
                      f"revoked {until}")  # fmt: skip
        return 0
    finally:
        await engine.dispose()


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))
