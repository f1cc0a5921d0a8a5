"""The shipped manager.conf on a real Asterisk: the dialer's AMI user gets what it needs."""

from __future__ import annotations

import re

import pytest

from tests.fixtures.asterisk import REPO, AmiClient, originate

pytestmark = pytest.mark.asterisk

# manager.conf's eventfilter lines: the only events the dialer's connection may carry.
MANAGER_CONF = (REPO / "asterisk_conf" / "manager.conf").read_text()
FILTERED = set(re.findall(r"^eventfilter\(action\(include\),name\((\w+)\)\)", MANAGER_CONF, re.M))


async def test_the_dialer_connection_carries_only_the_filtered_events(ami: AmiClient) -> None:
    call = await originate(ami, "555101", amd=False)
    waiting = await ami.wait_for(
        lambda e: e.get("UserEvent") == "DialerAwaitingAgent" and e.get("Attempt") == call.id, 10
    )
    await ami.send({"Action": "Hangup", "Channel": waiting["Channel"]})
    await call.wait_ended(timeout=10)
    names = {event["Event"] for event in ami.events}
    assert {"Newchannel", "Newstate", "DialBegin", "DialEnd", "UserEvent", "Hangup"} <= names
    assert names <= FILTERED
    assert all("Timestamp" in event for event in ami.events if event["Event"] != "FullyBooted")


async def test_the_dialer_user_cannot_run_cli_commands(ami: AmiClient) -> None:
    reply = await ami.send({"Action": "Command", "Command": "core show channels"})
    assert reply[0]["Response"] == "Error"
    assert "Permission denied" in reply[0]["Message"]


async def test_the_dialer_user_can_list_channels_after_a_reconnect(ami: AmiClient) -> None:
    reply = await ami.send({"Action": "CoreShowChannels"})
    assert reply[0]["Response"] == "Success"


def test_the_shipped_manager_conf_is_loopback_with_a_placeholder_secret() -> None:
    assert re.search(r"^bindaddr = 127\.0\.0\.1$", MANAGER_CONF, re.M)
    assert re.search(r"^secret = CHANGE_ME", MANAGER_CONF, re.M)
    assert "CHANGE ME" in MANAGER_CONF
    assert re.search(r"^timestampevents = yes$", MANAGER_CONF, re.M)
