"""One CSV row -> one account record, or the reasons it is refused (column and why).

Pure: amounts with an explicit decimal convention, phones to E.164 with a default region, the
debtor's time zone from its column or, when unambiguous, from the phone number.
"""

from __future__ import annotations

import functools
import importlib
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NamedTuple

import phonenumbers
from phonenumbers import tzdata as phone_tzdata
from phonenumbers.phonemetadata import PhoneNumberDesc

from dialer.compliance.profiles import available_profiles
from dialer.compliance.zones import (
    POSTAL_KEYS,
    REGION_KEYS,
    DebtorEvidence,
    finding_for,
    valid_zone,
    zones_of_parsed,
)
from dialer.importer.columns import ColumnMap
from dialer.importer.countries import jurisdiction_of, region_of, region_of_jurisdiction
from dialer.store.models import AgingBucket

MAX_BALANCE = Decimal("999999999999.99")  # NUMERIC(14, 2)
_CENT = Decimal("0.01")
_TRUE = {"1", "true", "yes", "y", "si", "sí", "s", "x", "verdadero"}
_FALSE = {"", "0", "false", "no", "n", "falso"}
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_LIMITS = {"external_ref": 128, "name": 200}
_NANP_REGIONS = frozenset(phonenumbers.region_codes_for_country_code(1))
# The stdlib's regex parser, to read phonenumbers' metadata patterns (see _nanp_prefix_lengths).
_sre: Any = importlib.import_module("re._constants")
_sre_parse: Any = importlib.import_module("re._parser").parse
_sre_parse_subpattern: Any = importlib.import_module("re._parser").SubPattern


@dataclass(frozen=True, slots=True)
class DecimalConvention:
    """How amounts are written: `decimal` is "." ("1,234.56") or "," ("1.234,56")."""

    decimal: str = "."

    def __post_init__(self) -> None:
        if self.decimal not in (".", ","):
            raise ValueError('decimal separator: "." or ","')

    @property
    def thousands(self) -> str:
        return "," if self.decimal == "." else "."

    @property
    def pattern(self) -> re.Pattern[str]:
        return _amount_pattern(self.decimal, self.thousands)

    def parse(self, raw: str) -> Decimal:
        # Runs for every row of an import: the common cases skip the replacements they need not.
        text = raw.strip()
        if text[:1] in ("$", "€", "£"):
            text = text.lstrip("$€£").strip()
        if " " in text or "\u00a0" in text:
            text = text.replace(" ", "").replace("\u00a0", "")
        thousands = self.thousands
        if not _amount_pattern(self.decimal, thousands).match(text):
            raise ValueError(
                f"not an amount written like {'1,234.56' if self.decimal == '.' else '1.234,56'}"
            )
        if thousands in text:
            text = text.replace(thousands, "")
        if self.decimal != ".":
            text = text.replace(self.decimal, ".")
        return Decimal(text).quantize(_CENT)


@functools.cache
def _amount_pattern(decimal: str, thousands: str) -> re.Pattern[str]:
    d, t = re.escape(decimal), re.escape(thousands)
    # Either grouped thousands ("1,234,567") or plain digits, then at most two decimals.
    return re.compile(rf"^(?:\d{{1,3}}(?:{t}\d{{3}})+|\d+)(?:{d}\d{{1,2}})?$")


class PhoneRecord(NamedTuple):
    # A tuple: built for every phone of every row, at a fraction of a frozen dataclass's cost.
    number: str  # E.164
    phone_type: str
    priority: int
    time_zone: str | None  # only when the number pins one zone
    zones: tuple[str, ...] = ()  # the number's own candidate zones (before the account's evidence)


