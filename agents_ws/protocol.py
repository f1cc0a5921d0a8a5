"""The agents' websocket protocol, version 1: message envelopes, parsing and field validation.

Pure functions over decoded JSON; each refusal is a `ProtocolError` naming the field (PROTOCOL.md).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Final, Literal, TypeAlias

PROTOCOL_VERSION: Final = 1
MAX_MESSAGE_BYTES: Final = 16 * 1024
MAX_NOTES_CHARS: Final = 2000
MAX_INSTALMENTS: Final = 24
MAX_CLIENT_MSG_ID: Final = 64
MAX_DEPTH: Final = 8  # no message nests deeper than an instalment plan's objects in a list
# NUMERIC(14,2): the largest amount any money column holds; a plan's total must fit too.
MAX_AMOUNT: Final = Decimal("999999999999.99")

# A recursive JSON value: what crosses the socket.
JsonValue: TypeAlias = "str | int | float | bool | list[JsonValue] | dict[str, JsonValue] | None"
JsonObject: TypeAlias = "dict[str, JsonValue]"

ErrorCode = Literal[
    "bad_json",
    "too_large",
    "rate_limited",
    "unknown_type",
    "missing_field",
    "invalid_field",
    "unsupported_version",
    "not_your_call",
    "invalid_state",
    "forbidden",
    "unavailable",
    "no_phone",
    "call_over",
    "session_revoked",
    "internal",
]

# Client -> server message types, and which of them need a client message id.
SUBMISSIONS: Final = frozenset(
    {
        "disposition",
        "ptp",
        "callback",
        "wrong_number",
        "hangup",
        "preview.next",
        "preview.dial",
        "preview.skip",
        "supervisor.listen",
        "supervisor.whisper",
        "supervisor.barge",
    }
)
CLIENT_TYPES: Final = frozenset(
    {"ping", "state.ready", "state.pause", "state.logout", "supervisor.subscribe"}
    | SUBMISSIONS
    | {"softphone.credentials", "softphone.status"}
)
PAUSE_REASONS: Final = ("break", "lunch", "training", "meeting", "technical", "personal")

_AMOUNT = re.compile(r"^\d{1,12}(\.\d{1,2})?$")
_LOCAL_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?$")


class ProtocolError(Exception):
    """A message refused: `code` for programs, `field` (if any) and `message` for people."""

    def __init__(self, code: ErrorCode, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.message = message
        self.field = field
        self.re: str | None = None  # the refused message's client id, when it could be read

    def to_json(self, re_id: str | None) -> JsonObject:
        out: JsonObject = {
            "v": PROTOCOL_VERSION,
            "type": "error",
            "re": re_id,
            "code": self.code,
            "message": self.message,
        }
        if self.field is not None:
            out["field"] = self.field
        return out


@dataclass(frozen=True, slots=True)
class Envelope:
    """A decoded client message: its type, its client message id (if any) and its body."""

    type: str
    id: str | None
    body: JsonObject


class JsonLimitError(ValueError):
    """Decoded JSON that no handler may see: `field` names where, `problem` says what."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}" if field else problem)
        self.field = field
        self.problem = problem


def loads_checked(raw: str | bytes, max_depth: int) -> object:
    """`json.loads` that never raises anything but ValueError: nesting deeper than `max_depth`,
    NUL characters and lone surrogates (which Postgres refuses, and which cannot be encoded to
    UTF-8) are `JsonLimitError`s naming the field; malformed JSON is the usual ValueError."""
    try:
        value = json.loads(raw)
    except RecursionError as exc:  # the C scanner's own guard: thousands of nested brackets
        raise JsonLimitError("", f"nested deeper than {max_depth} levels") from exc
    check_tree(value, max_depth)
    return value


