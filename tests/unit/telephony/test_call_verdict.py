"""What a call came to, decided once from what Asterisk said: the tracker's live calls and the
pure verdict shared with adopted and reconciled calls.

The oracle is the abandon rule as published (US TSR, 16 CFR 310.4(b)(4)(i); Ofcom's persistent
misuse policy): an answered call is abandoned when the person is not connected to a live agent
within two seconds of the completed greeting; the recorded message then plays. A call that did
reach the agent is a connection, never an abandon; a person who hangs up before the two seconds
ran out was not abandoned.
"""

from __future__ import annotations

from dialer.telephony.calls import CallEventKind
from dialer.telephony.outcomes import (
    CallFacts,
    Outcome,
    Stage,
    Verdict,
    facts_from_record,
    record_owner,
    verdict,
)
from tests.unit.telephony.test_calls import CID, Clock, dial_legs, ev, kinds, play, tracker, user


def answered_human(clock: Clock | None = None):  # type: ignore[no-untyped-def]
    t, events = tracker(clock)
    call = t.expect(42, CID, abandon_limit_s=2.0)
    t.originate_queued(call)
    play(
        t,
        *dial_legs(),
        ev("Newstate", CID, ChannelState="6"),
        user("DialerAwaitingAgent", Amd="OFF", Wait="1.6"),
    )
    return t, events, call


def test_connect_failed_is_abandoned_and_never_bridged() -> None:
    t, events, _ = answered_human()
    play(
        t,
        user("DialerConnectFailed", Agent="7", BridgeResult=""),
        user("DialerSafeHarbor", Stage="start"),
        ev("Hangup", CID, Cause="16"),
    )
    assert kinds(events)[-3:] == ["connect_failed", "abandoned", "ended"]
    end = events[-1]
    assert end.outcome is Outcome.ABANDONED and end.abandoned and not end.bridged


def test_connect_failed_counts_abandoned_even_if_the_debtor_leaves_before_the_message() -> None:
    t, events, _ = answered_human()
    play(t, user("DialerConnectFailed", Agent="7"), ev("Hangup", CID, Cause="16"))
    assert events[-1].outcome is Outcome.ABANDONED and events[-1].abandoned


def test_only_bridge_enter_into_the_agents_bridge_connects() -> None:
    t, events, _ = answered_human()
    # The Redirect was answered and the dialplan said it is connecting: not yet connected.
    play(t, user("DialerConnecting", Agent="7", AgentChannel="Local/login@x;2"))
    play(t, ev("BridgeEnter", CID, Context="dialer-answered", BridgeUniqueid="b0"))
    assert "bridged" not in kinds(events)
    play(t, ev("Hangup", CID, Cause="16"))
    end = events[-1]
    assert end.outcome is Outcome.HUNG_UP_EARLY and not end.bridged and not end.abandoned


def test_bridged_call_ends_human_and_bridged_only() -> None:
    t, events, _ = answered_human()
    play(
        t,
        ev("BridgeEnter", CID, Context="dialer-connect", BridgeUniqueid="b1"),
        ev("Hangup", CID, Cause="16"),
    )
    end = events[-1]
    assert (end.outcome, end.bridged, end.abandoned) == (Outcome.HUMAN, True, False)


def test_a_person_never_connected_within_the_limit_is_abandoned_whoever_hung_up() -> None:
    clock = Clock()
    t, events, _ = answered_human(clock)
    clock.mono += 2.5
    play(t, ev("Hangup", CID, Cause="16"))
    assert events[-1].outcome is Outcome.ABANDONED and events[-1].abandoned


def test_a_person_who_hangs_up_within_the_limit_hung_up_early() -> None:
    clock = Clock()
    t, events, _ = answered_human(clock)
    clock.mono += 1.0
    play(t, ev("Hangup", CID, Cause="16"))
    assert events[-1].outcome is Outcome.HUNG_UP_EARLY and not events[-1].abandoned


def test_verdict_never_sets_both_flags() -> None:
    for bridged in (False, True):
        for harbor in (False, True):
            for failed in (False, True):
                for stage in (None, *Stage):
                    v = verdict(
                        CallFacts(
                            answered=True,
                            human=True,
                            bridged=bridged,
                            safe_harbor=harbor,
                            connect_failed=failed,
                            stage=stage,
                            waited_s=5.0,
                        )
                    )
                    assert not (v.bridged and v.abandoned)
                    assert v.bridged == (v.outcome is Outcome.HUMAN)
                    assert v.abandoned == (v.outcome is Outcome.ABANDONED)


def test_verdict_of_what_a_restart_left() -> None:
    assert verdict(CallFacts(end_seen=False)) == Verdict(Outcome.LOST)
    assert verdict(CallFacts(answered=True, bridged=True, end_seen=False)) == Verdict(
        Outcome.HUMAN, bridged=True
    )
    assert verdict(CallFacts(answered=True, stage=Stage.SAFE_HARBOR)) == Verdict(
        Outcome.ABANDONED, abandoned=True
    )
    assert verdict(CallFacts(answered=True, stage=Stage.MACHINE)) == Verdict(Outcome.MACHINE)
    assert verdict(CallFacts(dial_status="BUSY")) == Verdict(Outcome.BUSY)
    assert CallEventKind.CONNECT_FAILED.value == "connect_failed"


def test_the_dialplans_record_gives_the_same_verdict_as_the_events() -> None:
    def of(record: str) -> Verdict | None:
        facts = facts_from_record(record, abandon_limit_s=2.0)
        return None if facts is None else verdict(facts)

    assert of("connected|HUMAN|16|1700000000.100|1700000030.000") == Verdict(
        Outcome.HUMAN, bridged=True
    )
    assert of("safe-harbor|OFF|16|1700000000.100|1700000004.000") == Verdict(
        Outcome.ABANDONED, abandoned=True
    )
    # Waited for an agent, hung up within the limit / after it.
    assert of("awaiting-agent|HUMAN|16|1700000000.100|1700000001.000") == Verdict(
        Outcome.HUNG_UP_EARLY
    )
    assert of("awaiting-agent|HUMAN|16|1700000000.100|1700000002.200") == Verdict(
        Outcome.ABANDONED, abandoned=True
    )
    assert of("machine|MACHINE|16||1700000009.000") == Verdict(Outcome.MACHINE)
    assert of("amd|HANGUP|16||1700000001.000") == Verdict(Outcome.HUNG_UP_EARLY)
    assert of("unanswered|BUSY|17") == Verdict(Outcome.BUSY)
    assert of("unanswered|NOANSWER|19") == Verdict(Outcome.NO_ANSWER)
    assert of("garbage") is None
    assert of("unanswered|BUSY|17|||3|51") == Verdict(Outcome.BUSY)
    assert record_owner("safe-harbor|OFF|16|1.0|4.0|3|51") == ("3", "51")
    assert record_owner("unanswered|BUSY|17") == ("", "")
