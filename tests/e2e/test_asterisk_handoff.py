"""The dialer's other two hand-off decisions on a real Asterisk: no agent, and a vanished agent.

When the dialer knows no agent is free it redirects the answered call to [dialer-safe-harbor] at
once, without waiting for the dialplan's backstop; when the agent it picked has logged off in the
meantime, [dialer-connect] falls back to the safe harbor rather than leave the debtor in silence.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.fixtures.asterisk import AsteriskAmi, Attempt, connect, originate, ts

pytestmark = pytest.mark.asterisk


async def _answer_and_redirect(attempt: Attempt, context: str, exten: str) -> None:
    waiting = await attempt.client.wait_for(
        lambda e: e.get("UserEvent") == "DialerAwaitingAgent" and e.get("Attempt") == attempt.id,
        timeout=10,
    )
    redirect = {
        "Action": "Redirect",
        "Channel": waiting["Channel"],
        "Context": context,
        "Exten": exten,
        "Priority": "1",
    }
    reply = await attempt.client.send(redirect)
    assert reply[0].get("Response") == "Success", reply
    await attempt.wait_ended(timeout=15)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def calls(asterisk_ami: AsteriskAmi) -> AsyncIterator[dict[str, Attempt]]:
    client = await connect(asterisk_ami)
    try:
        no_agent, gone_agent = await asyncio.gather(
            originate(client, "555101", amd=False), originate(client, "555101", amd=False)
        )
        await asyncio.gather(
            _answer_and_redirect(no_agent, "dialer-safe-harbor", "s"),
            # An agent id that never logged in stands for one whose session just ended.
            _answer_and_redirect(gone_agent, "dialer-connect", "9999000"),
        )
        await asyncio.sleep(0.3)
        yield {"no_agent": no_agent, "gone_agent": gone_agent}
    finally:
        client.manager.close()


def test_redirect_to_safe_harbor_plays_the_message_at_once(calls: dict[str, Attempt]) -> None:
    call = calls["no_agent"]
    waiting = call.user_event("DialerAwaitingAgent")
    start = next(e for e in call.user_events("DialerSafeHarbor") if e["Stage"] == "start")
    played = next(e for e in call.user_events("DialerSafeHarbor") if e["Stage"] == "played")
    # Well before the dialplan's own backstop (DIALER_CONNECT_LIMIT, 1.6 s).
    assert ts(start) - ts(waiting) < 0.5
    assert played["PlaybackStatus"] == "SUCCESS"


def test_connect_to_an_agent_who_is_gone_falls_back_to_safe_harbor(
    calls: dict[str, Attempt],
) -> None:
    call = calls["gone_agent"]
    failed = call.user_event("DialerConnectFailed")
    assert failed["Agent"] == "9999000"
    assert call.user_events("DialerConnecting") == []
    played = next(e for e in call.user_events("DialerSafeHarbor") if e["Stage"] == "played")
    assert played["PlaybackStatus"] == "SUCCESS"
    assert call.user_event("DialerCallEnd")["Stage"] == "safe-harbor"
