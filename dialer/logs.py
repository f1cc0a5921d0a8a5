"""Logging set-up: plain text for a terminal, or JSON lines for log shippers.

Records carry ids (campaign, attempt, agent) as `extra` fields, never debtor data; the HTTP access
log prints paths and query parameter names, never query values, headers or tokens.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

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


class AccessLog(AbstractAccessLogger):
    """One line per HTTP request without what it may carry: the path, and the query's parameter
    names but never their values (`/api/dnc?number` rather than the phone number); no headers,
    so no tokens or cookies."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        keys = "&".join(sorted({_safe(k) for k in request.query}))
        path = _safe(request.path)
        self.logger.info(
            '%s "%s %s%s" %s %s %.1fms',
            request.remote,
            request.method,
            path,
            f"?{keys}" if keys else "",
            response.status,
            response.body_length,
            time * 1000,
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


def _safe(text: str, limit: int = 120) -> str:
    # A path or name as a client sent it: printable ASCII only, cut short, so that a request
    # cannot forge log lines or fill the log.
    clean = "".join(c if c.isascii() and c.isprintable() else "?" for c in text[:limit])
    return clean + ("..." if len(text) > limit else "")
