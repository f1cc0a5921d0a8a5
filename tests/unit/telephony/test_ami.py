"""The AMI connection against the simulated PBX over real TCP: login, keep-alive, reconnect, and
the rule that an action without a reply is never sent again."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import pytest_asyncio
from panoramisk.message import Message

from dialer.settings import AmiServer
from dialer.simpbx.server import SimPbx
from dialer.telephony.ami import (
    AmiActionFailed,
    AmiActionTimeout,
    AmiConnection,
    AmiNotConnected,
    AmiOptions,
)
from dialer.telephony.calls import CallEventKind
from dialer.telephony.outcomes import Outcome
from dialer.telephony.pool import ServerPool
from tests.unit.telephony.conftest import FAST, ended, eventually, server_settings

MakePool = Callable[..., Awaitable[ServerPool]]


_open: list[tuple[AmiConnection, asyncio.Task[None]]] = []
_downs: list[str] = []  # reasons given to on_down, in order


@pytest_asyncio.fixture(autouse=True)
async def _close_connections() -> AsyncIterator[None]:
    _downs.clear()
    yield
    while _open:
        conn, task = _open.pop()
        await conn.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 2.0)


async def connection(sim: SimPbx, **options: float) -> tuple[AmiConnection, asyncio.Task[None]]:
    opts = dataclasses.replace(
        AmiOptions(
            action_timeout=1.0,
            ping_interval=0.3,
            ping_timeout=0.3,
            backoff_initial=0.05,
            backoff_max=0.2,
        ),
        **options,
    )
    events: list[Message] = []
    conn = AmiConnection(
        server_settings(sim, "a"), on_event=events.append, on_down=_downs.append, options=opts
    )
    task = asyncio.create_task(conn.run())
    _open.append((conn, task))
    return conn, task


async def close(conn: AmiConnection, task: asyncio.Task[None]) -> None:
    await conn.close()
    await asyncio.wait_for(task, 2.0)
    assert task.done()


async def test_a_refused_login_is_retried_and_reported(pbx: SimPbx) -> None:
    bad = AmiServer.parse(f"ami://dialer:wrong@127.0.0.1:{pbx.port}?name=a")
    conn = AmiConnection(
        bad, on_event=lambda m: None, options=AmiOptions(backoff_initial=0.05, backoff_max=0.1)
    )
    task = asyncio.create_task(conn.run())
    _open.append((conn, task))
    await eventually(lambda: pbx.actions_received.count("login") >= 2)
    assert not conn.connected
    assert "login refused" in (conn.last_error or "")
    await close(conn, task)


async def test_it_reconnects_after_the_connection_drops(pbx: SimPbx) -> None:
    conn, task = await connection(pbx)
    await eventually(lambda: conn.connected)
    pbx.drop_connections()
    await eventually(lambda: conn.sessions == 2 and conn.connected)
    reply = await conn.send({"Action": "Ping"})
    assert reply["Ping"] == "Pong"
    await close(conn, task)


async def test_a_dead_keep_alive_forces_a_reconnect(pbx: SimPbx) -> None:
    conn, task = await connection(pbx)
    await eventually(lambda: conn.connected)
    pbx.silence("ping")  # the socket stays open but the server stopped answering
    await eventually(lambda: conn.sessions >= 2, timeout=5.0)
    assert _downs[0] == "keep-alive timeout"
    pbx.unsilence("ping")
    await eventually(lambda: conn.connected)
    await close(conn, task)


async def test_an_action_without_reply_times_out_and_is_not_sent_again(pbx: SimPbx) -> None:
    conn, task = await connection(pbx, action_timeout=0.2)
    await eventually(lambda: conn.connected)
    pbx.silence("hangup")
    with pytest.raises(AmiActionTimeout, match="not re-sent"):
        await conn.send({"Action": "Hangup", "Channel": "Local/x;1"})
    pbx.drop_connections()  # panoramisk would re-send pending actions after this
    await eventually(lambda: conn.sessions == 2 and conn.connected)
    await asyncio.sleep(0.2)
    assert pbx.actions_received.count("hangup") == 1
    await close(conn, task)


async def test_an_error_reply_raises_with_asterisks_message(pbx: SimPbx) -> None:
    conn, task = await connection(pbx)
    await eventually(lambda: conn.connected)
    with pytest.raises(AmiActionFailed, match="No such channel"):
        await conn.send({"Action": "Hangup", "Channel": "Local/none;1"})
    await close(conn, task)


async def test_nothing_is_sent_while_disconnected(pbx: SimPbx) -> None:
    pbx.stop_accepting()
    conn, task = await connection(pbx)
    with pytest.raises(AmiNotConnected, match="not sent"):
        await conn.send({"Action": "Ping"})
    await close(conn, task)


async def test_originate_cut_before_its_reply_places_exactly_one_call(
    pbx: SimPbx, make_pool: MakePool
) -> None:
    pool = await make_pool(server_settings(pbx, "a"))
    pbx.cut_after_next_originate()
    call = await pool.originate(1, "555105")
    assert call.uncertain  # written, no reply: never re-sent, Asterisk will tell
    server = pool.servers[0]
    await eventually(lambda: server.connection.sessions == 2 and server.connected)
    end = await ended(pool, 1)
    assert len(pbx.placed) == 1
    assert pbx.actions_received.count("originate") == 1
    # The resync found the call alive and followed it to its real end.
    assert end.outcome is Outcome.ABANDONED


async def test_an_unconfirmed_originate_that_never_happened_ends_lost(
    pbx: SimPbx, make_pool: MakePool
) -> None:
    pool = await make_pool(server_settings(pbx, "a"))
    pbx.silence("originate")
    call = await pool.originate(2, "555105")
    assert call.uncertain
    end = await ended(pool, 2, timeout=5.0 + FAST.ami.action_timeout)
    assert end.outcome is Outcome.LOST
    assert pbx.placed == []


async def test_events_received_carry_asterisks_call_progress(
    pbx: SimPbx, make_pool: MakePool
) -> None:
    pool = await make_pool(server_settings(pbx, "a"))
    await pool.originate(3, "555300")
    seen = []
    while True:
        event = await asyncio.wait_for(pool.events.get(), 5)
        seen.append(event.kind)
        if event.kind is CallEventKind.ENDED:
            break
    assert seen == [CallEventKind.ORIGINATED, CallEventKind.ENDED]
    assert event.outcome is Outcome.BUSY
