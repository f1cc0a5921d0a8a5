"""Which CSV column feeds which account field: header names in Spanish or English, or a mapping.

Headers are compared after folding case, accents and punctuation ("Teléfono 2" == "telefono_2").
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dialer.errors import UserError

# Canonical field -> accepted header names (already folded). The first name is the canonical one,
# which `dialer` writes on export so an exported file imports unchanged.
ALIASES: dict[str, tuple[str, ...]] = {
    "external_ref": (
        "external_ref",
        "account",
        "account_id",
        "account_number",
        "account_no",
        "reference",
        "ref",
        "cuenta",
        "numero_cuenta",
        "numero_de_cuenta",
        "no_cuenta",
        "nro_cuenta",
        "num_cuenta",
        "id_cuenta",
        "referencia",
        "id_cliente",
        "codigo_cliente",
    ),
    "name": (
        "name",
        "full_name",
        "debtor",
        "debtor_name",
        "customer",
        "customer_name",
        "nombre",
        "nombre_completo",
        "deudor",
        "cliente",
        "titular",
        "razon_social",
    ),
    "balance": (
        "balance",
        "amount",
        "amount_due",
        "outstanding",
        "debt",
        "saldo",
        "saldo_total",
        "monto",
        "importe",
        "deuda",
        "saldo_vencido",
    ),
    "currency": ("currency", "moneda", "divisa"),
    "days_past_due": (
        "days_past_due",
        "dpd",
        "days_overdue",
        "days_late",
        "dias_mora",
        "dias_de_mora",
        "dias_vencidos",
        "dias_atraso",
        "mora",
    ),
    "time_zone": ("time_zone", "timezone", "tz", "zona_horaria", "huso_horario"),
    "jurisdiction": ("jurisdiction", "country", "jurisdiccion", "pais"),
    "cease_communication": (
        "cease_communication",
        "cease",
        "do_not_contact",
        "cese_comunicacion",
        "no_contactar",
    ),
    "attorney_represented": (
        "attorney_represented",
        "attorney",
        "represented_by_attorney",
        "abogado",
        "representado_por_abogado",
        "con_abogado",
    ),
}
SCALARS = tuple(ALIASES)
REQUIRED = ("external_ref", "name", "balance")
# Phone columns: a word saying "phone", an optional kind, an optional number ("Teléfono 2").
_PHONE = re.compile(
    r"^(?:(?P<kind1>mobile|cell|celular|movil|home|casa|work|trabajo|oficina|fijo)_)?"
    r"(?:phone|telephone|tel|telefono|fono|numero_telefono|number|celular|movil|mobile|cell)"
    r"(?:_(?P<kind2>mobile|cell|celular|movil|home|casa|work|trabajo|oficina|fijo))?"
    r"(?:_?\d{1,2})?$"
)
_KIND = {
    "mobile": "mobile", "cell": "mobile", "celular": "mobile", "movil": "mobile",
    "home": "home", "casa": "home", "fijo": "home",
    "work": "work", "trabajo": "work", "oficina": "work",
}  # fmt: skip


def fold(header: str) -> str:
    """'Teléfono  Móvil-2' -> 'telefono_movil_2'."""
    plain = unicodedata.normalize("NFKD", header).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "_", plain.lower()).strip("_")


def phone_kind(header: str) -> str | None:
    """The phone type a header names ('mobile', 'home', 'work', 'unknown'), None if not a phone."""
    folded = fold(header)
    m = _PHONE.match(folded)
    if not m:
        return None
    kind = m.group("kind1") or m.group("kind2")
    if kind is None and folded.startswith(("celular", "movil", "mobile", "cell")):
        kind = "mobile"
    return _KIND.get(kind or "", "unknown")


@dataclass(frozen=True, slots=True)
class PhoneColumn:
    index: int
    header: str
    kind: str


@dataclass(frozen=True, slots=True)
class ColumnMap:
    """Column indexes for each field of a file whose header is known."""

    header: tuple[str, ...]
    fields: dict[str, int]
    phones: tuple[PhoneColumn, ...]
    extra: tuple[tuple[int, str], ...] = ()  # unmapped columns, kept in custom_fields


@dataclass(frozen=True, slots=True)
class Mapping_:
    """An explicit mapping (from a TOML file): field -> header, phones -> [headers]."""

    fields: dict[str, str] = field(default_factory=dict)
    phones: tuple[str, ...] = ()
    keep_extra: bool = True


def load_mapping(path: str | Path) -> tuple[Mapping_, dict[str, object]]:
    """A mapping file: `[columns]` (field = "Header", phones = ["H1", "H2"]) and `[options]`."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UserError(f"mapping file {path}: {exc}") from exc
    columns = data.get("columns", {})
    if not isinstance(columns, dict):
        raise UserError(f"mapping file {path}: [columns] must be a table")
    phones = columns.pop("phones", [])
    if not isinstance(phones, list) or not all(isinstance(p, str) for p in phones):
        raise UserError(f"mapping file {path}: columns.phones is a list of header names")
    unknown = set(columns) - set(SCALARS)
    if unknown:
        raise UserError(
            f"mapping file {path}: unknown fields {sorted(unknown)}; known: {', '.join(SCALARS)}"
        )
    if not all(isinstance(v, str) for v in columns.values()):
        raise UserError(f"mapping file {path}: each field maps to one header name (a string)")
    options = data.get("options", {})
    if not isinstance(options, dict):
        raise UserError(f"mapping file {path}: [options] must be a table")
    return (
        Mapping_(dict(columns), tuple(phones), bool(options.pop("keep_extra", True))),
        options,
    )


