"""`dialer migrate`: bring the database schema up to date (or to a given revision)."""

from __future__ import annotations

import argparse
import asyncio

from dialer.settings import load_settings
from dialer.store import migrate
from dialer.store.db import make_engine


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "migrate",
        help="upgrade the database schema",
        description="Upgrade the database schema to the latest revision (or --to REV; "
        "--to base empties it). Uses DIALER_DATABASE_URL.",
    )
    p.add_argument("--to", default="head", metavar="REV", help="target revision (default: head)")
    p.add_argument("--show", action="store_true", help="print the current and latest revision only")
    p.set_defaults(func=run)


async def _run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    engine = make_engine(settings.database_url)
    try:
        current = await migrate.current_revision(engine)
        head = migrate.head_revision()
        if args.show:
            print(f"current: {current or '-'}  latest: {head}")
            return 0
        if args.to == "base":
            await migrate.downgrade(engine, "base")
        elif (
            current is not None
            and args.to != "head"
            and args.to != current
            and _is_older(args.to, current)
        ):
            await migrate.downgrade(engine, args.to)
        else:
            await migrate.upgrade(engine, args.to)
        print(f"schema at {await migrate.current_revision(engine) or 'base'} (latest {head})")
        return 0
    finally:
        await engine.dispose()


def _is_older(target: str, current: str) -> bool:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrate.alembic_config())
    return any(rev.revision == target for rev in script.iterate_revisions(current, "base"))


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))
