"""Calls adopted after a restart: the call tracker follows a call another process placed from
the first event that names its attempt, and decides its end with the same verdict as its own."""

from __future__ import annotations

from panoramisk.message import Message

from dialer.telephony.calls import CallEvent, CallEventKind, CallTracker

CID = "dialer-41-0a1b2c3d"


def _tracker() -> tuple[CallTracker, list[CallEvent]]:
    events: list[CallEvent] = []
    return CallTracker("pbx1", events.append), events


def _feed(t: CallTracker, *events: dict[str, str]) -> list[tuple[str, str | None, bool, bool]]:
    out: list[CallEvent] = []
    t._sink = out.append
    for fields in events:
        t.handle(Message({"Linkedid": CID, **fields}))
    return [(e.kind.value, e.outcome and e.outcome.value, e.bridged, e.abandoned) for e in out]


def test_an_adopted_call_that_rang_out_ends_no_answer() -> None:
    t, _ = _tracker()
    t.adopt(41)
    ended = _feed(
        t,
        {"Event": "UserEvent", "UserEvent": "DialerDialResult", "Attempt": "41",
         "DialStatus": "NOANSWER", "HangupCause": "19", "Uniqueid": f"{CID}-2"},
        {"Event": "Hangup", "Uniqueid": f"{CID}-2", "Cause": "19", "Channel": "Local/x;2"},
        {"Event": "Hangup", "Uniqueid": CID, "Cause": "19", "Channel": "Local/555400@x-1;1"},
    )  # fmt: skip
    assert ended == [("ended", "no_answer", False, False)]


def test_an_adopted_call_in_the_safe_harbor_ends_abandoned() -> None:
    t, _ = _tracker()
    t.adopt(41, answered=True)
    ended = _feed(
        t,
        {"Event": "UserEvent", "UserEvent": "DialerCallEnd", "Attempt": "41", "Uniqueid": CID,
         "Stage": "safe-harbor", "Amd": "HUMAN", "HangupCause": "16", "Channel": "L;1"},
        {"Event": "Hangup", "Uniqueid": CID, "Cause": "16", "Channel": "L;1"},
    )  # fmt: skip
    assert ended == [("ended", "abandoned", False, True)]


def test_an_adopted_connected_call_ends_human_and_bridged() -> None:
    t, _ = _tracker()
    t.adopt(41, answered=True)
    ended = _feed(
        t,
        {"Event": "UserEvent", "UserEvent": "DialerCallEnd", "Attempt": "41", "Uniqueid": CID,
         "Stage": "connected", "Amd": "OFF", "HangupCause": "16", "Channel": "L;1"},
        {"Event": "Hangup", "Uniqueid": CID, "Cause": "16", "Channel": "L;1"},
    )  # fmt: skip
    assert ended == [("ended", "human", True, False)]


def test_an_adopted_call_bridged_after_the_restart_is_seen_bridging() -> None:
    t, _ = _tracker()
    t.adopt(41, answered=True)
    seen = _feed(
        t,
        {"Event": "BridgeEnter", "Uniqueid": CID, "Context": "dialer-connect", "Channel": "L;1"},
        {"Event": "Hangup", "Uniqueid": CID, "Cause": "16", "Channel": "L;1"},
    )  # fmt: skip
    assert seen == [("bridged", None, False, False), ("ended", "human", True, False)]


def test_calls_not_adopted_are_not_bound() -> None:
    t, _ = _tracker()
    t.adopt(7)
    assert _feed(t, {"Event": "Hangup", "Uniqueid": CID, "Cause": "16", "Channel": "L;1"}) == []
    assert 7 in t.calls and 41 not in t.calls


def test_an_adopted_call_dropped_silently_when_another_server_has_it() -> None:
    t, events = _tracker()
    t.adopt(41)
    t.drop_adopted([41])
    assert t.calls == {} and events == []


def test_an_adopted_call_asterisk_no_longer_lists_is_closed_lost_after_the_grace() -> None:
    now = [100.0]
    events: list[CallEvent] = []
    t = CallTracker("pbx1", events.append, monotonic=lambda: now[0], lost_grace=3.0)
    t.adopt(41, answered=True)
    t.resync([])
    assert events == [], "too young: the next audit decides"
    now[0] += 5.0
    t.resync([])
    assert [(e.kind, e.outcome and e.outcome.value) for e in events] == [
        (CallEventKind.ENDED, "lost")
    ]
