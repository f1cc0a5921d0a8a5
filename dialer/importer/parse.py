"""One CSV row -> one account record, or the reasons it is refused (column and why).

Pure: amounts with an explicit decimal convention, phones to E.164 with a default region, the
debtor's time zone from its column or, when unambiguous, from the phone number.
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NamedTuple

import phonenumbers
from phonenumbers import tzdata as phone_tzdata
from phonenumbers.phonemetadata import PhoneNumberDesc

from dialer.compliance.profiles import available_profiles
from dialer.compliance.zones import DebtorEvidence, finding_for, valid_zone, zones_of_parsed
from dialer.importer.columns import ColumnMap
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
        """A later row for the same account: its values win, phones accumulate (no repeats)."""
        known = {p.number for p in self.phones}
        extra = [p for p in later.phones if p.number not in known]
        base = len(self.phones)
        self.phones.extend(
            PhoneRecord(p.number, p.phone_type, base + i + 1, p.time_zone)
            for i, p in enumerate(extra)
        )
        for name in (
            "name", "balance", "currency", "days_past_due", "aging_bucket", "jurisdiction",
            "cease_communication", "attorney_represented",
        ):  # fmt: skip
            setattr(self, name, getattr(later, name))
        self.time_zone = later.time_zone or self.time_zone
        self.custom_fields.update(later.custom_fields)


@dataclass(frozen=True, slots=True)
class Problem:
    column: str
    reason: str
    fatal: bool = True  # False: the row is kept (e.g. one bad phone among good ones)


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
        self._nanp = options.default_region in _NANP_REGIONS
        self._zones_seen: dict[str, bool] = {}  # zone column values already checked

    def _col(self, name: str) -> str:
        return self.columns.header[self.columns.fields[name]]

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
        raw = None if self._jurisdiction is None else row[self._jurisdiction].strip()
        if raw:
            jurisdiction = raw.upper()
            if jurisdiction == "GB":
                jurisdiction = "UK"
            if jurisdiction not in self._jurisdictions:
                problems.append(
                    Problem(self._col("jurisdiction"), f"no compliance profile {jurisdiction!r}")
                )
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
        phones: list[PhoneRecord] = []
        seen: set[str] = set()
        number_zones: dict[str, tuple[str, ...]] = {}
        region = self.options.default_region
        for index, kind, header in self._phone_columns:
            raw = row[index].strip()
            if not raw:
                continue
            fast = _nanp_phone(raw, region) if self._nanp else None
            if fast is not None and fast[1] is not None:
                number, zones = fast[0], fast[1]
            else:
                try:
                    number, zones = normalise_phone(raw, region)
                except ValueError as exc:
                    problems.append(Problem(header, str(exc), fatal=False))
                    continue
            if number in seen:
                continue
            number_zones[number] = zones
            seen.add(number)
            phones.append(PhoneRecord(number, kind, len(phones) + 1, None))
        if not phones:
            problems.append(Problem("phones", "no valid phone number in any phone column"))
        if problems and any(p.fatal for p in problems):
            return None, problems
        bucket = self._buckets.get(days) or AgingBucket.for_days_past_due(days).value
        custom = {h: row[i] for i, h in self.columns.extra if row[i] != ""}
        # The account's zone is only what the file says; each phone keeps the zone the one zones
        # function (the claim's) finds for it when that is a single zone, for display.
        evidence = DebtorEvidence.of_account(zone, custom)
        for i, p in enumerate(phones):
            zones = number_zones.get(p.number, ())
            found = finding_for(p.number, zones, evidence).zones
            if len(found) == 1:
                phones[i] = p._replace(time_zone=found[0])
        return (
            AccountRecord(
                ref, name, balance, currency, days, bucket, zone, jurisdiction, cease, attorney,
                phones, custom,
            ),
            problems,
        )  # fmt: skip
