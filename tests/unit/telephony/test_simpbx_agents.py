"""The simulated PBX's side of the agents and the demo's debtors: an agent's phone originated into
`[dialer-agent-session]` reports login/holding/logout as the shipped dialplan does, and the
scenario-driven debtors follow the pacing simulator's model."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from panoramisk.message import Message

from dialer.runtime import PoolAgentTelephony
from dialer.simpbx.behaviour import Fate, ScenarioDebtors
from dialer.simpbx.server import SimPbx
from dialer.telephony.pool import ServerPool
from pacing.scenario import Scenario, uniform
from tests.unit.telephony.conftest import eventually, server_settings


async def test_an_agent_session_reports_login_holding_and_logout(
    pbx: SimPbx, make_pool: Callable[..., asyncio.Future[ServerPool]]
) -> None:
    pool = await make_pool(server_settings(pbx, "a"))
    states: list[tuple[str, str]] = []

    def listen(message: Message) -> None:
        if message.get("UserEvent") == "DialerAgentSession":
            states.append((str(message.get("Agent")), str(message.get("State"))))

    pool.servers[0].connection.listeners.append(listen)
    assert await PoolAgentTelephony(pool).open_agent_channel(42, "Local/agent42@dialer-agent")
    await eventually(lambda: states == [("42", "login"), ("42", "holding")])
    assert "PJSIP/agent42-session" in pbx.channels
    await pool.servers[0].connection.send({"Action": "Hangup", "Channel": "PJSIP/agent42-session"})
    await eventually(lambda: states[-1] == ("42", "logout"))
    assert "PJSIP/agent42-session" not in pbx.channels


def test_scenario_debtors_without_contacts_never_answer() -> None:
    debtors = ScenarioDebtors(Scenario(contact_curve=((0.0, 0.0),)), seed=3)
    fates = {debtors.behaviour("1").fate for _ in range(200)}
    assert fates <= {Fate.BUSY, Fate.NO_ANSWER}


def test_scenario_debtors_answer_within_the_scenarios_answer_time() -> None:
    scenario = Scenario(contact_curve=((0.0, 1.0),), answer_time=uniform(2.0, 3.0))
    debtors = ScenarioDebtors(scenario, seed=3)
    draws = [debtors.behaviour("1") for _ in range(200)]
    assert {d.fate for d in draws} == {Fate.HUMAN}
    assert all(2.0 <= d.ring_seconds <= 3.0 for d in draws)


def test_scenario_debtors_machines_follow_the_machine_share() -> None:
    scenario = Scenario(contact_curve=((0.0, 1.0),), machine_share=0.5, amd_machine_accuracy=1.0)
    debtors = ScenarioDebtors(scenario, seed=3)
    machines = sum(debtors.behaviour("1").fate is Fate.MACHINE for _ in range(1000))
    assert 430 <= machines <= 570