@dataclass(slots=True)
class AccountRecord:
    external_ref: str
    name: str
    balance: Decimal
    currency: str
    days_past_due: int
    aging_bucket: str
    time_zone: str | None
    jurisdiction: str | None
    cease_communication: bool
    attorney_represented: bool
    phones: list[PhoneRecord]
    custom_fields: dict[str, str] = field(default_factory=dict)

    def merge(self, later: AccountRecord) -> None:
        """A later row for the same account, wherever it is in the file (the README's rules): its
        values win, except that a value it leaves empty (zone, jurisdiction, a custom field) keeps
        the earlier one; its new numbers are appended after the known ones, numbered on."""
        known = {p.number: i for i, p in enumerate(self.phones)}
        last = max((p.priority for p in self.phones), default=0)
        for p in later.phones:
            if p.number not in known:
                last += 1
                known[p.number] = len(self.phones)
                self.phones.append(p._replace(priority=last))
        for name in (
            "name", "balance", "currency", "days_past_due", "aging_bucket",
            "cease_communication", "attorney_represented",
        ):  # fmt: skip
            setattr(self, name, getattr(later, name))
        self.time_zone = later.time_zone or self.time_zone
        self.jurisdiction = later.jurisdiction or self.jurisdiction
        self.custom_fields.update(later.custom_fields)
        # Each phone's zone as the one zones function finds it with the merged account's
        # evidence (zone, address), as if the rows had been one.
        evidence = DebtorEvidence.of_account(self.time_zone, self.custom_fields)
        for i, p in enumerate(self.phones):
            found = finding_for(p.number, p.zones, evidence).zones
            zone = found[0] if len(found) == 1 else None
            if zone != p.time_zone:
                self.phones[i] = p._replace(time_zone=zone)


@dataclass(frozen=True, slots=True)
class Problem:
    column: str
    reason: str
    fatal: bool = True  # False: the row is kept (e.g. one bad phone among good ones)
    action: str = ""  # what was done instead, when not "value dropped, row kept"


@dataclass(frozen=True, slots=True)
class ParseOptions:
    default_region: str = "US"
    decimal: str = "."
    currency: str = "USD"
    jurisdiction: str | None = None


_NANP_PUNCT = str.maketrans("", "", " ()-.")


# Validity and candidate zones of a North American number depend only on its first digits: every
# metadata pattern ends in "any digit" runs and the zone table keys are short prefixes. So the
# answer is computed once per prefix by phonenumbers itself and reused; how many digits a prefix
# needs is derived from the metadata below (6, 7 for area codes such as 246 and 876), so a
# metadata upgrade that needs more digits makes the prefix longer instead of the answer wrong.
_NANP_LENGTH = 10


def _any_digit_width(op: object, av: Any) -> tuple[int, bool] | None:
    """(width, fixed) when the regex item matches only runs of arbitrary digits, else None."""
    if op is _sre.IN and av in ([(_sre.CATEGORY, _sre.CATEGORY_DIGIT)], [(_sre.RANGE, (48, 57))]):
        return 1, True
    if op is _sre.MAX_REPEAT or op is _sre.MIN_REPEAT:
        low, high, sub = av
        if len(sub.data) == 1 and _any_digit_width(*sub.data[0]) == (1, True):
            return low, low == high
    return None


def _paths(items: Any, limit: int = 50_000) -> list[list[tuple[object, Any]]]:
    """Every alternative of a parsed regex as a flat item sequence (groups and branches opened)."""
    paths: list[list[tuple[object, Any]]] = [[]]
    for op, av in items:
        if op is _sre.SUBPATTERN:
            subs = _paths(av[-1].data, limit)
        elif op is _sre.BRANCH:
            subs = [p for alt in av[1] for p in _paths(alt.data, limit)]
        else:
            subs = [[(op, av)]]
        paths = [p + s for p in paths for s in subs]
        if len(paths) > limit:
            raise ValueError("pattern too large to analyse")
    return paths


def _digits_needed(pattern: str) -> dict[str, int]:
    """For a full-match pattern over 10-digit numbers: how many leading digits decide the match,
    per 3-digit literal prefix ("" for paths that do not start with one)."""
    needed: dict[str, int] = {}
    for path in _paths(_sre_parse(pattern).data):
        tail = 0
        for op, av in reversed(path):
            run = _any_digit_width(op, av)
            if run is None:
                break
            tail += run[0]
            if not run[1]:
                break
        lead = ""
        for op, av in path[:3]:
            if op is not _sre.LITERAL:
                break
            lead += chr(av)
        key = lead if len(lead) == 3 else ""
        needed[key] = max(needed.get(key, 0), _NANP_LENGTH - tail)
    return needed


