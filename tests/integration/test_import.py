"""Account import on real databases: good rows committed, bad rows explained, re-import inert."""

from __future__ import annotations

import csv
import datetime as dt
import gc
import io
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from dialer.errors import UserError
from dialer.importer import sample
from dialer.importer.columns import load_mapping
from dialer.importer.load import ImportOptions, _GcPause, import_accounts, import_file
from dialer.importer.parse import ParseOptions
from dialer.store.db import make_sessionmaker
from dialer.store.models import Account, Campaign, CampaignAccount, Phone

pytestmark = pytest.mark.postgres


def _csv(rows: list[list[str]], delimiter: str = ",") -> io.BytesIO:
    text = io.StringIO()
    csv.writer(text, delimiter=delimiter).writerows(rows)
    return io.BytesIO(text.getvalue().encode())


async def _count(engine: AsyncEngine, model: type[object]) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(model))).scalar_one())


async def test_10000_rows_with_300_bad_commit_9700_accounts_and_reject_each_bad_row(
    pg_engine: AsyncEngine, tmp_path: Path
) -> None:
    spec = sample.SampleSpec(10_000, bad_count=300)
    source = tmp_path / "accounts.csv"
    with source.open("w", newline="") as f:
        sample.write(f, spec)
    rejects = tmp_path / "rejects.csv"
    report = await import_file(pg_engine, source, ImportOptions(source="bank"), rejects=rejects)

    assert (report.accepted_rows, report.rejected_rows) == (9_700, 300)
    assert await _count(pg_engine, Account) == 9_700
    expected = {i + 1: kind for i, (_, kind) in enumerate(sample.rows(spec), start=1) if kind}
    with rejects.open(newline="") as f:
        lines = [r for r in csv.DictReader(f) if r["action"] == "row rejected"]
    assert {int(r["row"]) for r in lines} == set(expected)
    for r in lines:
        assert r["reason"], r
    named = {(int(r["row"]), r["column"]) for r in lines}
    for line, kind in expected.items():
        assert (line, sample.BAD_KINDS[kind]) in named, (line, kind)


async def test_importing_the_same_file_again_changes_nothing(
    pg_engine: AsyncEngine, tmp_path: Path
) -> None:
    source = tmp_path / "accounts.csv"
    with source.open("w", newline="") as f:
        sample.write(f, sample.SampleSpec(10_000, bad_count=300))
    await import_file(pg_engine, source, ImportOptions(source="bank"))

    async def snapshot() -> list[tuple[object, ...]]:
        async with pg_engine.connect() as conn:
            accounts = (
                await conn.execute(
                    select(
                        Account.id, Account.external_ref, Account.balance, Account.updated_at
                    ).order_by(Account.id)
                )
            ).all()
            phones = (await conn.execute(select(Phone.id, Phone.number).order_by(Phone.id))).all()
        return [tuple(r) for r in accounts] + [tuple(r) for r in phones]

    before = await snapshot()
    again = await import_file(pg_engine, source, ImportOptions(source="bank"))
    assert (again.accounts_created, again.accounts_updated, again.phones_added) == (0, 0, 0)
    assert again.accounts_unchanged == 9_700
    assert await snapshot() == before


async def test_changed_row_updates_its_account_on_reimport(engine: AsyncEngine) -> None:
    header = ["account", "name", "balance", "phone"]
    await import_accounts(
        engine, _csv([header, ["A1", "Ana", "10.00", "(212) 555-0100"]]), ImportOptions()
    )
    report = await import_accounts(
        engine, _csv([header, ["A1", "Ana", "12.50", "(212) 555-0100"]]), ImportOptions()
    )
    assert report.accounts_updated == 1
    async with make_sessionmaker(engine)() as s:
        assert (await s.execute(select(Account.balance))).scalar_one() == Decimal("12.50")


async def test_spanish_headers_semicolons_and_comma_decimals(engine: AsyncEngine) -> None:
    rows = [
        ["Número de cuenta", "Nombre", "Saldo", "Días de mora", "Celular", "Teléfono casa"],
        ["C-1", "Ana Gómez", "1.234.567,89", "45", "300 123 4567", "601 234 5678"],
    ]
    options = ImportOptions(parse=ParseOptions(default_region="CO", decimal=",", currency="COP"))
    report = await import_accounts(engine, _csv(rows, ";"), options)
    assert report.accepted_rows == 1
    async with make_sessionmaker(engine)() as s:
        acc = (await s.execute(select(Account))).scalar_one()
        phones = (await s.execute(select(Phone).order_by(Phone.priority))).scalars().all()
    assert (acc.balance, acc.currency, acc.aging_bucket) == (Decimal("1234567.89"), "COP", "31-60")
    # No zone column: the account has no zone of its own, each phone the one its number pins.
    assert acc.time_zone is None
    assert [p.time_zone for p in phones] == ["America/Bogota", "America/Bogota"]
    assert [(p.number, p.phone_type) for p in phones] == [
        ("+573001234567", "mobile"),
        ("+576012345678", "home"),
    ]


