"""Generated files of the kind agencies send, with their ground truth: for the import's tests and
benchmark. Spanish headers, semicolons, decimal commas in several spellings, a UTF-8 file with
a byte order mark and some Windows-1252 rows, a country per row (codes and names), national
numbers of seven countries (Mexico's retired formats too), duplicates near and far, multi-line
records, and bad rows of known kinds at known lines.

The truth is written from the numbering plans, not from the importer: each number is drawn as
its international form, then written the way a person in that country writes it.
"""

from __future__ import annotations

import collections
import csv
import io
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import BinaryIO

MEXICO_CITY, TIJUANA = "America/Mexico_City", "America/Tijuana"
MADRID, CANARY = "Europe/Madrid", "Atlantic/Canary"
LONDON = "Europe/London"
UK_MOBILE = ("Europe/Guernsey", "Europe/Isle_of_Man", "Europe/Jersey", LONDON)

# Zones that keep the same local time (2020-2035) count as one when evidence narrows a number's
# zones: the Crown dependencies keep UK time; Tijuana keeps Pacific time with the US; Bogotá and
# Lima are UTC-5 all year.
_CLOCK = {
    "Europe/Guernsey": LONDON, "Europe/Isle_of_Man": LONDON, "Europe/Jersey": LONDON,
    TIJUANA: "America/Los_Angeles", "America/Lima": "America/Bogota",
}  # fmt: skip
# country -> (calling code, jurisdiction profile, the spellings agencies use in a country column)
COUNTRIES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "MX": ("52", "MX", ("MX", "México", "Mexico", "MEX", "méxico")),
    "US": ("1", "US", ("US", "USA", "EE. UU.", "Estados Unidos", "EEUU")),
    "ES": ("34", "ES", ("ES", "España", "Spain", "ESP")),
    "CO": ("57", "CO", ("CO", "Colombia")),
    "PE": ("51", "PE", ("PE", "Perú", "Peru")),
    "CL": ("56", "CL", ("CL", "Chile")),
    "GB": ("44", "UK", ("UK", "Reino Unido", "GB", "United Kingdom")),
}
# country -> (leading national digits, national length, the zones that area is in)
PLANS: dict[str, tuple[tuple[str, int, tuple[str, ...]], ...]] = {
    "MX": (("55", 10, (MEXICO_CITY,)), ("33", 10, (MEXICO_CITY,)), ("664", 10, (TIJUANA,))),
    "US": (
        ("212", 10, ("America/New_York",)), ("310", 10, ("America/Los_Angeles",)),
        ("312", 10, ("America/Chicago",)),
    ),
    "ES": (("91", 9, (MADRID,)), ("922", 9, (CANARY,)), ("6", 9, (CANARY, MADRID))),
    "CO": (("300", 10, ("America/Bogota",)), ("310", 10, ("America/Bogota",)),
           ("6012", 10, ("America/Bogota",))),
    "PE": (("9", 9, ("America/Lima",)), ("12", 8, ("America/Lima",))),
    "CL": (("95", 9, ("America/Santiago",)), ("22", 9, ("America/Santiago",))),
    "GB": (("207", 10, (LONDON,)), ("161", 10, (LONDON,)), ("7400", 10, UK_MOBILE)),
}  # fmt: skip


def _spaced(d: str, *cuts: int) -> str:
    parts, start = [], 0
    for cut in (*cuts, len(d)):
        parts.append(d[start:cut])
        start = cut
    return " ".join(p for p in parts if p)


