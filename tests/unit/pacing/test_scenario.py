import tomllib
from pathlib import Path

import pytest

from pacing.scenario import Scenario, from_dict

EXAMPLE = Path(__file__).parents[3] / "benchmarks" / "scenarios" / "standard.toml"


def test_the_example_scenario_is_the_standard_scenario() -> None:
    parsed = from_dict(tomllib.loads(EXAMPLE.read_text()))
    assert parsed == Scenario()


def test_an_empty_document_gives_the_defaults() -> None:
    assert from_dict({}) == Scenario()


def test_unknown_keys_are_named() -> None:
    with pytest.raises(ValueError, match="agentz"):
        from_dict({"agentz": {"count": 3}})


def test_a_bad_distribution_kind_says_which_kinds_exist() -> None:
    with pytest.raises(ValueError, match="uniform, lognormal"):
        from_dict({"timing": {"talk": {"kind": "gamma", "mean": 3}}})


def test_contact_curve_is_interpolated_by_hour() -> None:
    sc = from_dict({"contact": {"curve": [[0.0, 0.25], [8.0, 0.08]]}})
    assert sc.contact_rate(4.0) == pytest.approx(0.165)
    assert sc.contact_rate(9.0) == pytest.approx(0.08)


def test_abandon_rule_must_be_us_or_uk() -> None:
    with pytest.raises(ValueError, match="calendar-day"):
        from_dict({"rules": {"abandon_rule": "weekly"}})
