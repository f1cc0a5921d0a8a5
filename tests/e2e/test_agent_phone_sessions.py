"""The agents' nailed-up phone sessions under faults, on the real Asterisk and Postgres: Asterisk
killed mid-campaign and started again (the sessions come back by themselves, no call goes to an
agent without one, no agent stays talking), and `dialer serve` killed with -9 and started again
(the agents' sessions are adopted, never doubled, and gone after the last logout).

What Asterisk holds is read from Asterisk itself (AMI `Status` with the dialplan's DIALER_AGENT
channel variable, and the dialplan's user events), never from the dialer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import Collection, Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from agents_ws.server import HUB
from agents_ws.state import AgentState
from dialer.app import build_app
from dialer.runtime import RUNTIME
from dialer.settings import AmiServer, Settings
from dialer.store.db import make_engine, make_sessionmaker
from dialer.store.models import CallAttempt
from tests.e2e.campaign_harness import (
    Desk,
    asterisk_view,
    hang_up_agent_phones,
    open_desks,
    seed_campaign,
)
from tests.e2e.test_dialer_restart import Serve, connect_agents, drop_agents
from tests.e2e.test_telephony_faults import crash, follow_restart
from tests.fixtures.asterisk import SANDBOX, AmiClient, AsteriskAmi, _unavailable, connect
from tests.fixtures.postgres import PgServer, _migrated

pytestmark = [pytest.mark.asterisk, pytest.mark.postgres]

# An Asterisk of this module's own (it is killed): the first free AMI port from here.
FIRST_PORT = int(os.environ.get("DIALER_SESSIONS_AMI_PORT", "15438"))
PORT_TAKEN = 4  # scripts/asterisk-sandbox start: the AMI port is in use


def sandbox(command: str, port: int, instance: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SANDBOX), command, "--port", str(port), "--instance", instance],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def env_of(done: subprocess.CompletedProcess[str]) -> dict[str, str]:
    if done.returncode != 0:
        raise RuntimeError(f"asterisk-sandbox failed:\n{done.stderr[-2000:]}")
    return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)


@pytest.fixture
def own_asterisk() -> Iterator[tuple[int, str, dict[str, str]]]:
    """(port, instance, env) of a sandbox Asterisk this test may kill; removed at the end."""
    if os.geteuid() != 0:
        _unavailable("the sandbox needs root")
    instance = f"sessions-{os.getpid()}"
    for port in range(FIRST_PORT, FIRST_PORT + 20):
        started = sandbox("start", port, instance)
        if started.returncode != PORT_TAKEN:
            break
    try:
        yield port, instance, env_of(started)
    finally:
        subprocess.run(
            [str(SANDBOX), "stop", "--port", str(port), "--instance", instance, "--purge"],
            capture_output=True,
            timeout=120,
            check=False,
        )


def ami_of(env: dict[str, str]) -> AsteriskAmi:
    return AsteriskAmi(
        env["ASTERISK_AMI_HOST"],
        int(env["ASTERISK_AMI_PORT"]),
        env["ASTERISK_AMI_USERNAME"],
        env["ASTERISK_AMI_SECRET"],
        "sandbox",
    )


async def agent_channels(
    ami: AmiClient, agents: Collection[int], *, sessions_only: bool = True
) -> dict[int, list[str]]:
    """Agent id -> the channels Asterisk has with DIALER_AGENT=<id>: the sessions in
    [dialer-agent-session], or (`sessions_only=False`) every channel of theirs (the phone side
    of a session carries the variable too)."""
    listed = await ami.send({"Action": "Status", "Variables": "DIALER_AGENT"})
    found: dict[int, list[str]] = {a: [] for a in agents}
    for entry in listed:
        if entry.get("Event") != "Status":
            continue
        if sessions_only and entry.get("Context") != "dialer-agent-session":
            continue
        key, _, value = str(entry.get("Variable", "")).partition("=")
        if key == "DIALER_AGENT" and value.isdigit() and int(value) in found:
            found[int(value)].append(str(entry["Channel"]))
    return found


async def until(predicate: object, timeout: float, what: str) -> None:
    assert callable(predicate)
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"not within {timeout} s: {what}") from None


async def until_sessions(ami: AmiClient, agents: Collection[int], timeout: float) -> None:
    """Until Asterisk lists a session for every one of `agents`."""
    found: dict[int, list[str]] = {}
    try:
        async with asyncio.timeout(timeout):
            while not all(found.get(a) for a in agents):
                await asyncio.sleep(0.2)
                found = await agent_channels(ami, agents)
    except TimeoutError:
        raise AssertionError(f"no session within {timeout} s for some agents: {found}") from None


async def test_asterisk_killed_and_restarted_agents_phones_come_back_and_calls_reach_them(
    pg_server: PgServer, own_asterisk: tuple[int, str, dict[str, str]]
) -> None:
    port, instance, env = own_asterisk
    ami = ami_of(env)
    url = await _migrated(await pg_server.create_database())
    db = make_engine(url)
    sessions = make_sessionmaker(db)
    # People who answer after 1 s and stay on the line until the agent hangs up.
    campaign_id, logins = await seed_campaign(
        sessions, ["555101"] * 36, agents=3, dial_mode="progressive", name="ast-restart"
    )
    server = AmiServer("pbx1", ami.host, ami.port, ami.username, ami.secret)
    app = await build_app(Settings(ami_servers=(server,), process_name="ast-restart"), db)
    client = TestClient(TestServer(app))
    await client.start_server()
    desks: list[Desk] = []
    readers: list[asyncio.Task[None]] = []
    after: AmiClient | None = None
    hub = app[HUB]
    pool = app[RUNTIME].pool

    async def attempts() -> list[CallAttempt]:
        async with sessions() as s:
            return list((await s.execute(select(CallAttempt))).scalars())

    try:
        await pool.wait_connected(15)
        before = await connect(ami)
        desks, readers = await open_desks(client, logins, campaign_id, talk_s=1.0)
        ids = [d.agent_id for d in desks]
        await until_sessions(before, ids, 20)
        before.manager.close()
        async with asyncio.timeout(90):
            while sum(r.bridged_at is not None for r in await attempts()) < 5:
                await asyncio.sleep(0.2)

        crash(env)  # SIGKILL: no Hangup, no logout event, nothing
        await until(lambda: not pool.servers[0].connection.connected, 15, "the AMI link drops")
        # Nobody is offered a call (the desktops are told why: checked below).
        assert hub.pick(campaign_id) is None, "a call would go to an agent without a phone"

        env = env_of(await asyncio.to_thread(sandbox, "start", port, instance))
        after = await connect(ami_of(env))  # Asterisk's view from the restart on
        follow_restart(pool.servers[0], env)
        # The sessions come back by themselves: the dialer rings the agents' phones again.
        await until_sessions(after, ids, 45)
        for desk in desks:  # each desktop was told its phone was down, and is told it is back
            await desk.wait_state(lambda d=desk: "asterisk_down" in d.phone_reasons, 5)
            await desk.wait_state(lambda d=desk: d.phone == "up", 10)
        async with asyncio.timeout(150):
            while True:
                rows = await attempts()
                if len(rows) >= 36 and all(r.ended_at for r in rows):
                    break
                await asyncio.sleep(0.5)
        # The last conversations end with their dispositions: every agent ready again.
        await until(
            lambda: all(hub.sessions[i].sm.state == AgentState.READY for i in ids),
            30,
            f"all agents ready; states {[hub.sessions[i].sm.state.value for i in ids]}",
        )
        sessions_now = await agent_channels(after, ids)
        states = {i: hub.sessions[i].sm.state for i in ids}
    finally:
        for desk in desks:
            await desk.close()
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        await client.close()
        if after is not None:
            await hang_up_agent_phones(after)
        await db.dispose()
    assert after is not None
    await asyncio.sleep(0.5)  # the last Hangup events of the agents' phones
    view = asterisk_view(after)
    after.manager.close()
    await pg_server.drop_database(url)

    # One session per agent in Asterisk, opened again by the dialer after the restart.
    assert {i: len(c) for i, c in sessions_now.items()} == {i: 1 for i in ids}
    for desk in desks:
        told = desk.phone_reasons
        assert "asterisk_down" in told and told[-1] in ("phone_up", "adopted"), told
    # No call was connected to an agent whose channel was gone (the dialplan says so itself).
    failed = [e for c in view.values() for e in c.user_events.get("DialerConnectFailed", [])]
    assert failed == []
    # Every person who answered after the restart was bridged to an agent, or got the safe
    # harbor and is counted abandoned; and agents did take calls again.
    by_id = {r.id: r for r in rows}
    answered = [c for c in view.values() if c.first("DialerAwaitingAgent") is not None]
    assert answered, "nobody answered after the restart"
    bridged = 0
    for call in answered:
        row = by_id[call.attempt_id]
        if call.agent_bridge_ts is not None:
            bridged += 1
            assert row.outcome == "human" and row.bridged_at is not None, (row.id, row.outcome)
        else:
            assert call.first("DialerSafeHarbor") is not None, call.trace
            assert row.outcome == "abandoned" and row.bridged_at is None, (row.id, row.outcome)
    assert bridged >= 5, f"only {bridged} of {len(answered)} answers after the restart bridged"
    # Nobody is left talking or reserved.
    assert set(states.values()) == {AgentState.READY}, states
    print(
        f"\nafter the restart: {len(answered)} answered, {bridged} bridged, "
        f"phones told: {[d.phone_reasons for d in desks]}"
    )


async def test_a_killed_dialer_adopts_the_agents_sessions_and_logout_leaves_none(
    pg_server: PgServer, asterisk_ami: AsteriskAmi, tmp_path: Path
) -> None:
    url = await _migrated(await pg_server.create_database())
    db = make_engine(url)
    sessions = make_sessionmaker(db)
    campaign_id, logins = await seed_campaign(
        sessions, [], agents=3, dial_mode="progressive", name="serve-restart"
    )
    listener = await connect(asterisk_ami)
    await hang_up_agent_phones(listener)  # agent ids restart at 1 in every test database
    first = Serve("dialer-first", url, asterisk_ami, tmp_path)
    second: Serve | None = None
    agents = None
    try:
        await first.wait_up()
        agents = await connect_agents(first, logins, campaign_id)
        ids = [d.agent_id for d in agents[1]]
        await until_sessions(listener, ids, 20)
        before = await agent_channels(listener, ids)
        assert {i: len(c) for i, c in before.items()} == {i: 1 for i in ids}, before

        first.kill()
        await drop_agents(*agents)
        agents = None
        second = Serve("dialer-second", url, asterisk_ami, tmp_path)
        await second.wait_up()
        agents = await connect_agents(second, logins, campaign_id)
        # Until the desktops say the phones are up, or Asterisk shows a second session.
        again = before
        async with asyncio.timeout(20):
            while not all(d.phone == "up" for d in agents[1]):
                await asyncio.sleep(0.2)
                again = await agent_channels(listener, ids)
                if any(len(c) > 1 for c in again.values()):
                    break
        # The same channels: adopted, no phone rung a second time.
        again = await agent_channels(listener, ids)
        assert again == before
        assert all("adopted" in d.phone_reasons for d in agents[1]), [
            d.phone_reasons for d in agents[1]
        ]

        for desk in agents[1]:
            await desk.send({"type": "state.logout"})
        for desk in agents[1]:
            await desk.wait_state(lambda d=desk: d.state == "offline", 10)
        # After the last logout no channel of theirs is left, the phone side included.
        left: dict[int, list[str]] = {}
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                while True:
                    left = await agent_channels(listener, ids, sessions_only=False)
                    if not any(left.values()):
                        break
                    await asyncio.sleep(0.2)
        assert {i: c for i, c in left.items() if c} == {}
    finally:
        if agents is not None:
            await drop_agents(*agents)
        first.kill()
        if second is not None:
            second.stop()
        await hang_up_agent_phones(listener)
        listener.manager.close()
        await db.dispose()
    await pg_server.drop_database(url)
