"""Call outcomes: what one dial attempt came to, from the codes Asterisk reports about it.

One table (`RULES`) maps every signal the dialer reads to an `Outcome`; two pure functions apply it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final


class Outcome(enum.StrEnum):
    """What an attempt came to, in the words the dialer records and reports."""

    HUMAN = "human"
    """A person answered (AMD said HUMAN or NOTSURE, or AMD was off): hand to an agent."""
    MACHINE = "machine"
    """An answering machine or voicemail answered (AMD said MACHINE)."""
    BUSY = "busy"
    """The line was busy, or the debtor declined the call: retry later."""
    NO_ANSWER = "no_answer"
    """It rang out (at least the 15 s the rules require), or the phone was off or unreachable."""
    CONGESTION = "congestion"
    """The network or trunk had no capacity: nothing is known about the debtor; retry soon."""
    INVALID_NUMBER = "invalid_number"
    """The number does not exist, changed, or is malformed: stop dialing this phone."""
    FAILED = "failed"
    """The call could not be placed for a reason on our side or unspecified: check the trunk."""
    HUNG_UP_EARLY = "hung_up_early"
    """Answered, then hung up before it could be classified or connected (AMD said HANGUP)."""
    ABANDONED = "abandoned"
    """A person answered and no agent was free in time: the safe-harbor message played.
    Set by the call router, never derived from the table: it counts in the abandon rate."""
    LOST = "lost"
    """The dialer lost track of the call (AMI connection or Asterisk went away before the end
    was seen). Set by the telephony layer, never derived from the table; never redialed at once."""


class Signal(enum.StrEnum):
    """Which Asterisk report a table row reads."""

    ORIGINATE_REASON = "originate_reason"
    """`Reason` of the OriginateResponse event: the last control frame seen before it ended."""
    HANGUP_CAUSE = "hangup_cause"
    """Q.850 cause of a call that was not answered (Hangup `Cause`, dialplan `HANGUPCAUSE`)."""
    DIAL_STATUS = "dial_status"
    """`DIALSTATUS` after Dial(), reported by the dialplan's DialerDialResult event."""
    AMD_STATUS = "amd_status"
    """`AMDSTATUS` after AMD() on an answered call, reported by the DialerAmd event."""


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of the table: a value Asterisk reports, the outcome it means, and why."""

    signal: Signal
    value: str
    outcome: Outcome
    meaning: str


_O = Outcome
_S = Signal

RULES: Final[tuple[Rule, ...]] = (
    # OriginateResponse Reason (Asterisk's AST_CONTROL_* of the last frame before the end).
    Rule(
        _S.ORIGINATE_REASON,
        "0",
        _O.FAILED,
        "no progress at all: channel not created or "
        "refused before ringing; the hangup cause, when known, says more",
    ),
    Rule(_S.ORIGINATE_REASON, "1", _O.FAILED, "hung up by the far end before answering"),
    Rule(_S.ORIGINATE_REASON, "2", _O.NO_ANSWER, "local ring, then the originate timeout"),
    Rule(_S.ORIGINATE_REASON, "3", _O.NO_ANSWER, "rang until the originate timeout"),
    Rule(_S.ORIGINATE_REASON, "4", _O.HUMAN, "answered; AMD, when on, decides human or machine"),
    Rule(_S.ORIGINATE_REASON, "5", _O.BUSY, "busy"),
    Rule(_S.ORIGINATE_REASON, "8", _O.CONGESTION, "congestion"),
    # Q.850 causes of unanswered calls (what SIP responses are mapped to by chan_pjsip).
    Rule(_S.HANGUP_CAUSE, "0", _O.FAILED, "no cause given"),
    Rule(_S.HANGUP_CAUSE, "1", _O.INVALID_NUMBER, "unallocated number (SIP 404)"),
    Rule(_S.HANGUP_CAUSE, "2", _O.CONGESTION, "no route to the transit network"),
    Rule(
        _S.HANGUP_CAUSE,
        "3",
        _O.INVALID_NUMBER,
        "no route to destination: the network does not serve this number",
    ),
    Rule(
        _S.HANGUP_CAUSE,
        "16",
        _O.NO_ANSWER,
        "normal clearing before answer: the ringing was "
        "ended (by us at the ring timeout, or by the network)",
    ),
    Rule(_S.HANGUP_CAUSE, "17", _O.BUSY, "user busy (SIP 486, 600)"),
    Rule(_S.HANGUP_CAUSE, "18", _O.NO_ANSWER, "no user responding (SIP 408)"),
    Rule(_S.HANGUP_CAUSE, "19", _O.NO_ANSWER, "user alerted, no answer (SIP 480)"),
    Rule(_S.HANGUP_CAUSE, "20", _O.NO_ANSWER, "subscriber absent: mobile off or out of range"),
    Rule(_S.HANGUP_CAUSE, "21", _O.BUSY, "call rejected by the debtor (SIP 603)"),
    Rule(_S.HANGUP_CAUSE, "22", _O.INVALID_NUMBER, "number changed (SIP 410)"),
    Rule(_S.HANGUP_CAUSE, "27", _O.FAILED, "destination out of order (SIP 502)"),
    Rule(_S.HANGUP_CAUSE, "28", _O.INVALID_NUMBER, "invalid number format (SIP 484)"),
    Rule(_S.HANGUP_CAUSE, "31", _O.FAILED, "normal, unspecified"),
    Rule(_S.HANGUP_CAUSE, "34", _O.CONGESTION, "no circuit available (SIP 503)"),
    Rule(_S.HANGUP_CAUSE, "38", _O.CONGESTION, "network out of order"),
    Rule(_S.HANGUP_CAUSE, "41", _O.CONGESTION, "temporary failure"),
    Rule(_S.HANGUP_CAUSE, "42", _O.CONGESTION, "switching equipment congestion"),
    Rule(_S.HANGUP_CAUSE, "44", _O.CONGESTION, "requested channel not available"),
    Rule(_S.HANGUP_CAUSE, "47", _O.CONGESTION, "resource unavailable"),
    Rule(_S.HANGUP_CAUSE, "58", _O.FAILED, "bearer capability not available (codec mismatch)"),
    Rule(_S.HANGUP_CAUSE, "66", _O.FAILED, "channel type not implemented (our configuration)"),
    Rule(_S.HANGUP_CAUSE, "88", _O.FAILED, "incompatible destination (SIP 488)"),
    Rule(_S.HANGUP_CAUSE, "102", _O.NO_ANSWER, "recovery on timer expiry: no final response"),
    Rule(_S.HANGUP_CAUSE, "111", _O.FAILED, "protocol error"),
    Rule(_S.HANGUP_CAUSE, "127", _O.FAILED, "interworking, unspecified"),
    # DIALSTATUS after Dial().
    Rule(_S.DIAL_STATUS, "ANSWER", _O.HUMAN, "answered; AMD, when on, decides"),
    Rule(_S.DIAL_STATUS, "BUSY", _O.BUSY, "busy"),
    Rule(_S.DIAL_STATUS, "NOANSWER", _O.NO_ANSWER, "rang for the whole ring timeout"),
    Rule(_S.DIAL_STATUS, "CANCEL", _O.NO_ANSWER, "we ended the ringing (originate timeout)"),
    Rule(_S.DIAL_STATUS, "CONGESTION", _O.CONGESTION, "congestion"),
    Rule(
        _S.DIAL_STATUS,
        "CHANUNAVAIL",
        _O.FAILED,
        "trunk unreachable or refused the call; an invalid-number cause takes precedence",
    ),
    Rule(_S.DIAL_STATUS, "DONTCALL", _O.FAILED, "privacy manager refusal (not used here)"),
    Rule(_S.DIAL_STATUS, "TORTURE", _O.FAILED, "privacy manager torture (not used here)"),
    Rule(_S.DIAL_STATUS, "INVALIDARGS", _O.FAILED, "bad Dial() arguments: our configuration"),
    # AMDSTATUS after AMD(); AMDCAUSE (e.g. LONGGREETING-2000-1500) is recorded, not decisive.
    Rule(_S.AMD_STATUS, "HUMAN", _O.HUMAN, "short greeting followed by silence"),
    Rule(
        _S.AMD_STATUS,
        "MACHINE",
        _O.MACHINE,
        "long greeting, too many words, or long initial silence",
    ),
    Rule(
        _S.AMD_STATUS,
        "NOTSURE",
        _O.HUMAN,
        "undecided: treated as a person, since a person "
        "wrongly sent to a machine treatment is an abandoned call",
    ),
    Rule(_S.AMD_STATUS, "HANGUP", _O.HUNG_UP_EARLY, "hung up while AMD listened"),
)

_TABLE: Final[Mapping[tuple[Signal, str], Outcome]] = MappingProxyType(
    {(rule.signal, rule.value): rule.outcome for rule in RULES}
)


def lookup(signal: Signal, value: str | int) -> Outcome | None:
    """The table's outcome for one reported value, or None when the table has no row for it."""
    return _TABLE.get((signal, str(value).strip().upper()))


