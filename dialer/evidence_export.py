"""Evidence records as CSV or JSON, for the API and `dialer evidence export` alike."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence

from dialer.store.models import ClaimEvidence

COLUMNS = (
    "id", "at", "campaign_id", "account_id", "attempt_id", "allowed", "outcome", "reason",
    "prev_hash", "hash", "record",
)  # fmt: skip


def _reason(row: ClaimEvidence) -> str | None:
    decision = json.loads(row.record).get("decision", {})
    reason = decision.get("reason")
    return None if reason is None else str(reason)


def render(rows: Sequence[ClaimEvidence], fmt: str) -> str:
    """CSV: one line per record, the hashed record itself in the `record` column (so a reader
    can re-hash it); JSON: {"records": [...]} with the record parsed."""
    if fmt == "json":
        return json.dumps(
            {
                "records": [
                    {
                        "id": r.id, "at": r.at.isoformat(), "campaign_id": r.campaign_id,
                        "account_id": r.account_id, "attempt_id": r.attempt_id,
                        "allowed": r.allowed, "outcome": r.outcome, "prev_hash": r.prev_hash,
                        "hash": r.hash, "record": json.loads(r.record),
                    }
                    for r in rows
                ]
            },
            ensure_ascii=False,
        ) + "\n"  # fmt: skip
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    for r in rows:
        writer.writerow(
            [r.id, r.at.isoformat(), r.campaign_id, r.account_id, r.attempt_id,
             "yes" if r.allowed else "no", r.outcome, _reason(r) or "", r.prev_hash, r.hash,
             r.record]
        )  # fmt: skip
    return out.getvalue()
