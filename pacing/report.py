"""The pacing report: one row of KPIs per simulated run, as the JSON rows and the Markdown table
that `dialer simulate` and the benchmark print."""

from __future__ import annotations

from collections.abc import Sequence

from pacing.decision import JsonScalar
from pacing.simulator import SimResult

COLUMNS = (
    "occupancy",
    "abandon_rate",
    "worst_hour_abandon_rate",
    "talk_minutes_per_agent_hour",
    "mean_wait_s",
    "dials_per_agent_hour",
)


def result_row(result: SimResult, contact_rate: float | str) -> dict[str, JsonScalar]:
    """The benchmark's JSON row for one run."""
    return {
        "scenario": result.scenario,
        "policy": result.policy,
        "agents": result.agents,
        "contact_rate": contact_rate,
        "seed": result.seed,
        **result.metrics(),
        "dials": result.dials,
        "connected": result.connected,
        "abandoned": result.abandoned,
        "amd_false_positives": result.amd_false_positives,
    }


def markdown_table(rows: Sequence[dict[str, JsonScalar]]) -> str:
    head = ("scenario", "policy", "agents", "contact_rate", "seed", *COLUMNS)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = []
        for key in head:
            value = row.get(key)
            if key in ("occupancy", "abandon_rate", "worst_hour_abandon_rate") and isinstance(
                value, float
            ):
                cells.append(f"{value * 100:.2f}%")
            else:
                cells.append(str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
