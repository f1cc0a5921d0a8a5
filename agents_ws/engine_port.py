"""The small interface between the agents' side and the engine, in both directions.

`EnginePort`: what agents_ws asks of the engine (auth, persistence, telephony commands).
`AgentHubApi`: what the engine asks of agents_ws (pacing snapshot, reserve, screen pop, wrap-up).
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol

from agents_ws.protocol import (
    CallbackRequest,
    DispositionRequest,
    JsonObject,
    PromiseRequest,
    WrongNumberRequest,
)
from agents_ws.state import AgentState

# The screen pop as sent to the desktop; its keys are documented in PROTOCOL.md ("screen_pop").
ScreenPop = JsonObject


@dataclass(frozen=True, slots=True)
class AgentIdentity:
    """Who is on the socket, as the engine's auth knows them."""

    agent_id: int
    login: str
    name: str
    role: str  # "agent", "supervisor" or "admin"
    language: str = "es"
    channel: str | None = None  # the endpoint whose nailed-up channel carries the agent's calls

    @property
    def supervises(self) -> bool:
        return self.role in ("supervisor", "admin")


@dataclass(frozen=True, slots=True)
class CampaignInfo:
    id: int
    name: str
    dial_mode: str


@dataclass(frozen=True, slots=True)
class CallOffer:
    """A call (or a preview account) the engine hands to an agent. The client never supplies
    these ids: submissions are tied to the call the hub holds for that agent."""

    call_id: str
    campaign_id: int
    account_id: int
    attempt_id: int | None = None
    phone_id: int | None = None
    time_zone: str | None = None  # the debtor's zone: callback times and "today" for PTP dates
    wrap_up_limit_s: float = 120.0
    wrap_up_expiry: str = "auto_ready"
    preview: bool = False


@dataclass(frozen=True, slots=True)
class Ack:
    """A committed submission: the row's id, and whether it was already there (a re-send)."""

    record_id: int | None
    duplicate: bool = False


class PortRefused(Exception):
    """The engine refused a submission; `field` names what to fix (e.g. "code", "local_time")."""

    def __init__(self, message: str, field: str | None = None, code: str = "invalid_field"):
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code


@dataclass(frozen=True, slots=True)
class StateChange:
    """One row of the agent state log."""

    agent_id: int
    state: AgentState
    reason: str | None
    campaign_id: int | None
    attempt_id: int | None
    at: dt.datetime  # aware UTC


class SupervisorAction(enum.StrEnum):
    LISTEN = "listen"
    WHISPER = "whisper"
    BARGE = "barge"


class EnginePort(Protocol):
    """Implemented by the dialer (dialer/agent_service.py). Every submit_* returns only after
    the commit, and is idempotent by (agent, client_msg_id)."""

    async def authenticate(self, token: str) -> AgentIdentity | None: ...

    async def campaigns(self) -> list[CampaignInfo]:
        """Campaigns an agent may choose when going ready (running or paused ones)."""
        ...

    async def open_agent_channel(self, agent: AgentIdentity) -> bool:
        """Ask telephony for the agent's nailed-up channel (adopted when Asterisk holds one
        already). True: it is up now; False: telephony calls `AgentHubApi.channel_up` when it
        is, and keeps watching it (`channel_down` when it drops, `channel_up` when it is back)."""
        ...

    async def close_agent_channel(self, agent: AgentIdentity) -> None:
        """The agent logged out: hang up their nailed-up channel (their phone stops holding)."""
        ...

    async def softphone_credentials(self, agent: AgentIdentity) -> JsonObject | None:
        """Fresh SIP credentials for the desktop's softphone (a new random password each time,
        never the agent's own), or None when this agent does not use the softphone."""
        ...

    async def softphone_audio_lost(self, agent: AgentIdentity, reason: str) -> None:
        """The softphone says its audio is gone (websocket to Asterisk down, media failed):
        count the agent's session down now, before Asterisk notices."""
        ...

    async def record_state(self, change: StateChange) -> None: ...

    async def submit_disposition(
        self, agent: AgentIdentity, call: CallOffer, request: DispositionRequest
    ) -> Ack: ...

    async def submit_promise(
        self, agent: AgentIdentity, call: CallOffer, request: PromiseRequest
    ) -> Ack: ...

    async def submit_callback(
        self, agent: AgentIdentity, call: CallOffer, request: CallbackRequest
    ) -> Ack: ...

    async def wrong_number(
        self, agent: AgentIdentity, call: CallOffer, request: WrongNumberRequest
    ) -> Ack: ...

    async def hang_up(self, agent: AgentIdentity, call: CallOffer) -> None: ...

    async def next_preview(
        self, agent: AgentIdentity, campaign_id: int | None
    ) -> tuple[CallOffer, ScreenPop] | None:
        """Claim the next account for a preview campaign, or None when nothing is due."""
        ...

    async def dial_preview(self, agent: AgentIdentity, call: CallOffer) -> None: ...

    async def skip_preview(self, agent: AgentIdentity, call: CallOffer) -> None: ...

    async def supervise(
        self, supervisor: AgentIdentity, action: SupervisorAction, target_agent_id: int
    ) -> None:
        """Listen, whisper or barge on the agent's channel (ChanSpy on the telephony side)."""
        ...


