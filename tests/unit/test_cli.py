"""The `dialer` command: every subcommand documents itself, and user errors are one clear line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dialer.cli import build_parser
from dialer.commands import COMMANDS


def _dialer(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dialer.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def test_help_lists_every_subcommand() -> None:
    out = _dialer("--help")
    assert out.returncode == 0
    for name in COMMANDS:
        assert f"    {name}" in out.stdout


@pytest.mark.parametrize("name", COMMANDS)
def test_every_subcommand_has_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([name, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: dialer {name}" in capsys.readouterr().out


def test_serve_refuses_a_schema_that_is_behind_and_says_to_migrate(tmp_path: Path) -> None:
    env = {"DIALER_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/empty.sqlite3"}
    out = _dialer("serve", "--port", "0", env=env)
    assert out.returncode == 2
    assert "run `dialer migrate` first" in out.stderr
    assert "Traceback" not in out.stderr


def test_migrate_brings_an_empty_database_to_the_latest_revision(tmp_path: Path) -> None:
    env = {"DIALER_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/d.sqlite3"}
    assert _dialer("migrate", env=env).returncode == 0
    shown = _dialer("migrate", "--show", env=env).stdout
    current, latest = shown.split()[1], shown.split()[3]
    assert current == latest != "-"
