"""Bulk upsert of imported accounts, their phones and campaign memberships, one batch at a time.

Set-based SQL on the driver connection (binary COPY on Postgres, staging tables on SQLite); the
importer (dialer.importer.load) owns reading and validating the file.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from dialer.store.models import Account, MemberState

# Columns a later row (of the same file or of a later import) may change: its value wins.
_LATER_WINS = (
    "name", "balance", "currency", "days_past_due", "aging_bucket", "cease_communication",
    "attorney_represented",
)  # fmt: skip
# Columns a later row may fill or change but not erase: a known zone is never erased by an
# unknown one. custom_fields merges key by key. An identical row changes nothing (nor updated_at).
_KEPT_WHEN_EMPTY = ("time_zone", "jurisdiction")
# In the order the batch's rows are staged.
_UPDATABLE = (
    "name", "balance", "currency", "days_past_due", "aging_bucket", "time_zone", "jurisdiction",
    "cease_communication", "attorney_represented",
)  # fmt: skip


class PhoneRow(Protocol):
    @property
    def number(self) -> str: ...  # E.164
    @property
    def phone_type(self) -> str: ...
    @property
    def priority(self) -> int: ...
    @property
    def time_zone(self) -> str | None: ...


class AccountRow(Protocol):
    """What a validated row carries (dialer.importer.parse.AccountRecord)."""

    @property
    def external_ref(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def balance(self) -> Decimal: ...
    @property
    def currency(self) -> str: ...
    @property
    def days_past_due(self) -> int: ...
    @property
    def aging_bucket(self) -> str: ...
    @property
    def time_zone(self) -> str | None: ...
    @property
    def jurisdiction(self) -> str | None: ...
    @property
    def cease_communication(self) -> bool: ...
    @property
    def attorney_represented(self) -> bool: ...
    @property
    def phones(self) -> Sequence[PhoneRow]: ...
    @property
    def custom_fields(self) -> dict[str, str]: ...


@dataclass(slots=True)
class WriteCounts:
    accounts_created: int = 0
    accounts_updated: int = 0
    accounts_unchanged: int = 0  # already there with the same values
    phones_added: int = 0
    memberships_added: int = 0


def _changed(dialect: str) -> str:
    differs = "IS DISTINCT FROM" if dialect == "postgresql" else "IS NOT"
    checks = [f"accounts.{c} {differs} excluded.{c}" for c in _LATER_WINS]
    checks += [
        f"(excluded.{c} IS NOT NULL AND accounts.{c} {differs} excluded.{c})"
        for c in _KEPT_WHEN_EMPTY
    ]
    if dialect == "postgresql":
        checks.append("NOT (CAST(accounts.custom_fields AS jsonb) @> "
                      "CAST(excluded.custom_fields AS jsonb))")  # fmt: skip
    else:
        checks.append(f"{_merged_fields('sqlite')} IS NOT json(accounts.custom_fields)")
    return " OR ".join(checks)


def _merged_fields(dialect: str) -> str:
    if dialect == "postgresql":
        return (
            "CAST(CAST(accounts.custom_fields AS jsonb) || CAST(excluded.custom_fields AS jsonb) "
            "AS json)"
        )
    return "json_patch(accounts.custom_fields, excluded.custom_fields)"


def _set(dialect: str) -> str:
    return ", ".join(
        [f"{c} = excluded.{c}" for c in _LATER_WINS]
        + [f"{c} = COALESCE(excluded.{c}, accounts.{c})" for c in _KEPT_WHEN_EMPTY]
        + [f"custom_fields = {_merged_fields(dialect)}"]
    )


_ACCOUNT_COLUMNS = ("external_ref", *_UPDATABLE, "custom_fields")
# The batch reaches Postgres by binary COPY (into a temporary table for accounts, which are
# upserted from there; straight into phones for new accounts), the cheapest way in for both sides.
_PG_STAGING = (
    "CREATE TEMP TABLE IF NOT EXISTS import_accounts (ord int4, external_ref text, name text, "
    "balance numeric, currency text, days_past_due int4, aging_bucket text, time_zone text, "
    "jurisdiction text, cease_communication bool, attorney_represented bool, custom_fields text) "
    "ON COMMIT DELETE ROWS"
)
_PG_UPSERT = (
    "INSERT INTO accounts (source, " + ", ".join(_ACCOUNT_COLUMNS) + ", created_at, updated_at) "
    "SELECT $1::text, " + ", ".join(f"s.{c}" for c in _ACCOUNT_COLUMNS[:-1])
    + ", CAST(s.custom_fields AS json), $2::timestamptz, $2::timestamptz "
    "FROM pg_temp.import_accounts s ORDER BY s.ord "
    "ON CONFLICT (source, external_ref) DO UPDATE SET " + _set("postgresql")
    + ", updated_at = $2::timestamptz "
    "WHERE " + _changed("postgresql") + " RETURNING external_ref, id, xmax = 0"
)  # fmt: skip
# While a big file goes in, the statistics still describe the small table it was (autovacuum
# analyzes later), and the planner would hash or scan every account of the source to match one
# batch: quadratic over the file. A LATERAL lookup with LIMIT is an index probe per row whatever
# the statistics say.
_PG_EXISTING = (
    "SELECT s.external_ref, a.id FROM pg_temp.import_accounts s "
    "CROSS JOIN LATERAL (SELECT a.id FROM accounts a WHERE a.source = $1::text "
    "AND a.external_ref = s.external_ref LIMIT 1) AS a"
)
_PHONE_COLUMNS = (
    "account_id", "number", "phone_type", "priority", "valid", "dnc", "time_zone", "created_at",
)  # fmt: skip
# Phones of accounts this transaction created cannot conflict (those rows are not committed and a
# record's numbers are distinct): they are copied in. Those of existing accounts may be known.
# Phones of accounts already there, merged: a number the account has keeps its row (a zone it
# lacked is filled in); new numbers are appended after the account's, numbered on in file order.
_PG_MORE_PHONES = (
    "WITH p AS (SELECT * FROM unnest($2::int8[], $3::text[], $4::text[], $5::int4[], $6::text[]) "
    "WITH ORDINALITY AS p(account_id, number, phone_type, priority, time_zone, ord)), "
    "filled AS (UPDATE phones e SET time_zone = p.time_zone FROM p "
    "WHERE e.account_id = p.account_id AND e.number = p.number AND e.time_zone IS NULL "
    "AND p.time_zone IS NOT NULL RETURNING e.account_id), "
    "added AS (INSERT INTO phones (" + ", ".join(_PHONE_COLUMNS) + ") "
    "SELECT p.account_id, p.number, p.phone_type, "
    "COALESCE((SELECT max(e.priority) FROM phones e WHERE e.account_id = p.account_id), 0) "
    "+ row_number() OVER (PARTITION BY p.account_id ORDER BY p.priority), "
    "true, false, p.time_zone, $1::timestamptz FROM p WHERE NOT EXISTS "
    "(SELECT 1 FROM phones e WHERE e.account_id = p.account_id AND e.number = p.number) "
    "ORDER BY p.ord ON CONFLICT (account_id, number) DO NOTHING RETURNING account_id) "
    "SELECT account_id, true FROM added UNION ALL SELECT account_id, false FROM filled"
)
_PG_MEMBERS = (
    "INSERT INTO campaign_accounts (campaign_id, account_id, state, priority, attempts, added_at) "
    "SELECT $1::int8, account_id, $2::text, 0, 0, $3::timestamptz "
    "FROM unnest($4::int8[]) AS s(account_id) "
    "ON CONFLICT (campaign_id, account_id) DO NOTHING"
)
# SQLite has no arrays: the batch goes to untyped (no affinity, values kept as bound) temporary
# tables of this connection, then one statement per table moves it.
# They are emptied at the end of the batch, so no debtor data stays on a pooled connection (a
# failed batch's rows go with its rollback).
_SQLITE_STAGING = (
    "CREATE TEMP TABLE IF NOT EXISTS import_accounts (" + ", ".join(_ACCOUNT_COLUMNS) + ")",
    "CREATE TEMP TABLE IF NOT EXISTS import_phones "
    "(external_ref, number, phone_type, priority, time_zone)",
)
_SQLITE_UNSTAGE = ("DELETE FROM temp.import_accounts", "DELETE FROM temp.import_phones")
_SQLITE_STAGE_ACCOUNTS = (
    "INSERT INTO temp.import_accounts VALUES (" + ", ".join("?" * len(_ACCOUNT_COLUMNS)) + ")"
)
_SQLITE_STAGE_PHONES = "INSERT INTO temp.import_phones VALUES (?, ?, ?, ?, ?)"
_SQLITE_EXISTING = (
    "SELECT count(*) FROM temp.import_accounts s "
    "JOIN accounts a ON a.source = ? AND a.external_ref = s.external_ref"
)
# "WHERE true" keeps SQLite from reading ON CONFLICT as part of the SELECT's join.
_SQLITE_UPSERT = (
    "INSERT INTO accounts (source, " + ", ".join(_ACCOUNT_COLUMNS) + ", created_at, updated_at) "
    "SELECT ?, " + ", ".join(_ACCOUNT_COLUMNS) + ", ?, ? FROM temp.import_accounts "
    "WHERE true ORDER BY rowid "
    "ON CONFLICT (source, external_ref) DO UPDATE SET " + _set("sqlite") + ", updated_at = ? "
    "WHERE " + _changed("sqlite")
)  # fmt: skip
# Only new accounts in the batch: their numbers (distinct, numbered 1..n) cannot be known.
_SQLITE_PHONES = (
    "INSERT INTO phones (account_id, number, phone_type, priority, valid, dnc, time_zone, "
    "created_at) SELECT a.id, p.number, p.phone_type, p.priority, 1, 0, p.time_zone, ? "
    "FROM temp.import_phones p "
    "JOIN accounts a ON a.source = ? AND a.external_ref = p.external_ref "
    "WHERE true ORDER BY p.rowid ON CONFLICT (account_id, number) DO NOTHING"
)
# Some accounts already there: phones merged as on Postgres (_PG_MORE_PHONES).
_SQLITE_FILL_ZONES = (
    "UPDATE phones SET time_zone = s.time_zone FROM (SELECT a.id AS account_id, p.number, "
    "p.time_zone FROM temp.import_phones p "
    "JOIN accounts a ON a.source = ? AND a.external_ref = p.external_ref "
    "WHERE p.time_zone IS NOT NULL) AS s "
    "WHERE phones.account_id = s.account_id AND phones.number = s.number "
    "AND phones.time_zone IS NULL RETURNING phones.account_id"
)
_SQLITE_MORE_PHONES = (
    "INSERT INTO phones (account_id, number, phone_type, priority, valid, dnc, time_zone, "
    "created_at) SELECT a.id, p.number, p.phone_type, "
    "COALESCE((SELECT max(e.priority) FROM phones e WHERE e.account_id = a.id), 0) "
    "+ row_number() OVER (PARTITION BY a.id ORDER BY p.priority), 1, 0, p.time_zone, ? "
    "FROM temp.import_phones p "
    "JOIN accounts a ON a.source = ? AND a.external_ref = p.external_ref "
    "WHERE NOT EXISTS (SELECT 1 FROM phones e WHERE e.account_id = a.id AND e.number = p.number) "
    "ORDER BY p.rowid ON CONFLICT (account_id, number) DO NOTHING RETURNING account_id"
)
_SQLITE_MEMBERS = (
    "INSERT INTO campaign_accounts (campaign_id, account_id, state, priority, attempts, added_at) "
    "SELECT ?, a.id, ?, 0, 0, ? FROM temp.import_accounts s "
    "JOIN accounts a ON a.source = ? AND a.external_ref = s.external_ref "
    "WHERE true ORDER BY s.rowid ON CONFLICT (campaign_id, account_id) DO NOTHING"
)


def _inserted(status: str) -> int:
    """Rows written, from a Postgres command tag such as "INSERT 0 1234"."""
    return int(status.rsplit(" ", 1)[-1])


async def write_accounts(
    conn: AsyncConnection,
    records: Sequence[AccountRow],
    *,
    source: str,
    campaign_id: int | None,
    now: dt.datetime,
) -> WriteCounts:
    """One batch of accounts (distinct external references) upserted in the caller's
    transaction, with their phones and campaign memberships, as a few set-based statements on
    the driver connection: per-row statement building through SQLAlchemy cost more than the
    database work. Values are bound exactly as the ORM types would bind them (see _bind)."""
    dialect = conn.dialect
    counts = WriteCounts()
    if dialect.name == "postgresql":
        # Also opens the driver's transaction, which the statements below then join. asyncpg
        # prepares statements; a generic plan made while the table was nearly empty would be kept
        # as the table grows.
        await conn.execute(select(func.set_config("plan_cache_mode", "force_custom_plan", True)))
    raw = await conn.get_raw_connection()
    driver: Any = raw.driver_connection
    stamp = _bind(Account.created_at, dialect, now)
    serialize: Callable[[Any], str] = dialect._json_serializer or json.dumps
    # Extra columns repeat across rows (product, branch): each distinct set is serialized once
    # per batch.
    texts: dict[tuple[tuple[str, str], ...], str] = {}

    def dumps(fields: dict[str, str]) -> str:
        if len(fields) > 8:
            return serialize(fields)  # wide files: rows rarely repeat, hashing them costs more
        key = tuple(fields.items())
        text = texts.get(key)
        if text is None:
            text = texts[key] = serialize(fields)
        return text

    if dialect.name == "postgresql":
        await driver.execute(_PG_STAGING)
        await driver.copy_records_to_table(
            "import_accounts",
            schema_name="pg_temp",
            records=[
                (
                    i, r.external_ref, r.name, r.balance, r.currency, r.days_past_due,
                    r.aging_bucket, r.time_zone, r.jurisdiction, r.cease_communication,
                    r.attorney_represented, dumps(r.custom_fields),
                )
                for i, r in enumerate(records)
            ],
        )  # fmt: skip
        # The ids come back from the upsert (rows it wrote) and, only for rows it left
        # unchanged, from a lookup; they go out with the phones and memberships.
        changed_rows = await driver.fetch(_PG_UPSERT, source, stamp)
        written = len(changed_rows)
        # xmax = 0: the row version is this statement's insert, not an update.
        created_here = {ref for ref, _id, inserted in changed_rows if inserted}
        existing = len(records) - len(created_here)
        ids: dict[str, int] = {}
        if written < len(records):
            ids.update(await driver.fetch(_PG_EXISTING, source))
        ids.update((ref, account_id) for ref, account_id, _inserted in changed_rows)
        # The custom plans were for the statements above; the foreign-key check of every phone
        # row is a cached plan too, and replanning it per row would cost more than the insert.
        await driver.execute("SET LOCAL plan_cache_mode TO DEFAULT")
        fresh: list[tuple[object, ...]] = []
        other: list[list[Any]] = [[], [], [], [], []]
        for r in records:
            account_id = ids[r.external_ref]
            if r.external_ref in created_here:
                fresh.extend(
                    (
                        account_id,
                        p.number,
                        p.phone_type,
                        p.priority,
                        True,
                        False,
                        p.time_zone,
                        stamp,
                    )
                    for p in r.phones
                )
                continue
            for p in r.phones:
                other[0].append(account_id)
                other[1].append(p.number)
                other[2].append(p.phone_type)
                other[3].append(p.priority)
                other[4].append(p.time_zone)
        if fresh:
            status = await driver.copy_records_to_table(
                "phones", records=fresh, columns=_PHONE_COLUMNS
            )
            counts.phones_added += _inserted(status)
        # Accounts this batch changed: rows the upsert updated, accounts given phones or zones.
        changed = {account_id for _ref, account_id, inserted in changed_rows if not inserted}
        if other[0]:
            for account_id, added in await driver.fetch(_PG_MORE_PHONES, stamp, *other):
                counts.phones_added += bool(added)
                changed.add(account_id)
        if campaign_id is not None:
            status = await driver.execute(
                _PG_MEMBERS, campaign_id, MemberState.ACTIVE.value, stamp,
                [ids[r.external_ref] for r in records],
            )  # fmt: skip
            counts.memberships_added += _inserted(status)
    else:
        for statement in _SQLITE_STAGING:
            await driver.execute(statement)
        accounts = [
            (
                r.external_ref, r.name, _money_text(r.balance), r.currency, r.days_past_due,
                r.aging_bucket, r.time_zone, r.jurisdiction, r.cease_communication,
                r.attorney_represented, dumps(r.custom_fields),
            )
            for r in records
        ]  # fmt: skip
        await driver.executemany(_SQLITE_STAGE_ACCOUNTS, accounts)
        phone_rows = [
            (r.external_ref, p.number, p.phone_type, p.priority, p.time_zone)
            for r in records
            for p in r.phones
        ]
        await driver.executemany(_SQLITE_STAGE_PHONES, phone_rows)
        async with driver.execute(_SQLITE_EXISTING, (source,)) as cursor:
            existing = int((await cursor.fetchone())[0])
        created = len(records) - existing
        if existing == 0:
            # Only new accounts (a first import): the plain statements, nothing to merge.
            async with driver.execute(_SQLITE_UPSERT, (source, stamp, stamp, stamp)) as cursor:
                pass
            async with driver.execute(_SQLITE_PHONES, (stamp, source)) as cursor:
                counts.phones_added += cursor.rowcount
            updated = 0
        else:
            # Accounts this batch changed: rows the upsert wrote (created or updated), accounts
            # given phones or zones.
            async with driver.execute(
                _SQLITE_UPSERT + " RETURNING id", (source, stamp, stamp, stamp)
            ) as cursor:
                changed = {row[0] for row in await cursor.fetchall()}
            async with driver.execute(_SQLITE_FILL_ZONES, (source,)) as cursor:
                changed.update(row[0] for row in await cursor.fetchall())
            async with driver.execute(_SQLITE_MORE_PHONES, (stamp, source)) as cursor:
                added = [row[0] for row in await cursor.fetchall()]
            counts.phones_added += len(added)
            changed.update(added)
            updated = len(changed) - created
        if campaign_id is not None:
            async with driver.execute(
                _SQLITE_MEMBERS, (campaign_id, MemberState.ACTIVE.value, stamp, source)
            ) as cursor:
                counts.memberships_added += cursor.rowcount
        for statement in _SQLITE_UNSTAGE:
            await driver.execute(statement)
        counts.accounts_created = created
        counts.accounts_updated = updated
        counts.accounts_unchanged = existing - updated
        return counts
    counts.accounts_created = len(records) - existing
    counts.accounts_updated = len(changed)
    counts.accounts_unchanged = existing - counts.accounts_updated
    return counts


def _bind(column: Any, dialect: Any, value: object) -> Any:
    """`value` as SQLAlchemy would bind it for `column` (e.g. UTC text on SQLite)."""
    process = column.type.bind_processor(dialect)
    return process(value) if process else value


def _money_text(amount: Decimal) -> str:
    # Money on SQLite is its text; parsing already quantized the amount to cents.
    return str(amount)