# How each country's people write a national number `d` (its national significant digits).
LAYOUTS: dict[str, tuple[Callable[[str], str], ...]] = {
    "MX": (
        lambda d: _spaced(d, 2, 6) if d[:2] in ("55", "33") else _spaced(d, 3, 6),
        lambda d: f"({d[:2]}) {d[2:6]}-{d[6:]}" if d[:2] in ("55", "33") else d,
        lambda d: "044 " + _spaced(d, 2, 6),  # retired: mobile from a local landline
        lambda d: "045 " + _spaced(d, 3, 6),  # retired: mobile, long distance
        lambda d: "01 " + _spaced(d, 3, 6),  # retired: long-distance prefix
        lambda d: "+52 1 " + _spaced(d, 2, 6),  # retired: the mobile 1 after +52
        lambda d: "1 " + d,  # retired: the national mobile 1
        lambda d: "+52 " + d,
    ),
    "US": (
        lambda d: f"({d[:3]}) {d[3:6]}-{d[6:]}",
        lambda d: f"{d[:3]}-{d[3:6]}-{d[6:]}",
        lambda d: f"1 {d[:3]} {d[3:6]} {d[6:]}",
        lambda d: f"+1 {d[:3]} {d[3:6]} {d[6:]}",
    ),
    "ES": (
        lambda d: _spaced(d, 3, 6),
        lambda d: _spaced(d, 2, 5, 7),
        lambda d: "+34 " + _spaced(d, 3, 6),
        lambda d: "0034 " + d,
    ),
    "CO": (
        lambda d: _spaced(d, 3, 6),
        lambda d: f"({d[:3]}) {d[3:]}",
        lambda d: "+57 " + d,
    ),
    "PE": (
        lambda d: _spaced(d, 3, 6) if len(d) == 9 else f"(01) {d[1:4]}-{d[4:]}",
        lambda d: d if len(d) == 9 else "01 " + _spaced(d[1:], 3),
        lambda d: "+51 " + d,
    ),
    "CL": (
        lambda d: _spaced(d, 1, 5),
        lambda d: "+56 " + _spaced(d, 1, 5),
        lambda d: d,
    ),
    "GB": (
        lambda d: "0" + _spaced(d, 2, 6) if d[0] == "2" else "0" + _spaced(d, 4),
        lambda d: "+44 " + _spaced(d, 4),
        lambda d: "0" + d,
    ),
}

HEADER = [
    "Número de cuenta", "Nombre", "Saldo", "Moneda", "Días de mora", "Zona horaria", "País",
    "Celular", "Teléfono casa", "Teléfono trabajo", "Dirección", "Producto", "Sucursal",
]  # fmt: skip
PHONE_COLUMNS = (7, 8, 9)
# Each bad kind and the column the rejects file must name.
BAD_KINDS: dict[str, str] = {
    "bad_balance": "Saldo",
    "unknown_country": "País",
    "empty_ref": "Número de cuenta",
    "foreign_national": "phones",  # a US national number in a Spanish row: not valid in Spain
    "multiline_bad_balance": "Saldo",  # a bad record over three lines, reported at its first
    "undecodable": "*",  # bytes neither UTF-8 nor Windows-1252 read
    "short_row": "*",
}
FIRST_NAMES = ("José", "María", "Ángela", "Íñigo", "Begoña", "Raúl", "Sofía", "Nuñez", "Peña")
LAST_NAMES = ("Núñez", "Gómez", "Pérez", "Martínez", "Ibáñez", "Muñoz", "López", "Güell")


@dataclass(slots=True)
class Expected:
    """What the database must hold for one account after the import."""

    balance: Decimal
    jurisdiction: str
    time_zone: str | None
    phones: list[tuple[str, tuple[str, ...]]]  # (E.164, the number's own zones), in order
    custom: dict[str, str]

    def phone_rows(self) -> list[tuple[str, int, str | None]]:
        """(number, priority, zone stored) as the README's rules say: the zones of the number,
        narrowed by the account's zone where they overlap; one zone is stored, several none."""
        rows = []
        for priority, (number, zones) in enumerate(self.phones, start=1):
            if self.time_zone is not None:
                clock = _CLOCK.get(self.time_zone, self.time_zone)
                overlap = tuple(z for z in zones if _CLOCK.get(z, z) == clock)
                zones = overlap or tuple(sorted({*zones, self.time_zone}))
            rows.append((number, priority, zones[0] if len(zones) == 1 else None))
        return rows


@dataclass(slots=True)
class Truth:
    accounts: dict[str, Expected] = field(default_factory=dict)
    rejected: dict[int, str] = field(default_factory=dict)  # first line -> column
    fallback_lines: set[int] = field(default_factory=set)  # rows written in Windows-1252
    rows: int = 0
    lines: int = 1  # the header