@dataclass(frozen=True, slots=True)
class AgentSnapshot:
    """One agent as pacing sees it."""

    agent_id: int
    state: AgentState
    time_in_state: float  # seconds
    campaign_id: int | None  # None: any campaign
    connected: bool  # False: socket dropped, still within the grace period
    phone_up: bool = True  # False: the nailed-up channel is down; no call can reach the agent


@dataclass(frozen=True, slots=True)
class CampaignLive:
    """Live campaign figures the engine feeds to the supervisor view."""

    campaign_id: int
    name: str
    dialing: int
    ringing: int
    talking: int
    abandon_rate: float  # over the regulatory window, 0..1
    decision: str  # the latest pacing decision, in words ("launch 3: ...")


class HubListener(Protocol):
    """What the hub tells the engine (the engine's router and pacing history)."""

    def agent_ready(self, campaign_id: int | None) -> None:
        """An agent became ready for `campaign_id` (None: any campaign)."""
        ...

    def handle_finished(self, campaign_id: int, talk_s: float, wrap_s: float) -> None:
        """A call's talk and wrap-up durations, once the wrap-up is over."""
        ...


class AgentHubApi(Protocol):
    """What the engine calls. Every method is synchronous and cheap: it changes the state in
    memory and queues the messages; the socket writers and the state-log writer follow in order."""

    def snapshot(self, campaign_id: int | None = None) -> list[AgentSnapshot]:
        """Agents logged in and not away longer than the grace period."""
        ...

    def pick(
        self, campaign_id: int, agent_id: int | None = None, *, exclude: Collection[int] = ()
    ) -> AgentIdentity | None:
        """The ready agent of the campaign who has waited longest, without reserving them; with
        `agent_id`, that agent when ready for the campaign, else None. Agents in `exclude` are
        passed over (their reservation is under way)."""
        ...

    def listen(self, listener: HubListener) -> None: ...

    def reserve(self, offer: CallOffer, agent_id: int | None = None) -> int | None:
        """Reserve `agent_id`, or the ready agent of the campaign who waited longest."""
        ...

    def release(self, call_id: str, reason: str) -> None:
        """A reserved call never reached the agent (abandoned, failed): back to ready."""
        ...

    def call_bridged(self, call_id: str, pop: ScreenPop) -> bool:
        """The call is in the agent's channel: talking, and the screen pop goes out."""
        ...

    def call_ended(self, call_id: str) -> None:
        """Hang-up: the agent goes to wrap-up with the campaign's limit."""
        ...

    def channel_up(self, agent_id: int, reason: str = "phone_up") -> None:
        """The agent's nailed-up channel is up: calls may reach them again."""
        ...

    def channel_down(self, agent_id: int, reason: str = "phone_hung_up") -> None:
        """The channel dropped (Asterisk down, phone hung up, not answered): the agent keeps
        their state but gets no call until `channel_up`; the desktop is told why."""
        ...

    def set_campaigns_live(self, campaigns: list[CampaignLive]) -> None: ...
