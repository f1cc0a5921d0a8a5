"""Protocol v1 parsing and field validation, without a socket."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest

from agents_ws.protocol import (
    MAX_MESSAGE_BYTES,
    Envelope,
    ProtocolError,
    decode,
    parse_amount,
    parse_callback,
    parse_date,
    parse_promise,
)

TODAY = dt.date(2026, 3, 10)


def refused(fn: object, *args: object) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        fn(*args)  # type: ignore[operator]
    return caught.value


def ptp(**body: object) -> Envelope:
    return Envelope("ptp", "m1", {"type": "ptp", "id": "m1", **body})  # type: ignore[dict-item]


def test_canonical_amount_is_read_as_exact_decimal() -> None:
    assert parse_amount("12.50", "amount") == Decimal("12.50")


def test_whole_amount_gets_two_decimals() -> None:
    assert str(parse_amount("12", "amount")) == "12.00"


def test_decimal_comma_is_refused_naming_the_field_and_the_expected_form() -> None:
    error = refused(parse_amount, "12,50", "amount")
    assert (error.code, error.field) == ("invalid_field", "amount")
    assert '"12.50"' in error.message


def test_thousands_separator_is_refused() -> None:
    assert refused(parse_amount, "1,250.00", "amount").field == "amount"


def test_negative_amount_is_refused() -> None:
    assert "greater than zero" in refused(parse_amount, "-5.00", "amount").message


def test_zero_amount_is_refused() -> None:
    assert refused(parse_amount, "0.00", "amount").field == "amount"


def test_three_decimals_are_refused() -> None:
    assert refused(parse_amount, "1.005", "amount").field == "amount"


def test_amount_as_json_number_is_refused() -> None:
    assert "string" in refused(parse_amount, 12.5, "amount").message


def test_missing_amount_is_a_missing_field() -> None:
    assert refused(parse_amount, None, "amount").code == "missing_field"


def test_past_date_is_refused() -> None:
    assert refused(parse_date, "2026-03-09", "date", TODAY).message == "date is in the past"


def test_today_is_accepted() -> None:
    assert parse_date("2026-03-10", "date", TODAY) == TODAY


def test_malformed_date_is_refused() -> None:
    assert refused(parse_date, "10/03/2026", "date", TODAY).field == "date"


def test_single_promise_becomes_one_instalment() -> None:
    p = parse_promise(ptp(amount="40.00", date="2026-03-20"), TODAY)
    assert [(i.due_date, i.amount) for i in p.instalments] == [
        (dt.date(2026, 3, 20), Decimal("40.00"))
    ]


def test_instalment_plan_amount_is_the_sum() -> None:
    p = parse_promise(
        ptp(
            instalments=[
                {"amount": "10.00", "date": "2026-03-11"},
                {"amount": "5.50", "date": "2026-04-11"},
            ]
        ),
        TODAY,
    )
    assert (p.amount, p.due_date) == (Decimal("15.50"), dt.date(2026, 3, 11))


def test_instalment_error_names_the_instalment() -> None:
    error = refused(
        parse_promise,
        ptp(
            instalments=[
                {"amount": "10.00", "date": "2026-03-11"},
                {"amount": "5,50", "date": "2026-04-11"},
            ]
        ),
        TODAY,
    )
    assert error.field == "instalments[1].amount"


def test_instalment_dates_must_increase() -> None:
    error = refused(
        parse_promise,
        ptp(
            instalments=[
                {"amount": "10.00", "date": "2026-04-11"},
                {"amount": "5.00", "date": "2026-03-11"},
            ]
        ),
        TODAY,
    )
    assert error.field == "instalments[1].date"


def test_stated_amount_must_match_instalments() -> None:
    error = refused(
        parse_promise,
        ptp(amount="99.00", instalments=[{"amount": "10.00", "date": "2026-04-11"}]),
        TODAY,
    )
    assert error.field == "amount"


def test_bad_json_is_refused() -> None:
    assert refused(decode, "{oops").code == "bad_json"


def test_json_that_is_not_an_object_is_refused() -> None:
    assert refused(decode, "[1, 2]").code == "bad_json"


def test_unknown_type_is_refused_and_keeps_the_client_id() -> None:
    error = refused(decode, json.dumps({"type": "fly", "id": "x1"}))
    assert (error.code, error.field, error.re) == ("unknown_type", "type", "x1")


def test_missing_type_is_a_missing_field() -> None:
    assert refused(decode, "{}").field == "type"


def test_submission_without_client_id_is_refused() -> None:
    error = refused(decode, json.dumps({"type": "ptp"}))
    assert (error.code, error.field) == ("missing_field", "id")


def test_other_protocol_version_is_refused() -> None:
    assert refused(decode, json.dumps({"type": "ping", "v": 2})).code == "unsupported_version"


def test_message_over_the_size_limit_is_refused() -> None:
    big = json.dumps({"type": "ping", "pad": "x" * MAX_MESSAGE_BYTES})
    assert refused(decode, big).code == "too_large"


def test_callback_owner_self_is_the_sender() -> None:
    env = Envelope("callback", "c1", {"local_time": "2026-03-12T10:30", "owner": "self"})
    assert parse_callback(env, 7).owner_agent_id == 7


def test_callback_owner_anyone_has_no_owner() -> None:
    env = Envelope("callback", "c1", {"local_time": "2026-03-12T10:30", "owner": "anyone"})
    assert parse_callback(env, 7).owner_agent_id is None


def test_callback_time_with_zone_offset_is_refused() -> None:
    env = Envelope("callback", "c1", {"local_time": "2026-03-12T10:30+02:00"})
    assert refused(parse_callback, env, 7).field == "local_time"
