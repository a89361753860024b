"""What the engine counts as a difference, across the sections: each violation names the
Deployment's field, a partly matching field is a mismatch, and what is equal as the API means
it (quantities, defaults) is not written."""

from __future__ import annotations

from typing import Any

import pytest
from tests.support.apiserver import PROBE_DEFAULTS
from tests.support.engine_table import APP, ENDPOINT, ctr, deployment, profile, run

# ---- A violation, its field and its kind ----


@pytest.mark.parametrize(
    ("check", "field"),
    [
        ("probes.readiness.missing", f"{APP}.readinessProbe"),
        ("resources.limits.memory.missing", f"{APP}.resources.limits.memory"),
        ("shutdown.grace.too-short", "spec.template.spec.terminationGracePeriodSeconds"),
        ("shutdown.prestop.missing", f"{APP}.lifecycle.preStop"),
        ("metrics.annotations.missing", "spec.template.metadata.annotations"),
        ("tracing.env.missing", f"{APP}.env"),
        ("logging.env.missing", f"{APP}.env"),
    ],
)
def test_violations_name_the_deployment_field(check: str, field: str) -> None:
    spec = profile(
        probes={"port": "http", "readiness": {"path": "/ready"}},
        resources={"limits": {"memory": "256Mi"}},
        shutdown={"terminationGracePeriodSeconds": 60, "preStopSleepSeconds": 5},
        metrics={"port": "metrics"},
        tracing={"endpoint": ENDPOINT},
        logging={"level": "info"},
    )
    by_check = {v.check: v for v in run(spec, deployment()).violations}
    assert by_check[check].field == field


@pytest.mark.parametrize(
    ("container", "sections", "expected"),
    [
        (
            ctr(readinessProbe={"httpGet": {"path": "/old", "port": "http"}, **PROBE_DEFAULTS}),
            {"probes": {"port": "http", "readiness": {"path": "/ready"}}},
            (
                "probes.readiness.mismatch",
                "differs httpGet.path; the profile wants readiness probe httpGet on port http path /ready",
            ),
        ),
        (
            ctr(resources={"limits": {"memory": "128Mi"}}),
            {"resources": {"limits": {"memory": "256Mi"}}},
            ("resources.limits.memory.mismatch", "differs memory; the profile wants limits.memory=256Mi"),
        ),
        (
            ctr(env=[{"name": "LOG_FORMAT", "value": "json"}]),
            {"logging": {"format": "json", "level": "info"}},
            ("logging.env.mismatch", "missing LOG_LEVEL; the profile wants LOG_FORMAT=json LOG_LEVEL=info"),
        ),
        (
            ctr(env=[{"name": "LOG_FORMAT", "value": "text"}]),
            {"logging": {"format": "json"}},
            ("logging.env.mismatch", "differs LOG_FORMAT; the profile wants LOG_FORMAT=json"),
        ),
    ],
)
def test_a_partly_matching_field_is_a_mismatch(
    container: dict[str, Any], sections: dict[str, Any], expected: tuple[str, str]
) -> None:
    ev = run(profile(conflictPolicy="Force", **sections), deployment(container))
    assert [(v.check, v.message) for v in ev.violations] == [expected]


@pytest.mark.parametrize(
    ("container", "sections"),
    [
        (
            ctr(
                readinessProbe={
                    "httpGet": {"path": "/ready", "port": "http", "scheme": "HTTP"},
                    **PROBE_DEFAULTS,
                }
            ),
            {"probes": {"port": "http", "readiness": {"path": "/ready"}}},
        ),
        (
            ctr(resources={"requests": {"cpu": "100m"}, "limits": {"memory": "1Gi"}}),
            {"resources": {"requests": {"cpu": "0.1"}, "limits": {"memory": "1024Mi"}}},
        ),
        (ctr(resources={"limits": {"cpu": "2"}}), {"resources": {"limits": {"cpu": 2}}}),
        (ctr(resources={"limits": {"cpu": "500m"}}), {"resources": {"limits": {"cpu": "0.5"}}}),
        (
            ctr(env=[{"name": "LOG_LEVEL", "value": "info"}, {"name": "LOG_FORMAT", "value": "json"}]),
            {"logging": {"format": "json", "level": "info"}},
        ),
        (ctr(lifecycle={"preStop": {"sleep": {"seconds": 5}}}), {"shutdown": {"preStopSleepSeconds": 5}}),
    ],
)
def test_what_already_matches_is_not_written(container: dict[str, Any], sections: dict[str, Any]) -> None:
    """Equal as the API means it (quantities, defaults), even owned by another manager: nothing to do."""
    ev = run(profile(**sections), deployment(container))
    assert ev.apply is None
    assert ev.compliant
    assert ev.violations == ()
