"""The engine's two ports: telephony (commands out, call events in) and the agents' hub.

Adapters implement these over AMI and over the agents' websockets; the engine sees nothing else.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from pacing.snapshot import AgentView


class CallEventKind(enum.StrEnum):
    ORIGINATED = "originated"  # Asterisk accepted the Originate: a channel exists
    RINGING = "ringing"
    ANSWERED = "answered"  # a live human (after AMD when the campaign uses it)
    MACHINE = "machine"  # an answering machine (AMD)
    BRIDGED = "bridged"  # Asterisk's BridgeEnter: the debtor's channel is in the agent's bridge
    CONNECT_FAILED = "connect_failed"  # the agent's channel was gone; the dialplan plays the
    # safe harbor itself (abandoned, never bridged)
    ABANDONED = "abandoned"  # the safe-harbor message started (the dialplan's own fallback too)
    ENDED = "ended"  # final; carries the outcome and flags, decided by telephony


@dataclass(frozen=True, slots=True)
class CallEvent:
    attempt_id: int
    kind: CallEventKind
    at: dt.datetime
    server: str | None = None
    uniqueid: str | None = None
    linkedid: str | None = None
    channel: str | None = None
    outcome: str | None = None  # with ENDED: a value of dialer.telephony.outcomes.Outcome
    hangup_cause: int | None = None
    dial_status: str | None = None
    amd_result: str | None = None
    amd_cause: str | None = None
    agent: str | None = None  # BRIDGED: the agent id the dialplan connected (DialerConnecting)
    # ENDED: telephony's verdict (dialer.telephony.outcomes.verdict); never both.
    bridged: bool = False
    abandoned: bool = False


@dataclass(frozen=True, slots=True)
class OpenCall:
    """An open attempt found at start-up, with what its row says already happened."""

    attempt_id: int
    answered: bool = False
    bridged: bool = False
    abandon_limit_s: float = 2.0
    campaign_id: int | None = None  # checked against Asterisk's record of the attempt
    account_id: int | None = None
    server: str | None = None  # where it was placed, when the row says


class TelephonyUnavailable(Exception):
    """Asterisk cannot be asked now (the server of an open call is not connected): try later."""


@dataclass(frozen=True, slots=True)
class OriginateRequest:
    attempt_id: int
    campaign_id: int
    number: str  # E.164
    caller_id: str | None
    amd: bool
    ring_timeout_s: float = 25.0
    machine_action: str = "hangup"  # or "message": what the dialplan does with a machine
    record: bool = False
    variables: Mapping[str, str] = field(default_factory=dict)
    abandon_limit_s: float = 2.0  # a person never connected within it counts as abandoned


@dataclass(frozen=True, slots=True)
class ReadyAgent:
    agent_id: int
    channel: str  # the nailed-up channel answered calls are bridged into


@dataclass(frozen=True, slots=True)
class EndedCall:
    """How a call that ended while no process followed it came out, from Asterisk's records."""

    attempt_id: int
    outcome: str
    bridged: bool = False
    abandoned: bool = False
    hangup_cause: int | None = None
    dial_status: str | None = None


class CallGone(Exception):
    """A command for a call that Asterisk no longer has (the debtor hung up)."""


class OriginateRefused(Exception):
    """No server could take the call (capacity, AMI down, or Asterisk refused it at once)."""


class TelephonyPort(Protocol):
    async def originate(self, request: OriginateRequest) -> str:
        """Send the Originate (never re-sent); returns the server's name."""
        ...

    async def bridge(self, attempt_id: int, agent: ReadyAgent) -> None:
        """Join the answered call to the agent's nailed-up channel (no ringing)."""
        ...

    async def safe_harbor(self, attempt_id: int) -> None: ...

    async def machine(self, attempt_id: int, action: str) -> None:
        """`hangup` or `message` (leave the campaign's message)."""
        ...

    async def hangup(self, attempt_id: int) -> None: ...

    async def start_recording(self, attempt_id: int) -> str | None:
        """Record the conversation; returns where the file will be (relative to the spool)."""
        ...

    def free_channels(self) -> int | None:
        """Channels the pool can still take now; None when unlimited."""
        ...

    async def adopt(self, calls: Sequence[OpenCall]) -> set[int]:
        """Calls another (dead) process placed: telephony follows those Asterisk still has
        (returned) like its own, to their ENDED with the real outcome. TelephonyUnavailable when
        a server that may hold one of them is not connected (nothing can be decided yet)."""
        ...

    async def ended(self, calls: Sequence[OpenCall]) -> dict[int, EndedCall]:
        """Of calls Asterisk no longer has, how those it kept a record of ended."""
        ...


class AgentsPort(Protocol):
    def views(self, campaign_id: int) -> list[AgentView]:
        """The campaign's agents for the pacing snapshot (away agents excluded)."""
        ...

    def longest_waiting(self, campaign_id: int, prefer: int | None = None) -> ReadyAgent | None:
        """`prefer` (a due callback's owner) when that agent is ready for the campaign, else the
        ready agent of the campaign who has waited longest."""
        ...

    async def reserve(self, agent_id: int, attempt_id: int) -> bool:
        """Ready -> reserved; False when the agent is no longer ready."""
        ...

    async def connected(self, agent_id: int, attempt_id: int) -> None:
        """Reserved -> talking, and the screen pop goes to the agent's browser."""
        ...

    async def unreserve(self, agent_id: int, reason: str = "not_connected") -> None:
        """Reserved -> ready: the call never reached the agent; `reason` tells the desktop why
        (`debtor_hung_up`, `agent_channel_lost`, `connect_failed`)."""
        ...

    async def call_ended(self, agent_id: int, attempt_id: int) -> None:
        """Talking -> wrap-up."""
        ...
