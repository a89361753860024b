"""Release: fields we own and the profile no longer declares are released in one apply, and
then nothing more; fields another manager applied are not ours to release."""

from __future__ import annotations

from typing import Any

import pytest
from tests.support.apiserver import server_side_apply
from tests.support.engine_table import APP, ENDPOINT, NS, converge, ctr, deployment, env, leaves, profile, run

FULL = {
    "conflictPolicy": "Force",  # the grace period is kubectl's (a default it recorded)
    "probes": {"port": "http", "readiness": {"path": "/ready", "periodSeconds": 5}},
    "resources": {"requests": {"cpu": "100m"}, "limits": {"memory": "256Mi"}},
    "shutdown": {"terminationGracePeriodSeconds": 45, "preStopSleepSeconds": 5},
    "metrics": {"port": "metrics"},
    "tracing": {"endpoint": ENDPOINT},
    "runtime": {"go": {}},
    "logging": {"format": "json", "level": "info"},
}


@pytest.mark.parametrize(
    ("dropped", "gone"),
    [
        pytest.param({"probes": None}, f"{APP}.readinessProbe", id="probes"),
        pytest.param(
            {"resources": {"requests": {"cpu": "100m"}}, "runtime": None},
            f"{APP}.resources.limits.memory",
            id="memory-limit",
        ),
        pytest.param({"shutdown": {"terminationGracePeriodSeconds": 45}}, f"{APP}.lifecycle", id="prestop"),
        pytest.param({"metrics": None}, "spec.template.metadata.annotations", id="metrics"),
        pytest.param({"tracing": None}, f"{APP}.env[OTEL_EXPORTER_OTLP_ENDPOINT]", id="tracing"),
        pytest.param({"logging": {"format": "json"}}, f"{APP}.env[LOG_LEVEL]", id="log-level"),
        pytest.param({"runtime": None}, f"{APP}.env[GOMEMLIMIT]", id="runtime"),
    ],
)
def test_a_field_the_profile_no_longer_declares_is_released(dropped: dict[str, Any], gone: str) -> None:
    body = deployment(ctr(resources={"requests": {"cpu": "100m"}}))
    _, after = converge(profile(**FULL), body)
    assert run(profile(**FULL), after).apply is None
    smaller = profile(**{k: v for k, v in {**FULL, **dropped}.items() if v is not None})
    ev = run(smaller, after)
    assert ev.apply is not None, "we own a field nobody asks for any more: one apply drops it"
    assert ev.changes == ("released",)
    assert ev.compliant, "nothing is wrong with the Deployment"
    assert not {leaf for leaf in leaves(ev.apply["spec"], "spec") if leaf.startswith(gone)}
    released = server_side_apply(after, ev.apply, force=ev.force)
    assert not {leaf for leaf in leaves(released["spec"], "spec") if leaf.startswith(gone)}
    assert run(smaller, released).apply is None, "and then nothing more"


def test_dropping_every_section_releases_everything() -> None:
    body = deployment()
    _, after = converge(profile(**FULL), body)
    ev = run(profile(), after)
    assert ev.apply == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "api", "namespace": NS},
    }
    released = server_side_apply(after, ev.apply, force=False)
    assert (
        released["spec"]["template"]["spec"]["containers"] == body["spec"]["template"]["spec"]["containers"]
    )
    assert run(profile(), released).apply is None


def test_a_profile_change_is_one_apply() -> None:
    _, after = converge(profile(**FULL), deployment())
    changed = profile(
        **{
            **FULL,
            "probes": {"port": "http", "readiness": {"path": "/ready", "periodSeconds": 7}},
            "logging": None,
        }
    )
    ev = run(changed, after)
    assert set(ev.changes) == {"probes.readiness"}
    final = server_side_apply(after, ev.apply or {}, force=ev.force)
    assert final["metadata"]["generation"] == after["metadata"]["generation"] + 1
    (live,) = final["spec"]["template"]["spec"]["containers"]
    assert live["readinessProbe"]["periodSeconds"] == 7
    assert "LOG_LEVEL" not in env(live)
    assert "LOG_FORMAT" not in env(live)
    assert run(changed, final).apply is None


def test_fields_another_manager_applied_are_not_ours_to_release() -> None:
    body = deployment(ctr(env=[{"name": "LOG_LEVEL", "value": "info"}]))
    body["metadata"]["managedFields"].append(
        {
            "manager": "helm",
            "operation": "Apply",
            "fieldsV1": {
                "f:spec": {
                    "f:template": {
                        "f:spec": {
                            "f:containers": {
                                'k:{"name":"app"}': {
                                    ".": {},
                                    "f:name": {},
                                    "f:env": {
                                        'k:{"name":"LOG_LEVEL"}': {".": {}, "f:name": {}, "f:value": {}}
                                    },
                                }
                            }
                        }
                    }
                }
            },
        }
    )
    assert run(profile(metrics={"port": "metrics"}), body).changes == ("metrics.annotations",)
    assert run(profile(), body).apply is None
