"""Faults on real Asterisk 22 sandboxes: a restart with calls up, the AMI connection cut right
after an Originate is written, and one of two servers going down and coming back.

These tests start and stop their own sandbox instances (two extra AMI ports), so they need what
`scripts/asterisk-sandbox` needs (root); under CI=true an unavailable sandbox fails the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from dialer.settings import AmiServer
from dialer.telephony.ami import AmiOptions
from dialer.telephony.asterisk import AsteriskServer, TelephonyOptions
from dialer.telephony.calls import CallEventKind
from dialer.telephony.outcomes import Outcome
from dialer.telephony.pool import ServerPool
from tests.e2e.test_telephony_outcomes import Recorder
from tests.fixtures.asterisk import AsteriskAmi, connect

pytestmark = pytest.mark.asterisk

SANDBOX = Path(__file__).resolve().parents[2] / "scripts" / "asterisk-sandbox"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PORTS = [int(p) for p in os.environ.get("DIALER_FAULT_AMI_PORTS", "15238,15338").split(",")]
OPTIONS = TelephonyOptions(
    ami=AmiOptions(
        backoff_initial=0.1, backoff_max=0.5, ping_interval=1.0, ping_timeout=1.0, boot_timeout=30.0
    ),
    audit_interval=1.0,
    lost_grace=2.0,
)


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"CI=true and the Asterisk sandbox is unavailable: {reason}", pytrace=False)
    pytest.skip(f"no Asterisk sandbox for fault tests: {reason}")


def sandbox(command: str, port: int) -> dict[str, str]:
    done = subprocess.run(
        [str(SANDBOX), command, "--port", str(port)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"asterisk-sandbox {command} --port {port} failed:\n{done.stderr}")
    return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)


@pytest.fixture
def servers(envs: list[dict[str, str]]) -> list[AmiServer]:
    """The instances as they are now (a restart changes the sandbox's secret)."""
    return [ami_of(env, name) for env, name in zip(envs, ("pbx-a", "pbx-b"), strict=True)]


def ami_of(env: dict[str, str], name: str) -> AmiServer:
    return AmiServer(
        name,
        env["ASTERISK_AMI_HOST"],
        int(env["ASTERISK_AMI_PORT"]),
        env["ASTERISK_AMI_USERNAME"],
        env["ASTERISK_AMI_SECRET"],
        50,
    )


def as_fixture_ami(server: AmiServer) -> AsteriskAmi:
    return AsteriskAmi(server.host, server.port, server.username, server.secret, "sandbox")


def follow_restart(server: AsteriskServer, env: dict[str, str]) -> None:
    # The sandbox writes a fresh AMI secret on every start (a real Asterisk keeps its
    # manager.conf across restarts): give the connection the new one for its next login.
    server.connection.server = dataclasses.replace(
        server.connection.server, secret=env["ASTERISK_AMI_SECRET"]
    )


@pytest.fixture(scope="module")
def envs() -> Iterator[list[dict[str, str]]]:
    """Two sandbox instances of our own, on PORTS, stopped at the end (`sandbox env` of each)."""
    if os.geteuid() != 0:
        _unavailable("the sandbox needs root")
    started: list[int] = []
    try:
        found = []
        for port in PORTS:
            found.append(sandbox("start", port))
            started.append(port)
        yield found
    except RuntimeError as exc:
        _unavailable(str(exc))
    finally:
        for port in started:
            with contextlib.suppress(RuntimeError):
                sandbox("stop", port)


@pytest_asyncio.fixture(loop_scope="session")
async def recorder(envs: list[dict[str, str]]) -> AsyncIterator[Recorder]:
    current = [ami_of(env, name) for env, name in zip(envs, ("pbx-a", "pbx-b"), strict=True)]
    pool = ServerPool.from_settings(current, options=OPTIONS)
    await pool.start()
    await pool.wait_connected(30)
    rec = Recorder(pool)
    rec.task = asyncio.create_task(rec.run())
    try:
        yield rec
    finally:
        rec.task.cancel()
        for attempt in list(pool.servers[0].tracker.calls) + list(pool.servers[1].tracker.calls):
            with contextlib.suppress(Exception):
                await pool.hang_up(attempt)
        await pool.close()


async def wait_until(predicate: object, timeout: float) -> None:
    assert callable(predicate)
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def ringing_calls(
    recorder: Recorder, server: AsteriskServer, attempts: tuple[int, ...]
) -> None:
    for attempt in attempts:
        call = await server.originate(attempt, "555400")  # rings 15 s: up during the fault
        assert call.server == server.name
    for attempt in attempts:
        await recorder.wait(attempt, CallEventKind.RINGING, 10)


def crash(env: dict[str, str]) -> None:
    """Kills the instance's Asterisk at once (SIGKILL): no Hangup, no Shutdown event."""
    pid = int((Path(env["ASTERISK_SANDBOX_LOGDIR"]).parent / "sandbox.pid").read_text())
    os.kill(pid, signal.SIGKILL)


async def test_asterisk_crash_and_restart_with_calls_up_closes_them_lost_and_resumes(
    recorder: Recorder, servers: list[AmiServer], envs: list[dict[str, str]]
) -> None:
    a = recorder.pool.servers[0]
    await ringing_calls(recorder, a, (301, 302, 303))
    crash(envs[0])
    await wait_until(lambda: not a.connected, 10)
    env = await asyncio.to_thread(sandbox, "start", servers[0].port)
    envs[0] = env
    follow_restart(a, env)
    await a.wait_connected(30)
    # The resync after the reconnect finds Asterisk without them: closed as lost.
    for attempt in (301, 302, 303):
        assert (await recorder.wait(attempt, CallEventKind.ENDED, 10)).outcome is Outcome.LOST
    assert a.tracker.in_flight == 0
    await a.originate(304, "555300")
    assert (await recorder.wait(304, CallEventKind.ENDED, 15)).outcome is Outcome.BUSY


async def test_clean_restart_with_calls_up_ends_them_all_and_the_pool_resumes(
    recorder: Recorder, servers: list[AmiServer], envs: list[dict[str, str]]
) -> None:
    a = recorder.pool.servers[0]
    await ringing_calls(recorder, a, (311, 312))
    sessions = a.connection.sessions
    env = await asyncio.to_thread(sandbox, "restart", servers[0].port)  # core stop now + start
    envs[0] = env
    follow_restart(a, env)
    for attempt in (311, 312):
        # A clean stop hangs the calls up itself and reports it (before its Shutdown event),
        # so they end with what Asterisk said (no_answer, failed); none stays in flight.
        await recorder.wait(attempt, CallEventKind.ENDED, 15)
    await wait_until(lambda: a.connection.sessions > sessions and a.connected, 30)
    assert a.tracker.in_flight == 0
    await a.originate(313, "555300")
    assert (await recorder.wait(313, CallEventKind.ENDED, 15)).outcome is Outcome.BUSY


class CuttingProxy:
    """A TCP proxy on loopback in front of Asterisk's AMI. Armed, it forwards the first chunk
    that carries an Originate to Asterisk, closes that upstream connection (the bytes arrive;
    the reply never comes back) and aborts the client's side: the cut under test."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.armed = False
        self.cuts = 0
        self.server: asyncio.base_events.Server | None = None
        self.port = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self._tasks):
            task.cancel()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)

        async def downstream() -> None:
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                while data := await up_reader.read(65536):
                    writer.write(data)

        down = asyncio.create_task(downstream())
        self._tasks.add(down)
        try:
            while data := await reader.read(65536):
                up_writer.write(data)
                if self.armed and b"Action: Originate" in data:
                    self.armed = False
                    self.cuts += 1
                    down.cancel()
                    await up_writer.drain()
                    up_writer.close()  # FIN after the bytes: Asterisk reads the whole action
                    writer.transport.abort()
                    return
        except ConnectionError:
            pass
        finally:
            down.cancel()
            self._tasks.discard(down)
            up_writer.close()
            writer.close()


async def test_connection_cut_right_after_originate_places_exactly_one_call(
    envs: list[dict[str, str]],
) -> None:
    target = ami_of(envs[0], "pbx-a")
    proxy = CuttingProxy(target.host, target.port)
    await proxy.start()
    watcher = await connect(as_fixture_ami(target))  # Asterisk's own view, not through the proxy
    via_proxy = dataclasses.replace(target, name="pbx-a-proxied", port=proxy.port)
    pool = ServerPool.from_settings([via_proxy], options=OPTIONS)
    rec = Recorder(pool)
    rec.task = asyncio.create_task(rec.run())
    try:
        await pool.start()
        await pool.wait_connected(30)
        proxy.armed = True
        call = await pool.originate(401, "555105")
        assert proxy.cuts == 1
        assert call.uncertain  # written, no reply: not re-sent, not forgotten
        server = pool.servers[0]
        await wait_until(lambda: server.connection.sessions >= 2 and server.connected, 15)
        # Followed after the reconnect: the call reaches its real end, it is not "lost".
        ended = await rec.wait(401, CallEventKind.ENDED, 40)
        assert ended.outcome is Outcome.ABANDONED
        await asyncio.sleep(1.0)
        placed = watcher.find(
            lambda e: (
                e.get("Event") == "Newchannel"
                and str(e.get("Linkedid", "")).startswith("dialer-401-")
                and str(e.get("Channel", "")).startswith("Local/555105@dialer-outbound-")
                and str(e.get("Channel", "")).endswith(";1")
            )
        )
        assert len(placed) == 1, [e.get("Channel") for e in placed]
        assert placed[0]["Uniqueid"] == call.channel_id
    finally:
        rec.task.cancel()
        await pool.close()
        watcher.manager.close()
        await proxy.close()


async def test_a_server_going_down_moves_originates_to_the_other_and_it_comes_back(
    recorder: Recorder, servers: list[AmiServer], envs: list[dict[str, str]]
) -> None:
    pool = recorder.pool
    a, b = pool.servers
    await asyncio.to_thread(sandbox, "stop", servers[1].port)
    await wait_until(lambda: not b.connected, 10)
    assert pool.in_rotation() == [a]
    placed = [(await pool.originate(attempt, "555400")).server for attempt in (501, 502, 503)]
    assert placed == ["pbx-a", "pbx-a", "pbx-a"]
    for attempt in (501, 502, 503):
        await recorder.wait(attempt, CallEventKind.RINGING, 10)
    env = await asyncio.to_thread(sandbox, "start", servers[1].port)
    envs[1] = env
    follow_restart(b, env)
    await b.wait_connected(30)
    # b is back in rotation, with more free channels than a (which has three calls up).
    assert (await pool.originate(504, "555300")).server == "pbx-b"
    assert (await recorder.wait(504, CallEventKind.ENDED, 15)).outcome is Outcome.BUSY
    for attempt in (501, 502, 503):
        await pool.hang_up(attempt)
        await recorder.wait(attempt, CallEventKind.ENDED, 5)