async def test_duplicate_rows_merge_into_one_account_with_all_phones(engine: AsyncEngine) -> None:
    rows = [
        ["account", "name", "balance", "phone"],
        ["A1", "Ana", "10.00", "(212) 555-0100"],
        ["A1", "Ana P.", "11.00", "(212) 555-0199"],
        ["A1", "Ana P.", "11.00", "(212) 555-0100"],
    ]
    report = await import_accounts(engine, _csv(rows), ImportOptions())
    assert report.duplicates_merged == 2
    async with make_sessionmaker(engine)() as s:
        acc = (await s.execute(select(Account))).scalar_one()
        numbers = (await s.execute(select(Phone.number).order_by(Phone.priority))).scalars()
        assert (acc.name, acc.balance) == ("Ana P.", Decimal("11.00"))
        assert list(numbers) == ["+12125550100", "+12125550199"]


async def test_import_into_a_campaign_adds_each_account_once(engine: AsyncEngine) -> None:
    async with make_sessionmaker(engine).begin() as s:
        campaign = Campaign(name="early")
        s.add(campaign)
        await s.flush()
        cid = campaign.id
    rows = [["account", "name", "balance", "phone"], ["A1", "Ana", "1.00", "2125550100"]]
    first = await import_accounts(engine, _csv(rows), ImportOptions(campaign_id=cid))
    second = await import_accounts(engine, _csv(rows), ImportOptions(campaign_id=cid))
    assert (first.memberships_added, second.memberships_added) == (1, 0)
    assert await _count(engine, CampaignAccount) == 1


async def test_import_into_a_missing_campaign_is_refused(engine: AsyncEngine) -> None:
    rows = [["account", "name", "balance", "phone"], ["A1", "Ana", "1.00", "2125550100"]]
    with pytest.raises(UserError, match="campaign 999 does not exist"):
        await import_accounts(engine, _csv(rows), ImportOptions(campaign_id=999))


async def test_mapping_file_names_the_columns(engine: AsyncEngine, tmp_path: Path) -> None:
    mapping = tmp_path / "bank.toml"
    mapping.write_text(
        '[columns]\nexternal_ref = "Contrato"\nname = "Titular"\nbalance = "Deuda total"\n'
        'phones = ["Contacto A", "Contacto B"]\n'
    )
    columns, _ = load_mapping(mapping)
    rows = [
        ["Contrato", "Titular", "Deuda total", "Contacto A", "Contacto B"],
        ["K9", "Luis", "99.90", "3105550100", "2125550100"],
    ]
    report = await import_accounts(engine, _csv(rows), ImportOptions(mapping=columns))
    assert report.accepted_rows == 1 and await _count(engine, Phone) == 2


async def test_header_without_a_balance_column_is_refused_with_the_accepted_names(
    engine: AsyncEngine,
) -> None:
    with pytest.raises(UserError, match="no column for balance; accepted names: balance"):
        await import_accounts(engine, _csv([["account", "name", "phone"]]), ImportOptions())


async def test_one_bad_phone_among_good_ones_keeps_the_row_and_is_reported(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    rows = [
        ["account", "name", "balance", "phone", "phone2"],
        ["A1", "Ana", "1.00", "x", "2125550100"],
    ]
    rejects = tmp_path / "r.csv"
    report = await import_accounts(engine, _csv(rows), ImportOptions(), rejects=rejects)
    assert (report.accepted_rows, report.warnings) == (1, 1)
    assert '2,phone,not a phone number,"value dropped, row kept"' in rejects.read_text()


async def test_parsing_in_a_worker_process_gives_the_same_result(
    sqlite_engine: AsyncEngine, tmp_path: Path
) -> None:
    source = tmp_path / "accounts.csv"
    with source.open("w", newline="") as f:
        sample.write(f, sample.SampleSpec(3_000, bad_count=30))
    rejects = tmp_path / "rejects.csv"
    report = await import_file(
        sqlite_engine, source, ImportOptions(workers=1, batch_rows=500), rejects=rejects
    )
    assert (report.accepted_rows, report.rejected_rows) == (2_970, 30)
    assert await _count(sqlite_engine, Account) == 2_970
    rows = [line.split(",")[0] for line in rejects.read_text().splitlines()[1:]]
    assert rows == sorted(rows, key=int)  # rejects stay in file order


async def test_rows_are_stored_as_the_orm_stores_them(engine: AsyncEngine) -> None:
    # The batch writes bypass the ORM; what they store must read back exactly as ORM-written rows.
    when = dt.datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=dt.UTC)
    rows = [
        ["account", "name", "balance", "cease", "phone", "phone2", "Producto"],
        ["A1", "Ana Núñez", "1,234.50", "yes", "(212) 555-0100", "(800) 555-0100", "tarjeta"],
    ]
    await import_accounts(engine, _csv(rows), ImportOptions(), now=lambda: when)
    async with make_sessionmaker(engine)() as s:
        acc = (await s.execute(select(Account))).scalar_one()
        phones = (await s.execute(select(Phone).order_by(Phone.priority))).scalars().all()
    assert (acc.name, acc.balance, acc.cease_communication) == (
        "Ana Núñez",
        Decimal("1234.50"),
        True,
    )
    assert acc.custom_fields == {"Producto": "tarjeta"}
    assert acc.created_at == acc.updated_at == when
    assert acc.time_zone is None and acc.last_contact_at is None  # no zone column in the file
    assert [(p.number, p.priority, p.time_zone, p.valid, p.dnc, p.created_at) for p in phones] == [
        ("+12125550100", 1, "America/New_York", True, False, when),
        ("+18005550100", 2, None, True, False, when),
    ]