def _nanp_prefix_lengths() -> tuple[int, dict[str, int]]:
    """(digits every NANP number needs, longer needs per area code)."""
    base = max(len(k) - 1 for k in phone_tzdata.TIMEZONE_DATA if k.startswith("1"))
    deep: dict[str, int] = {}
    try:
        for region in _NANP_REGIONS:
            metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
            if metadata is None:
                return _NANP_LENGTH, {}
            if metadata.leading_digits:
                base = max(base, _sre_parse(metadata.leading_digits).getwidth()[1])
            for desc in vars(metadata).values():
                if isinstance(desc, PhoneNumberDesc) and desc.national_number_pattern:
                    for lead, n in _digits_needed(desc.national_number_pattern).items():
                        if lead:
                            deep[lead] = max(deep.get(lead, 0), n)
                        else:
                            base = max(base, n)
    except (ValueError, TypeError):
        return _NANP_LENGTH, {}
    return min(base, _NANP_LENGTH), {k: min(n, _NANP_LENGTH) for k, n in deep.items() if n > base}


_NANP_PREFIX, _NANP_DEEP_PREFIX = _nanp_prefix_lengths()


@functools.lru_cache(maxsize=1 << 16)
def _nanp_facts(prefix: str, region: str) -> tuple[str, ...] | None:
    """Candidate zones of the NANP numbers starting with `prefix`; None when they are invalid
    for `region`."""
    sample = phonenumbers.PhoneNumber(
        country_code=1, national_number=int(prefix.ljust(_NANP_LENGTH, "0"))
    )
    return _facts(sample, region)


def _facts(parsed: phonenumbers.PhoneNumber, region: str) -> tuple[str, ...] | None:
    # Checking the default region first is cheap; the general check walks every region of the
    # country code (25 for +1).
    if not (
        phonenumbers.is_valid_number_for_region(parsed, region)
        or phonenumbers.is_valid_number(parsed)
    ):
        return None
    return zones_of_parsed(parsed)


def _nanp_phone(raw: str, region: str) -> tuple[str, tuple[str, ...] | None] | None:
    """The fast path for the common North American layout, skipping the general parser:
    (E.164, candidate zones or None when invalid for `region`), or None when `raw` is not a
    plain 10-digit national number (with optional 1 and punctuation) of a NANP region."""
    digits = raw.translate(_NANP_PUNCT)
    if not digits.isdigit() or not digits.isascii():
        return None
    if len(digits) == 11 and digits[0] == "1":
        digits = digits[1:]
    # A national number has no leading zero (int() would drop it and change the number).
    if len(digits) != _NANP_LENGTH or digits[0] == "0":
        return None
    size = max(_NANP_PREFIX, _NANP_DEEP_PREFIX.get(digits[:3], 0))
    return "+1" + digits, _nanp_facts(digits[:size], region)


# Repeated numbers sit close together in client files: a small cache catches them and keeps
# memory flat however long the file is.
@functools.lru_cache(maxsize=4096)
def normalise_phone(raw: str, region: str) -> tuple[str, tuple[str, ...]]:
    """(E.164, candidate time zones) for a valid number; ValueError saying why otherwise."""
    parsed: phonenumbers.PhoneNumber | None = None
    if region in _NANP_REGIONS:
        fast = _nanp_phone(raw, region)
        if fast is not None:
            number, zones = fast
            if zones is None:
                raise ValueError(f"not a valid phone number for region {region}")
            return number, zones
        digits = raw.translate(_NANP_PUNCT)
        if digits.isdecimal() and len(digits) in (10, 11):
            national = int(digits[1:] if len(digits) == 11 and digits[0] == "1" else digits)
            if len(digits) == 10 or digits[0] == "1":
                parsed = phonenumbers.PhoneNumber(country_code=1, national_number=national)
    if parsed is None:
        try:
            parsed = phonenumbers.parse(raw, region)
        except phonenumbers.NumberParseException as exc:
            raise ValueError("not a phone number") from exc
    found = _facts(parsed, region)
    if found is None:
        raise ValueError(f"not a valid phone number for region {region}")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164), found


