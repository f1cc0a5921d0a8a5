"""Caller ID selection: pool rotation, area-code matching, fallbacks."""

from __future__ import annotations

from dialer.compliance.callerid import choose_caller_id

POOL = ["+12125550001", "+13105550002", "+13105550003", "+525512345678"]


def test_no_pool_uses_the_campaign_default() -> None:
    assert choose_caller_id("+13105551234", [], "+18005550000") == "+18005550000"


def test_area_match_picks_a_number_in_the_debtors_area_code() -> None:
    got = {choose_caller_id("+13105551234", POOL, None, match_area=True, key=k) for k in range(6)}
    assert got == {"+13105550002", "+13105550003"}


def test_area_match_falls_back_to_the_debtors_country() -> None:
    assert choose_caller_id("+525587654321", POOL, None, match_area=True) == "+525512345678"


def test_without_area_match_the_pool_rotates_by_key() -> None:
    assert [choose_caller_id("+13105551234", POOL, None, key=k) for k in range(4)] == POOL


def test_same_key_gives_the_same_caller_id() -> None:
    a = choose_caller_id("+13105551234", POOL, None, match_area=True, key=41)
    assert a == choose_caller_id("+13105551234", POOL, None, match_area=True, key=41)


def test_no_match_anywhere_uses_the_whole_pool() -> None:
    assert choose_caller_id("+447911123456", POOL, None, match_area=True, key=1) == POOL[1]
