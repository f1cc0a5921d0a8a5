"""The server pool and the commands, against simulated PBXs over real TCP: spreading by free
capacity, per-trunk limits, failover, restarts, audits, and each command's AMI effect."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import pytest_asyncio

from dialer.simpbx.server import SimPbx
from dialer.telephony.asterisk import SpyMode, Trunk
from dialer.telephony.calls import CallEventKind, CallState
from dialer.telephony.outcomes import Outcome
from dialer.telephony.pool import NoCapacity, ServerPool
from tests.unit.telephony.conftest import ended, eventually, next_event, server_settings

MakePool = Callable[..., Awaitable[ServerPool]]
RINGS_LONG = "555400"  # never answered: stays in flight for the whole ring timeout


@pytest_asyncio.fixture
async def pbx2() -> AsyncIterator[SimPbx]:
    sim = SimPbx(time_scale=0.01)
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


async def test_originates_go_to_the_server_with_most_free_channels(
    pbx: SimPbx, pbx2: SimPbx, make_pool: MakePool
) -> None:
    pbx.time_scale = pbx2.time_scale = 1.0  # calls stay up during the test
    pool = await make_pool(server_settings(pbx, "a", 2), server_settings(pbx2, "b", 4))
    servers = [(await pool.originate(i, RINGS_LONG)).server for i in range(1, 7)]
    # b has 4 free, a 2: b takes calls until both have the same free capacity, then they share.
    assert servers == ["b", "b", "a", "b", "a", "b"]
    assert pool.free_capacity() == 0
    with pytest.raises(NoCapacity, match="no free channel"):
        await pool.originate(7, RINGS_LONG)


async def test_a_trunk_limit_caps_calls_on_that_trunk_only(
    pbx: SimPbx, make_pool: MakePool
) -> None:
    pbx.time_scale = 1.0
    trunks = {"a": [Trunk(), Trunk("cheap", max_channels=1, variables={"X_TRUNK": "cheap"})]}
    pool = await make_pool(server_settings(pbx, "a", 10), trunks=trunks)
    await pool.originate(1, RINGS_LONG, trunk="cheap")
    assert pbx.live_calls()[0].local1.variables["X_TRUNK"] == "cheap"
    with pytest.raises(NoCapacity, match="cheap"):
        await pool.originate(2, RINGS_LONG, trunk="cheap")
    await pool.originate(3, RINGS_LONG)  # the default trunk still has room
    assert pool.free_capacity() == 8


async def test_a_server_whose_ami_is_down_leaves_rotation_and_comes_back(
    pbx: SimPbx, pbx2: SimPbx, make_pool: MakePool
) -> None:
    pool = await make_pool(server_settings(pbx, "a", 100), server_settings(pbx2, "b", 10))
    pbx.stop_accepting()
    pbx.drop_connections()
    a = pool.servers[0]
    await eventually(lambda: not a.connected)
    assert [s.name for s in pool.in_rotation()] == ["b"]
    assert (await pool.originate(1, "555300")).server == "b"
    pbx.start_accepting()
    await eventually(lambda: a.connected)
    assert (await pool.originate(2, "555300")).server == "a"


async def test_restart_closes_the_lost_calls_and_the_pool_resumes(
    pbx: SimPbx, make_pool: MakePool
) -> None:
    pbx.time_scale = 1.0
    pool = await make_pool(server_settings(pbx, "a"))
    for attempt in (1, 2, 3):
        await pool.originate(attempt, RINGS_LONG)
    await eventually(lambda: len(pbx.live_calls()) == 3)
    await pbx.restart(down_seconds=0.3)
    outcomes = {(await ended(pool, a)).outcome for a in (1, 2, 3)}
    assert outcomes == {Outcome.LOST}
    await eventually(lambda: pool.servers[0].connected)
    pbx.time_scale = 0.01
    await pool.originate(4, "555300")
    assert (await ended(pool, 4)).outcome is Outcome.BUSY


async def test_the_audit_closes_calls_whose_channels_vanished(
    pbx: SimPbx, make_pool: MakePool
) -> None:
    pbx.time_scale = 1.0
    pool = await make_pool(server_settings(pbx, "a"))
    await pool.originate(1, RINGS_LONG)
    await eventually(lambda: len(pbx.live_calls()) == 1)
    assert pbx.vanish_channels() > 0  # gone without a Hangup event: a ghost in our counts
    assert (await ended(pool, 1, timeout=3.0)).outcome is Outcome.LOST
    assert pool.in_flight() == 0


async def test_the_audit_reports_a_channel_the_dialer_does_not_know(
    pbx: SimPbx, make_pool: MakePool
) -> None:
    pbx.time_scale = 1.0
    pool = await make_pool(server_settings(pbx, "a"))
    other = await make_pool(server_settings(pbx, "other"))  # another dialer on the same PBX
    await other.originate(77, RINGS_LONG)
    event = await next_event(pool, CallEventKind.UNKNOWN_CHANNEL, 77, timeout=3.0)
    assert event.server == "a"


async def test_connect_agent_bridges_the_waiting_debtor(pbx: SimPbx, make_pool: MakePool) -> None:
    pool = await make_pool(server_settings(pbx, "a"))
    await pool.originate(1, "555101")
    await next_event(pool, CallEventKind.HUMAN, 1)
    await pool.connect_agent(1, "1001")
    bridged = await next_event(pool, CallEventKind.BRIDGED, 1)
    assert bridged.agent == "1001"
    assert (await ended(pool, 1)).outcome is Outcome.HUMAN


async def test_play_safe_harbor_abandons_the_call(pbx: SimPbx, make_pool: MakePool) -> None:
    pool = await make_pool(server_settings(pbx, "a"))
    await pool.originate(1, "555101")
    await next_event(pool, CallEventKind.HUMAN, 1)
    await pool.play_safe_harbor(1)
    assert (await next_event(pool, CallEventKind.ABANDONED, 1)).state is CallState.ABANDONED
    assert (await ended(pool, 1)).outcome is Outcome.ABANDONED
    assert pbx.actions_received.count("redirect") == 1


async def test_hang_up_ends_a_ringing_call(pbx: SimPbx, make_pool: MakePool) -> None:
    pbx.time_scale = 1.0
    pool = await make_pool(server_settings(pbx, "a"))
    await pool.originate(1, RINGS_LONG)
    await next_event(pool, CallEventKind.RINGING, 1)
    await pool.hang_up(1)
    assert (await ended(pool, 1)).outcome is Outcome.NO_ANSWER
    assert pbx.live_calls() == []


async def test_recording_asked_before_the_bridge_sets_dialer_record(
    pbx: SimPbx, make_pool: MakePool
) -> None:
    pbx.time_scale = 1.0
    pool = await make_pool(server_settings(pbx, "a"))
    await pool.originate(1, RINGS_LONG)
    await next_event(pool, CallEventKind.RINGING, 1)
    assert await pool.start_recording(1) == "dialer/1.wav"
    assert pbx.live_calls()[0].local1.variables["DIALER_RECORD"] == "yes"


async def test_recording_asked_once_bridged_sends_mixmonitor(
    pbx: SimPbx, make_pool: MakePool
) -> None:
    pbx.time_scale = 0.05
    pool = await make_pool(server_settings(pbx, "a"))
    await pool.originate(1, "555101")
    await next_event(pool, CallEventKind.HUMAN, 1)
    await pool.connect_agent(1, "1001")
    await next_event(pool, CallEventKind.BRIDGED, 1)
    await pool.start_recording(1)
    assert pbx.live_calls()[0].local1.variables["MIXMONITOR_FILENAME"] == "dialer/1.wav"


@pytest.mark.parametrize(
    ("mode", "options"), [(SpyMode.LISTEN, "qE"), (SpyMode.WHISPER, "qEw"), (SpyMode.BARGE, "qEB")]
)
async def test_supervisor_spy_originates_chanspy_on_the_agents_channel(
    pbx: SimPbx, make_pool: MakePool, mode: SpyMode, options: str
) -> None:
    pbx.time_scale = 0.05
    pool = await make_pool(server_settings(pbx, "a"))
    await pool.originate(1, "555101")
    await next_event(pool, CallEventKind.HUMAN, 1)
    await pool.connect_agent(1, "1001")
    await next_event(pool, CallEventKind.BRIDGED, 1)
    spy_id = await pool.spy(1, "PJSIP/supervisor7", mode)
    spy = next(c for c in pbx.channels.values() if c.uniqueid == spy_id)
    assert spy.application == "ChanSpy"
    assert spy.application_data == f"PJSIP/agent1001-session,{options}"


async def test_commands_on_an_unknown_attempt_name_it(make_pool: MakePool, pbx: SimPbx) -> None:
    pool = await make_pool(server_settings(pbx, "a"))
    with pytest.raises(LookupError, match="attempt 404"):
        await pool.connect_agent(404, "1001")


async def test_a_bad_number_is_refused_before_anything_is_sent(
    make_pool: MakePool, pbx: SimPbx
) -> None:
    pool = await make_pool(server_settings(pbx, "a"))
    with pytest.raises(ValueError, match="number must be"):
        await pool.originate(1, "555-CALL-ME")
    assert "originate" not in pbx.actions_received


async def test_many_calls_in_flight_all_end_with_an_outcome(
    pbx: SimPbx, make_pool: MakePool
) -> None:
    pool = await make_pool(server_settings(pbx, "a", 500))
    numbers = ["555101", "555201", "555300", "555500", "555601", "555800"]
    for i in range(120):
        await pool.originate(i + 1, numbers[i % len(numbers)])
    outcomes: dict[int, Outcome | None] = {}
    while len(outcomes) < 120:
        event = await asyncio.wait_for(pool.events.get(), 5)
        if event.kind is CallEventKind.ENDED and event.attempt_id is not None:
            outcomes[event.attempt_id] = event.outcome
    assert pool.in_flight() == 0
    assert outcomes[3] is Outcome.BUSY and outcomes[6] is Outcome.INVALID_NUMBER
    assert outcomes[2] is Outcome.MACHINE and outcomes[1] is Outcome.ABANDONED


async def test_a_shutdown_event_closes_the_calls_up_as_lost_at_once(
    pbx: SimPbx, make_pool: MakePool
) -> None:
    pbx.time_scale = 1.0
    pool = await make_pool(server_settings(pbx, "a"))
    await pool.originate(1, RINGS_LONG)
    await next_event(pool, CallEventKind.RINGING, 1)
    restart = asyncio.create_task(pbx.restart(down_seconds=2.0, graceful=True))
    # Lost while Asterisk is still down: the Shutdown event said everything up will be cut.
    assert (await ended(pool, 1, timeout=1.5)).outcome is Outcome.LOST
    await restart


async def test_a_server_is_in_rotation_only_once_fully_booted(
    pbx: SimPbx, make_pool: MakePool
) -> None:
    pbx.fully_booted = False  # accepts logins, dialplan not loaded yet
    pool = await make_pool(server_settings(pbx, "a"), wait=False)
    await eventually(lambda: "login" in pbx.actions_received)
    await asyncio.sleep(0.2)
    assert not pool.servers[0].connected
    with pytest.raises(NoCapacity):
        await pool.originate(1, "555300")
    pbx.finish_boot()
    await eventually(lambda: pool.servers[0].connected)
    assert (await pool.originate(2, "555300")).server == "a"
