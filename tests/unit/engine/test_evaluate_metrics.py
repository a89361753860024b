"""Metrics, table-driven: the scrape annotations, the port by name or number, written once and
then left alone; the port may be on any container the profile manages."""

from __future__ import annotations

from typing import Any

import pytest
from tests.support.engine_table import (
    ctr,
    deployment,
    pod,
    profile,
    row_tests,
    run,
)

# The section's rows: the profile's sections, the Deployment's container, the checks, the apply's spec.
ROWS: list[Any] = [
    pytest.param(
        {"metrics": {"port": "metrics"}},
        ctr(),
        ["metrics.annotations.missing"],
        pod(
            annotations={
                "prometheus.io/scrape": "true",
                "prometheus.io/port": "9090",
                "prometheus.io/path": "/metrics",
                "prometheus.io/scheme": "http",
            }
        ),
        id="metrics-port-name-resolved-to-number",
    ),
    pytest.param(
        {"metrics": {"port": 9090, "path": "/prom", "scheme": "https"}},
        ctr(),
        ["metrics.annotations.missing"],
        pod(
            annotations={
                "prometheus.io/scrape": "true",
                "prometheus.io/port": "9090",
                "prometheus.io/path": "/prom",
                "prometheus.io/scheme": "https",
            }
        ),
        id="metrics-port-number",
    ),
]


test_each_section, test_each_section_is_idempotent = row_tests(ROWS)


def test_metrics_port_may_be_on_any_managed_container() -> None:
    body = deployment(ctr("app", ports=(("http", 8080),)), ctr("exporter", ports=(("metrics", 9102),)))
    ev = run(profile(metrics={"port": "metrics"}), body)
    assert ev.apply is not None
    assert ev.apply["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == "9102"
