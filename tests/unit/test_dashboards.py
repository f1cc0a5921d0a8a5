"""Grafana dashboards and Prometheus rules: every PromQL expression parses (promtool) and names
only metrics the service exports; dashboards are well-formed; the alerts fire as specified."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from dialer import metrics
from tests.fixtures.postgres import unavailable

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "deploy/grafana/dashboards").glob("*.json"))
PROVISIONING = ROOT / "deploy/grafana/provisioning"
PROMETHEUS = ROOT / "deploy/prometheus"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
# Series Prometheus writes itself for every scrape target, not the service.
PROMETHEUS_OWN = frozenset({"up"})
# Grafana's own variables, replaced by a plausible value before promtool parses the expression.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "6h"}

PROMQL_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or"}
    | {"unless", "offset", "atan2", "inf", "nan"}
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_BRACES = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENT = re.compile(r"(?<![\w:.$])([A-Za-z_:][\w:]*)(\s*\()?")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, keywords and labels left out)."""
    text = _STRING.sub('""', expr)
    text = _BRACES.sub("", text)
    text = _RANGE.sub("", text)
    text = _GROUPING.sub("", text)
    names = set()
    for match in _IDENT.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in PROMQL_KEYWORDS:
            continue  # a function or aggregation, or an operator keyword
        names.add(name)
    return names


def test_metric_names_skip_functions_labels_and_grouping() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (campaign, le) (rate(dialer_a_bucket{state="x y"}[5m])))'
        ' > 1.5 unless on (campaign) max_over_time(other_metric[$__range]) and up{job="d"} == 0'
    )
    assert metric_names(expr) == {"dialer_a_bucket", "other_metric", "up"}


def _dashboard(path: Path) -> dict[str, object]:
    return dict(json.loads(path.read_text()))


def _panels(dashboard: dict[str, object]) -> Iterator[dict[str, object]]:
    for panel in dashboard["panels"]:  # type: ignore[attr-defined]
        yield panel
        yield from panel.get("panels", [])  # panels inside a collapsed row


def dashboard_exprs() -> Iterator[tuple[str, str]]:
    """(where, expression) for every query in the dashboards, panels and template variables."""
    for path in DASHBOARDS:
        dashboard = _dashboard(path)
        for panel in _panels(dashboard):
            for target in panel.get("targets", []):  # type: ignore[attr-defined]
                yield f"{path.name} panel {panel['title']!r} {target['refId']}", target["expr"]
        for var in dashboard["templating"]["list"]:  # type: ignore[index]
            if var["type"] == "query":
                query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
                # label_values(metric, label): the metric is what must exist.
                inner = re.fullmatch(r"label_values\((.*),\s*\w+\)", query)
                yield f"{path.name} variable {var['name']}", inner.group(1) if inner else query


def rule_exprs() -> Iterator[tuple[str, str]]:
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                yield f"{path.name} {rule.get('alert') or rule.get('record')}", rule["expr"]


def test_there_are_four_dashboards_and_alert_rules() -> None:
    assert {p.name for p in DASHBOARDS} == {
        "campaign-overview.json",
        "pacing.json",
        "agents.json",
        "telephony-health.json",
    }
    alerts = {where.split(" ", 1)[1] for where, _ in rule_exprs()}
    assert {
        "DialerAbandonRateNearCap",
        "DialerAmiDown",
        "DialerNoAgentReady",
        "DialerDatabaseErrors",
    } <= alerts


@pytest.mark.parametrize(
    ("where", "expr"), [*dashboard_exprs(), *rule_exprs()], ids=lambda v: str(v)[:60]
)
def test_every_expression_names_only_exported_metrics(where: str, expr: str) -> None:
    names = metric_names(expr)
    assert names, f"{where}: no metric found in {expr!r}"
    unknown = names - metrics.exported_names() - PROMETHEUS_OWN
    assert not unknown, f"{where}: {sorted(unknown)} not exported by dialer/metrics.py"


def test_every_exported_metric_is_on_some_dashboard() -> None:
    shown = {name for _, expr in dashboard_exprs() for name in metric_names(expr)}
    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum")}
    missing = {
        family.name
        for metric in metrics.ALL_METRICS
        for family in metric.describe()
        if not {family.name + s for s in suffixes[family.type]} & shown
    }
    assert not missing, f"metrics no dashboard shows: {sorted(missing)}"


# --- promtool -----------------------------------------------------------------------------------
def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        unavailable("promtool not installed: run scripts/install-promtool")
    return subprocess.run(
        [str(binary), *args], capture_output=True, text=True, timeout=120, cwd=ROOT
    )


def test_promtool_accepts_the_alert_rules() -> None:
    out = _promtool("check", "rules", *map(str, RULE_FILES))
    assert out.returncode == 0, out.stdout + out.stderr