def outcome_of_unanswered(
    *,
    dial_status: str | None = None,
    hangup_cause: int | str | None = None,
    originate_reason: int | str | None = None,
) -> Outcome:
    """The outcome of an attempt that was never answered, from whatever Asterisk reported.

    A cause that says the number is invalid wins (it is the only one that stops further dials);
    then DIALSTATUS, the most specific report; then a known non-zero cause; then the
    OriginateResponse reason. Nothing known: FAILED.
    """
    by_cause = None
    if hangup_cause is not None and str(hangup_cause).strip() not in ("", "0"):
        by_cause = lookup(Signal.HANGUP_CAUSE, hangup_cause)
    if by_cause is Outcome.INVALID_NUMBER:
        return by_cause
    candidates = (
        lookup(Signal.DIAL_STATUS, dial_status) if dial_status else None,
        by_cause,
        lookup(Signal.ORIGINATE_REASON, originate_reason) if originate_reason is not None else None,
    )
    for outcome in candidates:
        if outcome is not None and outcome is not Outcome.HUMAN:
            return outcome
    return Outcome.FAILED


def outcome_of_answered(amd_status: str | None) -> Outcome:
    """The outcome of an answered attempt: AMD's verdict, or HUMAN when AMD was off (None/OFF).

    An AMD status the table does not know counts as HUMAN, for the same reason as NOTSURE.
    """
    if amd_status is None or amd_status.strip().upper() in ("", "OFF"):
        return Outcome.HUMAN
    return lookup(Signal.AMD_STATUS, amd_status) or Outcome.HUMAN


