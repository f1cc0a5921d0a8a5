"""The agent's nailed-up session on a real Asterisk: login, connect by AMI, back to holding.

A Local channel stands in for the agent's phone (testbed context sim-agent-phone). The debtor
(5557NN: a person who says hello and hangs up NN s after answering) is connected the way the
dialer does it: an AMI Redirect of the answered call to [dialer-connect], exten = agent id.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio
from panoramisk.message import Message

from tests.fixtures.asterisk import AmiClient, AsteriskAmi, Attempt, connect, originate, ts

pytestmark = pytest.mark.asterisk

BRIDGE_LIMIT_S = 1.0
HOLDING = "holding_bridge"


@dataclass
class Session:
    client: AmiClient
    agent: str
    agent_channel: str  # the nailed-up channel (the agent-side half of the phone's call)
    phone_channel: str  # the agent's phone (the testbed's stand-in)
    logged_in: Message  # the first BridgeEnter of the agent channel into the holding bridge
    call: Attempt
    redirected_at: float  # host monotonic clock, only to bound the test's own latency

    def agent_events(self, event: str) -> list[Message]:
        return self.client.find(
            lambda e: e.get("Event") == event and e.get("Channel") == self.agent_channel
        )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def session(asterisk_ami: AsteriskAmi) -> AsyncIterator[Session]:
    client = await connect(asterisk_ami)
    agent = f"7{uuid.uuid4().int % 10**8:08d}"
    try:
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
                and e.get("State") == "login"
            ),
            timeout=10,
        )
        agent_channel = login["AgentChannel"]
        holding = await client.wait_for(
            lambda e: (
                e.get("Event") == "BridgeEnter"
                and e.get("Channel") == agent_channel
                and e.get("BridgeTechnology") == HOLDING
            ),
            timeout=10,
        )
        # The call: answered (no AMD), the dialer picks the agent and redirects it at once.
        call = await originate(client, "555704", amd=False, variables={"DIALER_RECORD": "yes"})
        waiting = await client.wait_for(
            lambda e: e.get("UserEvent") == "DialerAwaitingAgent" and e.get("Attempt") == call.id,
            timeout=10,
        )
        loop = asyncio.get_running_loop()
        redirected_at = loop.time()
        reply = await client.send(
            {
                "Action": "Redirect",
                "Channel": waiting["Channel"],
                "Context": "dialer-connect",
                "Exten": agent,
                "Priority": "1",
            }
        )
        assert reply[0].get("Response") == "Success", reply
        await call.wait_ended(timeout=15)
        # After the debtor's hangup the agent's channel must re-enter a holding bridge.
        await client.wait_for(
            lambda e: (
                e.get("Event") == "BridgeEnter"
                and e.get("Channel") == agent_channel
                and e.get("BridgeTechnology") == HOLDING
                and float(e["Timestamp"]) > float(holding["Timestamp"])
            ),
            timeout=5,
        )
        await asyncio.sleep(0.3)
        yield Session(
            client=client,
            agent=agent,
            agent_channel=agent_channel,
            phone_channel=agent_channel[:-2] + ";1",
            logged_in=holding,
            call=call,
            redirected_at=redirected_at,
        )
    finally:
        for event in client.find(
            lambda e: e.get("UserEvent") == "DialerAgentSession" and e.get("Agent") == agent
        )[:1]:
            await client.send({"Action": "Hangup", "Channel": event["AgentChannel"]})
        client.manager.close()


def _bridge_enters(s: Session) -> list[Message]:
    return [e for e in s.agent_events("BridgeEnter") if e.get("BridgeTechnology") != HOLDING]


def test_the_agent_session_waits_in_a_holding_bridge(session: Session) -> None:
    assert session.logged_in["BridgeTechnology"] == HOLDING
    assert session.agent_channel.startswith("Local/login@dialer-agent-session-")


def test_answered_call_is_bridged_to_the_nailed_up_agent_within_1_s(session: Session) -> None:
    enters = _bridge_enters(session)
    assert len(enters) == 1, session.call.summary()
    bridge = enters[0]["BridgeUniqueid"]
    debtor_in = session.client.find(
        lambda e: (
            e.get("Event") == "BridgeEnter"
            and e.get("BridgeUniqueid") == bridge
            and e.get("Uniqueid") == session.call.id
        )
    )
    assert debtor_in, "the debtor's call never joined the agent's bridge"
    connected_at = max(ts(enters[0]), ts(debtor_in[0]))
    assert 0.0 < connected_at - session.call.answered_at <= BRIDGE_LIMIT_S


def test_the_agent_phone_never_rings(session: Session) -> None:
    # Same channel throughout: nothing new was dialed toward the agent, nothing rang.
    ringing = session.client.find(
        lambda e: (
            e.get("Event") == "Newstate"
            and e.get("Channel") in (session.agent_channel, session.phone_channel)
            and e.get("ChannelStateDesc") == "Ringing"
        )
    )
    assert ringing == []
    assert session.agent_events("Hangup") == []


def test_agent_returns_to_holding_when_the_debtor_hangs_up(session: Session) -> None:
    assert session.call.hangup_of_originating_half() is not None
    bridge = _bridge_enters(session)[0]["BridgeUniqueid"]
    debtor_left = session.client.find(
        lambda e: (
            e.get("Event") == "BridgeLeave"
            and e.get("BridgeUniqueid") == bridge
            and e.get("Uniqueid") == session.call.id
        )
    )
    assert debtor_left, "the debtor never left the agent's bridge"
    back = [
        e
        for e in session.agent_events("BridgeEnter")
        if e.get("BridgeTechnology") == HOLDING and ts(e) > ts(_bridge_enters(session)[0])
    ]
    assert back, "the agent's channel did not go back to a holding bridge"
    assert 0.0 <= ts(back[0]) - ts(debtor_left[0]) < 1.0
    states = [
        e["State"]
        for e in session.client.find(
            lambda e: e.get("UserEvent") == "DialerAgentSession" and e.get("Agent") == session.agent
        )
    ]
    assert states[:3] == ["login", "holding", "holding"]


def test_connected_call_is_recorded_when_asked(session: Session, asterisk_ami: AsteriskAmi) -> None:
    if asterisk_ami.spool_dir is None:
        pytest.skip("recordings are checked on the sandbox only (given Asterisk: no file access)")
    recording = asterisk_ami.spool_dir / "monitor" / "dialer" / f"{session.call.id}.wav"
    assert recording.is_file()
    # 8 kHz 16-bit mono for ~3 s of bridged talk: far more than a bare WAV header.
    assert recording.stat().st_size > 16_000
