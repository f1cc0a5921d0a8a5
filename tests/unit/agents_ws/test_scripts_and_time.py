"""Pure rules of the dialer-side port: script choice by aging bucket, callback time conversion."""

from __future__ import annotations

import datetime as dt

import pytest

from agents_ws.engine_port import PortRefused
from dialer.agent_service import choose_script, disposition_codes, local_to_utc


def test_current_bucket_gets_the_reminder_script() -> None:
    assert choose_script({}, "current", 0, "es")["phase"] == "reminder"


def test_middle_buckets_get_renegotiation() -> None:
    assert {choose_script({}, b, 45, "en")["phase"] for b in ("31-60", "61-90")} == {
        "renegotiation"
    }


def test_past_120_days_gets_recovery() -> None:
    assert choose_script({}, "120+", 200, "en")["phase"] == "recovery"


def test_default_script_follows_the_agents_language_and_days() -> None:
    text = choose_script({}, "31-60", 47, "es")["text"]
    assert isinstance(text, str) and "47 días" in text


def test_campaign_text_for_the_bucket_wins_over_the_phase_text() -> None:
    scripts: dict[str, object] = {"31-60": "bucket text", "renegotiation": "phase text"}
    assert choose_script(scripts, "31-60", 40, "es")["text"] == "bucket text"


def test_campaign_text_for_the_phase_is_used_when_no_bucket_text() -> None:
    assert choose_script({"recovery": "R {days}"}, "120+", 130, "es")["text"] == "R 130"


def test_default_disposition_codes_are_labelled_in_the_agents_language() -> None:
    labels = {c["code"]: c["label"] for c in disposition_codes(None, "en")}
    assert labels["PTP"] == "Promise to pay"


def test_local_time_in_debtor_zone_becomes_utc() -> None:
    local = dt.datetime(2026, 7, 1, 10, 0)
    assert local_to_utc(local, "America/Mexico_City") == dt.datetime(
        2026, 7, 1, 16, 0, tzinfo=dt.UTC
    )


def test_time_skipped_by_daylight_saving_is_refused() -> None:
    with pytest.raises(PortRefused) as refused:
        local_to_utc(dt.datetime(2026, 3, 29, 2, 30), "Europe/Madrid")
    assert refused.value.field == "local_time"
