"""A file as agencies send it, against its ground truth, on SQLite and Postgres.

Mixed encodings (UTF-8 with a byte order mark, Windows-1252 rows), a country per row in codes and
names, national numbers of seven countries and Mexico's retired formats, duplicates next to each
other and hundreds of rows apart (the batch is small so that they fall in different batches),
multi-line records good and bad. The truth comes from the generator (dialer.importer.agency),
which draws each number in its international form and writes it as people in its country do.
"""

from __future__ import annotations

import csv
import dataclasses
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from dialer.importer.agency import AgencyFile, AgencySpec, Truth
from dialer.importer.load import ImportOptions, import_file
from dialer.importer.parse import ParseOptions
from dialer.store.models import Account, Phone

pytestmark = pytest.mark.postgres

SPEC = AgencySpec(1_200, far_distance=400)
OPTIONS = ImportOptions(
    source="agencia", batch_rows=50, parse=ParseOptions(default_region="MX", decimal=",")
)


@pytest.fixture
def agency_file(tmp_path: Path) -> tuple[Path, Truth]:
    path = tmp_path / "cartera.csv"
    with path.open("wb") as f:
        truth = AgencyFile(SPEC).write(f)
    return path, truth


async def _state(engine: AsyncEngine) -> dict[str, tuple[object, ...]]:
    async with engine.connect() as conn:
        accounts = (
            await conn.execute(
                select(
                    Account.id, Account.external_ref, Account.balance, Account.jurisdiction,
                    Account.time_zone, Account.custom_fields, Account.updated_at,
                ).order_by(Account.id)
            )
        ).all()  # fmt: skip
        phones = (
            await conn.execute(
                select(Phone.account_id, Phone.number, Phone.priority, Phone.time_zone, Phone.id)
                .order_by(Phone.account_id, Phone.priority)
            )
        ).all()  # fmt: skip
    by_account: dict[int, list[tuple[str, int, str | None]]] = {}
    for account_id, number, priority, zone, _id in phones:
        by_account.setdefault(account_id, []).append((number, priority, zone))
    return {
        ref: (balance, jurisdiction, zone, custom, updated, by_account.get(account_id, []))
        for account_id, ref, balance, jurisdiction, zone, custom, updated in accounts
    }


async def test_every_good_row_is_right_every_bad_row_explained_and_a_reimport_is_inert(
    engine: AsyncEngine, agency_file: tuple[Path, Truth], tmp_path: Path
) -> None:
    path, truth = agency_file
    assert len(truth.rejected) == 52 and len({*truth.rejected.values()}) == 5
    assert len(truth.fallback_lines) > 30

    dry = await import_file(engine, path, dataclasses.replace(OPTIONS, dry_run=True))
    assert (dry.dry_run, dry.accounts_created, dry.rejected_rows) == (
        True, len(truth.accounts), len(truth.rejected),
    )  # fmt: skip
    assert await _state(engine) == {}

    rejects = tmp_path / "rejects.csv"
    report = await import_file(engine, path, OPTIONS, rejects=rejects)
    assert (report.encoding, report.encoding_source, report.bom_stripped) == (
        "utf-8", "byte order mark", True,
    )  # fmt: skip
    assert report.rows == truth.rows
    assert (report.accounts_created, report.rejected_rows) == (
        len(truth.accounts), len(truth.rejected),
    )  # fmt: skip
    assert report.rows_decoded_by_fallback == len(truth.fallback_lines)
    assert sum(report.numbers_by_country.values()) == report.phones_added
    assert set(report.numbers_by_country) == {"MX", "US", "ES", "CO", "PE", "CL", "GB"}
    # The dry run said what the import then did.
    assert (dry.accounts_created, dry.phones_added, dry.numbers_by_country, dry.zones_assigned) == (
        report.accounts_created, report.phones_added, report.numbers_by_country,
        report.zones_assigned,
    )  # fmt: skip

    with rejects.open(newline="", encoding="utf-8") as f:
        lines = list(csv.DictReader(f))
    rejected = [r for r in lines if r["action"] == "row rejected"]
    assert {int(r["row"]) for r in rejected} == set(truth.rejected)
    named = {(int(r["row"]), r["column"]) for r in rejected}
    for line, column in truth.rejected.items():
        assert (line, column) in named, (line, column)
    # The multi-line bad record is reported at its first line, with its whole original text.
    multiline = [r for r in rejected if "Puerta 3" in r["text"]]
    assert multiline and all(r["text"].count("\n") == 2 for r in multiline)
    assert all(r["text"].startswith("BAD") for r in multiline)
    flagged = {int(r["row"]) for r in lines if r["action"] == "decoded as cp1252, row kept"}
    assert flagged == truth.fallback_lines

    state = await _state(engine)
    assert set(state) == set(truth.accounts)
    for ref, expected in truth.accounts.items():
        balance, jurisdiction, zone, custom, _updated, phones = state[ref]
        assert (balance, jurisdiction, zone) == (
            expected.balance, expected.jurisdiction, expected.time_zone,
        ), ref  # fmt: skip
        assert custom == expected.custom, ref
        assert phones == expected.phone_rows(), ref
    assert isinstance(next(iter(state.values()))[0], Decimal)

    again = await import_file(engine, path, OPTIONS)
    assert (again.accounts_created, again.accounts_updated, again.phones_added) == (0, 0, 0)
    assert again.accounts_unchanged == len(truth.accounts)
    assert await _state(engine) == state


