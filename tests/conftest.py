"""Test-wide plugins (real Postgres, real Asterisk) and the CI rule: nothing may be skipped.

With CI=true a skipped test turns the whole run red, so a missing dependency can never pass quietly.
"""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["tests.fixtures.postgres", "tests.fixtures.asterisk"]

_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes") and _skipped:
        print(f"\nCI=true: {len(_skipped)} test(s) skipped, which CI does not allow:")
        for nodeid in _skipped:
            print(f"  {nodeid}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
