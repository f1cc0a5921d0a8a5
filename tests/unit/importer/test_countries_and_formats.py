"""A row's country from what agencies write, and national numbers read in that country only.

Expected values are written from the published sources, not from the code: ISO 3166 codes and
the countries' names; Mexico's numbering plan since 3 August 2019 (IFT: ten digits for every
call; the prefixes 01, 044 and 045 and the mobile "1" after +52 are gone, numbers keep their ten
digits); each country's national format (Spain: nine digits, no prefix; Peru and the UK: a
trunk 0 before the area code; Chile: mobiles 9 + eight digits).
"""

from __future__ import annotations

import io

import pytest

from dialer.importer.columns import resolve
from dialer.importer.countries import region_of
from dialer.importer.load import ImportOptions, ImportReport, _open, choose_encoding
from dialer.importer.parse import ParseOptions, RowParser, read_phone


@pytest.mark.parametrize(
    ("cell", "region"),
    [
        ("MX", "MX"), ("México", "MX"), ("Mexico", "MX"), ("MEX", "MX"), ("méxico ", "MX"),
        ("US", "US"), ("USA", "US"), ("EE. UU.", "US"), ("EEUU", "US"), ("Estados Unidos", "US"),
        ("United States", "US"), ("ES", "ES"), ("España", "ES"), ("Espana", "ES"), ("Spain", "ES"),
        ("Colombia", "CO"), ("Perú", "PE"), ("Peru", "PE"), ("Chile", "CL"), ("UK", "GB"),
        ("Reino Unido", "GB"), ("United Kingdom", "GB"), ("gb", "GB"), ("Argentina", "AR"),
        ("Narnia", None), ("", None),
    ],
)  # fmt: skip
def test_a_country_cell_names_its_region(cell: str, region: str | None) -> None:
    assert region_of(cell) == region


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("044 55 1234 5678", "MX", "+525512345678"),
        ("045 33 1234 5678", "MX", "+523312345678"),
        ("01 81 1234 5678", "MX", "+528112345678"),
        ("1 55 1234 5678", "MX", "+525512345678"),
        ("+52 1 55 1234 5678", "MX", "+525512345678"),
        ("+52 1 55 1234 5678", "US", "+525512345678"),
        ("0052 1 55 1234 5678", "MX", "+525512345678"),
        ("(55) 1234-5678", "MX", "+525512345678"),
        ("912 345 678", "ES", "+34912345678"),
        ("0034 612 345 678", "ES", "+34612345678"),
        ("(646) 264-4909", "US", "+16462644909"),
        ("300 123 4567", "CO", "+573001234567"),
        ("(01) 234-5678", "PE", "+5112345678"),
        ("987 654 321", "PE", "+51987654321"),
        ("9 8765 4321", "CL", "+56987654321"),
        ("020 7946 0018", "GB", "+442079460018"),
        ("07400 123456", "GB", "+447400123456"),
        ("+1 646 264 4909", "MX", "+16462644909"),  # the prefix wins over the row's country
    ],
)
def test_national_and_retired_formats_are_read_in_the_rows_country(
    raw: str, region: str, e164: str
) -> None:
    assert read_phone(raw, region)[0] == e164


def test_a_us_national_number_in_a_spanish_or_mexican_row_is_never_another_countrys() -> None:
    with pytest.raises(ValueError, match="not a valid phone number for region ES"):
        read_phone("(646) 264-4909", "ES")
    # Valid in Mexico too (Tijuana's 646 is not, 664 is): read as Mexican, never as American.
    assert read_phone("(664) 264-4909", "MX")[0] == "+526642644909"


def test_the_country_column_sets_the_region_and_the_jurisdiction() -> None:
    parser = RowParser(
        resolve(["cuenta", "nombre", "saldo", "país", "teléfono"]), ParseOptions("MX")
    )
    record, _ = parser.parse(["A1", "Ana", "1.00", "EE. UU.", "(646) 264-4909"])
    assert record is not None
    assert (record.jurisdiction, record.phones[0].number) == ("US", "+16462644909")
    record, _ = parser.parse(["A2", "Ana", "1.00", "Reino Unido", "020 7946 0018"])
    assert record is not None and record.jurisdiction == "UK"
    record, problems = parser.parse(["A3", "Ana", "1.00", "Argentina", "11 1234 5678"])
    assert record is None and problems[0].column == "país"
    assert "no compliance profile for AR" in problems[0].reason


@pytest.mark.parametrize(
    ("data", "encoding", "option"),
    [
        ("cuenta;nombre\n".encode("utf-16"), "utf-16-le", "auto"),
        (b"\xef\xbb\xbfcuenta;nombre\n", "latin-1", "latin-1"),
        (b"\xef\xbb\xbfcuenta;nombre\n", "utf-8", "utf-8"),
        (b"cuenta;nombre\n", "utf-8", "auto"),
    ],
)
def test_a_byte_order_mark_is_stripped_whatever_the_encoding(
    data: bytes, encoding: str, option: str
) -> None:
    report = ImportReport()
    source = _open(io.BytesIO(data), ImportOptions(encoding=option), report)
    assert source.header == ["cuenta", "nombre"]
    assert report.encoding == choose_encoding(data, option, "auto").name
    assert report.encoding.replace("iso8859-1", "latin-1") == encoding


def test_an_unknown_encoding_option_is_named() -> None:
    with pytest.raises(Exception, match="--encoding klingon: unknown encoding"):
        choose_encoding(b"a,b\n", "klingon", "auto")
