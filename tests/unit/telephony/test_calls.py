"""The call state machine fed with AMI events directly: no socket, a clock passed in."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools

import pytest
from panoramisk.message import Message

from dialer.telephony.calls import (
    AnsweredBy,
    CallEvent,
    CallEventKind,
    CallState,
    CallTracker,
    attempt_of,
    channel_id,
)
from dialer.telephony.outcomes import Outcome

T0 = dt.datetime(2026, 1, 5, 14, 0, tzinfo=dt.UTC)
CID = channel_id(42, "abcd")


class Clock:
    def __init__(self) -> None:
        self.ticks = itertools.count()
        self.mono = 100.0

    def now(self) -> dt.datetime:
        return T0 + dt.timedelta(seconds=next(self.ticks))

    def monotonic(self) -> float:
        return self.mono


def tracker(clock: Clock | None = None) -> tuple[CallTracker, list[CallEvent]]:
    clock = clock or Clock()
    events: list[CallEvent] = []
    return (
        CallTracker(
            "pbx1", events.append, clock=clock.now, monotonic=clock.monotonic, lost_grace=3.0
        ),
        events,
    )


def ev(name: str, uid: str = CID, linked: str = CID, **fields: str) -> Message:
    base = {
        "Event": name,
        "Channel": f"Local/x-{uid};1",
        "Uniqueid": uid,
        "Linkedid": linked,
        "Context": "dialer-answered",
    }
    base.update(fields)
    return Message(base)


def user(name: str, uid: str = CID, **fields: str) -> Message:
    return ev("UserEvent", uid, UserEvent=name, Attempt="42", **fields)


def play(t: CallTracker, *messages: Message) -> None:
    for message in messages:
        t.handle(message)


def kinds(events: list[CallEvent]) -> list[str]:
    return [e.kind.value for e in events]


def dial_legs() -> list[Message]:
    return [
        ev("Newchannel", CID, ChannelState="0"),
        ev("Newchannel", f"{CID}-2", ChannelState="0"),
        ev("Newchannel", "1700.5", ChannelState="0"),
        ev("Newstate", "1700.5", ChannelState="5"),
    ]


def test_channel_id_carries_the_attempt_id() -> None:
    assert attempt_of(channel_id(42, "abcd")) == 42
    assert attempt_of("1700000000.12") is None
    assert attempt_of("dialer-spy-42-ab") is None


def test_busy_call_goes_originated_ringing_ended_busy() -> None:
    t, events = tracker()
    call = t.expect(42, CID)
    t.originate_queued(call)
    play(
        t,
        *dial_legs(),
        ev("Hangup", "1700.5", Cause="17"),
        user("DialerDialResult", f"{CID}-2", DialStatus="BUSY", HangupCause="17"),
        ev("Hangup", f"{CID}-2", Cause="17"),
        ev("Hangup", CID, Cause="17"),
    )
    assert kinds(events) == ["originated", "ringing", "ended"]
    assert events[-1].outcome is Outcome.BUSY
    assert events[-1].dial_status == "BUSY"
    assert events[-1].hangup_cause == 17
    assert 42 not in t.calls


def test_each_transition_is_timestamped_in_order() -> None:
    t, _ = tracker()
    call = t.expect(42, CID)
    t.originate_queued(call)
    play(t, *dial_legs(), ev("Newstate", CID, ChannelState="6"), ev("Hangup", CID, Cause="16"))
    states = [s for s, _ in call.transitions]
    assert states == [
        CallState.CREATED,
        CallState.ORIGINATED,
        CallState.RINGING,
        CallState.ANSWERED,
        CallState.ENDED,
    ]
    times = [when for _, when in call.transitions]
    assert times == sorted(times) and all(w.tzinfo is dt.UTC for w in times)


def test_a_late_originate_acknowledgement_does_not_take_the_call_back() -> None:
    t, events = tracker()
    call = t.expect(42, CID)
    play(t, *dial_legs())  # events first: Asterisk was faster than the reply
    t.originate_queued(call)
    assert call.state is CallState.RINGING
    assert kinds(events) == ["originated", "ringing"]


def test_human_answer_emits_answered_then_human_then_bridged_and_ends_human() -> None:
    t, events = tracker()
    call = t.expect(42, CID)
    t.originate_queued(call)
    play(
        t,
        *dial_legs(),
        ev("Newstate", CID, ChannelState="6"),
        ev("OriginateResponse", "<null>", ActionID=CID, Response="Success", Reason="4"),
        user("DialerAmd", AmdStatus="HUMAN", AmdCause="HUMAN-800-800"),
        user("DialerAwaitingAgent", Amd="HUMAN", Wait="0.8"),
        user("DialerConnecting", Agent="1001", AgentChannel="Local/login@x;2"),
        ev("BridgeEnter", CID, BridgeUniqueid="b1", Context="dialer-connect"),
        ev("Hangup", "1700.5", Cause="16"),
        ev("Hangup", f"{CID}-2", Cause="16"),
        ev("Hangup", CID, Cause="16"),
    )
    assert kinds(events) == ["originated", "ringing", "answered", "human", "bridged", "ended"]
    human = events[3]
    assert human.answered_by is AnsweredBy.HUMAN and human.amd_status == "HUMAN"
    assert events[4].agent == "1001"
    assert events[-1].outcome is Outcome.HUMAN
    assert call.agent_channel == "Local/login@x;2"


def test_machine_by_amd_ends_machine() -> None:
    t, events = tracker()
    t.originate_queued(t.expect(42, CID))
    play(
        t,
        *dial_legs(),
        ev("Newstate", CID, ChannelState="6"),
        user("DialerAmd", AmdStatus="MACHINE", AmdCause="LONGGREETING-1500-1500"),
        user("DialerMachine", Action="hangup"),
        ev("Hangup", CID, Cause="16"),
    )
    assert kinds(events)[-2:] == ["machine", "ended"]
    assert events[-1].outcome is Outcome.MACHINE
    assert events[-1].answered_by is AnsweredBy.MACHINE
    assert events[-1].amd_cause == "LONGGREETING-1500-1500"


def test_safe_harbor_marks_the_call_abandoned() -> None:
    t, events = tracker()
    t.originate_queued(t.expect(42, CID))
    play(
        t,
        *dial_legs(),
        ev("Newstate", CID, ChannelState="6"),
        user("DialerAwaitingAgent", Amd="OFF", Wait="1.6"),
        user("DialerSafeHarbor", Stage="start"),
        ev("Hangup", CID, Cause="16"),
    )
    assert kinds(events)[-3:] == ["human", "abandoned", "ended"]
    assert events[-1].outcome is Outcome.ABANDONED


def test_hangup_during_amd_is_hung_up_early() -> None:
    t, events = tracker()
    t.originate_queued(t.expect(42, CID))
    play(t, *dial_legs(), ev("Newstate", CID, ChannelState="6"), ev("Hangup", CID, Cause="16"))
    assert events[-1].outcome is Outcome.HUNG_UP_EARLY


def test_originate_failure_without_any_channel_ends_failed() -> None:
    t, events = tracker()
    t.originate_queued(t.expect(42, CID))
    play(t, ev("OriginateResponse", "<null>", ActionID=CID, Response="Failure", Reason="0"))
    assert events[-1].kind is CallEventKind.ENDED
    assert events[-1].outcome is Outcome.FAILED


async def test_a_failure_response_that_overtakes_its_channels_events_waits_for_them() -> None:
    """Under load Asterisk may deliver the OriginateResponse before the Newchannel/Hangup events
    of the call it reports (another stasis topic): the Hangup cause still decides."""
    t, events = tracker()
    t.failure_grace = 0.05
    t.originate_queued(t.expect(42, CID))
    # Reason 0, as Asterisk 22 reports an unallocated number.
    play(t, ev("OriginateResponse", "<null>", ActionID=CID, Response="Failure", Reason="0"))
    assert kinds(events) == ["originated"]  # not ended yet
    play(
        t,
        ev("Newchannel", CID, ChannelState="0"),
        ev("Newchannel", f"{CID}-2", ChannelState="0"),
        ev("Hangup", f"{CID}-2", Cause="1"),
        ev("Hangup", CID, Cause="1"),
    )
    await asyncio.sleep(0.1)  # the grace ends: nothing more happens
    assert kinds(events) == ["originated", "ended"]
    assert events[-1].outcome is Outcome.INVALID_NUMBER


async def test_a_failure_response_whose_channels_never_show_ends_after_the_grace() -> None:
    t, events = tracker()
    t.failure_grace = 0.05
    t.originate_queued(t.expect(42, CID))
    play(t, ev("OriginateResponse", "<null>", ActionID=CID, Response="Failure", Reason="0"))
    assert kinds(events) == ["originated"]
    await asyncio.sleep(0.1)
    assert kinds(events) == ["originated", "ended"]
    assert events[-1].outcome is Outcome.FAILED


def test_unallocated_number_is_invalid_even_when_dial_status_says_no_answer() -> None:
    t, events = tracker()
    t.originate_queued(t.expect(42, CID))
    play(
        t,
        *dial_legs(),
        user("DialerDialResult", f"{CID}-2", DialStatus="NOANSWER", HangupCause="1"),
        ev("Hangup", CID, Cause="1"),
    )
    assert events[-1].outcome is Outcome.INVALID_NUMBER


def test_events_of_other_channels_are_ignored() -> None:
    t, events = tracker()
    t.originate_queued(t.expect(42, CID))
    play(
        t,
        ev("Newchannel", "99.1", "99.1", ChannelState="0"),
        ev("Hangup", "99.1", "99.1", Cause="16"),
    )
    assert kinds(events) == ["originated"]


def test_new_channel_of_an_unknown_dialer_attempt_is_reported_once() -> None:
    t, events = tracker()
    other = channel_id(77, "ffff")
    play(t, ev("Newchannel", other, other), ev("Newchannel", f"{other}-2", other))
    unknown = [e for e in events if e.kind is CallEventKind.UNKNOWN_CHANNEL]
    assert [e.attempt_id for e in unknown] == [77, 77]  # one per channel
    play(t, ev("Newstate", other, other, ChannelState="5"), ev("Newchannel", other, other))
    assert len([e for e in events if e.kind is CallEventKind.UNKNOWN_CHANNEL]) == 2


def show(
    uid: str, linked: str, state: str = "6", context: str = "dialer-answered", bridge: str = ""
) -> Message:
    return Message(
        {
            "Event": "CoreShowChannel",
            "Channel": f"Local/y-{uid};1",
            "Uniqueid": uid,
            "Linkedid": linked,
            "ChannelState": state,
            "Context": context,
            "BridgeId": bridge,
        }
    )


def test_resync_closes_calls_asterisk_no_longer_has_as_lost() -> None:
    clock = Clock()
    t, events = tracker(clock)
    t.originate_queued(t.expect(42, CID))
    play(t, *dial_legs())
    clock.mono += 10
    report = t.resync([], after_reconnect=True)
    assert report.lost == (42,)
    assert events[-1].kind is CallEventKind.ENDED and events[-1].outcome is Outcome.LOST
    assert t.in_flight == 0


def test_resync_waits_for_a_call_whose_originate_is_very_young() -> None:
    clock = Clock()
    t, _ = tracker(clock)
    t.originate_uncertain(t.expect(42, CID))
    report = t.resync([])
    assert report.lost == () and report.pending == 1
    clock.mono += 5
    assert t.resync([]).lost == (42,)


def test_resync_follows_a_call_found_alive_and_catches_up_its_state() -> None:
    clock = Clock()
    t, events = tracker(clock)
    call = t.expect(42, CID)
    t.originate_uncertain(call)  # the reply was lost with the connection
    clock.mono += 10
    report = t.resync(
        [show(CID, CID, "6", "dialer-connect", bridge="b1"), show(f"{CID}-2", CID, "6")]
    )
    assert report.alive == 1 and report.lost == ()
    assert call.state is CallState.BRIDGED
    assert not call.uncertain
    assert kinds(events) == ["originated", "answered", "bridged"]
    t.handle(ev("Hangup", CID, Cause="16"))
    assert events[-1].outcome is Outcome.HUMAN


def test_resync_reports_channels_nobody_knows_but_not_agent_sessions() -> None:
    t, events = tracker()
    stray = channel_id(9, "beef")
    report = t.resync(
        [
            show(stray, stray),
            show("1700.9", "1700.9"),
            show("1700.10", "1700.10", context="dialer-agent-session"),
        ]
    )
    assert sorted((u.uniqueid, u.attempt_id) for u in report.unknown) == [
        ("1700.9", None),
        (stray, 9),
    ]
    assert len([e for e in events if e.kind is CallEventKind.UNKNOWN_CHANNEL]) == 2
    assert t.resync([show(stray, stray)]).unknown == ()  # reported once


def test_an_attempt_cannot_be_expected_twice() -> None:
    t, _ = tracker()
    t.expect(42, CID)
    with pytest.raises(ValueError, match="attempt 42 is already in flight"):
        t.expect(42, channel_id(42, "other"))
