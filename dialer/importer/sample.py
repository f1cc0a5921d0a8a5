"""Generated account files for demos, tests and the import benchmark; written as a stream.

Bad rows of known kinds can be mixed in at known positions, so tests can check every reject.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TextIO

US_AREAS = (212, 310, 305, 312, 415, 713, 206, 617, 808, 907, 404, 602, 303, 503)
CO_PREFIXES = (300, 301, 310, 311, 312, 315, 316, 320, 321, 350)

# Each bad kind, the column the rejects file must name (header of the English layout) and why.
BAD_KINDS: dict[str, str] = {
    "empty_ref": "account",
    "bad_balance": "balance",
    "bad_phone": "phones",
    "bad_zone": "time_zone",
    "bad_days": "days_past_due",
    "bad_flag": "cease_communication",
    "bad_currency": "currency",
    "short_row": "*",
    "empty_name": "name",
    "bad_jurisdiction": "jurisdiction",
}
EN_HEADER = [
    "account", "name", "balance", "currency", "days_past_due", "time_zone", "jurisdiction",
    "cease_communication", "mobile_phone", "home_phone", "work_phone", "product",
]  # fmt: skip
ES_HEADER = [
    "Número de cuenta", "Nombre", "Saldo", "Moneda", "Días de mora", "Zona horaria", "País",
    "No contactar", "Celular", "Teléfono casa", "Teléfono trabajo", "Producto",
]  # fmt: skip


@dataclass(frozen=True, slots=True)
class SampleSpec:
    rows: int
    locale: str = "en"  # "en": US debtors, "1,234.56"; "es": Colombian debtors, "1.234,56"
    bad_every: int = 0  # every n-th row is bad (0: none)
    bad_count: int = 0  # or exactly this many bad rows, spread evenly (wins over bad_every)
    seed: int = 7
    ref_prefix: str = "ACC"


def _money(cents: int, locale: str) -> str:
    whole, frac = divmod(cents, 100)
    grouped = f"{whole:,}"
    if locale == "es":
        return grouped.replace(",", ".") + f",{frac:02d}"
    return f"{grouped}.{frac:02d}"


def _phone(r: random.Random, locale: str) -> str:
    if locale == "es":
        return f"{r.choice(CO_PREFIXES)} {r.randint(200, 999)} {r.randint(0, 9999):04d}"
    return f"({r.choice(US_AREAS)}) {r.randint(200, 999)}-{r.randint(0, 9999):04d}"


def good_row(i: int, r: random.Random, spec: SampleSpec) -> list[str]:
    es = spec.locale == "es"
    zone = "" if i % 3 else ("America/Bogota" if es else "America/New_York")
    return [
        f"{spec.ref_prefix}{i:08d}",
        f"Debtor {i}",
        _money(r.randint(1000, 50_000_000), spec.locale),
        "" if i % 2 else ("COP" if es else "USD"),
        str(r.randint(-10, 400)),
        zone,
        "CO" if es else "US",
        "no" if i % 50 else "yes",
        _phone(r, spec.locale),
        _phone(r, spec.locale) if i % 2 else "",
        _phone(r, spec.locale) if i % 5 == 0 else "",
        "card" if i % 2 else "loan",
    ]


def bad_row(i: int, kind: str, r: random.Random, spec: SampleSpec) -> list[str]:
    row = good_row(i, r, spec)
    if kind == "empty_ref":
        row[0] = ""
    elif kind == "bad_balance":
        row[2] = "12,34.5.6" if spec.locale == "en" else "1.2.3,4,5"
    elif kind == "bad_phone":
        row[8], row[9], row[10] = "12", "not a phone", ""
    elif kind == "bad_zone":
        row[5] = "Mars/Olympus_Mons"
    elif kind == "bad_days":
        row[4] = "forty"
    elif kind == "bad_flag":
        row[7] = "maybe"
    elif kind == "bad_currency":
        row[3] = "DOLLARS"
    elif kind == "short_row":
        row = row[:5]
    elif kind == "empty_name":
        row[1] = "  "
    elif kind == "bad_jurisdiction":
        row[6] = "ZZ"
    return row


def rows(spec: SampleSpec) -> Iterator[tuple[list[str], str | None]]:
    """(row, bad kind or None) for rows 1..spec.rows (row i is on file line i + 1)."""
    r = random.Random(spec.seed)
    kinds = list(BAD_KINDS)
    step = spec.rows / spec.bad_count if spec.bad_count else 0.0
    bad = {int((k + 0.5) * step) + 1: kinds[k % len(kinds)] for k in range(spec.bad_count)}
    for i in range(1, spec.rows + 1):
        kind: str | None = bad.get(i)
        if kind is None and not bad and spec.bad_every and i % spec.bad_every == 0:
            kind = kinds[(i // spec.bad_every) % len(kinds)]
        yield (good_row(i, r, spec), None) if kind is None else (bad_row(i, kind, r, spec), kind)


def write(out: TextIO, spec: SampleSpec) -> None:
    writer = csv.writer(out, delimiter=";" if spec.locale == "es" else ",")
    writer.writerow(ES_HEADER if spec.locale == "es" else EN_HEADER)
    for row, _kind in rows(spec):
        writer.writerow(row)
