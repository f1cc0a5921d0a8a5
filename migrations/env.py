"""Alembic environment: runs on a connection handed in by `dialer.store.migrate`, or on its own.

Works on Postgres (asyncpg) and SQLite (aiosqlite); batch mode keeps SQLite's ALTERs possible.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection

from dialer.settings import load_settings
from dialer.store.db import make_engine
from dialer.store.models import Base

config = context.config
target_metadata = Base.metadata


def do_run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    url = config.get_main_option("sqlalchemy.url") or load_settings().database_url
    engine = make_engine(url)
    async with engine.begin() as connection:
        await connection.run_sync(do_run_migrations)
    await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run `dialer migrate`")

connection = config.attributes.get("connection")
if connection is not None:
    do_run_migrations(connection)
else:
    asyncio.run(run_async_migrations())
