"""The alerts of deploy/monitoring/prometheusrule.yaml, checked and unit-tested with the pinned promtool
(testbed/prometheus, built into the testbed's cache on first use): every alert fires in a case of
deploy/monitoring/alerts-test.yaml and stays silent in another, and every series an expression reads
is one the operator exports.

The operator's per-profile series name the profile's namespace ``profile_namespace``: a scrape sets
``namespace`` to the target's own (a ServiceMonitor does, and so does the usual pod job), which
would rename a metric's ``namespace`` to ``exported_namespace`` (found by the end-to-end tests'
real Prometheus)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase
from tests.support.paths import ROOT

from readiness.observe.metrics import Metrics

MONITORING = ROOT / "deploy" / "monitoring"
PROMETHEUS_RULE = MONITORING / "prometheusrule.yaml"
ALERT_TESTS = MONITORING / "alerts-test.yaml"
# The PrometheusRule's spec as a plain rule file: the name alerts-test.yaml's rule_files gives it.
RULES_FILE = "readiness-operator.rules.yaml"
# Series an expression may read that Prometheus itself writes for every target.
SCRAPE_SERIES = {"up"}


@pytest.fixture(scope="module")
def promtool() -> Path:
    """The pinned promtool; building Prometheus (a few minutes, once per machine) when the cache
    lacks it. No Go toolchain means an error here, never a skip: the alerts must be tested."""
    from readiness_testbed.binaries import ensure_prometheus

    path = ensure_prometheus(log=False)["promtool"]
    assert path.is_file(), path
    return path


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    """A folder with the rules as promtool reads them and a copy of alerts-test.yaml next to them."""
    (tmp_path / RULES_FILE).write_text(yaml.safe_dump(_rule()["spec"], sort_keys=False))
    shutil.copyfile(ALERT_TESTS, tmp_path / ALERT_TESTS.name)
    return tmp_path


def run_promtool(promtool: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(promtool), *args], capture_output=True, text=True, check=False, timeout=120)


def _rule() -> dict[str, Any]:
    rule: dict[str, Any] = yaml.safe_load(PROMETHEUS_RULE.read_text())
    assert rule["kind"] == "PrometheusRule", rule["kind"]
    return rule


def _alerts() -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for group in _rule()["spec"]["groups"] for r in group["rules"] if "alert" in r}


def _alert_tests() -> dict[str, Any]:
    tests: dict[str, Any] = yaml.safe_load(ALERT_TESTS.read_text())
    return tests


def _minutes(duration: str) -> float:
    """A Prometheus duration of the forms the tests use (1m, 90s, 1h30m) in minutes."""
    units = {"s": 1 / 60, "m": 1, "h": 60, "d": 1440}
    parts = re.findall(r"(\d+)([smhd])", duration)
    assert parts, duration
    assert "".join(n + u for n, u in parts) == duration, duration
    return sum(int(n) * units[u] for n, u in parts)


# PromQL words that are not series names.
_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
    "and", "or", "unless", "inf", "nan",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression reads: what is left once strings, label matchers,
    ranges, grouping clauses and function calls are taken out."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][\w:]*)(\s*\()?", text):
        name, call = match.groups()
        if call is None and name.lower() not in _KEYWORDS:
            names.add(name)
    return names


def exported_series() -> set[str]:
    """Every series name the operator's registry exposes (a child of each labelled metric made
    first: they expose nothing until one exists)."""
    metrics = Metrics()
    for metric in vars(metrics).values():
        # prometheus-client has no public accessor for a wrapper's label names.
        if isinstance(metric, MetricWrapperBase) and metric._labelnames:
            metric.labels(*["x"] * len(metric._labelnames))
    return {sample.name for family in metrics.registry.collect() for sample in family.samples}


def test_promtool_checks_the_rules(promtool: Path, rules_dir: Path) -> None:
    result = run_promtool(
        promtool, "check", "rules", "--lint=all", "--lint-fatal", str(rules_dir / RULES_FILE)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_alerts())} rules found" in result.stdout, result.stdout


def test_the_alerts_unit_tests_pass(promtool: Path, rules_dir: Path) -> None:
    assert _alert_tests()["rule_files"] == [RULES_FILE]
    result = run_promtool(promtool, "test", "rules", str(rules_dir / ALERT_TESTS.name))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout, result.stdout


def test_every_alert_is_tested_firing_after_its_for_and_silent() -> None:
    """For each alert: a case where it fires, one evaluation after the same test group expects it
    silent (so `for:` is honoured to the evaluation), and a case where it is expected absent."""
    alerts = _alerts()
    tests = _alert_tests()
    interval = _minutes(tests.get("evaluation_interval", "1m"))
    firing: dict[str, set[str]] = {name: set() for name in alerts}
    silent: dict[str, set[str]] = {name: set() for name in alerts}
    held: dict[str, set[str]] = {name: set() for name in alerts}  # silent, then firing next evaluation
    for group in tests["tests"]:
        cases = group.get("alert_rule_test", [])
        unknown = {c["alertname"] for c in cases} - set(alerts)
        assert not unknown, f"{group['name']}: no such alert {unknown}"
        for case in cases:
            (firing if case.get("exp_alerts") else silent)[case["alertname"]].add(group["name"])
        for case in (c for c in cases if c.get("exp_alerts")):
            name = case["alertname"]
            quiet = {
                _minutes(c["eval_time"]) for c in cases if c["alertname"] == name and not c.get("exp_alerts")
            }
            if _minutes(case["eval_time"]) - interval in quiet:
                held[name].add(group["name"])
            rule = alerts[name]
            for expected in case["exp_alerts"]:
                assert rule["labels"].items() <= expected.get("exp_labels", {}).items(), (group["name"], name)
                assert set(expected.get("exp_annotations", {})) == set(rule["annotations"]), group["name"]
    assert not [n for n, groups in firing.items() if not groups], f"alerts never expected to fire: {firing}"
    assert not [n for n, groups in silent.items() if not groups], f"alerts never expected silent: {silent}"
    assert not [n for n, groups in held.items() if not groups], (
        f"alerts whose firing is not preceded by a silent evaluation (their for:): {held}"
    )
    for name, rule in alerts.items():
        assert _minutes(rule["for"]) > interval, name


def test_the_rules_read_only_series_the_operator_exports() -> None:
    exported = exported_series()
    for name, rule in _alerts().items():
        used = metric_names(rule["expr"])
        assert used, (name, rule["expr"])
        assert used <= exported | SCRAPE_SERIES, (name, used - exported - SCRAPE_SERIES)


def test_metric_names_finds_the_series_of_an_expression() -> None:
    expr = (
        'absent(foo_total) or sum by (namespace) (rate(bar{a="b", c!~"x|y"}[5m] offset 1m)) > 0.1'
        ' and on(job) up{job="j"} == bool 0 unless histogram_quantile(0.9, baz_bucket) > inf'
    )
    assert metric_names(expr) == {"foo_total", "bar", "up", "baz_bucket"}