# What people write between the digits of a number, in every country.
_DIGIT_PUNCT = str.maketrans("", "", " ()-./\u00a0")


def _mexican(digits: str, plus: bool, region: str) -> tuple[str, bool]:
    """Mexico's retired formats to the current ten-digit plan (August 2019): the mobile "1" after
    +52 and the dialling prefixes 044 and 045 (mobile) and 01 (long distance) before a ten-digit
    number. `phonenumbers` reads none of them as valid."""
    if plus:
        if len(digits) == 13 and digits.startswith("521"):
            return "52" + digits[3:], True
        return digits, True
    if region != "MX":
        return digits, False
    size = len(digits)
    if size == 15 and digits.startswith("00521"):
        return "52" + digits[5:], True
    if size == 13 and digits.startswith(("044", "045")):
        return digits[3:], False
    if size == 13 and digits.startswith("521"):
        return "52" + digits[3:], True
    if size == 12 and digits.startswith("01"):
        return digits[2:], False
    if size == 11 and digits[0] == "1":
        return digits[1:], False
    return digits, False


_ALL_DIGITS = frozenset("0123456789")


def _first_digits(op: object, av: Any) -> frozenset[str]:
    """The digits a regex item accepts first (all ten when that is not simple to say)."""
    if op is _sre.LITERAL:
        return frozenset(chr(av))
    if op is _sre.IN:
        found: set[str] = set()
        for kind, value in av:
            if kind is _sre.LITERAL:
                found.add(chr(value))
            elif kind is _sre.RANGE:
                found.update(chr(c) for c in range(value[0], value[1] + 1))
            else:
                return _ALL_DIGITS
        return frozenset(found) & _ALL_DIGITS
    if (op is _sre.MAX_REPEAT or op is _sre.MIN_REPEAT) and av[0] >= 1 and len(av[2].data) == 1:
        return _first_digits(*av[2].data[0])
    return _ALL_DIGITS


_MAX_DIGITS = 17  # longer than any number's national part


def _tails(pattern: str) -> dict[tuple[str, int], int]:
    """Per (first two digits, length): the fewest trailing digits any alternative of a full-match
    pattern leaves unconstrained (any digit) in numbers of that length starting with them."""
    fewest: dict[tuple[str, int], int] = {}
    parsed = _sre_parse(pattern)
    for path in _paths(parsed.data):
        low, high = _sre_parse_subpattern(parsed.state, path).getwidth()
        tail = 0
        for op, av in reversed(path):
            run = _any_digit_width(op, av)
            if run is None:
                break
            tail += run[0]
            if not run[1]:
                break
        first = _first_digits(*path[0]) if path else _ALL_DIGITS
        second = (
            _first_digits(*path[1])
            if len(path) > 1 and _sre_parse_subpattern(parsed.state, path[:1]).getwidth() == (1, 1)
            else _ALL_DIGITS
        )
        for lead in (a + b for a in first for b in second):
            for length in range(low, min(high, _MAX_DIGITS) + 1):
                key = (lead, length)
                fewest[key] = min(fewest.get(key, 99), tail)
    return fewest


class _Shape(NamedTuple):
    code: str  # the country code
    tail_cut: int  # trailing digits that cannot change which prefix is cut
    cut_reach: int  # leading digits that may be the prefix cut (national prefix, country code)
    tails: dict[tuple[str, int], int]  # per (first two national digits, length): trailing digits
    # that no pattern reads; absent: no pattern matches such numbers
    lead: int  # leading national digits the zone table and the region choice read
    international: re.Pattern[str] | None  # the region's international dialling prefix


