"""The agents' browser softphones on Asterisk: their PJSIP endpoints, written into astdb over AMI
(sorcery.conf maps family `dialer-pjsip`), with a fresh random SIP password at every login.

Why astdb and not realtime or a generated file: it works whatever database the dialer uses (the
embedded SQLite too), needs no file shared with the Asterisk host and no reload, and PJSIP reads
the objects at every REGISTER and INVITE, so a revoked password stops working at once. The SIP
password is never the agent's own, never logged, and lives only in Asterisk and the desktop.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from agents_ws.protocol import JsonObject, JsonValue
from dialer.telephony.ami import AmiError
from dialer.telephony.pool import ServerPool

log = logging.getLogger("dialer.telephony.softphones")

FAMILY = "dialer-pjsip"
ENDPOINT_PREFIX = "softphone-"
# An agent whose `endpoint` is this value uses the desktop's softphone.
SOFTPHONE = "softphone"
TURN_TTL_S = 12 * 3600
# softphone_ws_url of `dialer demo` on its simulated PBX: there is no SIP to register to, and the
# desktop shows its phone as simulated (the PBX simulates both sides' audio).
SIMULATED = "simulated"


def endpoint_name(agent_id: int) -> str:
    return f"{ENDPOINT_PREFIX}{agent_id}"


def dial_string(agent_id: int) -> str:
    """What the agent-session watcher originates to re-ring the softphone (it auto-answers)."""
    return f"PJSIP/{endpoint_name(agent_id)}"


@dataclass(frozen=True, slots=True)
class IceServer:
    urls: str
    username: str | None = None
    credential: str | None = None


@dataclass(frozen=True, slots=True)
class SipCredentials:
    """What the desktop needs to register: sent only over the agent's own websocket."""

    ws_url: str
    uri: str
    username: str
    password: str
    ice_servers: tuple[IceServer, ...]

    def to_json(self) -> JsonObject:
        servers: list[JsonValue] = [
            {
                k: v
                for k, v in (
                    ("urls", s.urls),
                    ("username", s.username),
                    ("credential", s.credential),
                )
                if v is not None
            }
            for s in self.ice_servers
        ]
        return {
            "ws_url": self.ws_url,
            "uri": self.uri,
            "username": self.username,
            "password": self.password,
            "login_exten": "login",
            "echo_exten": "echo",
            "ice_servers": servers,
        }


def turn_credentials(secret: str, agent_id: int, now: float) -> tuple[str, str]:
    """coturn's REST scheme (use-auth-secret): user `<expiry>:<id>`, password base64(HMAC-SHA1)."""
    user = f"{int(now) + TURN_TTL_S}:agent{agent_id}"
    digest = hmac.new(secret.encode(), user.encode(), hashlib.sha1).digest()
    return user, base64.b64encode(digest).decode()


def ice_servers(urls: str, turn_secret: str, agent_id: int, now: float) -> tuple[IceServer, ...]:
    out: list[IceServer] = []
    for url in (u.strip() for u in urls.split(",")):
        if not url:
            continue
        if url.startswith(("turn:", "turns:")) and turn_secret:
            user, password = turn_credentials(turn_secret, agent_id, now)
            out.append(IceServer(url, user, password))
        else:
            out.append(IceServer(url))
    return tuple(out)


def endpoint_objects(agent_id: int, password: str) -> dict[str, dict[str, str]]:
    """The three PJSIP objects of one softphone, as sorcery's astdb wizard stores them (JSON
    object sets; they cannot inherit pjsip.conf's templates, so every field is here)."""
    name = endpoint_name(agent_id)
    return {
        "endpoint": {
            "type": "endpoint",
            "context": "dialer-agent-session",
            "webrtc": "yes",  # DTLS-SRTP, ICE, AVPF, rtcp-mux, fingerprint check
            "dtls_auto_generate_cert": "yes",
            "allow": "opus,ulaw,alaw",
            "auth": name,
            "aors": name,
            "set_var": f"DIALER_AGENT={agent_id}",
            "callerid": f"Agent {agent_id} <{agent_id}>",
            "rtp_keepalive": "15",
            # Audio that stops for 10 s (a closed tab, a dead network) ends the session, so that
            # Asterisk's view of the agent converges with the browser's.
            "rtp_timeout": "10",
            "send_pai": "yes",
        },
        "auth": {"type": "auth", "auth_type": "userpass", "username": name, "password": password},
        "aor": {
            "type": "aor",
            "max_contacts": "1",
            "remove_existing": "yes",
            "qualify_frequency": "0",
        },
    }


class Softphones:
    """Issues and revokes softphone credentials on every connected Asterisk server."""

    def __init__(
        self,
        pool: ServerPool,
        ws_url: str,
        ice_urls: str = "",
        turn_secret: str = "",
        *,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.pool = pool
        self.ws_url = ws_url
        self.ice_urls = ice_urls
        self.turn_secret = turn_secret
        self.wall = wall

    @property
    def enabled(self) -> bool:
        return bool(self.ws_url)

    @property
    def simulated(self) -> bool:
        return self.ws_url == SIMULATED

    async def issue(self, agent_id: int) -> SipCredentials:
        """A fresh random password (the previous one stops working): written, then returned."""
        password = secrets.token_urlsafe(24)
        objects = endpoint_objects(agent_id, password)
        name = endpoint_name(agent_id)
        written = 0
        for server in self.pool.servers:
            if not server.connection.connected:
                continue
            try:
                # auth and aor first: the endpoint refers to them.
                for kind in ("auth", "aor", "endpoint"):
                    await server.connection.send(
                        {
                            "Action": "DBPut",
                            "Family": f"{FAMILY}/{kind}",
                            "Key": name,
                            "Val": json.dumps(objects[kind], separators=(",", ":")),
                        },
                        limit_s=5.0,
                    )
                written += 1
            except AmiError as exc:
                log.warning(
                    "agent %d: softphone endpoint not written on %s: %s",
                    agent_id,
                    server.name,
                    type(exc).__name__,
                    extra={"agent_id": agent_id, "server": server.name},
                )
        if not written:
            raise AmiError("no Asterisk server took the softphone's endpoint")
        host = self.ws_url.split("//", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0] or "localhost"
        return SipCredentials(
            self.ws_url,
            f"sip:{name}@{host}",
            name,
            password,
            ice_servers(self.ice_urls, self.turn_secret, agent_id, self.wall()),
        )

    async def revoke(self, agent_id: int) -> None:
        """The agent was disabled or re-credentialed: their endpoint is gone from every server."""
        name = endpoint_name(agent_id)
        for server in self.pool.servers:
            if not server.connection.connected:
                continue
            for kind in ("endpoint", "auth", "aor"):
                # AmiError: not there (never issued on this server), nothing to revoke.
                with contextlib.suppress(AmiError):
                    await server.connection.send(
                        {"Action": "DBDel", "Family": f"{FAMILY}/{kind}", "Key": name},
                        limit_s=5.0,
                    )
