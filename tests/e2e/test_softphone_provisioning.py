"""The agents' softphone endpoints on the real Asterisk: the dialer writes them over AMI, a
browser's credentials work (REGISTER over the websocket answered 200), a new login's password
replaces the old one, and a revoked (disabled, re-credentialed) agent's password stops working at
once. Whether a REGISTER succeeds is Asterisk's own answer, not the dialer's."""

from __future__ import annotations

import time

import pytest

from dialer.runtime import PoolAgentTelephony
from dialer.settings import AmiServer
from dialer.telephony.agent_sessions import AgentSessions
from dialer.telephony.pool import ServerPool
from dialer.telephony.softphones import Softphones
from tests.fixtures.asterisk import AsteriskAmi
from tests.fixtures.sipws import register

pytestmark = [pytest.mark.asterisk]

AGENT = 9301


async def test_credentials_work_rotate_and_stop_working_when_revoked(
    asterisk_ami: AsteriskAmi,
) -> None:
    assert asterisk_ami.ws_url, "the sandbox tells its websocket URL (ASTERISK_SANDBOX_WS_URL)"
    pool = ServerPool.from_settings((AmiServer.parse(asterisk_ami.url),))
    await pool.start()
    try:
        await pool.wait_connected(10)
        phones = Softphones(pool, asterisk_ami.ws_url)
        first = await phones.issue(AGENT)
        assert first.username == f"softphone-{AGENT}"
        assert await register(asterisk_ami.ws_url, first.username, first.password) == 200
        assert await register(asterisk_ami.ws_url, first.username, "wrong") != 200

        second = await phones.issue(AGENT)  # the next login: a new random password
        assert second.password != first.password
        assert await register(asterisk_ami.ws_url, second.username, first.password) != 200
        assert await register(asterisk_ami.ws_url, second.username, second.password) == 200

        revoked_at = time.monotonic()
        await phones.revoke(AGENT)
        assert await register(asterisk_ami.ws_url, second.username, second.password) != 200
        assert time.monotonic() - revoked_at < 5
    finally:
        await pool.close()


async def test_the_password_dies_with_the_agents_logout(asterisk_ami: AsteriskAmi) -> None:
    assert asterisk_ami.ws_url
    pool = ServerPool.from_settings((AmiServer.parse(asterisk_ami.url),))
    await pool.start()
    try:
        await pool.wait_connected(10)
        telephony = PoolAgentTelephony(
            pool,
            phones=AgentSessions(pool, lambda _agent, _up, _why: None),
            softphones=Softphones(pool, asterisk_ami.ws_url),
        )
        sip = await telephony.softphone_credentials(AGENT + 1, uses_softphone=True)
        assert sip is not None
        username, password = str(sip["username"]), str(sip["password"])
        assert await register(asterisk_ami.ws_url, username, password) == 200
        await telephony.close_agent_channel(AGENT + 1)  # logout
        assert await register(asterisk_ami.ws_url, username, password) != 200
    finally:
        await pool.close()
