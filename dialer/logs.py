"""Logging set-up: plain text for a terminal, or JSON lines for log shippers.

Records carry ids (campaign, attempt, agent) as `extra` fields, never debtor data.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

ID_FIELDS = ("campaign_id", "attempt_id", "agent_id", "server")


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in ID_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class Text(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        ids = " ".join(
            f"{n}={getattr(record, n)}" for n in ID_FIELDS if getattr(record, n, None) is not None
        )
        return f"{base} {ids}" if ids else base


def configure(fmt: str = "text", level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        formatter: logging.Formatter = JsonLines()
        formatter.converter = __import__("time").gmtime
    else:
        formatter = Text("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