def check_tree(value: object, max_depth: int, where: str = "") -> None:
    """Depth, NUL and lone-surrogate checks over a decoded JSON value, without recursion."""
    stack: list[tuple[object, str, int]] = [(value, where, 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            _check_text(item, path)
        elif isinstance(item, dict | list):
            if depth >= max_depth:
                raise JsonLimitError(path, f"nested deeper than {max_depth} levels")
            if isinstance(item, dict):
                for key, sub in item.items():
                    sub_path = f"{path}.{key}" if path else str(key)
                    _check_text(str(key), path or "(key)")
                    stack.append((sub, sub_path, depth + 1))
            else:
                stack.extend((sub, f"{path}[{i}]", depth + 1) for i, sub in enumerate(item))


def _check_text(text: str, field: str) -> None:
    if "\x00" in text:
        raise JsonLimitError(field, "contains a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise JsonLimitError(field, "contains a lone surrogate (not valid Unicode text)") from exc


def decode(raw: str) -> Envelope:
    """Text off the socket -> an envelope, or a ProtocolError (bad JSON, unknown type...).

    Never raises anything else, whatever the client sends."""
    if (
        len(raw) > MAX_MESSAGE_BYTES
        or len(raw.encode("utf-8", "surrogatepass")) > MAX_MESSAGE_BYTES
    ):
        raise ProtocolError("too_large", f"message larger than {MAX_MESSAGE_BYTES} bytes")
    try:
        data = loads_checked(raw, MAX_DEPTH)
    except JsonLimitError as exc:
        code: ErrorCode = "invalid_field" if exc.field else "bad_json"
        raise ProtocolError(code, str(exc), exc.field or None) from exc
    except ValueError as exc:
        raise ProtocolError("bad_json", f"not valid JSON: {exc.args[0]}") from exc
    if not isinstance(data, dict):
        raise ProtocolError("bad_json", "a message must be a JSON object")
    msg_id = data.get("id")
    if msg_id is not None and (
        not isinstance(msg_id, str) or not 0 < len(msg_id) <= MAX_CLIENT_MSG_ID
    ):
        raise ProtocolError(
            "invalid_field", f"id must be a string of 1-{MAX_CLIENT_MSG_ID} characters", "id"
        )
    try:
        version = data.get("v", PROTOCOL_VERSION)
        if version != PROTOCOL_VERSION:
            raise ProtocolError(
                "unsupported_version", f"this server speaks version {PROTOCOL_VERSION}", "v"
            )
        kind = data.get("type")
        if kind is None:
            raise ProtocolError("missing_field", "type is required", "type")
        if not isinstance(kind, str) or kind not in CLIENT_TYPES:
            raise ProtocolError("unknown_type", f"unknown message type {str(kind)[:40]!r}", "type")
        if kind in SUBMISSIONS and msg_id is None:
            raise ProtocolError("missing_field", f"{kind} needs a client message id", "id")
    except ProtocolError as exc:
        exc.re = msg_id
        raise
    return Envelope(kind, msg_id, data)


def encode(message: JsonObject) -> str:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


# --- field readers -------------------------------------------------------------------------


def req_str(body: JsonObject, name: str, max_len: int = 200) -> str:
    value = body.get(name)
    if value is None:
        raise ProtocolError("missing_field", f"{name} is required", name)
    if not isinstance(value, str) or not value.strip():
        raise ProtocolError("invalid_field", f"{name} must be a non-empty string", name)
    if len(value) > max_len:
        raise ProtocolError("invalid_field", f"{name} is longer than {max_len} characters", name)
    return value.strip()


def opt_str(body: JsonObject, name: str, max_len: int = MAX_NOTES_CHARS) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ProtocolError("invalid_field", f"{name} must be a string", name)
    if len(value) > max_len:
        raise ProtocolError("invalid_field", f"{name} is longer than {max_len} characters", name)
    return value


def req_int(body: JsonObject, name: str) -> int:
    value = body.get(name)
    if value is None:
        raise ProtocolError("missing_field", f"{name} is required", name)
    return _as_int(value, name)


def opt_int(body: JsonObject, name: str) -> int | None:
    value = body.get(name)
    return None if value is None else _as_int(value, name)


def _as_int(value: JsonValue, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError("invalid_field", f"{name} must be a whole number", name)
    return value


def parse_amount(value: JsonValue, field: str) -> Decimal:
    """Money travels as a string in canonical decimal form: "12.50" (dot, at most 2 decimals)."""
    if value is None:
        raise ProtocolError("missing_field", f"{field} is required", field)
    if not isinstance(value, str):
        raise ProtocolError(
            "invalid_field", f'{field} must be a string such as "12.50", not a number', field
        )
    text = value.strip()
    if text.startswith("-"):
        raise ProtocolError("invalid_field", f"{field} must be greater than zero", field)
    if "," in text:
        raise ProtocolError(
            "invalid_field",
            f'{field}: use a dot as the decimal separator and no thousands separator, e.g. "12.50"',
            field,
        )
    if not _AMOUNT.match(text):
        raise ProtocolError(
            "invalid_field", f'{field} must look like "12.50" (at most two decimals)', field
        )
    try:
        amount = Decimal(text).quantize(Decimal("0.01"))
    except InvalidOperation as exc:  # unreachable after the regex, kept as a guard
        raise ProtocolError("invalid_field", f"{field} is not a number", field) from exc
    if amount <= 0:
        raise ProtocolError("invalid_field", f"{field} must be greater than zero", field)
    return amount


def parse_date(value: JsonValue, field: str, today: dt.date) -> dt.date:
    """An ISO date "YYYY-MM-DD" that is not before `today` (the debtor's today)."""
    if value is None:
        raise ProtocolError("missing_field", f"{field} is required", field)
    if not isinstance(value, str):
        raise ProtocolError("invalid_field", f"{field} must be a date YYYY-MM-DD", field)
    try:
        day = dt.date.fromisoformat(value.strip())
    except ValueError as exc:
        raise ProtocolError("invalid_field", f"{field} must be a date YYYY-MM-DD", field) from exc
    if day < today:
        raise ProtocolError("invalid_field", f"{field} is in the past", field)
    return day


# --- submissions -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DispositionRequest:
    client_msg_id: str
    code: str
    notes: str | None
    pause_after: str | None = None  # a pause reason: go paused instead of ready after wrap-up


@dataclass(frozen=True, slots=True)
class Instalment:
    due_date: dt.date
    amount: Decimal


@dataclass(frozen=True, slots=True)
class PromiseRequest:
    """A promise-to-pay: one payment, or an instalment plan (then amount is their sum)."""

    client_msg_id: str
    amount: Decimal
    due_date: dt.date
    instalments: tuple[Instalment, ...]
    notes: str | None


@dataclass(frozen=True, slots=True)
class CallbackRequest:
    """A callback at a wall-clock time in the debtor's zone; owner None means anyone."""

    client_msg_id: str
    local_time: dt.datetime  # naive: read in the debtor's time zone
    owner_agent_id: int | None
    notes: str | None


@dataclass(frozen=True, slots=True)
class WrongNumberRequest:
    client_msg_id: str
    phone_id: int | None  # None: the phone of the current call
    add_to_dnc: bool


def parse_disposition(env: Envelope) -> DispositionRequest:
    assert env.id is not None
    pause_after = opt_str(env.body, "pause_after", 32)
    if pause_after is not None and pause_after not in PAUSE_REASONS:
        raise ProtocolError(
            "invalid_field", f"pause_after must be one of {', '.join(PAUSE_REASONS)}", "pause_after"
        )
    return DispositionRequest(
        env.id, req_str(env.body, "code", 32), opt_str(env.body, "notes"), pause_after
    )


def parse_promise(env: Envelope, today: dt.date) -> PromiseRequest:
    """One payment (amount + date) or an instalment plan (instalments: [{amount, date}, ...])."""
    assert env.id is not None
    notes = opt_str(env.body, "notes")
    raw_plan = env.body.get("instalments")
    if raw_plan is None:
        amount = parse_amount(env.body.get("amount"), "amount")
        day = parse_date(env.body.get("date"), "date", today)
        return PromiseRequest(env.id, amount, day, (Instalment(day, amount),), notes)
    if not isinstance(raw_plan, list) or not 1 <= len(raw_plan) <= MAX_INSTALMENTS:
        raise ProtocolError(
            "invalid_field", f"instalments must be a list of 1-{MAX_INSTALMENTS}", "instalments"
        )
    plan: list[Instalment] = []
    for i, item in enumerate(raw_plan):
        prefix = f"instalments[{i}]"
        if not isinstance(item, dict):
            raise ProtocolError("invalid_field", f"{prefix} must be an object", prefix)
        day = parse_date(item.get("date"), f"{prefix}.date", today)
        if plan and day <= plan[-1].due_date:
            raise ProtocolError(
                "invalid_field", f"{prefix}.date must be after the previous one", f"{prefix}.date"
            )
        plan.append(Instalment(day, parse_amount(item.get("amount"), f"{prefix}.amount")))
    total = sum((p.amount for p in plan), Decimal("0.00"))
    if total > MAX_AMOUNT:
        raise ProtocolError(
            "invalid_field",
            f"the instalments add up to more than {MAX_AMOUNT}, the largest amount stored",
            "instalments",
        )
    if "amount" in env.body and env.body["amount"] is not None:
        stated = parse_amount(env.body["amount"], "amount")
        if stated != total:
            raise ProtocolError(
                "invalid_field",
                f"amount {stated} differs from the instalments' sum {total}",
                "amount",
            )
    return PromiseRequest(env.id, total, plan[0].due_date, tuple(plan), notes)


def parse_callback(env: Envelope, own_agent_id: int) -> CallbackRequest:
    """`local_time` "YYYY-MM-DDTHH:MM" in the debtor's zone; owner "self", "anyone" or an id."""
    assert env.id is not None
    raw = req_str(env.body, "local_time", 32)
    if not _LOCAL_TIME.match(raw):
        raise ProtocolError(
            "invalid_field",
            "local_time must look like 2026-03-01T10:30 (debtor's time)",
            "local_time",
        )
    try:
        local = dt.datetime.fromisoformat(raw)
    except ValueError as exc:
        raise ProtocolError(
            "invalid_field", "local_time is not a real date/time", "local_time"
        ) from exc
    owner = env.body.get("owner", "self")
    owner_id: int | None
    if owner == "self":
        owner_id = own_agent_id
    elif owner == "anyone" or owner is None:
        owner_id = None
    elif isinstance(owner, int) and not isinstance(owner, bool) and owner > 0:
        owner_id = owner
    else:
        raise ProtocolError(
            "invalid_field", 'owner must be "self", "anyone" or an agent id', "owner"
        )
    return CallbackRequest(env.id, local, owner_id, opt_str(env.body, "notes"))


def parse_wrong_number(env: Envelope) -> WrongNumberRequest:
    assert env.id is not None
    dnc = env.body.get("dnc", False)
    if not isinstance(dnc, bool):
        raise ProtocolError("invalid_field", "dnc must be true or false", "dnc")
    return WrongNumberRequest(env.id, opt_int(env.body, "phone_id"), dnc)


def parse_pause_reason(env: Envelope) -> str:
    reason = req_str(env.body, "reason", 32)
    if reason not in PAUSE_REASONS:
        raise ProtocolError(
            "invalid_field", f"reason must be one of {', '.join(PAUSE_REASONS)}", "reason"
        )
    return reason


# --- the softphone's reports (agents_ws/static/softphone.js) --------------------------------

SOFTPHONE_STATES: Final = ("joining", "ready", "audio_lost", "rejoining", "off")


@dataclass(frozen=True, slots=True)
class SoftphoneStatus:
    """What the desktop's softphone says of itself: its state, whether it is registered, and
    its audio quality from WebRTC stats (None until it has some)."""

    state: str
    registered: bool
    rejoined: bool
    loss_pct: float | None
    jitter_ms: float | None
    rtt_ms: float | None
    mos: float | None


def _opt_number(body: JsonObject, name: str, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ProtocolError("invalid_field", f"{name} must be a number from {low} to {high}", name)
    return float(value)


def parse_softphone_status(env: Envelope) -> SoftphoneStatus:
    state = env.body.get("state")
    if state not in SOFTPHONE_STATES:
        raise ProtocolError(
            "invalid_field", f"state must be one of {', '.join(SOFTPHONE_STATES)}", "state"
        )
    registered = env.body.get("registered", False)
    rejoined = env.body.get("rejoined", False)
    for name, value in (("registered", registered), ("rejoined", rejoined)):
        if not isinstance(value, bool):
            raise ProtocolError("invalid_field", f"{name} must be true or false", name)
    return SoftphoneStatus(
        str(state),
        bool(registered),
        bool(rejoined),
        _opt_number(env.body, "loss_pct", 0, 100),
        _opt_number(env.body, "jitter_ms", 0, 60_000),
        _opt_number(env.body, "rtt_ms", 0, 60_000),
        _opt_number(env.body, "mos", 1, 5),
    )