@functools.cache
def _shape(region: str) -> _Shape | None:
    """How much of a national number written in `region` decides how `phonenumbers` reads it:
    derived from its metadata (every pattern of every region of the country code, the zone table's
    prefixes, the national prefix), or None when the patterns are too complex to analyse."""
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    if metadata is None or metadata.country_code is None or metadata.national_prefix_transform_rule:
        return None
    code = str(metadata.country_code)
    tails: dict[tuple[str, int], int] = {}
    lead = max(
        (len(k) - len(code) for k in phone_tzdata.TIMEZONE_DATA if k.startswith(code)), default=0
    )
    try:
        for other in phonenumbers.region_codes_for_country_code(metadata.country_code):
            md = phonenumbers.PhoneMetadata.metadata_for_region(other)
            if md is None:
                return None
            if md.leading_digits:
                lead = max(lead, _sre_parse(md.leading_digits).getwidth()[1])
            for desc in vars(md).values():
                if isinstance(desc, PhoneNumberDesc) and desc.national_number_pattern:
                    for key, tail in _tails(desc.national_number_pattern).items():
                        tails[key] = min(tails.get(key, 99), tail)
        general = metadata.general_desc.national_number_pattern if metadata.general_desc else None
        cut_tail = min(_tails(general).values(), default=0) if general else 0
        reach = len(code)
        if metadata.national_prefix_for_parsing:
            reach = max(reach, _sre_parse(metadata.national_prefix_for_parsing).getwidth()[1])
    except (ValueError, TypeError):
        return None
    if lead > 15 or reach > 15:
        return None
    international = (
        re.compile(metadata.international_prefix) if metadata.international_prefix else None
    )
    return _Shape(code, cut_tail, reach + 1, tails, lead, international)


_MISS = object()
# (region, length, first digits) -> (country code with "+", digits cut), or None: general parser.
_CUTS: dict[tuple[str, int, str], tuple[str, int] | None] = {}
# (region, national length, first national digits) -> zones, or None when invalid for region.
_NATIONAL: dict[tuple[str, int, str], tuple[str, ...] | None] = {}


def _learn_cut(text: str, region: str | None, digits: str) -> tuple[str, int] | None:
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    national = phonenumbers.national_significant_number(parsed)
    if not digits.endswith(national):
        return None  # not a prefix cut: the general parser decides
    return f"+{parsed.country_code}", len(digits) - len(national)


def _bounded_put(cache: dict[Any, Any], key: Any, value: Any) -> None:
    if len(cache) >= 1 << 14:
        cache.clear()  # memory stays flat; the prefixes in use are learned again
    cache[key] = value


def _learned(
    digits: str, key: tuple[str, int, str], shape: _Shape, text: str, region: str | None
) -> tuple[str, tuple[str, ...] | None] | None:
    """The number `digits` as `phonenumbers.parse(text, region)` reads it, from what the first
    number with the same length and leading digits taught (see `_national_phone`)."""
    cut = _CUTS.get(key, _MISS)
    if cut is _MISS:
        cut = _learn_cut(text, region, digits)
        _bounded_put(_CUTS, key, cut)
    if cut is None:
        return None
    assert isinstance(cut, tuple)
    prefix, start = cut
    national = digits[start:]
    if len(national) < 2 or prefix[1:] != shape.code:
        return None
    length = len(national)
    needed = max(length - shape.tails.get((national[:2], length), length), shape.lead)
    # Validity ("for the row's region or any") and zones depend on the number alone.
    facts_key = (shape.code, length, national[:needed])
    zones = _NATIONAL.get(facts_key, _MISS)
    if zones is _MISS:
        try:
            parsed = phonenumbers.parse(prefix + national, None)
        except phonenumbers.NumberParseException:
            return None
        zones = _facts(parsed, phonenumbers.region_code_for_country_code(int(shape.code)))
        _bounded_put(_NATIONAL, facts_key, zones)
    return prefix + national, zones  # type: ignore[return-value]


