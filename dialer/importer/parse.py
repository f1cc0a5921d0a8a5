"""One CSV row -> one account record, or the reasons it is refused (column and why).

Pure: amounts with an explicit decimal convention, phones to E.164 with a default region, the
debtor's time zone from its column or, when unambiguous, from the phone number.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

import phonenumbers
from phonenumbers import timezone as phone_timezone

from dialer.compliance.profiles import available_profiles
from dialer.compliance.zones import UNKNOWN_ZONE, valid_zone
from dialer.importer.columns import ColumnMap
from dialer.store.models import AgingBucket

MAX_BALANCE = Decimal("999999999999.99")  # NUMERIC(14, 2)
_TRUE = {"1", "true", "yes", "y", "si", "sí", "s", "x", "verdadero"}
_FALSE = {"", "0", "false", "no", "n", "falso"}
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_LIMITS = {"external_ref": 128, "name": 200}
_NANP_REGIONS = frozenset(phonenumbers.region_codes_for_country_code(1))


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
        text = raw.strip().lstrip("$€£").strip().replace(" ", "").replace("\u00a0", "")
        if not self.pattern.match(text):
            raise ValueError(
                f"not an amount written like {'1,234.56' if self.decimal == '.' else '1.234,56'}"
            )
        plain = text.replace(self.thousands, "").replace(self.decimal, ".")
        try:
            return Decimal(plain).quantize(Decimal("0.01"))
        except InvalidOperation as exc:  # pragma: no cover - the pattern already guards this
            raise ValueError("not an amount") from exc


@functools.cache
def _amount_pattern(decimal: str, thousands: str) -> re.Pattern[str]:
    d, t = re.escape(decimal), re.escape(thousands)
    # Either grouped thousands ("1,234,567") or plain digits, then at most two decimals.
    return re.compile(rf"^(?:\d{{1,3}}(?:{t}\d{{3}})+|\d+)(?:{d}\d{{1,2}})?$")


@dataclass(frozen=True, slots=True)
class PhoneRecord:
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


# Repeated numbers sit close together in client files: a small cache catches them and keeps
# memory flat however long the file is.
@functools.lru_cache(maxsize=4096)
def normalise_phone(raw: str, region: str) -> tuple[str, tuple[str, ...]]:
    """(E.164, candidate time zones) for a valid number; ValueError saying why otherwise."""
    parsed: phonenumbers.PhoneNumber | None = None
    digits = raw.translate(_NANP_PUNCT)
    if region in _NANP_REGIONS and digits.isdigit():
        # Fast path for the common North American layout: skip the general parser.
        if len(digits) == 11 and digits[0] == "1":
            digits = digits[1:]
        if len(digits) == 10:
            parsed = phonenumbers.PhoneNumber(country_code=1, national_number=int(digits))
    if parsed is None:
        try:
            parsed = phonenumbers.parse(raw, region)
        except phonenumbers.NumberParseException as exc:
            raise ValueError("not a phone number") from exc
    # Checking the default region first is cheap; the general check walks every region of the
    # country code (25 for +1).
    if not (
        phonenumbers.is_valid_number_for_region(parsed, region)
        or phonenumbers.is_valid_number(parsed)
    ):
        raise ValueError(f"not a valid phone number for region {region}")
    zones = tuple(
        z
        for z in phone_timezone.time_zones_for_geographical_number(parsed)
        if z != UNKNOWN_ZONE and valid_zone(z)
    )
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164), zones


def _flag(raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError("expected yes/no (1/0, true/false, si/no)")


class RowParser:
    """Turns rows of one file into records; built once per file from its column map."""

    def __init__(self, columns: ColumnMap, options: ParseOptions) -> None:
        self.columns = columns
        self.options = options
        self.convention = DecimalConvention(options.decimal)
        self._amount = self.convention.pattern
        self._jurisdictions = set(available_profiles())
        if not _CURRENCY.match(options.currency):
            raise ValueError("currency: a three-letter ISO code such as USD, MXN, COP")

    def _get(self, row: Sequence[str], name: str) -> str | None:
        i = self.columns.fields.get(name)
        if i is None or i >= len(row):
            return None
        return row[i]

    def parse(self, row: Sequence[str]) -> tuple[AccountRecord | None, list[Problem]]:
        problems: list[Problem] = []
        header = self.columns.header

        def col(name: str) -> str:
            return header[self.columns.fields[name]]

        if len(row) != len(header):
            return None, [Problem("*", f"has {len(row)} fields, the header has {len(header)}")]
        if any("\x00" in v for v in row):
            return None, [Problem("*", "contains a NUL character")]
        ref = (self._get(row, "external_ref") or "").strip()
        if not ref:
            problems.append(Problem(col("external_ref"), "empty"))
        elif len(ref) > _LIMITS["external_ref"]:
            problems.append(Problem(col("external_ref"), "longer than 128 characters"))
        name = (self._get(row, "name") or "").strip()
        if not name:
            problems.append(Problem(col("name"), "empty"))
        elif len(name) > _LIMITS["name"]:
            problems.append(Problem(col("name"), "longer than 200 characters"))
        balance = Decimal(0)
        try:
            balance = self.convention.parse(self._get(row, "balance") or "")
            if balance > MAX_BALANCE:
                raise ValueError("too large")
        except ValueError as exc:
            problems.append(Problem(col("balance"), str(exc)))
        currency = self.options.currency
        raw = self._get(row, "currency")
        if raw is not None and raw.strip():
            currency = raw.strip().upper()
            if not _CURRENCY.match(currency):
                problems.append(Problem(col("currency"), "not a three-letter currency code"))
        days = 0
        raw = self._get(row, "days_past_due")
        if raw is not None and raw.strip():
            try:
                days = int(raw.strip())
                if not -36500 <= days <= 36500:
                    raise ValueError
            except ValueError:
                problems.append(Problem(col("days_past_due"), "not a whole number of days"))
        zone: str | None = None
        raw = self._get(row, "time_zone")
        if raw is not None and raw.strip():
            zone = raw.strip()
            if not valid_zone(zone):
                problems.append(
                    Problem(col("time_zone"), "unknown time zone (use e.g. America/Bogota)")
                )
        jurisdiction = self.options.jurisdiction
        raw = self._get(row, "jurisdiction")
        if raw is not None and raw.strip():
            jurisdiction = raw.strip().upper()
            if jurisdiction == "GB":
                jurisdiction = "UK"
            if jurisdiction not in self._jurisdictions:
                problems.append(
                    Problem(col("jurisdiction"), f"no compliance profile {jurisdiction!r}")
                )
        flags = {}
        for flag in ("cease_communication", "attorney_represented"):
            raw = self._get(row, flag)
            try:
                flags[flag] = _flag(raw) if raw is not None else False
            except ValueError as exc:
                problems.append(Problem(col(flag), str(exc)))
        phones: list[PhoneRecord] = []
        seen: set[str] = set()
        for pc in self.columns.phones:
            raw = row[pc.index].strip()
            if not raw:
                continue
            try:
                number, zones = normalise_phone(raw, self.options.default_region)
            except ValueError as exc:
                problems.append(Problem(pc.header, str(exc), fatal=False))
                continue
            if number in seen:
                continue
            seen.add(number)
            phones.append(
                PhoneRecord(number, pc.kind, len(phones) + 1, zones[0] if len(zones) == 1 else None)
            )
        if not phones:
            problems.append(Problem("phones", "no valid phone number in any phone column"))
        if any(p.fatal for p in problems):
            return None, problems
        if zone is None and phones:
            # Only an unambiguous number pins the debtor's zone; otherwise the claim-time rule
            # uses every candidate zone of the number (the strictest window).
            zone = phones[0].time_zone
        custom = {h: row[i] for i, h in self.columns.extra if row[i] != ""}
        return (
            AccountRecord(
                external_ref=ref,
                name=name,
                balance=balance,
                currency=currency,
                days_past_due=days,
                aging_bucket=AgingBucket.for_days_past_due(days).value,
                time_zone=zone,
                jurisdiction=jurisdiction,
                cease_communication=flags["cease_communication"],
                attorney_represented=flags["attorney_represented"],
                phones=phones,
                custom_fields=custom,
            ),
            problems,
        )
