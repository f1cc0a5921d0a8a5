"""The engine's telephony port over Asterisk: `ServerPool` commands out, its call events in.

Per-campaign call settings (AMD, machine action, recording, ring time) travel as the Originate's
channel variables that the shipped dialplan reads (asterisk_conf/extensions.conf).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from panoramisk.message import Message

from dialer.engine.ports import (
    CallEvent,
    CallEventKind,
    OriginateRefused,
    OriginateRequest,
    ReadyAgent,
)
from dialer.telephony import calls as tcalls
from dialer.telephony.ami import AmiError
from dialer.telephony.outcomes import Outcome, outcome_of_unanswered
from dialer.telephony.pool import NoCapacity, ServerPool

log = logging.getLogger("dialer.engine.telephony")

# Telephony's kinds the engine acts on. ANSWERED (the line picked up while AMD still listens) and
# UNKNOWN_CHANNEL (reported by the audit) need nothing from the engine.
_KINDS = {
    tcalls.CallEventKind.ORIGINATED: CallEventKind.ORIGINATED,
    tcalls.CallEventKind.RINGING: CallEventKind.RINGING,
    tcalls.CallEventKind.HUMAN: CallEventKind.ANSWERED,
    tcalls.CallEventKind.MACHINE: CallEventKind.MACHINE,
    tcalls.CallEventKind.BRIDGED: CallEventKind.BRIDGED,
    tcalls.CallEventKind.ABANDONED: CallEventKind.ABANDONED,
    tcalls.CallEventKind.ENDED: CallEventKind.ENDED,
}


def to_engine_event(event: tcalls.CallEvent) -> CallEvent | None:
    kind = _KINDS.get(event.kind)
    if kind is None or event.attempt_id is None:
        return None
    return CallEvent(
        attempt_id=event.attempt_id,
        kind=kind,
        at=event.at,
        server=event.server,
        channel=event.channel,
        outcome=event.outcome.value if event.outcome is not None else None,
        hangup_cause=event.hangup_cause,
        dial_status=event.dial_status,
        amd_result=event.amd_status,
        amd_cause=event.amd_cause,
    )


# Where an answered call was when it ended (DIALER_STAGE in the DialerCallEnd user event) -> the
# outcome of an adopted call, whose earlier events this process never saw.
_STAGE_OUTCOMES = {
    "connected": Outcome.HUMAN,
    "safe-harbor": Outcome.ABANDONED,
    "machine": Outcome.MACHINE,
    "machine-message": Outcome.MACHINE,
}
# The Local ;1 half of a dialer call: its Hangup is the call's end (the ;2 half is "<id>-2").
_FIRST_HALF = re.compile(r"^dialer-\d+-[0-9a-f]+$")


@dataclass(slots=True)
class _Followed:
    dial_status: str | None = None
    hangup_cause: int | None = None
    outcome: Outcome | None = None


class PoolTelephony:
    """Implements `dialer.engine.ports.TelephonyPort` with a `ServerPool`."""

    def __init__(self, pool: ServerPool) -> None:
        self.pool = pool
        self._followed: dict[int, _Followed] = {}
        for server in pool.servers:
            server.connection.listeners.append(functools.partial(self._on_ami, server.name))

    def follow(self, attempt_ids: Sequence[int]) -> None:
        for attempt_id in attempt_ids:
            self._followed.setdefault(attempt_id, _Followed())

    def _on_ami(self, server: str, message: Message) -> None:
        """The end of adopted calls, from the shipped dialplan's user events and the Hangup of
        the call's first channel (the call tracker knows only the calls it originated)."""
        if not self._followed:
            return
        name = message.get("Event")
        if name == "UserEvent":
            try:
                attempt_id = int(str(message.get("Attempt", "")))
            except ValueError:
                return
            followed = self._followed.get(attempt_id)
            if followed is None:
                return
            kind = message.get("UserEvent")
            if kind == "DialerDialResult":
                followed.dial_status = str(message.get("DialStatus", "")) or None
            elif kind == "DialerCallEnd":
                stage = str(message.get("Stage", ""))
                amd = str(message.get("Amd", "")).upper()
                followed.outcome = _STAGE_OUTCOMES.get(
                    stage, Outcome.MACHINE if amd == "MACHINE" else Outcome.HUNG_UP_EARLY
                )
            return
        if name != "Hangup":
            return
        uniqueid = str(message.get("Uniqueid", ""))
        ended = tcalls.attempt_of(uniqueid)
        if ended is None or not _FIRST_HALF.match(uniqueid):
            return
        attempt_id = ended
        followed = self._followed.pop(attempt_id, None)
        if followed is None:
            return
        with contextlib.suppress(ValueError):
            followed.hangup_cause = int(str(message.get("Cause", "")))
        outcome = followed.outcome or outcome_of_unanswered(
            dial_status=followed.dial_status, hangup_cause=followed.hangup_cause
        )
        now = tcalls.utcnow()
        channel = str(message.get("Channel", "")) or None
        kinds = [tcalls.CallEventKind.ENDED]
        if outcome is Outcome.ABANDONED:
            kinds.insert(0, tcalls.CallEventKind.ABANDONED)
        for kind in kinds:
            self.pool.events.put_nowait(
                tcalls.CallEvent(
                    kind=kind,
                    server=server,
                    attempt_id=attempt_id,
                    at=now,
                    state=tcalls.CallState.ENDED,
                    outcome=outcome,
                    channel=channel,
                    hangup_cause=followed.hangup_cause,
                    dial_status=followed.dial_status,
                )
            )

    async def originate(self, request: OriginateRequest) -> str:
        variables = {
            "DIALER_AMD": "yes" if request.amd else "no",
            "DIALER_MACHINE_ACTION": request.machine_action,
            "DIALER_RING_TIMEOUT": str(max(15, round(request.ring_timeout_s))),
            "DIALER_RECORD": "yes" if request.record else "no",
            **request.variables,
        }
        try:
            call = await self.pool.originate(
                request.attempt_id, request.number, caller_id=request.caller_id, variables=variables
            )
        except (NoCapacity, ValueError) as exc:
            raise OriginateRefused(str(exc)) from exc
        return call.server

    async def bridge(self, attempt_id: int, agent: ReadyAgent) -> None:
        await self.pool.connect_agent(attempt_id, str(agent.agent_id))

    async def safe_harbor(self, attempt_id: int) -> None:
        await self.pool.play_safe_harbor(attempt_id)

    async def machine(self, attempt_id: int, action: str) -> None:
        # The dialplan already acts on DIALER_MACHINE_ACTION, set at the Originate.
        return None

    async def hangup(self, attempt_id: int) -> None:
        await self.pool.hang_up(attempt_id)

    async def start_recording(self, attempt_id: int) -> str | None:
        # DIALER_RECORD was set at the Originate when the campaign records: the dialplan starts
        # MixMonitor as the call joins the agent and names the file after the attempt.
        return f"dialer/{attempt_id}.wav"

    def free_channels(self) -> int | None:
        return self.pool.free_capacity()

    async def live_attempts(self, candidates: Sequence[int]) -> set[int]:
        """Attempts of `candidates` that still have a channel on any server in rotation."""
        wanted, live = set(candidates), set()
        for server in self.pool.in_rotation():
            try:
                channels = await server.connection.send_list({"Action": "CoreShowChannels"})
            except AmiError:
                log.warning("could not list channels", extra={"server": server.name})
                continue
            for channel in channels:
                for key in ("Uniqueid", "Linkedid"):
                    attempt = tcalls.attempt_of(str(channel.get(key, "")))
                    if attempt is not None and attempt in wanted:
                        live.add(attempt)
        return live

    async def pump(self, deliver: Callable[[CallEvent], Awaitable[None]]) -> None:
        """Hand the pool's events to the engine forever (cancel to stop): in order per call, and
        calls side by side, so that a live answer never waits behind another call's database
        writes (the answer -> agent latency is measured in benchmarks/bridge_latency.py)."""
        last: dict[int, asyncio.Task[None]] = {}

        async def one(event: CallEvent, before: asyncio.Task[None] | None) -> None:
            if before is not None:
                await asyncio.gather(before, return_exceptions=True)
            try:
                await deliver(event)
            except Exception:
                log.exception(
                    "engine failed on a call event", extra={"attempt_id": event.attempt_id}
                )

        attempt_of_task: dict[asyncio.Task[None], int] = {}

        def forget(task: asyncio.Task[None]) -> None:
            aid = attempt_of_task.pop(task)
            if last.get(aid) is task:
                del last[aid]

        try:
            while True:
                event = await self.pool.events.get()
                mapped = to_engine_event(event)
                if mapped is None:
                    continue
                aid = mapped.attempt_id
                task = asyncio.create_task(one(mapped, last.get(aid)), name=f"call-event-{aid}")
                last[aid], attempt_of_task[task] = task, aid
                task.add_done_callback(forget)
        finally:
            pending = list(last.values())
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
