"""`dialer demo --asterisk`: the same demo through a real Asterisk running the shipped dialplan and
the testbed (debtors' numbers drawn from the demo's model, agents on the testbed's phone)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.asterisk import AsteriskAmi

pytestmark = pytest.mark.asterisk
REPO = Path(__file__).resolve().parents[2]


def test_the_demo_dials_through_a_real_asterisk(tmp_path: Path, asterisk_ami: AsteriskAmi) -> None:
    out = tmp_path / "OUT.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "dialer.cli",
            "demo",
            "--asterisk",
            asterisk_ami.url,
            "--duration",
            "30",
            "--headless",
            "--json",
            str(out),
            "--port",
            "0",
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Asterisk at ami://" in proc.stdout and asterisk_ami.secret not in proc.stdout
    report = json.loads(out.read_text())
    assert report["calls_placed"] > 0, report
    assert report["agents_used"] > 0, report
    assert report["promises_to_pay"] > 0, report
    assert report["abandon_rate"] <= 0.03, report
