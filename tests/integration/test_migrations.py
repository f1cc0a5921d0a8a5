"""Migrations go up, down to base and up again on both backends, and match the models exactly."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect
from sqlalchemy.ext.asyncio import AsyncEngine

from dialer.store import migrate
from dialer.store.db import make_engine
from dialer.store.models import Base
from tests.fixtures.postgres import PgServer

pytestmark = pytest.mark.postgres


@pytest_asyncio.fixture(params=["sqlite", "postgres"])
async def empty_engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[AsyncEngine]:
    if request.param == "sqlite":
        engine = make_engine(f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('mig') / 'm.sqlite3'}")
        yield engine
        await engine.dispose()
        return
    server: PgServer = request.getfixturevalue("pg_server")
    url = await server.create_database()
    engine = make_engine(url)
    yield engine
    await engine.dispose()
    await server.drop_database(url)


async def _tables(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        names = await conn.run_sync(lambda c: inspect(c).get_table_names())
    return set(names) - {"alembic_version"}


def _diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def test_migrations_go_up_down_to_base_and_up_again(empty_engine: AsyncEngine) -> None:
    expected = set(Base.metadata.tables)
    await migrate.upgrade(empty_engine)
    assert await _tables(empty_engine) == expected
    assert await migrate.current_revision(empty_engine) == migrate.head_revision()
    await migrate.downgrade(empty_engine, "base")
    assert await _tables(empty_engine) == set()
    assert await migrate.current_revision(empty_engine) is None
    await migrate.upgrade(empty_engine)
    assert await _tables(empty_engine) == expected


async def test_migrated_schema_matches_the_models(empty_engine: AsyncEngine) -> None:
    await migrate.upgrade(empty_engine)
    async with empty_engine.connect() as conn:
        diff = await conn.run_sync(_diff)
    assert diff == [], f"models and migrations drifted apart: {diff}"


async def test_schema_check_refuses_a_database_that_is_behind(empty_engine: AsyncEngine) -> None:
    with pytest.raises(migrate.SchemaBehindError, match="run `dialer migrate`"):
        await migrate.check_schema(empty_engine)
    await migrate.upgrade(empty_engine)
    await migrate.check_schema(empty_engine)
