"""The telephony layer (ServerPool -> AsteriskServer -> CallTracker) on a real Asterisk 22 running
the shipped dialplan and the testbed's simulated PSTN: every outcome, AMD human and machine, and
the commands (bridge to a nailed-up agent, safe harbor, hang-up, recording, supervisor spy)."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
import pytest_asyncio

from dialer.settings import AmiServer
from dialer.telephony.asterisk import SpyMode
from dialer.telephony.calls import CallEvent, CallEventKind
from dialer.telephony.outcomes import Outcome
from dialer.telephony.pool import ServerPool
from tests.fixtures.asterisk import AmiClient, AsteriskAmi, connect

pytestmark = pytest.mark.asterisk

RING_LIMIT_S = 40  # the dialplan rings at least 15 s; margin for a loaded machine


@dataclass
class Recorder:
    """Every CallEvent of the pool, per attempt, with waiters."""

    pool: ServerPool
    by_attempt: dict[int, list[CallEvent]] = field(default_factory=lambda: defaultdict(list))
    task: asyncio.Task[None] | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        while True:
            event = await self.pool.events.get()
            if event.attempt_id is not None:
                self.by_attempt[event.attempt_id].append(event)
            self._changed.set()

    def kinds(self, attempt: int) -> list[str]:
        return [e.kind.value for e in self.by_attempt[attempt]]

    def final(self, attempt: int) -> CallEvent:
        ends = [e for e in self.by_attempt[attempt] if e.kind is CallEventKind.ENDED]
        assert len(ends) == 1, f"attempt {attempt}: {self.kinds(attempt)}"
        return ends[0]

    async def wait(self, attempt: int, kind: CallEventKind, timeout: float) -> CallEvent:
        async def find() -> CallEvent:
            while True:
                for event in self.by_attempt[attempt]:
                    if event.kind is kind:
                        return event
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(find(), timeout)


def settings(ami: AsteriskAmi, name: str = "pbx1") -> AmiServer:
    return AmiServer(name, ami.host, ami.port, ami.username, ami.secret, 50)


@pytest_asyncio.fixture(loop_scope="session")
async def pool(asterisk_ami: AsteriskAmi) -> AsyncIterator[Recorder]:
    p = ServerPool.from_settings([settings(asterisk_ami)])
    await p.start()
    await p.wait_connected(15)
    recorder = Recorder(p)
    recorder.task = asyncio.create_task(recorder.run())
    try:
        yield recorder
    finally:
        recorder.task.cancel()
        await p.close()


# attempt id: (number, extra channel variables, expected events, expected outcome)
CASES: dict[int, tuple[str, dict[str, str], list[str], Outcome]] = {
    101: (
        "555102",
        {},
        ["originated", "ringing", "answered", "human", "abandoned", "ended"],
        Outcome.ABANDONED,
    ),
    102: (
        "555102",
        {"DIALER_AMD": "no"},
        ["originated", "ringing", "answered", "human", "abandoned", "ended"],
        Outcome.ABANDONED,
    ),
    103: ("555202", {}, ["originated", "ringing", "answered", "machine", "ended"], Outcome.MACHINE),
    104: ("555300", {}, ["originated", "ended"], Outcome.BUSY),
    105: ("555400", {}, ["originated", "ringing", "ended"], Outcome.NO_ANSWER),
    106: ("555500", {}, ["originated", "ended"], Outcome.CONGESTION),
    107: ("555601", {}, ["originated", "answered", "ended"], Outcome.HUNG_UP_EARLY),
    108: ("555800", {}, ["originated", "ended"], Outcome.INVALID_NUMBER),
}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def outcomes(asterisk_ami: AsteriskAmi) -> AsyncIterator[Recorder]:
    """All the testbed's behaviours dialed at once through the pool, followed to their end."""
    p = ServerPool.from_settings([settings(asterisk_ami)])
    await p.start()
    await p.wait_connected(15)
    recorder = Recorder(p)
    recorder.task = asyncio.create_task(recorder.run())
    try:
        for attempt, (number, variables, _, _) in CASES.items():
            await p.originate(attempt, number, variables=variables)
        for attempt in CASES:
            await recorder.wait(attempt, CallEventKind.ENDED, RING_LIMIT_S)
        yield recorder
    finally:
        recorder.task.cancel()
        await p.close()


@pytest.mark.parametrize(
    "attempt", list(CASES), ids=[f"{c[0]}{'-noamd' if c[1] else ''}" for c in CASES.values()]
)
def test_each_testbed_behaviour_gives_its_events_and_outcome(
    outcomes: Recorder, attempt: int
) -> None:
    _, _, kinds, outcome = CASES[attempt]
    assert outcomes.kinds(attempt) == kinds
    assert outcomes.final(attempt).outcome is outcome


def test_amd_says_human_for_the_person_and_machine_for_the_recording(outcomes: Recorder) -> None:
    human = next(e for e in outcomes.by_attempt[101] if e.kind is CallEventKind.HUMAN)
    assert human.amd_status == "HUMAN"
    machine = next(e for e in outcomes.by_attempt[103] if e.kind is CallEventKind.MACHINE)
    assert machine.amd_status == "MACHINE" and machine.amd_cause
    no_amd = next(e for e in outcomes.by_attempt[102] if e.kind is CallEventKind.HUMAN)
    assert no_amd.amd_status is None


