"""`dialer demo` as a person runs it: a subprocess with the embedded SQLite database, the simulated
PBX and ten simulated agents on real websockets; its JSON report shows a working dialer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_a_thirty_second_headless_demo_places_calls_records_promises_and_stays_under_3pct(
    tmp_path: Path,
) -> None:
    out = tmp_path / "OUT.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "dialer.cli",
            "demo",
            "--duration",
            "30",
            "--headless",
            "--json",
            str(out),
            "--port",
            "0",  # any free port: the suite may run beside a demo on 8080
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "/agent/" in proc.stdout and "/metrics" in proc.stdout, proc.stdout
    report = json.loads(out.read_text())
    assert report["calls_placed"] > 0, report
    assert report["agents_used"] > 0, report
    assert report["promises_to_pay"] > 0, report
    assert report["abandon_rate"] <= 0.03, report
    assert not list(tmp_path.glob("*.sqlite3")), "the database lives in a temporary directory"
