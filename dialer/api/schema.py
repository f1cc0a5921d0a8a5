"""JSON Schema fragments that both document the API (OpenAPI) and validate request bodies.

One source of truth: the schema a handler publishes is the one its input is checked against, and
a failure names the field (`caps.phone_per_day: expected integer`).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence

JsonSchema = dict[str, object]
MAX_ID = 2**63 - 1


class Invalid(ValueError):
    """A request body or parameter that does not match its schema; `field` names where."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}" if field else detail)
        self.field = field
        self.detail = detail


def string(
    max_length: int = 200,
    *,
    min_length: int = 0,
    enum: Sequence[str] | None = None,
    fmt: str | None = None,
    pattern: str | None = None,
    nullable: bool = False,
    description: str | None = None,
) -> JsonSchema:
    s: JsonSchema = {"type": "string", "maxLength": max_length}
    if min_length:
        s["minLength"] = min_length
    if enum is not None:
        s = {"type": "string", "enum": list(enum)}
    if fmt:
        s["format"] = fmt
    if pattern:
        s["pattern"] = pattern
    if nullable:
        s["nullable"] = True
    if description:
        s["description"] = description
    return s


def integer(
    minimum: int = 0, maximum: int = 2**31 - 1, *, nullable: bool = False, description: str = ""
) -> JsonSchema:
    s: JsonSchema = {"type": "integer", "minimum": minimum, "maximum": maximum}
    if nullable:
        s["nullable"] = True
    if description:
        s["description"] = description
    return s


def number(minimum: float = 0, maximum: float = 1e9) -> JsonSchema:
    return {"type": "number", "minimum": minimum, "maximum": maximum}


def boolean(description: str = "") -> JsonSchema:
    return {"type": "boolean", **({"description": description} if description else {})}


def array(items: JsonSchema, max_items: int = 1000) -> JsonSchema:
    return {"type": "array", "items": items, "maxItems": max_items}


def obj(
    properties: Mapping[str, JsonSchema],
    required: Sequence[str] = (),
    *,
    additional: JsonSchema | bool = False,
    description: str = "",
) -> JsonSchema:
    s: JsonSchema = {
        "type": "object",
        "properties": dict(properties),
        "additionalProperties": additional,
    }
    if required:
        s["required"] = list(required)
    if description:
        s["description"] = description
    return s


def money() -> JsonSchema:
    return {
        "type": "string",
        "pattern": r"^\d{1,12}(\.\d{1,2})?$",
        "description": "An amount with at most two decimals, as a string (exact money).",
    }


def _check_string(value: str, schema: Mapping[str, object], where: str) -> None:
    if "\x00" in value:
        raise Invalid(where, "contains a NUL character")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise Invalid(where, "contains a lone surrogate (not valid Unicode text)") from exc
    enum = schema.get("enum")
    if isinstance(enum, list) and value not in enum:
        raise Invalid(where, f"one of {', '.join(map(str, enum))}")
    max_length = schema.get("maxLength")
    if isinstance(max_length, int) and len(value) > max_length:
        raise Invalid(where, f"at most {max_length} characters")
    min_length = schema.get("minLength")
    if isinstance(min_length, int) and len(value) < min_length:
        raise Invalid(where, f"at least {min_length} characters")
    pattern = schema.get("pattern")
    if isinstance(pattern, str) and not re.search(pattern, value):
        raise Invalid(where, f"does not match {pattern}")
    fmt = schema.get("format")
    try:
        if fmt == "date-time":
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            if parsed.tzinfo is None:
                raise Invalid(where, "a timestamp with a time zone (e.g. 2026-01-31T15:00:00Z)")
            parsed.astimezone(dt.UTC)  # out of range once in UTC (year 1 at +14:00)?
        elif fmt == "date":
            dt.date.fromisoformat(value)
    except (ValueError, OverflowError) as exc:
        raise Invalid(where, f"not a valid {fmt}") from exc


def validate(value: object, schema: Mapping[str, object], where: str = "") -> None:
    """Raise Invalid naming the first field that does not match `schema`."""
    if value is None:
        if schema.get("nullable"):
            return
        raise Invalid(where, "must not be null")
    kind = schema.get("type")
    if kind == "object":
        if not isinstance(value, dict):
            raise Invalid(where, "expected an object")
        props = schema.get("properties", {})
        assert isinstance(props, dict)
        for name in schema.get("required", []) or []:  # type: ignore[attr-defined]
            if name not in value:
                raise Invalid(f"{where}.{name}" if where else name, "required")
        additional = schema.get("additionalProperties", False)
        for key, item in value.items():
            path = f"{where}.{key}" if where else str(key)
            if key in props:
                validate(item, props[key], path)
            elif isinstance(additional, dict):
                if len(str(key)) > 200 or "\x00" in str(key):
                    raise Invalid(path, "bad key")
                validate(item, additional, path)
            elif not additional:
                raise Invalid(path, "unknown field")
    elif kind == "array":
        if not isinstance(value, list):
            raise Invalid(where, "expected an array")
        max_items = schema.get("maxItems")
        if isinstance(max_items, int) and len(value) > max_items:
            raise Invalid(where, f"at most {max_items} items")
        items = schema.get("items", {})
        assert isinstance(items, dict)
        for i, item in enumerate(value):
            validate(item, items, f"{where}[{i}]")
    elif kind == "string":
        if not isinstance(value, str):
            raise Invalid(where, "expected a string")
        _check_string(value, schema, where)
    elif kind in ("integer", "number"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Invalid(where, f"expected {'an integer' if kind == 'integer' else 'a number'}")
        if kind == "integer" and not isinstance(value, int):
            raise Invalid(where, "expected an integer")
        if value != value or value in (float("inf"), float("-inf")):
            raise Invalid(where, "expected a finite number")
        low, high = schema.get("minimum"), schema.get("maximum")
        if isinstance(low, int | float) and value < low:
            raise Invalid(where, f"at least {low}")
        if isinstance(high, int | float) and value > high:
            raise Invalid(where, f"at most {high}")
    elif kind == "boolean":
        if not isinstance(value, bool):
            raise Invalid(where, "expected true or false")
    else:
        # No type: free-form JSON (e.g. pacing knobs), still without NULs or absurd nesting.
        _check_free(value, where, 0)


def _check_free(value: object, where: str, depth: int) -> None:
    if depth > 16:
        raise Invalid(where, "nested too deeply")
    if isinstance(value, str) and "\x00" in value:
        raise Invalid(where, "contains a NUL character")
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        raise Invalid(where, "expected a finite number")
    if isinstance(value, dict):
        for k, v in value.items():
            _check_free(k, where, depth + 1)
            _check_free(v, f"{where}.{k}", depth + 1)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_free(v, f"{where}[{i}]", depth + 1)
