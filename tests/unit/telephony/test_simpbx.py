"""The simulated PBX's own contract: the testbed numbering plan, the random debtors, and the
event stream it produces for one call (what the benchmark replays)."""

from __future__ import annotations

import pytest

from dialer.simpbx.behaviour import Fate, FateMix, RandomDebtors, TestbedNumbers
from dialer.simpbx.server import SimPbx, channel_id_for


@pytest.mark.parametrize(
    ("number", "fate", "ring"),
    [
        ("555107", Fate.HUMAN, 7.0),
        ("555212", Fate.MACHINE, 12.0),
        ("555300", Fate.BUSY, 0.2),
        ("555400", Fate.NO_ANSWER, 600.0),
        ("555500", Fate.CONGESTION, 0.2),
        ("555605", Fate.SILENT_HANGUP, 0.0),
        ("555710", Fate.HUMAN, 1.0),
        ("555800", Fate.INVALID, 0.0),
        ("+555300", Fate.BUSY, 0.2),
        ("5553000042", Fate.BUSY, 0.2),  # one number per account: the first six digits decide
        ("5551070001", Fate.HUMAN, 7.0),
    ],
)
def test_testbed_numbers_decide_the_debtors_behaviour(number: str, fate: Fate, ring: float) -> None:
    behaviour = TestbedNumbers().behaviour(number)
    assert behaviour.fate is fate
    assert behaviour.ring_seconds == ring


def test_numbers_outside_the_testbed_plan_are_invalid_by_default() -> None:
    assert TestbedNumbers().behaviour("15550123").fate is Fate.INVALID


def test_random_debtors_follow_the_mix_and_the_seed() -> None:
    only_busy = RandomDebtors(FateMix(0, 0, 1, 0, 0, 0), seed=1)
    assert {only_busy.behaviour("1").fate for _ in range(20)} == {Fate.BUSY}
    a = [RandomDebtors(seed=5).behaviour("1") for _ in range(1)]
    b = [RandomDebtors(seed=5).behaviour("1") for _ in range(1)]
    assert a == b


def test_a_mix_without_weight_is_refused() -> None:
    with pytest.raises(ValueError, match="FateMix"):
        RandomDebtors(FateMix(0, 0, 0, 0, 0, 0))


async def test_capture_renders_a_full_ami_call_ending_with_its_hangup() -> None:
    pbx = SimPbx(time_scale=0.0, auto_connect_agent="1001")
    stream = (await pbx.capture(1, first_attempt=9, number=lambda i: "555101")).decode()
    messages = [m for m in stream.split("\r\n\r\n") if m]
    names = [m.split("\r\n")[0].removeprefix("Event: ") for m in messages]
    assert names[0] == "Newchannel" and names[-1] == "Hangup"
    assert "OriginateResponse" in names and "BridgeEnter" in names
    user_events = [m for m in messages if "UserEvent: " in m]
    assert [m.split("UserEvent: ")[1].split("\r\n")[0] for m in user_events] == [
        "DialerAmd",
        "DialerAwaitingAgent",
        "DialerConnecting",
        "DialerCallEnd",
    ]
    assert all("Attempt: 9" in m for m in user_events)
    assert f"Uniqueid: {channel_id_for(9)}" in messages[0]
    assert all(
        f"Linkedid: {channel_id_for(9)}" in m
        for m in messages
        if "Linkedid" in m and "agent" not in m
    )
