"""The outcome table, row by row, and the precedence rules that combine Asterisk's reports."""

from __future__ import annotations

import pytest

from dialer.telephony.outcomes import (
    RULES,
    Outcome,
    Signal,
    lookup,
    outcome_of_answered,
    outcome_of_unanswered,
)

# Written out by hand, not derived from RULES: a changed row must fail here.
ORIGINATE_REASONS = {
    0: Outcome.FAILED,
    1: Outcome.FAILED,
    2: Outcome.NO_ANSWER,
    3: Outcome.NO_ANSWER,
    4: Outcome.HUMAN,
    5: Outcome.BUSY,
    8: Outcome.CONGESTION,
}

HANGUP_CAUSES = {
    1: Outcome.INVALID_NUMBER,
    3: Outcome.INVALID_NUMBER,
    16: Outcome.NO_ANSWER,
    17: Outcome.BUSY,
    18: Outcome.NO_ANSWER,
    19: Outcome.NO_ANSWER,
    20: Outcome.NO_ANSWER,
    21: Outcome.BUSY,
    22: Outcome.INVALID_NUMBER,
    27: Outcome.FAILED,
    28: Outcome.INVALID_NUMBER,
    34: Outcome.CONGESTION,
    38: Outcome.CONGESTION,
    41: Outcome.CONGESTION,
    42: Outcome.CONGESTION,
    127: Outcome.FAILED,
}

DIAL_STATUSES = {
    "ANSWER": Outcome.HUMAN,
    "BUSY": Outcome.BUSY,
    "NOANSWER": Outcome.NO_ANSWER,
    "CANCEL": Outcome.NO_ANSWER,
    "CONGESTION": Outcome.CONGESTION,
    "CHANUNAVAIL": Outcome.FAILED,
    "DONTCALL": Outcome.FAILED,
    "TORTURE": Outcome.FAILED,
    "INVALIDARGS": Outcome.FAILED,
}

AMD_STATUSES = {
    "HUMAN": Outcome.HUMAN,
    "MACHINE": Outcome.MACHINE,
    "NOTSURE": Outcome.HUMAN,
    "HANGUP": Outcome.HUNG_UP_EARLY,
}


@pytest.mark.parametrize(("reason", "expected"), ORIGINATE_REASONS.items())
def test_originate_reason_row(reason: int, expected: Outcome) -> None:
    assert lookup(Signal.ORIGINATE_REASON, reason) is expected


@pytest.mark.parametrize(("cause", "expected"), HANGUP_CAUSES.items())
def test_hangup_cause_row(cause: int, expected: Outcome) -> None:
    assert lookup(Signal.HANGUP_CAUSE, cause) is expected


@pytest.mark.parametrize(("status", "expected"), DIAL_STATUSES.items())
def test_dial_status_row(status: str, expected: Outcome) -> None:
    assert lookup(Signal.DIAL_STATUS, status) is expected


@pytest.mark.parametrize(("status", "expected"), AMD_STATUSES.items())
def test_amd_status_row(status: str, expected: Outcome) -> None:
    assert lookup(Signal.AMD_STATUS, status) is expected


def test_the_table_has_one_row_per_reported_value() -> None:
    keys = [(rule.signal, rule.value) for rule in RULES]
    assert len(keys) == len(set(keys))


def test_every_row_explains_itself() -> None:
    assert all(rule.meaning.strip() for rule in RULES)


def test_router_and_connection_outcomes_never_come_from_the_table() -> None:
    assert {rule.outcome for rule in RULES}.isdisjoint({Outcome.ABANDONED, Outcome.LOST})


def test_lookup_accepts_values_as_ami_sends_them() -> None:
    assert lookup(Signal.HANGUP_CAUSE, "17") is Outcome.BUSY
    assert lookup(Signal.DIAL_STATUS, "busy") is Outcome.BUSY
    assert lookup(Signal.ORIGINATE_REASON, " 5 ") is Outcome.BUSY


def test_lookup_of_an_unknown_value_is_none() -> None:
    assert lookup(Signal.HANGUP_CAUSE, 999) is None
    assert lookup(Signal.DIAL_STATUS, "SOMETHING") is None


def test_an_invalid_number_cause_beats_dial_status() -> None:
    # What the testbed's unallocated number reports: CHANUNAVAIL with cause 1.
    outcome = outcome_of_unanswered(dial_status="CHANUNAVAIL", hangup_cause=1, originate_reason=0)
    assert outcome is Outcome.INVALID_NUMBER


def test_dial_status_beats_cause_and_reason() -> None:
    outcome = outcome_of_unanswered(dial_status="BUSY", hangup_cause=16, originate_reason=0)
    assert outcome is Outcome.BUSY


def test_a_known_cause_beats_an_uninformative_reason() -> None:
    # No DialerDialResult seen; OriginateResponse Reason 0 with the channel's cause 19.
    assert outcome_of_unanswered(hangup_cause=19, originate_reason=0) is Outcome.NO_ANSWER


def test_cause_zero_falls_back_to_the_originate_reason() -> None:
    assert outcome_of_unanswered(hangup_cause=0, originate_reason=5) is Outcome.BUSY


def test_nothing_known_is_failed() -> None:
    assert outcome_of_unanswered() is Outcome.FAILED
    assert outcome_of_unanswered(dial_status="WHATEVER", hangup_cause=999) is Outcome.FAILED


def test_an_unanswered_attempt_is_never_human() -> None:
    assert outcome_of_unanswered(originate_reason=4) is Outcome.FAILED


@pytest.mark.parametrize("amd_status", [None, "", "OFF", "off"])
def test_answered_without_amd_is_human(amd_status: str | None) -> None:
    assert outcome_of_answered(amd_status) is Outcome.HUMAN


@pytest.mark.parametrize(("status", "expected"), AMD_STATUSES.items())
def test_answered_follows_amd(status: str, expected: Outcome) -> None:
    assert outcome_of_answered(status) is expected


def test_an_unknown_amd_status_is_treated_as_a_person() -> None:
    assert outcome_of_answered("SOMETHINGNEW") is Outcome.HUMAN
