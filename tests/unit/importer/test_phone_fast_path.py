"""The per-prefix phone cache gives exactly what phonenumbers gives for the whole number.

The reference below is the importer's phone normalisation before the cache (the same
phonenumbers calls on every number); both are run over generated and odd inputs.
"""

from __future__ import annotations

import random

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialer.compliance.zones import zones_of_parsed
from dialer.importer import parse
from dialer.importer.columns import resolve
from dialer.importer.parse import ParseOptions, RowParser, normalise_phone

_PUNCT = str.maketrans("", "", " ()-.")
_NANP = frozenset(phonenumbers.region_codes_for_country_code(1))
REGIONS = ("US", "CA", "JM", "BB", "MX", "CO", "ES", "GB")


def reference(raw: str, region: str) -> tuple[str, tuple[str, ...]]:
    parsed: phonenumbers.PhoneNumber | None = None
    digits = raw.translate(_PUNCT)
    if region in _NANP and digits.isdigit():
        if len(digits) == 11 and digits[0] == "1":
            digits = digits[1:]
        if len(digits) == 10:
            parsed = phonenumbers.PhoneNumber(country_code=1, national_number=int(digits))
    if parsed is None:
        try:
            parsed = phonenumbers.parse(raw, region)
        except phonenumbers.NumberParseException as exc:
            raise ValueError("not a phone number") from exc
    if not (
        phonenumbers.is_valid_number_for_region(parsed, region)
        or phonenumbers.is_valid_number(parsed)
    ):
        raise ValueError(f"not a valid phone number for region {region}")
    # The zones are the one zones function's (dialer.compliance.zones): the fast path must agree.
    zones = zones_of_parsed(parsed)
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164), zones


def outcome(fn: object, raw: str, region: str) -> tuple[str, object]:
    try:
        return "ok", fn(raw, region)  # type: ignore[operator]
    except ValueError as exc:
        return "error", str(exc)


def assert_same(raw: str, region: str) -> None:
    normalise_phone.cache_clear()
    assert outcome(normalise_phone, raw, region) == outcome(reference, raw, region), (raw, region)


def _layouts(digits: str, r: random.Random) -> str:
    a, b, c = digits[:3], digits[3:6], digits[6:]
    return r.choice(
        [
            f"({a}) {b}-{c}",
            f"{a}{b}{c}",
            f"1{a}{b}{c}",
            f"1-{a}-{b}-{c}",
            f"{a}.{b}.{c}",
            f"+1 {a} {b} {c}",
            f"+1{a}{b}{c}",
            f"{a} {b} {c} ext. 12",
            f"0{a}{b}{c}",
            f"{a}{b}{c}1",
        ]
    )


def test_metadata_analysis_finds_the_prefix_lengths() -> None:
    # Most of North America is decided by area code + exchange; Barbados and Jamaica list some
    # numbers down to the seventh digit.
    assert parse._NANP_PREFIX == 6
    assert parse._NANP_DEEP_PREFIX.get("246") == 7 and parse._NANP_DEEP_PREFIX.get("876") == 7


def test_every_area_code_agrees_with_phonenumbers() -> None:
    r = random.Random(1)
    for npa in range(1000):
        for _ in range(12):
            digits = f"{npa:03d}{r.randint(0, 999):03d}{r.randint(0, 9999):04d}"
            assert_same(_layouts(digits, r), r.choice(("US", "US", "CA", "JM", "PR")))


@pytest.mark.parametrize("npa", ["246", "876", "658", "212", "800", "555"])
def test_every_exchange_and_seventh_digit_agrees_for_area_code(npa: str) -> None:
    r = random.Random(npa)
    for nxx in range(1000):
        for d7 in range(0, 10, 3 if npa in ("246", "876") else 9):
            digits = f"{npa}{nxx:03d}{d7}{r.randint(0, 999):03d}"
            assert_same(digits, "US")


ODD = [
    ("(212) 555-0100", "US"),
    ("(555) 555-0100", "US"),
    ("(800) 555-0100", "US"),
    ("212555010", "US"),
    ("12", "US"),
    ("not a phone", "US"),
    ("1-800-FLOWERS", "US"),
    ("(212) 555-0100 x123", "US"),
    ("０２１２５５５０１００", "US"),
    ("２１２５５５０１００", "US"),
    ("+34 612 34 56 78", "US"),
    ("612 34 56 78", "ES"),
    ("+44 20 7946 0958", "US"),
    ("020 7946 0958", "GB"),
    ("07700 900123", "GB"),
    ("55 1234 5678", "MX"),
    ("+52 1 55 1234 5678", "MX"),
    ("33 1234 5678", "MX"),
    ("300 123 4567", "CO"),
    ("601 234 5678", "CO"),
    ("+57 300 123 4567", "US"),
    ("(246) 521-0123", "BB"),
    ("(876) 606-0123", "JM"),
    ("", "US"),
    ("+", "US"),
    ("1", "US"),
    ("0212555010", "US"),
    ("10212555010", "US"),
    ("٢١٢٥٥٥٠١٠٠", "US"),
]


@pytest.mark.parametrize(("raw", "region"), ODD)
def test_odd_and_foreign_numbers_agree(raw: str, region: str) -> None:
    assert_same(raw, region)


def test_generated_foreign_numbers_agree() -> None:
    r = random.Random(2)
    for _ in range(3000):
        region = r.choice(REGIONS)
        length = r.randint(3, 13)
        raw = "".join(r.choice("0123456789") for _ in range(length))
        if r.random() < 0.3:
            raw = "+" + raw
        assert_same(raw, region)


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="0123456789 ()-.+xX#*abc１２", max_size=18), st.sampled_from(REGIONS))
def test_arbitrary_text_agrees(raw: str, region: str) -> None:
    assert_same(raw, region)


def _row_phone(raw: str, region: str) -> tuple[str, object]:
    """What the row parser makes of `raw` in a phone column: its NANP fast path, then the rest."""
    parser = RowParser(resolve(["account", "name", "balance", "phone"]), ParseOptions(region))
    record, problems = parser.parse(["A1", "Ana", "1.00", raw])
    if record is None:
        reasons = [p.reason for p in problems if p.column == "phone"]
        return "error", reasons[0] if reasons else "empty"
    (phone,) = record.phones
    zones = parse.read_phone(raw, region)[1]
    assert phone.time_zone == (zones[0] if len(zones) == 1 else None)
    return "ok", (phone.number, zones)


def test_row_parser_gives_what_read_phone_gives() -> None:
    r = random.Random(3)
    raws = [(_layouts(f"{r.randint(200, 999)}{r.randint(0, 9999999):07d}", r), "US")]
    raws += [(raw, region) for raw, region in ODD if raw.strip()]
    raws += [(_layouts(f"{npa}{r.randint(0, 9999999):07d}", r), "CA") for npa in range(200, 1000)]
    for raw, region in raws:
        expected = outcome(parse.read_phone, raw.strip(), region)
        assert _row_phone(raw, region) == expected, (raw, region)
