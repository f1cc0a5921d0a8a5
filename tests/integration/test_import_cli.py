"""The operations CLI end to end on an SQLite file: import, campaign, DNC and agent commands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dialer.importer import sample


def _dialer(
    tmp: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dialer.cli", *args],
        capture_output=True,
        text=True,
        cwd=tmp,
        env={
            **os.environ,
            "DIALER_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/d.sqlite3",
            **(env or {}),
        },
        timeout=300,
    )


@pytest.fixture
def db(tmp_path: Path) -> Path:
    assert _dialer(tmp_path, "migrate").returncode == 0
    return tmp_path


def test_import_command_reports_counts_and_writes_rejects(db: Path) -> None:
    with (db / "es.csv").open("w", newline="") as f:
        sample.write(f, sample.SampleSpec(400, locale="es", bad_count=10))
    args = ("import", "es.csv", "--decimal", ",", "--region", "CO", "--currency", "COP")
    first = _dialer(db, *args)
    assert first.returncode == 0, first.stderr
    assert "400 rows: 390 accepted, 10 rejected; accounts 390 new" in first.stdout
    assert len((db / "es.rejects.csv").read_text().splitlines()) > 10
    again = _dialer(db, *args, "--quiet")
    assert "accounts 0 new, 0 updated, 390 unchanged; 0 phones added" in again.stdout


def test_dry_run_reports_and_writes_nothing_then_the_import_does_what_it_said(db: Path) -> None:
    (db / "mx.csv").write_bytes(
        "Cuenta;Nombre;Saldo;País;Celular\n"
        "M1;José Núñez;1.234,50;México;044 55 1234 5678\n"
        "M2;Ana Peña;10,00;EE. UU.;(646) 264-4909\n".encode("cp1252")
    )
    args = ("import", "mx.csv", "--decimal", ",", "--quiet")
    dry = _dialer(db, *args, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "encoding: cp1252 (detected by charset-normalizer)" in dry.stdout
    assert "dry run, nothing written: 2 rows: 2 accepted, 0 rejected; accounts 2 new" in dry.stdout
    assert "numbers by country: MX 1, US 1" in dry.stdout
    real = _dialer(db, *args)
    assert "2 rows: 2 accepted, 0 rejected; accounts 2 new" in real.stdout
    assert "dry run" not in real.stdout
    again = _dialer(db, *args, "--dry-run")
    assert "accounts 0 new, 0 updated, 2 unchanged" in again.stdout


def test_import_of_a_missing_file_is_one_line(db: Path) -> None:
    out = _dialer(db, "import", "nope.csv")
    assert out.returncode == 2 and out.stderr.strip() == "dialer import: nope.csv: no such file"


def test_campaign_lifecycle_from_the_command_line(db: Path) -> None:
    assert _dialer(db, "campaign", "create", "early", "--profile", "CO",
                   "--cap", "phone_per_day=2").returncode == 0  # fmt: skip
    # It could not dial (no caller ID, no Asterisk): not started, every reason with its fix.
    start = _dialer(db, "campaign", "start", "early")
    assert start.returncode == 2 and "cannot dial, not started" in start.stderr
    assert "no caller ID" in start.stderr and "--caller-id +E164" in start.stderr
    assert "no Asterisk server is configured" in start.stderr
    assert "DIALER_AMI_SERVERS" in start.stderr
    listed = _dialer(db, "campaign", "list").stdout
    assert "early" in listed and "draft" in listed and "CO" in listed
    assert "early: stopped" in _dialer(db, "campaign", "stop", "early").stdout
    refused = _dialer(db, "campaign", "pause", "nosuch")
    assert refused.returncode == 2 and "no campaign 'nosuch'" in refused.stderr


def test_bad_campaign_window_names_the_field(db: Path) -> None:
    out = _dialer(db, "campaign", "create", "x", "--window", "mon=21:00-08:00")
    assert out.returncode == 2 and "calling_window.mon[0]" in out.stderr


def test_dnc_add_with_expiry_is_listed(db: Path) -> None:
    assert _dialer(db, "dnc", "add", "(212) 555-0100", "--expires", "2099-01-01").returncode == 0
    assert "+12125550100" in _dialer(db, "dnc", "list").stdout


def test_agent_add_reads_the_password_from_the_environment(db: Path) -> None:
    env = {"DIALER_AGENT_PASSWORD": "long-enough-pw"}
    out = _dialer(db, "agent", "add", "ana", "--name", "Ana", "--role", "supervisor", env=env)
    assert out.returncode == 0 and "ana (supervisor)" in out.stdout
    assert "long-enough-pw" not in out.stdout + out.stderr
    short = _dialer(db, "agent", "add", "ben", "--name", "Ben", env={"DIALER_AGENT_PASSWORD": "x"})
    assert short.returncode == 2 and "at least 8 characters" in short.stderr


def test_agent_add_without_a_terminal_says_how_to_give_the_password(db: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DIALER_AGENT_PASSWORD"}
    out = subprocess.run(
        [sys.executable, "-m", "dialer.cli", "agent", "add", "ana", "--name", "Ana"],
        capture_output=True, text=True, cwd=db, stdin=subprocess.DEVNULL, timeout=120,
        env={**env, "DIALER_DATABASE_URL": f"sqlite+aiosqlite:///{db}/d.sqlite3"},
    )  # fmt: skip
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "--password-stdin" in out.stderr and "DIALER_AGENT_PASSWORD" in out.stderr


def test_agent_phone_is_set_at_add_and_changed_by_update(db: Path) -> None:
    added = subprocess.run(
        [sys.executable, "-m", "dialer.cli", "agent", "add", "ana", "--name", "Ana",
         "--password-stdin"],
        input="long-enough-pw\n", capture_output=True, text=True, cwd=db, timeout=120,
        env={**os.environ, "DIALER_DATABASE_URL": f"sqlite+aiosqlite:///{db}/d.sqlite3"},
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "no phone yet" in added.stdout and "--phone" in added.stdout
    out = _dialer(db, "agent", "update", "ana", "--phone", "PJSIP/agent1001")
    assert out.returncode == 0 and "phone PJSIP/agent1001" in out.stdout
    assert "\tana\tagent\tactive\tPJSIP/agent1001\tAna" in _dialer(db, "agent", "list").stdout
    bad = _dialer(db, "agent", "update", "ana", "--phone", "agent1001")
    assert bad.returncode == 2 and "TECHNOLOGY/ENDPOINT" in bad.stderr
    assert _dialer(db, "agent", "update", "nobody", "--name", "X").returncode == 2