def test_promtool_accepts_the_scrape_config() -> None:
    out = _promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 rule files found" in out.stdout


def test_alerts_fire_as_their_unit_tests_say() -> None:
    out = _promtool("test", "rules", str(PROMETHEUS / "tests/dialer_test.yml"))
    assert out.returncode == 0, out.stdout + out.stderr


def test_promtool_parses_every_dashboard_expression(tmp_path: Path) -> None:
    # promtool checks PromQL only inside rule files: each dashboard query becomes a recording rule.
    rules = []
    for i, (_, expr) in enumerate(dashboard_exprs()):
        text = expr
        for var, sample in GRAFANA_VARIABLES.items():
            text = text.replace(var, sample)
        text = re.sub(r"\$\w+", ".*", text)  # dashboard variables ($campaign) in =~ matchers
        rules.append({"record": f"dashboard:query_{i}:check", "expr": text})
    path = tmp_path / "dashboards.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    out = _promtool("check", "rules", str(path))
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(rules)} rules found" in out.stdout


# --- dashboard structure (what Grafana's dashboard schema requires, and what we rely on) --------
GRAFANA_PANEL_TYPES = frozenset(
    {"timeseries", "stat", "gauge", "bargauge", "table", "piechart", "state-timeline", "text"}
    | {"barchart", "heatmap", "row", "status-history", "logs"}
)


def _datasource_uid() -> str:
    provisioned = yaml.safe_load((PROVISIONING / "datasources/prometheus.yml").read_text())
    assert provisioned["apiVersion"] == 1
    (source,) = provisioned["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    return str(source["uid"])


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_has_the_fields_grafana_requires(path: Path) -> None:
    d = _dashboard(path)
    assert isinstance(d["uid"], str) and 0 < len(d["uid"]) <= 40
    assert isinstance(d["title"], str) and d["title"]
    assert isinstance(d["schemaVersion"], int) and d["schemaVersion"] >= 36
    assert isinstance(d["panels"], list) and d["panels"]
    assert isinstance(d["templating"]["list"], list)  # type: ignore[index]
    assert set(d["time"]) == {"from", "to"}  # type: ignore[arg-type]
    assert "id" not in d or d["id"] is None  # provisioned dashboards get their id from Grafana


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_panels_are_well_formed(path: Path) -> None:
    d = _dashboard(path)
    uid = _datasource_uid()
    ids = [p["id"] for p in _panels(d)]
    assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
    cells: set[tuple[int, int]] = set()
    for panel in _panels(d):
        where = f"{path.name} panel {panel['title']!r}"
        assert panel["type"] in GRAFANA_PANEL_TYPES, where
        pos = panel["gridPos"]
        assert all(isinstance(pos[k], int) and pos[k] >= 0 for k in "xywh"), where  # type: ignore[index]
        assert pos["x"] + pos["w"] <= 24 and pos["w"] > 0 and pos["h"] > 0, where  # type: ignore[index]
        covered = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])  # type: ignore[index]
            for y in range(pos["y"], pos["y"] + pos["h"])  # type: ignore[index]
        }
        assert not covered & cells, f"{where} overlaps another panel"
        cells |= covered
        assert panel["datasource"] == {"type": "prometheus", "uid": uid}, where
        targets = panel["targets"]
        assert targets, f"{where}: no query"
        ref_ids = [t["refId"] for t in targets]  # type: ignore[attr-defined]
        assert len(ref_ids) == len(set(ref_ids)), f"{where}: duplicate refId"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_variables_used_are_defined(path: Path) -> None:
    d = _dashboard(path)
    defined = {v["name"] for v in d["templating"]["list"]}  # type: ignore[index]
    used = {
        name
        for _, expr in dashboard_exprs()
        for name in re.findall(r"\$(\w+)", expr)
        if not name.startswith("__")
    }
    file_used = {
        name
        for where, expr in dashboard_exprs()
        if where.startswith(path.name)
        for name in re.findall(r"\$(\w+)", expr)
        if not name.startswith("__")
    }
    assert used  # the dashboards do filter by variables
    assert file_used <= defined, f"{path.name}: undefined variables {file_used - defined}"


def test_dashboard_uids_are_unique() -> None:
    uids = [_dashboard(p)["uid"] for p in DASHBOARDS]
    assert len(uids) == len(set(uids))


def test_dashboard_provider_loads_the_dashboards_folder() -> None:
    provider = yaml.safe_load((PROVISIONING / "dashboards/dialer.yml").read_text())
    assert provider["apiVersion"] == 1
    (entry,) = provider["providers"]
    assert entry["type"] == "file"
    # deploy/docker-compose.yml mounts deploy/grafana/dashboards here.
    assert entry["options"]["path"] == "/var/lib/grafana/dashboards"
