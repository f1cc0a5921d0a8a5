"""The softphone's provisioning rules: TURN credentials as coturn's REST API documents them, which
ICE servers get them, and the PJSIP objects written for an agent."""

from __future__ import annotations

import base64
import hashlib
import hmac

from dialer.telephony.softphones import (
    TURN_TTL_S,
    dial_string,
    endpoint_objects,
    ice_servers,
    turn_credentials,
)


def test_turn_credentials_follow_coturns_rest_scheme() -> None:
    # coturn (turnserver.conf, use-auth-secret): "the username is the expiry timestamp, a colon
    # and the user; the password is base64(HMAC-SHA1(secret, username))".
    user, password = turn_credentials("s3cret", 42, now=1_700_000_000.5)
    expiry, _, who = user.partition(":")
    assert int(expiry) == 1_700_000_000 + TURN_TTL_S and who == "agent42"
    expected = hmac.new(b"s3cret", user.encode(), hashlib.sha1).digest()
    assert base64.b64decode(password) == expected


def test_only_turn_servers_get_credentials_and_only_with_a_secret() -> None:
    urls = "stun:t.example:3478, turn:t.example:3478?transport=udp,,turns:t.example:5349"
    servers = ice_servers(urls, "s3cret", 7, now=0)
    assert [s.urls for s in servers] == [
        "stun:t.example:3478",
        "turn:t.example:3478?transport=udp",
        "turns:t.example:5349",
    ]
    assert servers[0].username is None and servers[0].credential is None
    assert all(s.username and s.credential for s in servers[1:])
    assert all(s.username is None for s in ice_servers(urls, "", 7, now=0))


def test_an_agents_objects_land_in_the_agent_session_with_their_id_and_webrtc_media() -> None:
    objects = endpoint_objects(7, "pw-7")
    endpoint = objects["endpoint"]
    assert endpoint["context"] == "dialer-agent-session"
    assert endpoint["set_var"] == "DIALER_AGENT=7"
    assert endpoint["webrtc"] == "yes"
    assert endpoint["allow"].split(",")[0] == "opus" and "ulaw" in endpoint["allow"]
    assert endpoint["auth"] == endpoint["aors"] == "softphone-7"
    assert objects["auth"]["password"] == "pw-7"
    assert "pw-7" not in str(endpoint) + str(objects["aor"])
    assert objects["aor"]["max_contacts"] == "1"
    assert dial_string(7) == "PJSIP/softphone-7"
