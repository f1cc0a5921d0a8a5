"""The websocket decoder against hostile and careless clients: whatever arrives, the answer is a
ProtocolError naming the problem, never another exception (RecursionError, UnicodeEncodeError)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents_ws.protocol import (
    MAX_MESSAGE_BYTES,
    ProtocolError,
    decode,
    parse_promise,
)

TODAY = dt.date(2026, 3, 1)


def refused(raw: str) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        decode(raw)
    return info.value


def test_a_12_kb_nested_array_is_a_clear_error_not_a_recursion_error() -> None:
    raw = "[" * 6000 + "]" * 6000  # 12 KB, under the size limit
    assert len(raw) < MAX_MESSAGE_BYTES
    error = refused(raw)
    assert error.code == "bad_json"
    assert "nested deeper" in error.message


def test_nesting_inside_a_field_names_the_field() -> None:
    raw = json.dumps({"v": 1, "type": "ping", "extra": [[[[[[[[[[1]]]]]]]]]]})
    error = refused(raw)
    assert (error.code, error.field) == ("invalid_field", "extra[0][0][0][0][0][0][0]")


def test_a_nul_in_notes_is_refused_naming_notes() -> None:
    raw = json.dumps({"v": 1, "type": "disposition", "id": "d1", "code": "PTP", "notes": "a\x00b"})
    error = refused(raw)
    assert (error.code, error.field) == ("invalid_field", "notes")
    assert "NUL" in error.message


def test_a_lone_surrogate_is_refused_naming_the_field() -> None:
    raw = '{"v": 1, "type": "disposition", "id": "d1", "code": "PTP", "notes": "x\\ud800y"}'
    error = refused(raw)
    assert (error.code, error.field) == ("invalid_field", "notes")
    assert "surrogate" in error.message


def test_a_lone_surrogate_in_a_key_is_refused() -> None:
    error = refused('{"v": 1, "type": "ping", "\\udfff": 1}')
    assert error.code == "invalid_field"


def test_a_plan_whose_total_overflows_numeric_14_2_is_refused_naming_instalments() -> None:
    # Each instalment fits NUMERIC(14,2) (at most 999,999,999,999.99); their sum does not.
    plan = [{"amount": "999999999999.99", "date": f"2026-03-{day:02d}"} for day in range(2, 5)]
    env = decode(
        json.dumps(
            {"v": 1, "type": "ptp", "id": "p1", "call_id": "1", "instalments": plan},
        )
    )
    with pytest.raises(ProtocolError) as info:
        parse_promise(env, TODAY)
    assert (info.value.code, info.value.field) == ("invalid_field", "instalments")


def test_a_plan_at_the_limit_is_accepted() -> None:
    plan = [
        {"amount": "499999999999.99", "date": "2026-03-02"},
        {"amount": "500000000000.00", "date": "2026-03-03"},
    ]
    env = decode(
        json.dumps({"v": 1, "type": "ptp", "id": "p1", "call_id": "1", "instalments": plan})
    )
    assert str(parse_promise(env, TODAY).amount) == "999999999999.99"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=2000))
def test_any_text_is_decoded_or_refused_with_a_protocol_error(raw: str) -> None:
    with contextlib.suppress(ProtocolError):
        decode(raw)


@settings(max_examples=300, deadline=None)
@given(json_values, st.sampled_from(["ping", "disposition", "ptp", "state.ready", "nope"]))
def test_any_json_message_is_decoded_or_refused_with_a_protocol_error(
    value: object, kind: str
) -> None:
    raw = json.dumps({"v": 1, "type": kind, "id": "x1", "body": value, "notes": value})
    with contextlib.suppress(ProtocolError):
        decode(raw)
