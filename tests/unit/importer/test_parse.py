"""Row parsing: headers in two languages, decimal conventions, phones, zones, problems named."""

from __future__ import annotations

from decimal import Decimal

import pytest

from dialer.errors import UserError
from dialer.importer.columns import fold, phone_kind, resolve
from dialer.importer.parse import DecimalConvention, ParseOptions, RowParser, normalise_phone

HEADER = ["account", "name", "balance", "days_past_due", "time_zone", "phone", "phone2"]


def parse(row: list[str], **options: str) -> tuple[object, list[tuple[str, str]]]:
    parser = RowParser(resolve(HEADER), ParseOptions(**options))  # type: ignore[arg-type]
    record, problems = parser.parse(row)
    return record, [(p.column, p.reason) for p in problems]


def test_fold_removes_case_accents_and_punctuation() -> None:
    assert fold(" Teléfono  Móvil-2 ") == "telefono_movil_2"


@pytest.mark.parametrize(
    ("header", "kind"),
    [
        ("Celular", "mobile"),
        ("Teléfono casa", "home"),
        ("work_phone", "work"),
        ("phone2", "unknown"),
        ("Tel 3", "unknown"),
        ("mobile", "mobile"),
        ("account_number", None),
        ("name", None),
    ],
)
def test_phone_columns_and_their_kind_are_recognised(header: str, kind: str | None) -> None:
    assert phone_kind(header) == kind


def test_spanish_headers_map_to_fields() -> None:
    columns = resolve(["Cuenta", "Nombre", "Saldo", "Días de mora", "Celular", "Teléfono 2"])
    assert columns.fields == {"external_ref": 0, "name": 1, "balance": 2, "days_past_due": 3}
    assert [p.index for p in columns.phones] == [4, 5]


def test_two_candidate_columns_for_one_field_are_refused() -> None:
    with pytest.raises(UserError, match="several columns could be balance"):
        resolve(["account", "name", "balance", "saldo", "phone"])


def test_header_without_phone_column_is_refused() -> None:
    with pytest.raises(UserError, match="no phone column"):
        resolve(["account", "name", "balance"])


@pytest.mark.parametrize(
    ("decimal", "raw", "amount"),
    [
        (".", "1,234.56", "1234.56"),
        (".", "1234.5", "1234.50"),
        (".", "$ 12", "12.00"),
        (",", "1.234,56", "1234.56"),
        (",", "1234,5", "1234.50"),
        (",", "1.234.567", "1234567.00"),
    ],
)
def test_amounts_follow_the_declared_convention(decimal: str, raw: str, amount: str) -> None:
    assert DecimalConvention(decimal).parse(raw) == Decimal(amount)


@pytest.mark.parametrize(
    ("decimal", "raw"),
    [
        (".", "1.234,56"),
        (".", "1,23"),
        (",", "1,234.56"),
        (".", "-5.00"),
        (".", "1.234"),
        (".", "abc"),
    ],
)
def test_amounts_in_the_other_convention_are_refused(decimal: str, raw: str) -> None:
    with pytest.raises(ValueError, match="not an amount"):
        DecimalConvention(decimal).parse(raw)


def test_phone_numbers_become_e164_with_the_default_region() -> None:
    assert normalise_phone("(212) 555-0100", "US")[0] == "+12125550100"
    assert normalise_phone("300 123 4567", "CO")[0] == "+573001234567"
    assert normalise_phone("+34 612 34 56 78", "US")[0] == "+34612345678"


def test_invalid_phone_number_is_refused() -> None:
    with pytest.raises(ValueError, match="not a valid phone number"):
        normalise_phone("(555) 555-0100", "US")


def test_an_unambiguous_number_gives_its_phone_a_zone_not_the_account() -> None:
    # The account's zone is only what the file says (evidence about the debtor); the phone
    # shows the zone the claim's zones function finds for it.
    record, _ = parse(["A1", "Ana", "1.00", "0", "", "(310) 555-0100", ""])
    assert record.time_zone is None  # type: ignore[attr-defined]
    assert record.phones[0].time_zone == "America/Los_Angeles"  # type: ignore[attr-defined]


def test_a_multi_zone_area_code_pins_no_zone() -> None:
    record, _ = parse(["A1", "Ana", "1.00", "0", "", "(208) 555-0100", ""])
    assert record.phones[0].time_zone is None  # type: ignore[attr-defined]


def test_a_file_zone_narrows_a_multi_zone_area_code() -> None:
    record, _ = parse(["A1", "Ana", "1.00", "0", "America/Denver", "(208) 555-0100", ""])
    assert record.phones[0].time_zone == "America/Boise"  # type: ignore[attr-defined]


def test_zone_is_left_empty_for_an_ambiguous_number() -> None:
    # A toll-free number may ring in any US zone: the claim rule then uses the strictest window.
    record, _ = parse(["A1", "Ana", "1.00", "0", "", "(800) 555-0100", ""])
    assert record.time_zone is None  # type: ignore[attr-defined]


def test_explicit_zone_column_wins() -> None:
    record, _ = parse(["A1", "Ana", "1.00", "0", "America/Chicago", "(310) 555-0100", ""])
    assert record.time_zone == "America/Chicago"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("days", "bucket"),
    [("0", "current"), ("30", "1-30"), ("31", "31-60"), ("121", "120+"), ("-3", "current")],
)
def test_aging_bucket_follows_days_past_due(days: str, bucket: str) -> None:
    record, _ = parse(["A1", "Ana", "1.00", days, "", "(310) 555-0100", ""])
    assert record.aging_bucket == bucket  # type: ignore[attr-defined]


def test_every_problem_of_a_row_is_named() -> None:
    record, problems = parse(["", "Ana", "1,2", "x", "Mars/Base", "12", ""])
    assert record is None
    assert problems == [
        ("account", "empty"),
        ("balance", "not an amount written like 1,234.56"),
        ("days_past_due", "not a whole number of days"),
        ("time_zone", "unknown time zone (use e.g. America/Bogota)"),
        ("phone", "not a valid phone number for region US"),
        ("phones", "no valid phone number in any phone column"),
    ]


def test_same_number_in_two_columns_is_kept_once() -> None:
    record, _ = parse(["A1", "Ana", "1.00", "0", "", "(310) 555-0100", "310.555.0100"])
    assert len(record.phones) == 1  # type: ignore[attr-defined]


def test_row_with_wrong_field_count_is_refused() -> None:
    record, problems = parse(["A1", "Ana"])
    assert record is None and problems == [("*", "has 2 fields, the header has 7")]