@dataclass(frozen=True, slots=True)
class AgencySpec:
    accounts: int
    seed: int = 11
    columns: int = len(HEADER)  # extra columns "Campo N" up to this many
    cp1252_every: int = 37  # every n-th row is written in Windows-1252
    near_duplicate_every: int = 11  # the account's second row follows it at once
    far_duplicate_every: int = 13  # the account's second row comes `far_distance` rows later
    far_distance: int = 300
    foreign_prefix_every: int = 9  # a number written with another country's + prefix
    multiline_every: int = 17  # a good record whose address spans two lines
    bad_every: int = 23  # 0: no bad rows
    keep_truth: bool = True


class _Row:
    __slots__ = ("bad", "cells", "encoding")

    def __init__(self, cells: list[str], encoding: str = "utf-8", bad: str | None = None) -> None:
        self.cells = cells
        self.encoding = encoding
        self.bad = bad


def _money(cents: int, style: int) -> str:
    """Decimal commas as agencies write them: grouped by dots or spaces, plain, with a sign."""
    whole, frac = divmod(cents, 100)
    dotted = f"{whole:,}".replace(",", ".")
    spellings = (f"{dotted},{frac:02d}", f"{whole},{frac:02d}", f"$ {dotted},{frac:02d}",
                 f"{dotted.replace('.', ' ')},{frac:02d}")  # fmt: skip
    return spellings[style % len(spellings)]


def _number(r: random.Random, country: str) -> tuple[str, str, tuple[str, ...]]:
    """(national digits, E.164, zones) of a random valid number of `country`."""
    lead, length, zones = r.choice(PLANS[country])
    rest = "".join(r.choice("0123456789") for _ in range(length - len(lead)))
    if country == "US":
        rest = r.choice("23456789") + rest[1:]  # exchanges start 2-9
    national = lead + rest
    return national, f"+{COUNTRIES[country][0]}{national}", zones


