"""Typed settings for the whole service, read from `DIALER_*` environment variables and a TOML file.

Every knob is documented here, once; the README's configuration table is generated from `FIELDS`.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import get_type_hints
from urllib.parse import parse_qs, unquote, urlsplit

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///dialer.sqlite3"


class SettingsError(ValueError):
    """A setting could not be read; the message names the variable or key."""


@dataclass(frozen=True, slots=True)
class AmiServer:
    """One Asterisk server reached over AMI, parsed from `ami://user:secret@host:port?...`."""

    name: str
    host: str
    port: int
    username: str
    secret: str
    max_channels: int = 200

    @classmethod
    def parse(cls, url: str) -> AmiServer:
        parts = urlsplit(url.strip())
        if parts.scheme != "ami":
            raise SettingsError(f"DIALER_AMI_SERVERS: {url!r} must start with ami://")
        if not parts.hostname or not parts.username or parts.password is None:
            raise SettingsError(
                "DIALER_AMI_SERVERS: each server is ami://USER:SECRET@HOST:PORT[?name=N&max_channels=M]"
            )
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        try:
            max_channels = int(query.get("max_channels", "200"))
        except ValueError as exc:
            raise SettingsError(
                f"DIALER_AMI_SERVERS: max_channels must be a whole number: {exc}"
            ) from exc
        return cls(
            name=query.get("name", parts.hostname),
            host=parts.hostname,
            port=parts.port or 5038,
            username=unquote(parts.username),
            secret=unquote(parts.password),
            max_channels=max_channels,
        )

    def redacted(self) -> str:
        return f"ami://{self.username}:***@{self.host}:{self.port}?name={self.name}"


@dataclass(frozen=True, slots=True)
class Settings:
    """All settings. Field docs are the single reference for every knob."""

    database_url: str = field(
        default=DEFAULT_DATABASE_URL,
        metadata={
            "doc": "SQLAlchemy URL. Embedded default: an SQLite file in the working "
            "directory. Production: postgresql+asyncpg://USER:PASS@HOST/DB."
        },
    )
    ami_servers: tuple[AmiServer, ...] = field(
        default=(),
        metadata={
            "doc": "Comma-separated ami://USER:SECRET@HOST:PORT?name=N&max_channels=M, "
            "one per Asterisk server."
        },
    )
    http_host: str = field(
        default="127.0.0.1", metadata={"doc": "Address the HTTP/websocket server binds."}
    )
    http_port: int = field(default=8080, metadata={"doc": "Port of the HTTP/websocket server."})
    default_region: str = field(
        default="US",
        metadata={"doc": "Region used to read phone numbers written without a country code."},
    )
    log_format: str = field(
        default="text", metadata={"doc": "`text` or `json` (one JSON object per line)."}
    )
    log_level: str = field(default="INFO", metadata={"doc": "Python logging level."})
    tick_hz: float = field(default=4.0, metadata={"doc": "Campaign runner ticks per second."})
    process_name: str = field(
        default_factory=lambda: os.uname().nodename + f":{os.getpid()}",
        metadata={"doc": "This process's name in campaign leases (default host:pid)."},
    )
    lease_seconds: float = field(
        default=15.0, metadata={"doc": "How long a campaign lease lives without renewal."}
    )
    agent_grace_seconds: float = field(
        default=30.0,
        metadata={
            "doc": "An agent whose socket dropped is kept this long before pacing stops "
            "counting them."
        },
    )
    promise_horizon_days: int = field(
        default=366,
        metadata={"doc": "A promise-to-pay (or instalment) due later than this is refused."},
    )
    login_failures_per_login: int = field(
        default=5,
        metadata={
            "doc": "Failed logins for one login name within `login_lockout_seconds` that lock "
            "it (429 until it expires or an admin lifts it)."
        },
    )
    login_failures_per_address: int = field(
        default=50,
        metadata={"doc": "Failed logins from one source address that lock the address."},
    )
    login_lockout_seconds: float = field(
        default=900.0,
        metadata={"doc": "Window for counting failed logins, and how long a lockout lasts."},
    )
    recordings_dir: str = field(
        default="/var/spool/asterisk/monitor",
        metadata={"doc": "Where Asterisk writes call recordings."},
    )
    evidence_retention_days: int = field(
        default=1095,
        metadata={
            "doc": "Claim-evidence records older than this are deleted by `dialer evidence "
            "prune` (default 3 years, Regulation F's record retention, 12 CFR 1006.100)."
        },
    )
    softphone_ws_url: str = field(
        default="",
        metadata={
            "doc": "Where agents' browsers reach Asterisk's SIP websocket for the desktop's "
            "softphone, e.g. wss://pbx.example.net:8089/ws. Empty: no softphone (agents use "
            "their configured SIP phones)."
        },
    )
    softphone_ice_servers: str = field(
        default="",
        metadata={
            "doc": "Comma-separated STUN/TURN URLs the softphone uses behind NAT, e.g. "
            "stun:turn.example.net:3478,turn:turn.example.net:3478?transport=udp."
        },
    )
    softphone_turn_secret: str = field(
        default="",
        metadata={
            "doc": "coturn's static-auth-secret: the softphone gets short-lived TURN "
            "credentials made from it (coturn's REST scheme). Never sent to browsers."
        },
    )


FIELDS = {f.name: f for f in fields(Settings)}
_ENV_PREFIX = "DIALER_"


def _convert(name: str, raw: object) -> object:
    hint = get_type_hints(Settings)[name]
    try:
        if name == "ami_servers":
            items = raw if isinstance(raw, list) else str(raw).split(",")
            return tuple(AmiServer.parse(str(s)) for s in items if str(s).strip())
        if hint is int:
            return int(str(raw))
        if hint is float:
            return float(str(raw))
        return str(raw)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, SettingsError):
            raise
        raise SettingsError(f"{_ENV_PREFIX}{name.upper()}: cannot read {raw!r}: {exc}") from exc


def load_settings(
    config_file: str | Path | None = None, environ: dict[str, str] | None = None
) -> Settings:
    """Defaults, then the TOML file (`DIALER_CONFIG` or the argument), then env variables."""
    env = dict(os.environ if environ is None else environ)
    values: dict[str, object] = {}
    path = config_file or env.get("DIALER_CONFIG")
    if path:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise SettingsError(f"config file {path} does not exist") from exc
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"config file {path}: {exc}") from exc
        section = data.get("dialer", data)
        for key, raw in section.items():
            if key not in FIELDS:
                raise SettingsError(f"config file {path}: unknown setting {key!r}")
            values[key] = _convert(key, raw)
    for name in FIELDS:
        raw_env = env.get(_ENV_PREFIX + name.upper())
        if raw_env is not None and raw_env != "":
            values[name] = _convert(name, raw_env)
    return Settings(**values)  # type: ignore[arg-type]


def settings_reference() -> str:
    """A Markdown table of every setting, its environment variable, default and meaning."""
    rows = ["| setting | environment variable | default | meaning |", "|---|---|---|---|"]
    for f in fields(Settings):
        default = "host:pid" if f.name == "process_name" else repr(f.default)
        rows.append(
            f"| `{f.name}` | `{_ENV_PREFIX}{f.name.upper()}` | `{default}` | {f.metadata['doc']} |"
        )
    return "\n".join(rows)
