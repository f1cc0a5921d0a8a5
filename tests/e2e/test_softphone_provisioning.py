"""The agents' softphone endpoints on the real Asterisk: the dialer writes them over AMI, a
browser's credentials work (REGISTER over the websocket answered 200), a new login's password
replaces the old one, and a revoked (disabled, re-credentialed) agent's password stops working at
once. Whether a REGISTER succeeds is Asterisk's own answer, not the dialer's."""

from __future__ import annotations

import time

import pytest

from dialer.settings import AmiServer
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
