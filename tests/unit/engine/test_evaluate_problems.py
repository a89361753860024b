"""What only the operator can see blocks the write: a port or a container the profile names
that the Deployment lacks is a problem, said once, and nothing is written."""

from __future__ import annotations

from typing import Any

import pytest
from tests.support.engine_table import ctr, deployment, profile, run

# ---- Invalid references ----


@pytest.mark.parametrize(
    ("sections", "check", "mentions"),
    [
        pytest.param(
            {"probes": {"port": "web", "readiness": {"path": "/ready"}}},
            "probes.port.unknown",
            "'web'",
            id="probe-port-name",
        ),
        pytest.param(
            {"probes": {"port": 1234, "liveness": {"type": "tcpSocket"}}},
            "probes.port.unknown",
            "1234",
            id="probe-port-number",
        ),
        pytest.param(
            {"probes": {"port": "http", "startup": {"type": "grpc", "port": "grpc"}}},
            "probes.port.unknown",
            "'grpc'",
            id="probe-own-port",
        ),
        pytest.param({"metrics": {"port": "prom"}}, "metrics.port.unknown", "'prom'", id="metrics-port-name"),
        pytest.param({"metrics": {"port": 9999}}, "metrics.port.unknown", "9999", id="metrics-port-number"),
        pytest.param({"containers": ["sidecar"]}, "containers.unknown", "sidecar", id="container"),
    ],
)
def test_an_invalid_reference_is_a_problem_and_nothing_is_written(
    sections: dict[str, Any], check: str, mentions: str
) -> None:
    spec = profile(logging={"format": "json"}, shutdown={"terminationGracePeriodSeconds": 60}, **sections)
    ev = run(spec, deployment())
    assert [p.check for p in ev.problems] == [check]
    assert mentions in ev.problems[0].message
    assert ev.apply is None, "the Deployment is not touched, not even for the valid sections"
    assert not ev.compliant
    assert ev.changes == ()


def test_a_probe_port_must_exist_on_every_managed_container() -> None:
    body = deployment(ctr("app"), ctr("envoy", ports=(("admin", 9901),)))
    ev = run(profile(probes={"port": "http", "readiness": {"path": "/ready"}}), body)
    assert [(p.check, p.field) for p in ev.problems] == [
        ("probes.port.unknown", "spec.template.spec.containers[envoy].ports")
    ]
    assert ev.apply is None


def test_a_problem_is_said_once_not_once_per_probe() -> None:
    probes = {"port": "healthz", **{kind: {"path": "/x"} for kind in ("liveness", "readiness", "startup")}}
    ev = run(profile(probes=probes), deployment())
    assert [p.check for p in ev.problems] == ["probes.port.unknown"]
    assert ev.apply is None