async def test_an_undecodable_line_is_read_by_the_fallback_and_the_import_carries_on(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    source = tmp_path / "accounts.csv"
    with source.open("w", newline="") as f:
        sample.write(f, sample.SampleSpec(3_000))
    data = source.read_bytes().splitlines(keepends=True)
    # Line 2402 is not UTF-8 (a Windows-1252 "ó"); the text layer used to stop there.
    bad = b"X2402,Jos\xe9 Le\xf3n,1.00,,,,,,(212) 555-0100,,,\n"
    source.write_bytes(b"".join(data[:2401]) + bad + b"".join(data[2401:]))
    rejects = tmp_path / "rejects.csv"
    report = await import_file(engine, source, ImportOptions(batch_rows=500), rejects=rejects)
    assert (report.rows, report.accepted_rows, report.rejected_rows) == (3_001, 3_001, 0)
    assert (report.encoding, report.fallback_encoding, report.rows_decoded_by_fallback) == (
        "utf-8", "cp1252", 1,
    )  # fmt: skip
    async with make_sessionmaker(engine)() as s:
        name = await s.execute(select(Account.name).where(Account.external_ref == "X2402"))
        assert name.scalar_one() == "José León"
    with rejects.open(newline="") as f:
        (flagged,) = list(csv.DictReader(f))
    assert flagged["row"] == "2402" and flagged["action"] == "decoded as cp1252, row kept"
    assert "--encoding cp1252" in flagged["reason"]
    assert flagged["text"] == "X2402,José León,1.00,,,,,,(212) 555-0100,,,"

    # Without a fallback the row is rejected at its line, naming the options; the rest imports.
    options = ImportOptions(source="strict", batch_rows=500, fallback_encoding=None)
    strict = await import_file(engine, source, options, rejects=rejects)
    assert (strict.accepted_rows, strict.rejected_rows) == (3_000, 1)
    with rejects.open(newline="") as f:
        (rejected,) = list(csv.DictReader(f))
    assert rejected["row"] == "2402" and rejected["action"] == "row rejected"
    assert "--encoding" in rejected["reason"] and "--fallback-encoding" in rejected["reason"]


async def test_automatic_gc_is_paused_during_an_import_and_restored_after(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    source = tmp_path / "accounts.csv"
    with source.open("w", newline="") as f:
        sample.write(f, sample.SampleSpec(1_500, seed=5))
    seen: list[bool] = []
    assert gc.isenabled()
    options = ImportOptions(batch_rows=500)
    await import_file(engine, source, options, progress=lambda *_: seen.append(gc.isenabled()))
    assert seen and not any(seen)
    assert gc.isenabled()

    # Also after a failed import, and nothing already accepted is lost.
    def fail_at_the_second_batch(rows: int, _bytes: int) -> None:
        if rows > 1_000:
            raise RuntimeError("the caller gave up")

    with pytest.raises(RuntimeError, match="gave up"):
        await import_file(
            engine, source, ImportOptions(source="second", batch_rows=500),
            progress=fail_at_the_second_batch,
        )  # fmt: skip
    assert gc.isenabled()
    async with engine.connect() as conn:
        kept = await conn.execute(
            select(func.count()).select_from(Account).where(Account.source == "second")
        )
    # Progress is reported as each batch is handed over: the third had been when it failed.
    assert kept.scalar_one() == 1_500


def test_gc_pause_nests_and_keeps_a_disabled_gc_disabled() -> None:
    assert gc.isenabled()
    outer, inner = _GcPause.during_import(), _GcPause.during_import()
    outer.__enter__()
    inner.__enter__()
    outer.__exit__(None, None, None)
    assert not gc.isenabled()  # the other import still runs
    inner.__exit__(None, None, None)
    assert gc.isenabled()
    gc.disable()
    try:
        with _GcPause.during_import():
            _GcPause.between_batches()
        assert not gc.isenabled()  # whoever disabled it keeps it so
    finally:
        gc.enable()