def test_unanswered_calls_carry_asterisks_dial_status_and_cause(outcomes: Recorder) -> None:
    assert outcomes.final(104).dial_status == "BUSY"
    assert outcomes.final(106).dial_status == "CONGESTION"
    assert outcomes.final(105).dial_status == "NOANSWER"
    assert outcomes.final(108).hangup_cause == 1


def test_transitions_are_timestamped_in_order(outcomes: Recorder) -> None:
    times = [e.at for e in outcomes.by_attempt[101]]
    assert times == sorted(times)
    assert all(t.tzinfo is not None for t in times)


def test_nothing_is_left_in_flight(outcomes: Recorder) -> None:
    assert outcomes.pool.in_flight() == 0


async def agent_session(client: AmiClient) -> tuple[str, str]:
    """Logs a stand-in agent in (the testbed's sim-agent-phone): (agent id, agent channel)."""
    agent = f"8{uuid.uuid4().int % 10**7:07d}"
    await client.send(
        {
            "Action": "Originate",
            "Channel": "Local/login@dialer-agent-session/n",
            "Context": "sim-agent-phone",
            "Exten": "s",
            "Priority": "1",
            "Timeout": "10000",
            "Async": "true",
            "Variable": [f"DIALER_AGENT={agent}"],
        }
    )
    login = await client.wait_for(
        lambda e: (
            e.get("UserEvent") == "DialerAgentSession"
            and e.get("Agent") == agent
            and e.get("State") == "holding"
        ),
        timeout=10,
    )
    return agent, login["AgentChannel"]


@pytest_asyncio.fixture(loop_scope="session")
async def client(asterisk_ami: AsteriskAmi) -> AsyncIterator[AmiClient]:
    c = await connect(asterisk_ami)
    try:
        yield c
    finally:
        for event in c.find(lambda e: e.get("UserEvent") == "DialerAgentSession"):
            await c.send({"Action": "Hangup", "Channel": event["AgentChannel"]})
        c.manager.close()


async def test_connect_agent_bridges_the_human_into_the_agents_channel(
    pool: Recorder, client: AmiClient
) -> None:
    agent, agent_channel = await agent_session(client)
    await pool.pool.originate(201, "555102")
    await pool.wait(201, CallEventKind.HUMAN, 20)
    await pool.pool.connect_agent(201, agent)
    bridged = await pool.wait(201, CallEventKind.BRIDGED, 5)
    assert bridged.agent == agent
    assert pool.pool.servers[0].call(201).agent_channel == agent_channel
    await pool.pool.hang_up(201)
    ended = await pool.wait(201, CallEventKind.ENDED, 5)
    assert ended.outcome is Outcome.HUMAN
    assert pool.kinds(201) == ["originated", "ringing", "answered", "human", "bridged", "ended"]


async def test_play_safe_harbor_on_command_abandons_the_call(pool: Recorder) -> None:
    await pool.pool.originate(202, "555102", variables={"DIALER_AMD": "no"})
    await pool.wait(202, CallEventKind.HUMAN, 20)
    await pool.pool.play_safe_harbor(202)
    await pool.wait(202, CallEventKind.ABANDONED, 3)
    assert (await pool.wait(202, CallEventKind.ENDED, 15)).outcome is Outcome.ABANDONED


async def test_hang_up_ends_a_ringing_call_on_asterisk(pool: Recorder) -> None:
    await pool.pool.originate(203, "555400")
    await pool.wait(203, CallEventKind.RINGING, 10)
    await pool.pool.hang_up(203)
    assert (await pool.wait(203, CallEventKind.ENDED, 5)).outcome is Outcome.NO_ANSWER
    report = await pool.pool.servers[0].resync()
    assert report.alive == 0 and report.lost == ()


async def test_recording_and_supervisor_spy_on_a_bridged_call(
    pool: Recorder, client: AmiClient, asterisk_ami: AsteriskAmi
) -> None:
    agent, agent_channel = await agent_session(client)
    await pool.pool.originate(204, "555102")
    await pool.wait(204, CallEventKind.HUMAN, 20)
    # Asked before the bridge: the shipped dialplan records once the agent is connected.
    assert await pool.pool.start_recording(204) == "dialer/204.wav"
    await pool.pool.connect_agent(204, agent)
    await pool.wait(204, CallEventKind.BRIDGED, 5)
    # The supervisor's phone stands in as the testbed's always-answering phone.
    spy_id = await pool.pool.spy(204, "Local/s@sim-agent-phone/n", SpyMode.WHISPER)
    await asyncio.sleep(1.0)
    channels = await pool.pool.servers[0].connection.send_list({"Action": "CoreShowChannels"})
    spies = [c for c in channels if c.get("Uniqueid") == spy_id]
    assert spies and spies[0]["Application"] == "ChanSpy"
    assert spies[0]["ApplicationData"] == f"{agent_channel},qEw"
    await pool.pool.hang_up(204)
    await pool.wait(204, CallEventKind.ENDED, 5)
    if asterisk_ami.spool_dir is not None:
        await asyncio.sleep(0.5)
        assert (asterisk_ami.spool_dir / "monitor" / "dialer" / "204.wav").exists()
    # The spy is the dialer's own channel: never reported as unknown.
    assert CallEventKind.UNKNOWN_CHANNEL.value not in pool.kinds(204)