async def test_a_later_file_merges_into_the_accounts_as_a_later_row_would(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    header = "cuenta;nombre;saldo;zona horaria;país;celular;teléfono casa;producto;sucursal\n"
    first = tmp_path / "first.csv"
    first.write_text(
        header + "A1;Ana;10,00;America/New_York;US;(212) 555-0100;(212) 555-0101;tarjeta;Centro\n"
    )
    second = tmp_path / "second.csv"
    second.write_text(header + "A1;Ana;12,50;;US;(310) 555-0100;(212) 555-0100;préstamo;\n")
    options = dataclasses.replace(OPTIONS, batch_rows=5_000)
    await import_file(engine, first, options)
    report = await import_file(engine, second, options)
    assert (report.accounts_updated, report.phones_added) == (1, 1)
    (balance, _j, zone, custom, _u, phones) = (await _state(engine))["A1"]
    assert (balance, zone) == (Decimal("12.50"), "America/New_York")  # a zone is never erased
    assert custom == {"producto": "préstamo", "sucursal": "Centro"}
    assert phones == [
        ("+12125550100", 1, "America/New_York"),
        ("+12125550101", 2, "America/New_York"),
        ("+13105550100", 3, "America/Los_Angeles"),
    ]
    unchanged = await import_file(engine, second, options)
    assert (unchanged.accounts_updated, unchanged.accounts_unchanged) == (0, 1)


async def test_a_whole_windows_1252_file_is_detected_and_said(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    path = tmp_path / "latin.csv"
    rows = "Número de cuenta;Nombre;Saldo;País;Teléfono\n" + "".join(
        f"K{i};Íñigo Muñoz {i};1.234,{i:02d};España;91 234 56 {i:02d}\n" for i in range(40)
    )
    path.write_bytes(rows.encode("cp1252"))
    report = await import_file(engine, path, OPTIONS)
    assert (report.encoding, report.encoding_source) == ("cp1252", "detected by charset-normalizer")
    assert (report.accepted_rows, report.rows_decoded_by_fallback) == (40, 0)
    async with engine.connect() as conn:
        names = (await conn.execute(select(Account.name).order_by(Account.id))).scalars().all()
        count = (await conn.execute(select(func.count()).select_from(Phone))).scalar_one()
    assert names[0] == "Íñigo Muñoz 0" and count == 40


async def test_a_utf16_file_with_its_byte_order_mark_imports(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    path = tmp_path / "excel.csv"
    rows = "Cuenta\tNombre\tSaldo\tPaís\tCelular\r\n" + "".join(
        f'U{i}\t"Peña\r\nNúñez {i}"\t{i},50\tPerú\t987 654 {i:03d}\r\n' for i in range(30)
    )
    path.write_bytes(rows.encode("utf-16"))  # with its byte order mark, as Excel writes
    rejects = tmp_path / "rejects.csv"
    report = await import_file(
        engine, path, dataclasses.replace(OPTIONS, batch_rows=7), rejects=rejects
    )
    assert (report.encoding, report.encoding_source) == ("utf-16-le", "byte order mark")
    assert (report.accepted_rows, report.rejected_rows) == (30, 0)
    async with engine.connect() as conn:
        names = (await conn.execute(select(Account.name).order_by(Account.id))).scalars().all()
    assert names[1] == "Peña\r\nNúñez 1"