def _national_phone(digits: str, region: str) -> tuple[str, tuple[str, ...] | None] | None:
    """The fast path for national numbers outside North America (the NANP has its own). How
    `phonenumbers` reads a number depends only on its length and its first digits (how many:
    `_shape`, from the metadata): the prefix it cuts (national prefix, country code), then
    validity and zones. Both are learned from the first number of each prefix and reused.
    None: ask the general parser."""
    shape = _shape(region)
    if shape is None or (shape.international is not None and shape.international.match(digits)):
        return None
    size = len(digits)
    key = (region, size, digits[: max(size - shape.tail_cut, shape.cut_reach)])
    return _learned(digits, key, shape, digits, region)


# Calling code -> its main region ("1" -> "US", "44" -> "GB"); codes of no region left out.
_CALLING_CODES = {
    str(code): regions[0]
    for code, regions in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items()
    if regions and regions[0] != "001"
}


def _international_phone(digits: str, region: str) -> tuple[str, tuple[str, ...] | None] | None:
    """The fast path for a number written with its country code (the digits after "+"): the
    country code picks the metadata, the rest is learned as for national numbers."""
    for size in (1, 2, 3):
        home = _CALLING_CODES.get(digits[:size])
        if home is not None:
            break
    else:
        return None
    if home == "US":
        # Validity is "for the row's region or any", so any North American region reads it.
        return _nanp_phone(digits[1:], region if region in _NANP_REGIONS else "US")
    shape = _shape(home)
    if shape is None:
        return None
    length = len(digits)
    key = ("+" + home, length, digits[: max(length - shape.tail_cut, shape.cut_reach + size)])
    return _learned(digits, key, shape, "+" + digits, None)


def read_phone(raw: str, region: str) -> tuple[str, tuple[str, ...]]:
    """(E.164, candidate zones) of a number written in a row whose country is `region`: a number
    with its country code (+52..., 0052...) is that country's, any other is read as a national
    number of `region` and nothing else. ValueError saying why it is not a valid number."""
    text = raw.translate(_DIGIT_PUNCT)
    plus = text[:1] == "+"
    digits = text[1:] if plus else text
    if digits.isdigit() and digits.isascii():
        if region == "MX" or (plus and digits.startswith("52")):
            digits, plus = _mexican(digits, plus, region)
        fast = None
        if plus:
            fast = _international_phone(digits, region)
        elif region not in _NANP_REGIONS:
            fast = _national_phone(digits, region)
        if fast is not None:
            number, zones = fast
            if zones is None:
                raise ValueError(f"not a valid phone number for region {region}")
            return number, zones
        raw = "+" + digits if plus else digits
    return normalise_phone(raw, region)


_FLAGS = {**dict.fromkeys(_FALSE, False), **dict.fromkeys(_TRUE, True)}
_FLAG_ERROR = "expected yes/no (1/0, true/false, si/no)"


def _flag(raw: str) -> bool:
    value = _FLAGS.get(raw.strip().lower())
    if value is None:
        raise ValueError(_FLAG_ERROR)
    return value


