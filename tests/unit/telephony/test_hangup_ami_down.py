"""An agent's hang-up while Asterisk's AMI is down is refused `unavailable` (the desktop shows
it), not `internal ... please retry`."""

from __future__ import annotations

import pytest

from agents_ws.engine_port import PortRefused
from dialer.runtime import PoolAgentTelephony
from dialer.settings import AmiServer
from dialer.telephony.calls import channel_id
from dialer.telephony.pool import ServerPool


async def test_a_hang_up_with_ami_down_is_refused_unavailable() -> None:
    # A server that was never reached (nothing listens there): its connection is down.
    pool = ServerPool.from_settings([AmiServer("pbx1", "127.0.0.1", 9, "u", "s", 10)])
    server = pool.servers[0]
    call = server.tracker.expect(7, channel_id(7, "abcd"))
    server.tracker.originate_queued(call)  # placed before AMI went down: still followed
    with pytest.raises(PortRefused) as refused:
        await PoolAgentTelephony(pool).hang_up("7", 7)
    assert refused.value.code == "unavailable"
