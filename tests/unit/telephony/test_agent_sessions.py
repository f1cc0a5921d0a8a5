"""The agents' nailed-up sessions (dialer/telephony/agent_sessions.py) against the simulated PBX,
which speaks real AMI: opened at login, watched, opened again after a restart or a hang-up,
adopted by a restarted dialer instead of ringing the phone twice, hung up at logout."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest_asyncio

from dialer.simpbx.server import SimPbx
from dialer.telephony.agent_sessions import AgentSessions, RetryPolicy
from dialer.telephony.pool import ServerPool
from tests.unit.telephony.conftest import FAST, eventually, server_settings

SESSION = "PJSIP/agent{}-session"  # the simulated PBX's name for an agent's session channel


@dataclass
class Watcher:
    pool: ServerPool
    sessions: AgentSessions
    told: list[tuple[int, bool, str]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    def up(self, agent_id: int) -> bool:
        return self.sessions.is_up(agent_id)


@pytest_asyncio.fixture
async def make_watcher(pbx: SimPbx) -> AsyncIterator[Callable[[], Awaitable[Watcher]]]:
    made: list[Watcher] = []

    async def make() -> Watcher:
        pool = ServerPool.from_settings([server_settings(pbx, "a")], options=FAST)
        told: list[tuple[int, bool, str]] = []
        sessions = AgentSessions(
            pool,
            lambda agent, up, why: told.append((agent, up, why)),
            retry=RetryPolicy(initial_s=0.05, max_s=0.2),
            audit_s=0.2,
        )
        watcher = Watcher(pool, sessions, told)
        await pool.start()
        await pool.wait_connected(5.0)
        watcher.task = asyncio.create_task(sessions.run())
        made.append(watcher)
        return watcher

    try:
        yield make
    finally:
        for watcher in made:
            assert watcher.task is not None
            watcher.task.cancel()
            await asyncio.gather(watcher.task, return_exceptions=True)
            await watcher.pool.close()


def session_originates(pbx: SimPbx, agent_id: int) -> int:
    return sum(1 for p in pbx.placed if p.number == f"PJSIP/ana{agent_id}")


async def test_a_session_opened_at_login_comes_up_and_is_hung_up_at_logout(
    pbx: SimPbx, make_watcher: Callable[[], Awaitable[Watcher]]
) -> None:
    w = await make_watcher()
    await w.sessions.open(7, "PJSIP/ana7")
    await eventually(lambda: w.up(7))
    assert w.told == [(7, True, "phone_up")]
    assert w.sessions.channel_of(7) == SESSION.format(7)
    await w.sessions.close(7)
    await eventually(lambda: SESSION.format(7) not in pbx.channels)
    assert not w.up(7)


async def test_an_agent_without_an_endpoint_gets_no_session(
    pbx: SimPbx, make_watcher: Callable[[], Awaitable[Watcher]]
) -> None:
    w = await make_watcher()
    assert await w.sessions.open(8, None) is False
    await asyncio.sleep(0.3)  # several passes of the watcher: still nothing placed
    assert pbx.placed == [] and w.told == [(8, False, "no_endpoint")]


async def test_after_an_asterisk_restart_the_phones_come_back_by_themselves(
    pbx: SimPbx, make_watcher: Callable[[], Awaitable[Watcher]]
) -> None:
    w = await make_watcher()
    for agent in (1, 2):
        await w.sessions.open(agent, f"PJSIP/ana{agent}")
    await eventually(lambda: w.up(1) and w.up(2))
    await pbx.restart(0.3)  # the sessions vanish without a Hangup or a logout event
    await eventually(lambda: (1, False, "asterisk_down") in w.told)
    await eventually(lambda: w.up(1) and w.up(2), timeout=10)
    assert [t for t in w.told if t[0] == 1] == [
        (1, True, "phone_up"),
        (1, False, "asterisk_down"),
        (1, True, "phone_up"),
    ]
    assert session_originates(pbx, 1) == 2 and SESSION.format(1) in pbx.channels


async def test_a_network_cut_keeps_the_sessions_asterisk_still_holds(
    pbx: SimPbx, make_watcher: Callable[[], Awaitable[Watcher]]
) -> None:
    w = await make_watcher()
    await w.sessions.open(3, "PJSIP/ana3")
    await eventually(lambda: w.up(3))
    pbx.drop_connections()  # the AMI link drops; Asterisk and the channel live on
    await eventually(lambda: (3, False, "asterisk_down") in w.told)
    # Once the link is back, Asterisk's list says the session is there: adopted, not re-rung.
    await eventually(lambda: w.up(3), timeout=10)
    assert w.told[-1] == (3, True, "adopted")
    assert session_originates(pbx, 3) == 1


async def test_a_hung_up_phone_is_rung_again(
    pbx: SimPbx, make_watcher: Callable[[], Awaitable[Watcher]]
) -> None:
    w = await make_watcher()
    await w.sessions.open(4, "PJSIP/ana4")
    await eventually(lambda: w.up(4))
    await w.pool.servers[0].connection.send({"Action": "Hangup", "Channel": SESSION.format(4)})
    await eventually(lambda: (4, False, "phone_hung_up") in w.told)
    await eventually(lambda: w.up(4))
    assert session_originates(pbx, 4) == 2


async def test_a_logout_while_asterisk_is_unreachable_hangs_up_once_it_is_back(
    pbx: SimPbx, make_watcher: Callable[[], Awaitable[Watcher]]
) -> None:
    w = await make_watcher()
    await w.sessions.open(6, "PJSIP/ana6")
    await eventually(lambda: w.up(6))
    pbx.stop_accepting()
    pbx.drop_connections()
    await eventually(lambda: (6, False, "asterisk_down") in w.told)
    await w.sessions.close(6)  # nothing to send it to
    assert SESSION.format(6) in pbx.channels
    pbx.start_accepting()
    await eventually(lambda: SESSION.format(6) not in pbx.channels, timeout=10)
    assert session_originates(pbx, 6) == 1


async def test_a_restarted_dialer_adopts_the_session_instead_of_ringing_again(
    pbx: SimPbx, make_watcher: Callable[[], Awaitable[Watcher]]
) -> None:
    first = await make_watcher()
    await first.sessions.open(5, "PJSIP/ana5")
    await eventually(lambda: first.up(5))
    assert first.task is not None
    first.task.cancel()
    await first.pool.close()  # the dialer process is gone; Asterisk keeps the session
    second = await make_watcher()
    assert await second.sessions.open(5, "PJSIP/ana5") is True
    assert second.told == [(5, True, "adopted")]
    assert session_originates(pbx, 5) == 1
    await second.sessions.close(5)
    await eventually(lambda: SESSION.format(5) not in pbx.channels)


def test_new_tries_back_off_exponentially_up_to_the_cap() -> None:
    policy = RetryPolicy(initial_s=1.0, max_s=30.0)
    assert [policy.delay(n) for n in range(8)] == [0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