def resolve(header: Sequence[str], mapping: Mapping_ | None = None) -> ColumnMap:
    """Match a header row to fields; UserError names what is missing or duplicated."""
    folded = [fold(h) for h in header]
    index: dict[str, int] = {}
    for i, f in enumerate(folded):
        index.setdefault(f, i)
    fields: dict[str, int] = {}
    used: set[int] = set()
    explicit: Mapping[str, str] = mapping.fields if mapping else {}
    for name, wanted in explicit.items():
        if fold(wanted) not in index:
            raise UserError(f"mapping: column {wanted!r} for {name} is not in the file's header")
        fields[name] = index[fold(wanted)]
    for name, aliases in ALIASES.items():
        if name in fields:
            continue
        hits = [index[a] for a in aliases if a in index]
        if len(hits) > 1:
            names = ", ".join(repr(header[i]) for i in hits)
            raise UserError(f"header: several columns could be {name} ({names}); use a mapping")
        if hits:
            fields[name] = hits[0]
    used.update(fields.values())
    phones: list[PhoneColumn] = []
    if mapping and mapping.phones:
        for wanted in mapping.phones:
            if fold(wanted) not in index:
                raise UserError(f"mapping: phone column {wanted!r} is not in the file's header")
            i = index[fold(wanted)]
            phones.append(PhoneColumn(i, header[i], phone_kind(header[i]) or "unknown"))
    else:
        for i, h in enumerate(header):
            kind = phone_kind(h)
            if kind is not None and i not in used:
                phones.append(PhoneColumn(i, h, kind))
    used.update(p.index for p in phones)
    missing = [f for f in REQUIRED if f not in fields]
    if missing:
        raise UserError(
            f"header: no column for {', '.join(missing)}; accepted names: "
            + "; ".join(f"{m}: {', '.join(ALIASES[m][:6])}" for m in missing)
        )
    if not phones:
        raise UserError("header: no phone column (e.g. phone, phone2, telefono, celular)")
    keep = mapping.keep_extra if mapping else True
    extra = (
        tuple((i, h) for i, h in enumerate(header) if i not in used and h.strip()) if keep else ()
    )
    return ColumnMap(tuple(header), fields, tuple(phones), extra)
