"""Retry and recycling rules, as a specification: defaults, overrides, phone order, follow-ups."""

from __future__ import annotations

import datetime as dt

import pytest

from dialer.domain.retry import (
    PhoneState,
    RetryRuleError,
    RetryRules,
    after_attempt,
    after_disposition,
    next_local_midnight,
)

NOW = dt.datetime(2026, 11, 24, 15, 0, tzinfo=dt.UTC)
RULES = RetryRules()


@pytest.mark.parametrize(
    ("outcome", "delay"),
    [
        ("busy", dt.timedelta(minutes=15)),
        ("no_answer", dt.timedelta(hours=2)),
        ("abandoned", dt.timedelta(hours=72)),
    ],
)
def test_default_delays_per_outcome(outcome: str, delay: dt.timedelta) -> None:
    assert RULES.phone_retry_at(outcome, NOW, "America/New_York") == NOW + delay


def test_a_machine_is_retried_at_the_start_of_the_debtors_next_day() -> None:
    # 15:00 UTC is 07:00 in Los Angeles: next local midnight is 2026-11-25 00:00 PST = 08:00 UTC.
    got = RULES.phone_retry_at("machine", NOW, "America/Los_Angeles")
    assert got == dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)


def test_next_local_midnight_is_right_across_a_dst_change() -> None:
    # Madrid leaves summer time on 2026-10-25: midnight of the 26th is 23:00 UTC on the 25th.
    before = dt.datetime(2026, 10, 25, 12, 0, tzinfo=dt.UTC)
    assert next_local_midnight(before, "Europe/Madrid") == dt.datetime(
        2026, 10, 25, 23, 0, tzinfo=dt.UTC
    )


def test_campaign_overrides_replace_only_the_named_delays() -> None:
    rules = RetryRules.from_campaign({"busy": 300, "machine": 3600})
    assert rules.phone_retry_at("busy", NOW, None) == NOW + dt.timedelta(minutes=5)
    assert rules.phone_retry_at("machine", NOW, None) == NOW + dt.timedelta(hours=1)
    assert rules.phone_retry_at("no_answer", NOW, None) == NOW + dt.timedelta(hours=2)


@pytest.mark.parametrize("bad", [-1, "soon", True, None])
def test_a_bad_override_names_its_key(bad: object) -> None:
    with pytest.raises(RetryRuleError, match=r"retry_rules\.busy"):
        RetryRules.from_campaign({"busy": bad})


def test_after_no_answer_the_next_phone_comes_up_after_the_gap_not_after_two_hours() -> None:
    phones = [PhoneState(1, True, False, None), PhoneState(2, True, False, None)]
    after = after_attempt("no_answer", 1, phones, RULES, NOW, None)
    assert after.phone_next_at == NOW + dt.timedelta(hours=2)
    assert after.account_next_at == NOW + RULES.next_phone_gap
    assert not after.phone_invalid


def test_with_one_phone_the_account_waits_for_that_phones_retry() -> None:
    after = after_attempt("busy", 1, [PhoneState(1, True, False, None)], RULES, NOW, None)
    assert after.account_next_at == NOW + dt.timedelta(minutes=15)


def test_an_invalid_number_is_never_dialed_again_and_a_lone_phone_ends_the_account() -> None:
    after = after_attempt("invalid_number", 1, [PhoneState(1, True, False, None)], RULES, NOW, None)
    assert after.phone_invalid and after.phone_next_at is None
    assert after.account_next_at is None


def test_dnc_and_invalid_phones_do_not_bring_the_account_back() -> None:
    phones = [
        PhoneState(1, True, False, None),
        PhoneState(2, False, False, None),
        PhoneState(3, True, True, None),
    ]
    after = after_attempt("no_answer", 1, phones, RULES, NOW, None)
    assert after.account_next_at == NOW + dt.timedelta(hours=2)


def test_a_promise_rests_the_account_until_the_day_after_it_falls_due_in_the_debtors_zone() -> None:
    got = after_disposition(True, dt.date(2026, 12, 1), None, RULES, NOW, "America/Mexico_City")
    # 2026-12-01 00:00 in Mexico City (UTC-6) is 06:00 UTC; plus one day of grace.
    assert got == dt.datetime(2026, 12, 2, 6, 0, tzinfo=dt.UTC)


def test_a_right_party_contact_without_promise_rests_the_account_seven_days() -> None:
    assert after_disposition(True, None, None, RULES, NOW, None) == NOW + dt.timedelta(days=7)


def test_a_third_party_contact_changes_nothing() -> None:
    assert after_disposition(False, None, None, RULES, NOW, None) is None
