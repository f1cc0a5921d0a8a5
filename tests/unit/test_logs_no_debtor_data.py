"""Log lines carry the whitelisted ids (campaign, attempt, agent, server) and nothing else a
caller attaches: debtor data passed as `extra` never reaches the output."""

from __future__ import annotations

import json
import logging

from dialer.logs import JsonLines, Text

DEBTOR_EXTRAS = {
    "debtor_name": "Ana Pérez",
    "phone": "+12025550123",
    "number": "+525512345678",
    "balance": "98765.43",
    "account": {"name": "Ana Pérez", "balance": "98765.43"},
}
IDS = {"campaign_id": 3, "attempt_id": 41, "agent_id": 7, "server": "pbx1"}


def _record(**extra: object) -> logging.LogRecord:
    logger = logging.getLogger("dialer.test")
    return logger.makeRecord(
        "dialer.test", logging.INFO, __file__, 1, "call answered", None, None, extra=extra
    )


def test_json_line_keeps_only_whitelisted_ids() -> None:
    line = JsonLines().format(_record(**IDS, **DEBTOR_EXTRAS))
    entry = json.loads(line)
    assert set(entry) == {"ts", "level", "logger", "msg", *IDS}
    assert {k: entry[k] for k in IDS} == IDS
    for secret in ("Ana", "2025550123", "5512345678", "98765"):
        assert secret not in line


def test_text_line_keeps_only_whitelisted_ids() -> None:
    line = Text("%(levelname)s %(name)s: %(message)s").format(_record(**IDS, **DEBTOR_EXTRAS))
    assert (
        line == "INFO dialer.test: call answered campaign_id=3 attempt_id=41 agent_id=7 server=pbx1"
    )
