"""Fixtures of the telephony unit tests: a simulated PBX on loopback and pools driving it.

The PBX speaks real AMI over TCP; its clock runs fast (`time_scale`) so a call lasts milliseconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest_asyncio

from dialer.settings import AmiServer
from dialer.simpbx.server import SimPbx
from dialer.telephony.ami import AmiOptions
from dialer.telephony.asterisk import TelephonyOptions, Trunk
from dialer.telephony.calls import CallEvent, CallEventKind
from dialer.telephony.pool import ServerPool

FAST = TelephonyOptions(
    ami=AmiOptions(
        action_timeout=2.0,
        ping_interval=0.5,
        ping_timeout=0.5,
        backoff_initial=0.05,
        backoff_max=0.2,
    ),
    audit_interval=0.3,
    lost_grace=0.3,
    give_up_after=30.0,
)


@pytest_asyncio.fixture
async def pbx() -> AsyncIterator[SimPbx]:
    sim = SimPbx(time_scale=0.01)
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


def server_settings(sim: SimPbx, name: str, max_channels: int = 50) -> AmiServer:
    return AmiServer.parse(f"{sim.url}?name={name}&max_channels={max_channels}")


@pytest_asyncio.fixture
async def make_pool() -> AsyncIterator[Callable[..., asyncio.Future[ServerPool]]]:
    pools: list[ServerPool] = []

    async def make(
        *servers: AmiServer,
        trunks: dict[str, list[Trunk]] | None = None,
        options: TelephonyOptions = FAST,
        wait: bool = True,
    ) -> ServerPool:
        pool = ServerPool.from_settings(list(servers), trunks=trunks, options=options)
        pools.append(pool)
        await pool.start()
        if wait:
            await pool.wait_connected(5.0)
        return pool

    try:
        yield make  # type: ignore[misc]
    finally:
        for pool in pools:
            await pool.close()


async def next_event(
    pool: ServerPool, kind: CallEventKind, attempt_id: int | None = None, timeout: float = 5.0
) -> CallEvent:
    """The next event of `kind` (for `attempt_id`), skipping others."""

    async def find() -> CallEvent:
        while True:
            event = await pool.events.get()
            if event.kind is kind and (attempt_id is None or event.attempt_id == attempt_id):
                return event

    return await asyncio.wait_for(find(), timeout)


async def ended(pool: ServerPool, attempt_id: int, timeout: float = 5.0) -> CallEvent:
    return await next_event(pool, CallEventKind.ENDED, attempt_id, timeout)


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)
