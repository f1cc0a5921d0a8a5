"""Several Asterisk servers as one: originates spread by free channel capacity, failover.

It owns the choice of server for each new call and the routing of later commands to that server.

The engine's whole view of telephony is this class:

    pool = ServerPool.from_settings(settings.ami_servers)       # events -> pool.events (a Queue)
    await pool.start()
    call = await pool.originate(attempt_id, number)             # NoCapacity when nothing is free
    event = await pool.events.get()                             # CallEvent (dialer.telephony.calls)
    await pool.connect_agent(attempt_id, agent) / pool.play_safe_harbor(attempt_id)
    await pool.hang_up(...) / pool.start_recording(...) / pool.spy(...)
    await pool.close()

Rotation: a server takes new calls while its AMI session is up and it has free channels (its own
limit and the trunk's). A server whose AMI drops leaves rotation at once (its free capacity is 0)
and comes back after it reconnects and resynchronises; its calls keep their server.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from dialer.settings import AmiServer
from dialer.telephony.ami import AmiError, AmiNotConnected
from dialer.telephony.asterisk import (
    AsteriskServer,
    CallNotFound,
    SpyMode,
    TelephonyOptions,
    Trunk,
)
from dialer.telephony.calls import Call, CallEvent, CallSink, utcnow


@dataclass(frozen=True, slots=True)
class AdoptedCall:
    """An open attempt found after a restart, with what its row says already happened."""

    attempt_id: int
    answered: bool = False
    bridged: bool = False
    abandon_limit_s: float = 2.0


class NoCapacity(Exception):
    """No server in rotation has a free channel on the trunk: launch fewer calls."""


class ServerPool:
    """The Asterisk servers the dialer drives, and the calls in flight on each."""

    def __init__(
        self, servers: Sequence[AsteriskServer], events: asyncio.Queue[CallEvent] | None = None
    ) -> None:
        if not servers:
            raise ValueError("ami_servers: at least one Asterisk server is needed")
        names = [s.name for s in servers]
        if len(set(names)) != len(names):
            raise ValueError(f"ami_servers: server names must be unique, got {names}")
        self.servers = list(servers)
        self.events: asyncio.Queue[CallEvent] = events or asyncio.Queue()

    @classmethod
    def from_settings(
        cls,
        settings: Sequence[AmiServer],
        *,
        sink: CallSink | None = None,
        trunks: Mapping[str, Sequence[Trunk]] | None = None,
        options: TelephonyOptions | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> ServerPool:
        """One AsteriskServer per configured server; events go to `sink` or to `pool.events`."""
        queue: asyncio.Queue[CallEvent] = asyncio.Queue()
        out = sink or queue.put_nowait
        servers = [
            AsteriskServer(
                s, out, trunks=(trunks or {}).get(s.name, ()), options=options, clock=clock
            )
            for s in settings
        ]
        return cls(servers, queue)

    async def start(self) -> None:
        for server in self.servers:
            await server.start()

    async def wait_connected(self, within_s: float) -> None:
        """Wait until every server has logged in once."""
        await asyncio.gather(*(s.wait_connected(within_s) for s in self.servers))

    async def close(self) -> None:
        await asyncio.gather(*(s.close() for s in self.servers))

    # ------------------------------------------------------------------------------- rotation
    def in_rotation(self) -> list[AsteriskServer]:
        return [s for s in self.servers if s.connected]

    def free_capacity(self, trunk: str = "default") -> int:
        return sum(s.free_capacity(trunk) for s in self.servers)

    def in_flight(self) -> int:
        return sum(s.tracker.in_flight for s in self.servers)

    def server_of(self, attempt_id: int) -> AsteriskServer:
        for server in self.servers:
            if attempt_id in server.tracker.calls:
                return server
        raise CallNotFound(f"attempt {attempt_id} is not in flight on any server")

    async def originate(
        self,
        attempt_id: int,
        number: str,
        *,
        trunk: str = "default",
        caller_id: str | None = None,
        variables: Mapping[str, str] | None = None,
        abandon_limit_s: float = 2.0,
    ) -> Call:
        """Place the call on the server with the most free channels on `trunk`.

        A server whose session dropped before the Originate left is skipped for the next one;
        once an Originate has been written it is never sent anywhere else.
        """
        for server in self.servers:
            if attempt_id in server.tracker.calls:
                raise ValueError(f"attempt {attempt_id} is already in flight on {server.name}")
        ranked = sorted(
            ((s.free_capacity(trunk), i, s) for i, s in enumerate(self.servers)),
            key=lambda item: (-item[0], item[1]),
        )
        for free, _, server in ranked:
            if free <= 0:
                break
            try:
                return await server.originate(
                    attempt_id,
                    number,
                    trunk=trunk,
                    caller_id=caller_id,
                    variables=variables,
                    abandon_limit_s=abandon_limit_s,
                )
            except AmiNotConnected:
                continue
        raise NoCapacity(
            f"no free channel on trunk {trunk!r} in rotation "
            f"({len(self.in_rotation())}/{len(self.servers)} servers up)"
        )

    async def adopt(self, calls: Sequence[AdoptedCall]) -> set[int]:
        """Follow calls a dead process placed: each server's tracker follows them first, then
        lists its channels, so that a call ending in between is still seen ending. Returns the
        attempts Asterisk still has (on some server in rotation); the others are not followed."""
        found: set[int] = set()
        for server in self.in_rotation():
            for c in calls:
                server.tracker.adopt(
                    c.attempt_id,
                    answered=c.answered,
                    bridged=c.bridged,
                    abandon_limit_s=c.abandon_limit_s,
                )
            try:
                await server.resync()
            except AmiError:
                server.tracker.drop_adopted(c.attempt_id for c in calls)
                continue
            here = {
                c.attempt_id
                for c in calls
                if (call := server.tracker.calls.get(c.attempt_id)) is not None and call.channel_id
            }
            found |= here
            server.tracker.drop_adopted(c.attempt_id for c in calls if c.attempt_id not in here)
        return found

    async def records(self, attempt_ids: Sequence[int]) -> dict[int, str]:
        """Asterisk's own records (the dialplan's AstDB entries) of how attempts ended, from the
        servers in rotation; attempts with none are left out."""
        found: dict[int, str] = {}
        for server in self.in_rotation():
            for attempt_id in attempt_ids:
                if attempt_id in found:
                    continue
                try:
                    record = await server.record(attempt_id)
                except AmiError:
                    break
                if record is not None:
                    found[attempt_id] = record
        return found

    async def connect_agent(self, attempt_id: int, agent: str) -> None:
        await self.server_of(attempt_id).connect_agent(attempt_id, agent)

    async def play_safe_harbor(self, attempt_id: int) -> None:
        await self.server_of(attempt_id).play_safe_harbor(attempt_id)

    async def hang_up(self, attempt_id: int, cause: int = 16) -> None:
        await self.server_of(attempt_id).hang_up(attempt_id, cause)

    async def start_recording(self, attempt_id: int) -> str:
        return await self.server_of(attempt_id).start_recording(attempt_id)

    async def spy(self, attempt_id: int, supervisor_channel: str, mode: SpyMode) -> str:
        return await self.server_of(attempt_id).spy(attempt_id, supervisor_channel, mode)
