import argparse
import json
from pathlib import Path

import pytest

from dialer.commands import simulate
from dialer.errors import UserError

TINY = """
shift_hours = 0.25
[agents]
count = 4
[contact]
rate = 0.3
"""


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    simulate.register(parser.add_subparsers())
    return parser.parse_args(["simulate", *argv])


def test_simulate_prints_the_report_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = tmp_path / "tiny.toml"
    scenario.write_text(TINY)
    out = tmp_path / "out.json"
    args = parse([str(scenario), "--policy", "power-2", "--seed", "3", "--json", str(out)])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "| tiny | power-2 | 4 | 0.3 | 3 |" in printed
    doc = json.loads(out.read_text())
    assert doc["results"][0]["policy"] == "power-2"
    assert set(doc["results"][0]) >= {"occupancy", "abandon_rate", "dials_per_agent_hour"}


def test_simulate_names_a_bad_scenario_key(tmp_path: Path) -> None:
    scenario = tmp_path / "bad.toml"
    scenario.write_text("[agents]\ncount = 'many'\n")
    args = parse([str(scenario)])
    with pytest.raises(UserError, match=r"agents\.count"):
        args.func(args)
