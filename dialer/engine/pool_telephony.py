"""The engine's telephony port over Asterisk: `ServerPool` commands out, its call events in.

Per-campaign call settings (AMD, machine action, recording, ring time) travel as the Originate's
channel variables that the shipped dialplan reads (asterisk_conf/extensions.conf).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from dialer.engine.ports import (
    CallEvent,
    CallEventKind,
    CallGone,
    EndedCall,
    OpenCall,
    OriginateRefused,
    OriginateRequest,
    ReadyAgent,
    TelephonyUnavailable,
)
from dialer.telephony import calls as tcalls
from dialer.telephony.ami import AmiError
from dialer.telephony.asterisk import CallNotFound
from dialer.telephony.outcomes import facts_from_record, record_owner, verdict
from dialer.telephony.pool import AdoptedCall, NoCapacity, ServerPool

log = logging.getLogger("dialer.engine.telephony")

# Telephony's kinds the engine acts on. ANSWERED (the line picked up while AMD still listens) and
# UNKNOWN_CHANNEL (reported by the audit) need nothing from the engine.
_KINDS = {
    tcalls.CallEventKind.ORIGINATED: CallEventKind.ORIGINATED,
    tcalls.CallEventKind.RINGING: CallEventKind.RINGING,
    tcalls.CallEventKind.HUMAN: CallEventKind.ANSWERED,
    tcalls.CallEventKind.MACHINE: CallEventKind.MACHINE,
    tcalls.CallEventKind.BRIDGED: CallEventKind.BRIDGED,
    tcalls.CallEventKind.CONNECT_FAILED: CallEventKind.CONNECT_FAILED,
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
        agent=event.agent,
        bridged=event.bridged,
        abandoned=event.abandoned,
    )


class PoolTelephony:
    """Implements `dialer.engine.ports.TelephonyPort` with a `ServerPool`."""

    def __init__(self, pool: ServerPool) -> None:
        self.pool = pool

    async def adopt(self, calls: Sequence[OpenCall]) -> set[int]:
        # Asked before the servers are back (a start-up, a reconnect), Asterisk's silence would
        # read as "no such call" and close live or recorded calls as lost.
        # (A server this process is not configured with cannot be waited for: its calls are
        # looked for on the servers it has, and closed by what those say.)
        up = {s.name for s in self.pool.in_rotation()}
        configured = {s.name for s in self.pool.servers}
        missing = ({c.server for c in calls if c.server is not None} & configured) - up
        if calls and (missing or not up):
            raise TelephonyUnavailable(
                f"AMI not connected to {', '.join(sorted(missing)) or 'any server'}: "
                "open calls are reconciled once it is"
            )
        return await self.pool.adopt(
            [AdoptedCall(c.attempt_id, c.answered, c.bridged, c.abandon_limit_s) for c in calls]
        )

    async def ended(self, calls: Sequence[OpenCall]) -> dict[int, EndedCall]:
        by_id = {c.attempt_id: c for c in calls}
        out: dict[int, EndedCall] = {}
        for attempt_id, record in (await self.pool.records(list(by_id))).items():
            call = by_id[attempt_id]
            campaign, account = record_owner(record)
            if (campaign, account) != (str(call.campaign_id), str(call.account_id)):
                # Another database's attempt of the same id (a reset, a second installation).
                log.warning("call record of another attempt", extra={"attempt_id": attempt_id})
                continue
            facts = facts_from_record(record, abandon_limit_s=call.abandon_limit_s)
            if facts is None:
                log.warning("unreadable call record", extra={"attempt_id": attempt_id})
                continue
            result = verdict(facts)
            out[attempt_id] = EndedCall(
                attempt_id,
                result.outcome.value,
                bridged=result.bridged,
                abandoned=result.abandoned,
                hangup_cause=facts.hangup_cause,
                dial_status=facts.dial_status,
            )
        return out

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
                request.attempt_id,
                request.number,
                caller_id=request.caller_id,
                variables=variables,
                abandon_limit_s=request.abandon_limit_s,
            )
        except (NoCapacity, ValueError) as exc:
            raise OriginateRefused(str(exc)) from exc
        return call.server

    async def bridge(self, attempt_id: int, agent: ReadyAgent) -> None:
        try:
            await self.pool.connect_agent(attempt_id, str(agent.agent_id))
        except (AmiError, CallNotFound) as exc:
            # The Redirect's error comes after the call's Hangup events on the same connection:
            # a call the tracker no longer has was hung up by the debtor.
            if not any(attempt_id in s.tracker.calls for s in self.pool.servers):
                raise CallGone(f"attempt {attempt_id} hung up before the connect") from exc
            raise

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
