"""Schema migrations through Alembic, run from code on an async engine.

`dialer migrate` and the tests use these; the service calls `check_schema` before it starts.
"""

from __future__ import annotations

import os
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine


class SchemaBehindError(RuntimeError):
    """The database schema is older than this code expects."""


def migrations_dir() -> Path:
    override = os.environ.get("DIALER_MIGRATIONS_DIR")
    if override:
        return Path(override)
    # Source checkout or editable install: migrations/ sits beside the dialer package.
    return Path(__file__).resolve().parents[2] / "migrations"


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations found in {migrations_dir()}")
    return head


async def _run(engine: AsyncEngine, action: str, target: str) -> None:
    def run(connection: Connection) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = connection
        if action == "upgrade":
            command.upgrade(cfg, target)
        else:
            command.downgrade(cfg, target)

    async with engine.begin() as conn:
        await conn.run_sync(run)


async def upgrade(engine: AsyncEngine, target: str = "head") -> None:
    await _run(engine, "upgrade", target)


async def downgrade(engine: AsyncEngine, target: str = "base") -> None:
    await _run(engine, "downgrade", target)


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())


async def check_schema(engine: AsyncEngine) -> None:
    """Refuse to run on a schema that is behind (or ahead of) this code."""
    current = await current_revision(engine)
    head = head_revision()
    if current != head:
        raise SchemaBehindError(
            f"database schema is at {current or 'nothing (empty database)'}, "
            f"this dialer needs {head}: "
            "run `dialer migrate` first"
        )