class Stage(enum.StrEnum):
    """Where the dialplan last put an answered call (`DIALER_STAGE` in its DialerCallEnd event);
    what is left of a call whose other events this process never saw (adopted, reconciled)."""

    ANSWERED = "answered"
    AMD = "amd"
    AWAITING_AGENT = "awaiting-agent"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    SAFE_HARBOR = "safe-harbor"
    MACHINE = "machine"
    MACHINE_MESSAGE = "machine-message"


@dataclass(frozen=True, slots=True)
class CallFacts:
    """What Asterisk reported about one call, as far as anyone saw it. Every field is a fact
    from an event (or from Asterisk's own records after a restart), never a decision."""

    answered: bool = False
    human: bool = False  # DialerAwaitingAgent: a person waits for an agent (AMD said so, or off)
    amd_status: str | None = None
    bridged: bool = False  # BridgeEnter of the call into the agent's bridge ([dialer-connect])
    safe_harbor: bool = False  # DialerSafeHarbor: the message started
    connect_failed: bool = False  # DialerConnectFailed: the agent's channel was gone
    stage: Stage | None = None  # DialerCallEnd's stage, when that is all that is known
    waited_s: float | None = None  # from the human answer to the end, when both were seen
    abandon_limit_s: float = 2.0
    dial_status: str | None = None
    hangup_cause: int | None = None
    originate_reason: str | None = None
    hangup_requested: bool = False  # the dialer hung up an unanswered call itself
    end_seen: bool = True  # False: Asterisk has no record of how (or whether) it ended


@dataclass(frozen=True, slots=True)
class Verdict:
    """A call's final outcome and the two flags the abandon rate counts; never both flags."""

    outcome: Outcome
    bridged: bool = False
    abandoned: bool = False


