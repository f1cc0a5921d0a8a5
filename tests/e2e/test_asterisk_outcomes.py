"""One call per simulated debtor behaviour through the shipped dialplan, on a real Asterisk.

All calls are placed at once (the no-answer call needs the full ring timeout), then each test
checks what the dialer would record for one of them, and the safe-harbor timing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from dialer.telephony.outcomes import Outcome
from tests.fixtures.asterisk import (
    AFTER_GREETING_SILENCE_S,
    RING_TIMEOUT_S,
    AsteriskAmi,
    Attempt,
    connect,
    originate,
    ts,
)

pytestmark = pytest.mark.asterisk

SAFE_HARBOR_LIMIT_S = 2.0
MACHINE_GREETING_S = 8.9  # vm-theperson + vm-isunavail + vm-intro in the testbed

CALLS: dict[str, tuple[str, dict[str, str]]] = {
    # name: (number, extra Originate variables)
    "human_amd": ("555102", {}),
    "human_no_amd": ("555102", {"DIALER_AMD": "no"}),
    "machine": ("555202", {}),
    "machine_message": ("555202", {"DIALER_MACHINE_ACTION": "message"}),
    "busy": ("555300", {}),
    "no_answer": ("555400", {}),
    "congestion": ("555500", {}),
    "early_hangup": ("555601", {}),
    "invalid": ("555800", {}),
}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def calls(asterisk_ami: AsteriskAmi) -> AsyncIterator[dict[str, Attempt]]:
    client = await connect(asterisk_ami)
    try:
        names = list(CALLS)
        attempts = await asyncio.gather(
            *(originate(client, CALLS[name][0], variables=CALLS[name][1]) for name in names)
        )
        by_name = dict(zip(names, attempts, strict=True))
        await asyncio.gather(*(a.wait_ended(timeout=RING_TIMEOUT_S + 30) for a in attempts))
        await asyncio.sleep(0.3)  # the last events of each call follow its Hangup
        yield by_name
    finally:
        client.manager.close()


def test_human_is_recorded_human_by_amd(calls: dict[str, Attempt]) -> None:
    call = calls["human_amd"]
    assert call.answered
    assert call.user_event("DialerAmd")["AmdStatus"] == "HUMAN"
    assert call.recorded_outcome() is Outcome.HUMAN


def test_human_without_amd_is_recorded_human(calls: dict[str, Attempt]) -> None:
    call = calls["human_no_amd"]
    assert call.answered
    assert call.user_events("DialerAmd") == []
    assert call.user_event("DialerAwaitingAgent")["Amd"] == "OFF"
    assert call.recorded_outcome() is Outcome.HUMAN


def test_answering_machine_is_recorded_machine_and_hung_up(calls: dict[str, Attempt]) -> None:
    call = calls["machine"]
    assert call.answered
    assert call.user_event("DialerAmd")["AmdStatus"] == "MACHINE"
    assert call.user_event("DialerMachine")["Action"] == "hangup"
    assert call.user_events("DialerSafeHarbor") == []
    assert call.recorded_outcome() is Outcome.MACHINE


def test_machine_gets_the_campaign_message_after_its_greeting(calls: dict[str, Attempt]) -> None:
    call = calls["machine_message"]
    assert call.recorded_outcome() is Outcome.MACHINE
    left = call.user_event("DialerMachine")
    assert left["Action"] == "message"
    assert left["PlaybackStatus"] == "SUCCESS"
    # The message waited for the end of the recorded greeting (and its beep).
    assert ts(left) - call.answered_at > MACHINE_GREETING_S


def test_busy_line_is_recorded_busy(calls: dict[str, Attempt]) -> None:
    call = calls["busy"]
    assert not call.answered
    assert call.originate_response["Reason"] == "5"
    assert call.user_event("DialerDialResult")["DialStatus"] == "BUSY"
    assert call.recorded_outcome() is Outcome.BUSY


def test_unanswered_call_rings_at_least_15_s_then_is_no_answer(calls: dict[str, Attempt]) -> None:
    call = calls["no_answer"]
    assert not call.answered
    result = call.user_event("DialerDialResult")
    assert result["DialStatus"] == "NOANSWER"
    rang = ts(result) - call.ring_started_at
    assert rang >= 15.0
    assert abs(rang - RING_TIMEOUT_S) < 1.0
    assert call.recorded_outcome() is Outcome.NO_ANSWER


def test_congestion_is_recorded_congestion(calls: dict[str, Attempt]) -> None:
    call = calls["congestion"]
    assert not call.answered
    assert call.originate_response["Reason"] == "8"
    assert call.recorded_outcome() is Outcome.CONGESTION


def test_answer_then_hang_up_is_recorded_hung_up_early(calls: dict[str, Attempt]) -> None:
    call = calls["early_hangup"]
    assert call.answered
    assert call.user_events("DialerSafeHarbor") == []
    assert call.user_event("DialerCallEnd")["Amd"] == "HANGUP"
    assert call.recorded_outcome() is Outcome.HUNG_UP_EARLY


def test_unallocated_number_is_recorded_invalid_number(calls: dict[str, Attempt]) -> None:
    call = calls["invalid"]
    assert not call.answered
    assert call.user_event("DialerDialResult")["HangupCause"] == "1"
    assert call.recorded_outcome() is Outcome.INVALID_NUMBER


def test_safe_harbor_plays_within_2_s_of_the_answer_when_no_agent_is_free(
    calls: dict[str, Attempt],
) -> None:
    call = calls["human_no_amd"]
    start = next(e for e in call.user_events("DialerSafeHarbor") if e["Stage"] == "start")
    played = next(e for e in call.user_events("DialerSafeHarbor") if e["Stage"] == "played")
    assert 0.0 < ts(start) - call.answered_at <= SAFE_HARBOR_LIMIT_S
    assert played["PlaybackStatus"] == "SUCCESS"
    # The prompt (all-circuits-busy-now, 1.8 s) was streamed to the debtor, not skipped.
    assert ts(played) - ts(start) > 1.5
    assert call.user_event("DialerCallEnd")["Stage"] == "safe-harbor"


def test_safe_harbor_after_amd_plays_within_2_s_of_the_greeting_end(
    calls: dict[str, Attempt],
) -> None:
    call = calls["human_amd"]
    # AMD decides HUMAN once the greeting is followed by its after-greeting silence.
    greeting_end = ts(call.user_event("DialerAmd")) - AFTER_GREETING_SILENCE_S
    start = next(e for e in call.user_events("DialerSafeHarbor") if e["Stage"] == "start")
    assert 0.0 < ts(start) - greeting_end <= SAFE_HARBOR_LIMIT_S
    assert greeting_end > call.answered_at


def test_only_live_answers_get_the_safe_harbor(calls: dict[str, Attempt]) -> None:
    with_message = {name for name, call in calls.items() if call.user_events("DialerSafeHarbor")}
    assert with_message == {"human_amd", "human_no_amd"}
