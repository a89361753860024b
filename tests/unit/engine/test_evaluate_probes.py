"""Probes, table-driven: each kind and each way to name its port, written once and then left
alone; a probe of another handler; a probe whose type the profile changes."""

from __future__ import annotations

from typing import Any

import pytest
from tests.support.apiserver import PROBE_DEFAULTS, server_side_apply
from tests.support.engine_table import (
    APP,
    app,
    containers,
    converge,
    ctr,
    deployment,
    pod,
    profile,
    row_tests,
    run,
)

GRPC = ctr(ports=(("grpc", 50051), ("metrics", 9090)))

# The section's rows: the profile's sections, the Deployment's container, the checks, the apply's spec.
ROWS: list[Any] = [
    pytest.param(
        {
            "probes": {
                "port": "http",
                "readiness": {"path": "/ready", "periodSeconds": 5, "failureThreshold": 3},
            }
        },
        ctr(),
        ["probes.readiness.missing"],
        pod(
            app(
                readinessProbe={
                    "httpGet": {"path": "/ready", "port": "http"},
                    "periodSeconds": 5,
                    "failureThreshold": 3,
                }
            )
        ),
        id="probe-httpGet-port-name",
    ),
    pytest.param(
        {"probes": {"port": 8080, "liveness": {"path": "/healthz"}}},
        ctr(),
        ["probes.liveness.missing"],
        pod(app(livenessProbe={"httpGet": {"path": "/healthz", "port": 8080}})),
        id="probe-httpGet-port-number",
    ),
    pytest.param(
        {"probes": {"port": "grpc", "startup": {"type": "grpc", "failureThreshold": 30}}},
        GRPC,
        ["probes.startup.missing"],
        pod(app(startupProbe={"grpc": {"port": 50051}, "failureThreshold": 30})),
        id="probe-grpc-port-name-resolved-to-number",
    ),
    pytest.param(
        {"probes": {"port": 50051, "readiness": {"type": "grpc", "periodSeconds": 5}}},
        GRPC,
        ["probes.readiness.missing"],
        pod(app(readinessProbe={"grpc": {"port": 50051}, "periodSeconds": 5})),
        id="probe-grpc-port-number",
    ),
    pytest.param(
        {
            "probes": {
                "port": "http",
                "liveness": {"type": "tcpSocket", "initialDelaySeconds": 5, "timeoutSeconds": 2},
            }
        },
        ctr(),
        ["probes.liveness.missing"],
        pod(
            app(livenessProbe={"tcpSocket": {"port": "http"}, "initialDelaySeconds": 5, "timeoutSeconds": 2})
        ),
        id="probe-tcpSocket-port-name",
    ),
    pytest.param(
        {"probes": {"port": 8080, "readiness": {"type": "tcpSocket"}}},
        ctr(),
        ["probes.readiness.missing"],
        pod(app(readinessProbe={"tcpSocket": {"port": 8080}})),
        id="probe-tcpSocket-port-number",
    ),
    pytest.param(
        {
            "probes": {
                "port": "http",
                "liveness": {"path": "/healthz", "periodSeconds": 10},
                "readiness": {"path": "/metrics-ready", "port": "metrics"},
                "startup": {"type": "tcpSocket", "port": 9090, "failureThreshold": 30},
            }
        },
        ctr(),
        ["probes.liveness.missing", "probes.readiness.missing", "probes.startup.missing"],
        pod(
            app(
                livenessProbe={"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10},
                readinessProbe={"httpGet": {"path": "/metrics-ready", "port": "metrics"}},
                startupProbe={"tcpSocket": {"port": 9090}, "failureThreshold": 30},
            )
        ),
        id="probes-all-three-with-per-probe-ports",
    ),
]


test_each_section, test_each_section_is_idempotent = row_tests(ROWS)


def test_another_handler_alone_means_no_write() -> None:
    body = deployment(ctr(livenessProbe={"exec": {"command": ["true"]}, **PROBE_DEFAULTS}))
    ev = run(profile(conflictPolicy="Force", probes={"port": "http", "liveness": {"path": "/healthz"}}), body)
    assert ev.apply is None
    assert [c.field for c in ev.conflicts] == [f"{APP}.livenessProbe.exec"]


def test_changing_the_type_of_a_probe_we_own_is_one_apply() -> None:
    _, after = converge(profile(probes={"port": "http", "readiness": {"path": "/ready"}}), deployment())
    grpc = profile(probes={"port": "http", "readiness": {"type": "grpc"}})
    ev = run(grpc, after)
    assert ev.conflicts == ()
    assert containers(ev)["app"]["readinessProbe"] == {"grpc": {"port": 8080}}
    final = server_side_apply(after, ev.apply or {}, force=ev.force)
    assert "httpGet" not in final["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    assert run(grpc, final).apply is None