_STAGE_VERDICTS: Final[Mapping[Stage, Verdict]] = MappingProxyType(
    {
        Stage.CONNECTED: Verdict(Outcome.HUMAN, bridged=True),
        Stage.SAFE_HARBOR: Verdict(Outcome.ABANDONED, abandoned=True),
        Stage.MACHINE: Verdict(Outcome.MACHINE),
        Stage.MACHINE_MESSAGE: Verdict(Outcome.MACHINE),
    }
)


def verdict(facts: CallFacts) -> Verdict:
    """The one decision of what a call came to, for live, adopted and reconciled calls alike.

    - Bridged into the agent's bridge (Asterisk's BridgeEnter): a connected human, never an
      abandon (the dialer never redirects a call once its safe harbor started).
    - The safe harbor started, or the dialplan found the agent's channel gone
      (DialerConnectFailed, after which it plays the safe harbor itself): abandoned.
    - Only the dialplan's last stage known (the call's other events were missed): that stage.
    - A person answered and was never connected: abandoned once the limit ran out, whoever hung
      up first; before it, `hung_up_early` (no call was abandoned yet).
    - A machine by AMD: `machine`; AMD heard a hang-up: `hung_up_early`.
    - Never answered: the table (`outcome_of_unanswered`).
    - Asterisk has no record of the end and nothing above is known: `lost`.
    """
    if facts.bridged:
        return Verdict(Outcome.HUMAN, bridged=True)
    if facts.safe_harbor or facts.connect_failed:
        return Verdict(Outcome.ABANDONED, abandoned=True)
    if facts.stage is not None and facts.stage in _STAGE_VERDICTS:
        return _STAGE_VERDICTS[facts.stage]
    if not facts.end_seen:
        return Verdict(Outcome.LOST)
    if facts.human or (
        facts.stage is not None
        and facts.stage is not Stage.ANSWERED
        and facts.stage is not Stage.AMD
    ):
        if facts.waited_s is not None and facts.waited_s >= facts.abandon_limit_s:
            return Verdict(Outcome.ABANDONED, abandoned=True)
        return Verdict(Outcome.HUNG_UP_EARLY)
    if facts.answered or facts.stage is not None:
        by_amd = outcome_of_answered(facts.amd_status)
        if by_amd is Outcome.MACHINE:
            return Verdict(Outcome.MACHINE)
        # Answered and gone before AMD or the dialer could tell who it was.
        return Verdict(Outcome.HUNG_UP_EARLY)
    if facts.hangup_requested:
        return Verdict(Outcome.NO_ANSWER)
    return Verdict(
        outcome_of_unanswered(
            dial_status=facts.dial_status,
            hangup_cause=facts.hangup_cause,
            originate_reason=facts.originate_reason,
        )
    )


def record_owner(record: str) -> tuple[str, str]:
    """(campaign id, account id) the dialplan wrote at the end of its record ("" when absent)."""
    parts = record.split("|")
    return (parts[5], parts[6]) if len(parts) >= 7 else ("", "")


def facts_from_record(record: str, *, abandon_limit_s: float = 2.0) -> CallFacts | None:
    """The facts in the dialplan's AstDB record of one attempt (asterisk_conf/extensions.conf):
    `unanswered|DIALSTATUS|cause|||campaign|account` or
    `stage|amd|cause|awaiting since|ended at|campaign|account` (epoch seconds).
    None when the record does not parse (the caller then knows nothing of the call)."""
    parts = record.split("|")
    cause = int(parts[2]) if len(parts) > 2 and parts[2].strip().isdigit() else None
    if parts[0] == "unanswered" and len(parts) >= 2:
        return CallFacts(dial_status=parts[1] or None, hangup_cause=cause)
    try:
        stage = Stage(parts[0])
    except ValueError:
        return None
    amd = parts[1] if len(parts) > 1 and parts[1] else None
    waited = None
    if len(parts) >= 5 and parts[3] and parts[4]:
        try:
            waited = max(0.0, float(parts[4]) - float(parts[3]))
        except ValueError:
            waited = None
    human_stages = (Stage.AWAITING_AGENT, Stage.CONNECTING, Stage.CONNECTED, Stage.SAFE_HARBOR)
    return CallFacts(
        answered=True,
        human=stage in human_stages,
        amd_status=None if amd == "OFF" else amd,
        stage=stage,
        waited_s=waited,
        abandon_limit_s=abandon_limit_s,
        hangup_cause=cause,
    )