class AgencyFile:
    """Writes the file and builds its truth as it goes (`truth` is filled by `write`)."""

    def __init__(self, spec: AgencySpec) -> None:
        self.spec = spec
        self.truth = Truth()
        self.r = random.Random(spec.seed)
        self.extra = [f"Campo {n}" for n in range(len(HEADER) + 1, spec.columns + 1)]

    def _good(self, i: int, ref: str, later: bool = False) -> tuple[_Row, Expected]:
        r, spec = self.r, self.spec
        country = list(COUNTRIES)[i % len(COUNTRIES)]
        _code, jurisdiction, spellings = COUNTRIES[country]
        phones: list[tuple[str, tuple[str, ...]]] = []
        cells_phones = ["", "", ""]
        for slot in range(1 if later else 1 + i % 3):
            written_in = country
            if spec.foreign_prefix_every and (i + slot) % spec.foreign_prefix_every == 0:
                # A number given with its country code belongs to that country, whatever the row.
                written_in = "US" if country != "US" else "MX"
                national, e164, zones = _number(r, written_in)
                text = f"+{COUNTRIES[written_in][0]} {national}"
            else:
                national, e164, zones = _number(r, country)
                layouts = LAYOUTS[country]
                text = layouts[(i + slot) % len(layouts)](national)
            cells_phones[2 if later else slot] = text
            if e164 not in (p for p, _ in phones):
                phones.append((e164, zones))
        zone: str | None = None
        if not later and i % 4 == 0:
            zones = phones[0][1]
            zone = MADRID if MADRID in zones else LONDON if LONDON in zones else zones[0]
        cents = r.randint(100, 90_000_000)
        address = f"Calle {i} #{i % 97}"
        if spec.multiline_every and i % spec.multiline_every == 0:
            address += f"\nCol. Centro {i % 7}"
        custom = {
            "Dirección": address,
            "Producto": ("préstamo" if later else "tarjeta") if i % 2 else "crédito",
        }
        if not later:
            custom["Sucursal"] = f"Sucursal {i % 31}"
        for n, name in enumerate(self.extra):
            custom[name] = f"valor {i % 1000}-{n}"
        name = f"{FIRST_NAMES[i % len(FIRST_NAMES)]} {LAST_NAMES[i % len(LAST_NAMES)]} {i}"
        cells = [
            ref, name, _money(cents, i), "MXN" if country == "MX" else "", str(i % 200),
            zone or "", spellings[(i // len(COUNTRIES)) % len(spellings)], *cells_phones,
            custom["Dirección"], custom["Producto"], custom.get("Sucursal", ""),
            *(custom[name] for name in self.extra),
        ]  # fmt: skip
        encoding = "cp1252" if spec.cp1252_every and i % spec.cp1252_every == 0 else "utf-8"
        expected = Expected(Decimal(cents) / 100, jurisdiction, zone, phones, custom)
        return _Row(cells, encoding), expected

    def _bad(self, i: int, kind: str) -> _Row:
        row, _ = self._good(i, f"BAD{i:08d}")
        cells = row.cells
        if kind == "bad_balance":
            cells[2] = "12,34,5"
        elif kind == "unknown_country":
            cells[6] = "Narnia"
        elif kind == "empty_ref":
            cells[0] = ""
        elif kind == "foreign_national":
            cells[6] = "España"
            cells[7:10] = ["(646) 264-4909", "", ""]
        elif kind == "multiline_bad_balance":
            cells[10] = "Calle 1\nPiso 2\nPuerta 3"
            cells[2] = "1.2.3"
        elif kind == "undecodable":
            cells[1] = "Jos\x81 P\u00e9rez"  # 0x81: no character in Windows-1252
            return _Row(cells, "cp1252-raw", kind)
        elif kind == "short_row":
            del cells[5:]
        return _Row(cells, "utf-8", kind)

    def write(self, out: BinaryIO) -> Truth:
        spec, truth = self.spec, self.truth
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")
        out.write(b"\xef\xbb\xbf")  # a byte order mark, as Excel writes
        writer.writerow(HEADER + self.extra)
        out.write(buffer.getvalue().encode())
        later: collections.deque[tuple[int, _Row]] = collections.deque()  # (due, row)
        kinds = list(BAD_KINDS)
        bad_seen = 0
        i = 0
        written = 0
        while i < spec.accounts or later:
            rows: list[_Row] = []
            while later and (later[0][0] <= written or i >= spec.accounts):
                rows.append(later.popleft()[1])
            if i < spec.accounts:
                i += 1
                if spec.bad_every and i % spec.bad_every == 0:
                    rows.append(self._bad(i, kinds[bad_seen % len(kinds)]))
                    bad_seen += 1
                else:
                    ref = f"C{i:08d}"
                    row, expected = self._good(i, ref)
                    rows.append(row)
                    near, far = spec.near_duplicate_every, spec.far_duplicate_every
                    for every, gap in ((near, 0), (far, spec.far_distance)):
                        if every and i % every == 0:
                            again, more = self._good(i, ref, later=True)
                            _merge(expected, more)
                            if gap == 0:
                                rows.append(again)
                            else:
                                later.append((written + gap, again))
                    if spec.keep_truth:
                        truth.accounts[ref] = expected
            for row in rows:
                buffer.seek(0)
                buffer.truncate()
                writer.writerow(row.cells)
                text = buffer.getvalue()
                first = truth.lines + 1
                truth.lines += text.count("\n")
                truth.rows += 1
                written += 1
                if row.encoding == "cp1252-raw":
                    data = b"\x81".join(part.encode("cp1252") for part in text.split("\x81"))
                else:
                    data = text.encode(row.encoding)
                if spec.keep_truth:
                    if row.bad is not None:
                        truth.rejected[first] = BAD_KINDS[row.bad]
                    elif row.encoding == "cp1252":
                        truth.fallback_lines.add(first)
                out.write(data)
        return truth


def _merge(first: Expected, later: Expected) -> None:
    """The README's rules for a later row of the same account (the oracle's own copy)."""
    first.balance = later.balance
    first.time_zone = later.time_zone or first.time_zone
    known = {number for number, _ in first.phones}
    first.phones += [(n, z) for n, z in later.phones if n not in known]
    first.custom.update({k: v for k, v in later.custom.items() if v != ""})