class RowParser:
    """Turns rows of one file into records; built once per file from its column map.

    `parse` runs for every row of files of millions of rows: column positions and checks are
    looked up once here, and the common cases take the shortest path."""

    def __init__(self, columns: ColumnMap, options: ParseOptions) -> None:
        self.columns = columns
        self.options = options
        self.convention = DecimalConvention(options.decimal)
        self._amount = self.convention.parse
        self._jurisdictions = set(available_profiles())
        if not _CURRENCY.match(options.currency):
            raise ValueError("currency: a three-letter ISO code such as USD, MXN, COP")

        fields = columns.fields
        # Column positions looked up once per file, not once per row.
        self._ref = fields.get("external_ref")
        self._name = fields.get("name")
        self._balance = fields.get("balance")
        self._currency = fields.get("currency")
        self._days = fields.get("days_past_due")
        self._zone = fields.get("time_zone")
        self._jurisdiction = fields.get("jurisdiction")
        self._cease = fields.get("cease_communication")
        self._attorney = fields.get("attorney_represented")
        self._width = len(columns.header)
        self._buckets = {d: AgingBucket.for_days_past_due(d).value for d in range(-1, 400)}
        self._phone_columns = tuple((pc.index, pc.kind, pc.header) for pc in columns.phones)
        self._zones_seen: dict[str, bool] = {}  # zone column values already checked
        # The columns the zones function reads an address from (postal code, state), by the keys
        # DebtorEvidence.of_account looks for; a file without them gives evidence only by zone.
        self._evidence_columns = tuple(
            (i, h) for i, h in columns.extra if h.strip().lower() in (*POSTAL_KEYS, *REGION_KEYS)
        )
        self._zone_evidence: dict[str, DebtorEvidence] = {}
        # Extra columns (custom fields) taken in one C call: files carry dozens of them.
        self._extra_names = tuple(h for _i, h in columns.extra)
        indexes = [i for i, _h in columns.extra]
        self._extra_values: Callable[[Sequence[str]], tuple[str, ...]] | None = (
            (lambda row, i=indexes[0]: (row[i],))
            if len(indexes) == 1
            else operator.itemgetter(*indexes)
            if indexes
            else None
        )
        # Country cells already read: (region, jurisdiction, problem); a file holds few spellings.
        self._countries: dict[str, tuple[str, str | None, str | None]] = {}

    def _col(self, name: str) -> str:
        return self.columns.header[self.columns.fields[name]]

    def _country(self, cell: str) -> tuple[str, str | None, str | None]:
        """A country cell: a profile code (US, UK), an ISO code or a country's name in English or
        Spanish; it sets the region the row's national numbers are read in and its jurisdiction."""
        text = cell.strip()
        region: str | None
        if text.upper() in self._jurisdictions:
            code: str | None = text.upper()
            region = region_of_jurisdiction(text.upper())
            found: tuple[str, str | None, str | None] = (region, code, None)
        else:
            region = region_of(text)
            if not text:
                found = (self.options.default_region, self.options.jurisdiction, None)
            elif region is None:
                found = (
                    self.options.default_region, None,
                    f"unknown country {text!r}: give an ISO code (MX) or a name (México, Spain)",
                )  # fmt: skip
            elif jurisdiction_of(region) not in self._jurisdictions:
                found = (
                    region, None,
                    f"no compliance profile for {region} ({text!r}); profiles: "
                    + ", ".join(sorted(self._jurisdictions)),
                )  # fmt: skip
            else:
                found = (region, jurisdiction_of(region), None)
        if len(self._countries) < 4096:
            self._countries[cell] = found
        return found

    def _valid_zone(self, zone: str) -> bool:
        known = self._zones_seen.get(zone)
        if known is None:
            known = valid_zone(zone)
            if len(self._zones_seen) < 4096:
                self._zones_seen[zone] = known
        return known

    def parse(self, row: Sequence[str]) -> tuple[AccountRecord | None, list[Problem]]:
        problems: list[Problem] = []
        if len(row) != self._width:
            return None, [Problem("*", f"has {len(row)} fields, the header has {self._width}")]
        if "\x00" in "".join(row):
            return None, [Problem("*", "contains a NUL character")]
        ref = (row[self._ref] if self._ref is not None else "").strip()
        if not ref:
            problems.append(Problem(self._col("external_ref"), "empty"))
        elif len(ref) > _LIMITS["external_ref"]:
            problems.append(Problem(self._col("external_ref"), "longer than 128 characters"))
        name = (row[self._name] if self._name is not None else "").strip()
        if not name:
            problems.append(Problem(self._col("name"), "empty"))
        elif len(name) > _LIMITS["name"]:
            problems.append(Problem(self._col("name"), "longer than 200 characters"))
        balance = Decimal(0)
        try:
            balance = self._amount(row[self._balance] if self._balance is not None else "")
            if balance > MAX_BALANCE:
                raise ValueError("too large")
        except ValueError as exc:
            problems.append(Problem(self._col("balance"), str(exc)))
        currency = self.options.currency
        raw = None if self._currency is None else row[self._currency].strip()
        if raw:
            currency = raw.upper()
            if not _CURRENCY.match(currency):
                problems.append(Problem(self._col("currency"), "not a three-letter currency code"))
        days = 0
        raw = None if self._days is None else row[self._days].strip()
        if raw:
            try:
                days = int(raw)
                if not -36500 <= days <= 36500:
                    raise ValueError
            except ValueError:
                problems.append(Problem(self._col("days_past_due"), "not a whole number of days"))
        zone: str | None = None
        raw = None if self._zone is None else row[self._zone].strip()
        if raw:
            zone = raw
            if not self._valid_zone(zone):
                problems.append(
                    Problem(self._col("time_zone"), "unknown time zone (use e.g. America/Bogota)")
                )
        jurisdiction = self.options.jurisdiction
        region = self.options.default_region
        raw = None if self._jurisdiction is None else row[self._jurisdiction]
        if raw:
            country = self._countries.get(raw)
            if country is None:
                country = self._country(raw)
            if country[2] is not None:
                problems.append(Problem(self._col("jurisdiction"), country[2]))
            else:
                region, jurisdiction = country[0], country[1]
        cease = attorney = False
        if self._cease is not None:
            flag = _FLAGS.get(row[self._cease].strip().lower())
            if flag is None:
                problems.append(Problem(self._col("cease_communication"), _FLAG_ERROR))
            cease = bool(flag)
        if self._attorney is not None:
            flag = _FLAGS.get(row[self._attorney].strip().lower())
            if flag is None:
                problems.append(Problem(self._col("attorney_represented"), _FLAG_ERROR))
            attorney = bool(flag)
        evidence: DebtorEvidence | None = None
        if self._evidence_columns:
            evidence = DebtorEvidence.of_account(
                zone, {h: row[i] for i, h in self._evidence_columns if row[i] != ""}
            )
        elif zone:
            evidence = self._zone_evidence.get(zone)
            if evidence is None:
                evidence = DebtorEvidence.of_account(zone, None)
                if len(self._zone_evidence) < 4096:
                    self._zone_evidence[zone] = evidence
        phones: list[PhoneRecord] = []
        seen: set[str] = set()
        nanp = region in _NANP_REGIONS
        for index, kind, header in self._phone_columns:
            raw = row[index].strip()
            if not raw:
                continue
            fast = _nanp_phone(raw, region) if nanp else None
            if fast is not None and fast[1] is not None:
                number, zones = fast[0], fast[1]
            else:
                try:
                    number, zones = read_phone(raw, region)
                except ValueError as exc:
                    problems.append(Problem(header, str(exc), fatal=False))
                    continue
            if number in seen:
                continue
            seen.add(number)
            # The account's zone is only what the file says; each phone keeps the zone the one
            # zones function (the claim's) finds for it when that is a single zone, for display.
            # With no evidence its finding is the number's own zones: the call is skipped.
            found = zones if evidence is None else finding_for(number, zones, evidence).zones
            zone_found = found[0] if len(found) == 1 else None
            phones.append(PhoneRecord(number, kind, len(phones) + 1, zone_found, zones))
        if not phones:
            problems.append(Problem("phones", "no valid phone number in any phone column"))
        if problems and any(p.fatal for p in problems):
            return None, problems
        bucket = self._buckets.get(days) or AgingBucket.for_days_past_due(days).value
        values = self._extra_values(row) if self._extra_values else ()
        if "" in values:
            custom = {h: v for h, v in zip(self._extra_names, values, strict=True) if v != ""}
        else:
            custom = dict(zip(self._extra_names, values, strict=True))
        return (
            AccountRecord(
                ref, name, balance, currency, days, bucket, zone, jurisdiction, cease, attorney,
                phones, custom,
            ),
            problems,
        )  # fmt: skip
