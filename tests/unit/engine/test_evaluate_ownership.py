"""Ownership: another manager's fields. Report leaves them and names the holder, Force takes
them; a default nobody chose is taken under Report too; another handler is a conflict even
under Force; a field someone took from us since our last apply."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests.support.apiserver import OPERATOR, PROBE_DEFAULTS, fields_v1, paths, server_side_apply, unpaths
from tests.support.engine_table import (
    APP,
    CONTAINER_APP,
    ENDPOINT,
    KUBECTL,
    checks,
    containers,
    converge,
    ctr,
    deployment,
    env,
    leaves,
    make,
    owner,
    profile,
    run,
)

from readiness.engine import DeploymentView, target
from readiness.engine.defaults import LAST_APPLIED

# ---- Another manager's fields: Report leaves them, Force takes them ----

METRICS = {"port": "metrics"}
CONFLICTS: list[Any] = [
    pytest.param(
        {
            "container": ctr(
                readinessProbe={
                    "httpGet": {"path": "/mine", "port": "http", "scheme": "HTTP"},
                    **PROBE_DEFAULTS,
                }
            )
        },
        {"probes": {"port": "http", "readiness": {"path": "/ready"}}, "metrics": METRICS},
        f"{APP}.readinessProbe.httpGet.path",
        f"{APP}.readinessProbe",
        "probes.readiness.mismatch",
        id="probe-path",
    ),
    pytest.param(
        {
            "container": ctr(
                readinessProbe={
                    "httpGet": {"path": "/ready", "port": "http", "scheme": "HTTP"},
                    **PROBE_DEFAULTS,
                    "periodSeconds": 15,
                }
            )
        },
        {"probes": {"port": "http", "readiness": {"path": "/ready", "periodSeconds": 5}}, "metrics": METRICS},
        f"{APP}.readinessProbe.periodSeconds",
        f"{APP}.readinessProbe",
        "probes.readiness.mismatch",
        id="probe-period-not-the-default",
    ),
    pytest.param(
        {"container": ctr(resources={"limits": {"memory": "512Mi"}})},
        {"resources": {"requests": {"cpu": "100m"}, "limits": {"memory": "256Mi"}}, "metrics": METRICS},
        f"{APP}.resources.limits.memory",
        f"{APP}.resources.limits.memory",
        "resources.limits.memory.mismatch",
        id="memory-limit",
    ),
    pytest.param(
        {"container": ctr(env=[{"name": "LOG_LEVEL", "value": "debug"}])},
        {"logging": {"level": "info"}, "metrics": METRICS},
        f"{APP}.env[LOG_LEVEL].value",
        f"{APP}.env",
        "logging.env.mismatch",
        id="declared-env",
    ),
    pytest.param(
        {"container": ctr(env=[{"name": "OTEL_SERVICE_NAME", "value": "mine"}])},
        {"tracing": {"endpoint": ENDPOINT, "serviceName": "checkout"}, "metrics": METRICS},
        f"{APP}.env[OTEL_SERVICE_NAME].value",
        f"{APP}.env",
        "tracing.env.mismatch",
        id="declared-service-name",
    ),
    pytest.param(
        {"annotations": {"prometheus.io/port": "8080"}},
        {"metrics": METRICS, "logging": {"format": "json"}},
        "spec.template.metadata.annotations.prometheus.io/port",
        "spec.template.metadata",
        "metrics.annotations.mismatch",
        id="scrape-annotation",
    ),
    pytest.param(
        {"grace": 10},
        {"shutdown": {"terminationGracePeriodSeconds": 60}, "metrics": METRICS},
        "spec.template.spec.terminationGracePeriodSeconds",
        "spec.template.spec.terminationGracePeriodSeconds",
        "shutdown.grace.too-short",
        id="grace-not-the-default",
    ),
]


@pytest.mark.parametrize(("live", "sections", "field", "fragment", "check"), CONFLICTS)
def test_report_leaves_another_managers_field_alone(
    live: dict[str, Any], sections: dict[str, Any], field: str, fragment: str, check: str
) -> None:
    ev = run(profile(conflictPolicy="Report", **sections), make(live))
    assert [(c.manager, c.field) for c in ev.conflicts] == [(KUBECTL, field)]
    assert check in checks(ev), "still reported as a violation"
    assert ev.force is False
    assert ev.apply is not None, "the rest of the profile is applied"
    assert not {leaf for leaf in leaves(ev.apply["spec"], "spec") if leaf.startswith(fragment)}, (
        "that fragment left out"
    )
    after = server_side_apply(make(live), ev.apply, force=False)  # the apiserver accepts it unforced
    again = run(profile(conflictPolicy="Report", **sections), after)
    assert again.apply is None
    assert again.conflicts == ev.conflicts
    assert not again.compliant


@pytest.mark.parametrize(("live", "sections", "field", "fragment", "check"), CONFLICTS)
def test_force_takes_another_managers_field(
    live: dict[str, Any], sections: dict[str, Any], field: str, fragment: str, check: str
) -> None:
    spec = profile(conflictPolicy="Force", **sections)
    ev = run(spec, make(live))
    assert ev.conflicts == ()
    assert check in checks(ev)
    assert ev.force is True
    assert ev.apply is not None
    assert {leaf for leaf in leaves(ev.apply["spec"], "spec") if leaf.startswith(fragment)}, (
        "that fragment included"
    )
    after = server_side_apply(make(live), ev.apply, force=True)
    again = run(spec, after)
    assert again.apply is None
    assert again.compliant


def test_only_what_a_managers_fields_list_is_theirs() -> None:
    body = deployment(ctr(env=[{"name": "LOG_LEVEL", "value": "debug"}]), creator=None)
    body["metadata"]["managedFields"].insert(
        0,
        {
            "manager": KUBECTL,
            "operation": "Update",
            "fieldsV1": {
                "f:spec": {
                    "f:template": {
                        "f:spec": {
                            "f:containers": {'k:{"name":"app"}': {".": {}, "f:name": {}, "f:image": {}}}
                        }
                    }
                }
            },
        },
    )
    spec = profile(conflictPolicy="Report", logging={"level": "info"})
    ev = run(spec, body)
    assert ev.conflicts == (), "nobody owns env[LOG_LEVEL]: the apiserver lets us set it"
    assert env(containers(ev)["app"]) == {"LOG_LEVEL": "info"}
    assert ev.force is False
    body["metadata"]["managedFields"].append(
        owner("kubectl-edit", *CONTAINER_APP, "f:env", 'k:{"name":"LOG_LEVEL"}', "f:value")
    )
    assert [(c.manager, c.field) for c in run(spec, body).conflicts] == [
        ("kubectl-edit", f"{APP}.env[LOG_LEVEL].value")
    ]


def test_a_conflict_on_a_fragment_we_applied_before_writes_nothing() -> None:
    spec = profile(probes={"port": "http", "readiness": {"path": "/ready", "periodSeconds": 5}})
    _, after = converge(spec, deployment())
    # `kubectl edit` changes the path: the apiserver moves that one field to kubectl-edit.
    path = (*CONTAINER_APP, "f:readinessProbe", "f:httpGet", "f:path")
    after["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"] = "/mine"
    ours = next(m for m in after["metadata"]["managedFields"] if m["manager"] == OPERATOR)
    ours["fieldsV1"] = unpaths(paths(ours["fieldsV1"]) - {path})
    after["metadata"]["managedFields"].append(owner("kubectl-edit", *path))
    ev = run(spec, after)
    assert [(c.manager, c.field) for c in ev.conflicts] == [
        ("kubectl-edit", f"{APP}.readinessProbe.httpGet.path")
    ]
    assert ev.apply is None


# ---- A default nobody chose ----


GRACE_60 = {"shutdown": {"terminationGracePeriodSeconds": 60}}
PROBE_TIMINGS = {
    "probes": {
        "port": "http",
        "readiness": {"path": "/ready", "periodSeconds": 5, "failureThreshold": 5, "timeoutSeconds": 2},
    }
}
DEFAULTED_PROBE = ctr(
    readinessProbe={"httpGet": {"path": "/ready", "port": "http", "scheme": "HTTP"}, **PROBE_DEFAULTS}
)


def last_applied(body: dict[str, Any], pod: dict[str, Any] | str) -> dict[str, Any]:
    """``body`` as client-side apply leaves it: its manifest's pod spec (or raw text) recorded."""
    raw = pod if isinstance(pod, str) else json.dumps({"spec": {"template": {"spec": pod}}})
    body["metadata"].setdefault("annotations", {})[LAST_APPLIED] = raw
    return body


def ssa_created(live: dict[str, Any]) -> dict[str, Any]:
    body = make({**live, "creator": None})
    body["metadata"]["managedFields"] = [
        {
            "manager": "flux",
            "operation": "Apply",
            "apiVersion": "apps/v1",
            "fieldsV1": fields_v1({"spec": body["spec"]}, dots=True),
        }
    ]
    return body


# Who holds the defaulted value, and what Report does with it (docs/ownership-and-gitops.md, "Field ownership").
OWNERSHIP = [
    pytest.param(
        lambda: make({"grace": 30, "creator": "kubectl-create"}),
        GRACE_60,
        ["terminationGracePeriodSeconds"],
        id="create-grace-default",
    ),
    pytest.param(
        lambda: make({"grace": 30, "creator": "helm"}),
        GRACE_60,
        ["terminationGracePeriodSeconds"],
        id="helm-grace-default",
    ),
    pytest.param(
        lambda: last_applied(make({"grace": 30}), {"containers": [{"name": "app", "image": "x"}]}),
        GRACE_60,
        ["terminationGracePeriodSeconds"],
        id="client-side-apply-not-named",
    ),
    pytest.param(
        lambda: make({"container": DEFAULTED_PROBE, "creator": "argocd-controller"}),
        PROBE_TIMINGS,
        [
            "containers[app].readinessProbe.periodSeconds",
            "containers[app].readinessProbe.timeoutSeconds",
            "containers[app].readinessProbe.failureThreshold",
        ],
        id="argocd-probe-timings",
    ),
    pytest.param(
        lambda: last_applied(make({"grace": 30}), {"terminationGracePeriodSeconds": 30}),
        GRACE_60,
        [],
        id="client-side-apply-named-default",
    ),
    pytest.param(
        lambda: last_applied(
            make({"container": DEFAULTED_PROBE}),
            {"containers": [{"name": "app", "readinessProbe": {"periodSeconds": 10}}]},
        ),
        PROBE_TIMINGS,
        [],
        id="client-side-apply-named-probe-timing",
    ),
    pytest.param(lambda: make({"grace": 45, "creator": "helm"}), GRACE_60, [], id="helm-not-a-default"),
    pytest.param(
        lambda: last_applied(make({"grace": 30}), "{not json"), GRACE_60, [], id="unreadable-last-applied"
    ),
    pytest.param(lambda: ssa_created({"grace": 30}), GRACE_60, [], id="server-side-applier-default"),
]


@pytest.mark.parametrize(("body", "sections", "taken"), OWNERSHIP)
def test_report_takes_only_defaults_nobody_chose(
    body: Any, sections: dict[str, Any], taken: list[str]
) -> None:
    """A field an Update-operation manager holds at its API default, which its last-applied
    configuration (if any) does not name, is a default nobody chose: Report takes exactly those
    fields, forced under the object's resourceVersion, and the result is compliant. Any other
    held value is its holder's choice: Conflicted, nothing forced. Force takes either."""
    live = body()
    report = run(profile(conflictPolicy="Report", **sections), live)
    assert sorted(t.field for t in report.taken) == sorted(taken)
    if taken:
        assert (report.conflicts, report.force) == ((), True)
        assert report.apply is not None
        assert report.apply["metadata"]["resourceVersion"] == live["metadata"]["resourceVersion"]
        assert "API default" in target(DeploymentView.from_body(live), report).message
        after = server_side_apply(live, report.apply, force=True)
        again = run(profile(conflictPolicy="Report", **sections), after)
        assert (again.apply, again.compliant) == (None, True)
    else:
        assert report.conflicts
        assert report.force is False
        assert "resourceVersion" not in (report.apply or {}).get("metadata", {})
        force = profile(conflictPolicy="Force", **sections)
        _, after = converge(force, live)
        assert run(force, after).apply is None
    unheld = make({"grace": 30, "container": DEFAULTED_PROBE, "creator": None})
    free = run(profile(conflictPolicy="Report", **sections), unheld)
    assert (free.conflicts, free.force, free.taken) == ((), False, ())
    assert free.apply is not None
    server_side_apply(unheld, free.apply, force=False)


# ---- Another handler ----


@pytest.mark.parametrize("policy", ["Report", "Force"])
@pytest.mark.parametrize(
    ("container", "sections", "field"),
    [
        pytest.param(
            ctr(livenessProbe={"exec": {"command": ["/bin/check"]}, **PROBE_DEFAULTS}),
            {"probes": {"port": "http", "liveness": {"path": "/healthz"}}},
            f"{APP}.livenessProbe.exec",
            id="probe-exec",
        ),
        pytest.param(
            ctr(readinessProbe={"tcpSocket": {"port": "http"}, **PROBE_DEFAULTS}),
            {"probes": {"port": "http", "readiness": {"path": "/ready"}}},
            f"{APP}.readinessProbe.tcpSocket",
            id="probe-tcpSocket",
        ),
        pytest.param(
            ctr(lifecycle={"preStop": {"exec": {"command": ["sleep", "5"]}}}),
            {"shutdown": {"preStopSleepSeconds": 5}},
            f"{APP}.lifecycle.preStop.exec",
            id="prestop-exec",
        ),
    ],
)
def test_another_handler_is_a_conflict_even_under_force(
    policy: str, container: dict[str, Any], sections: dict[str, Any], field: str
) -> None:
    """A probe or hook takes one handler: adding ours would make the pod template invalid."""
    ev = run(profile(conflictPolicy=policy, logging={"format": "json"}, **sections), deployment(container))
    assert [(c.manager, c.field) for c in ev.conflicts] == [(KUBECTL, field)]
    handler_field = field.rsplit(".", 1)[0]
    assert ev.apply is not None
    assert not {leaf for leaf in leaves(ev.apply["spec"], "spec") if leaf.startswith(handler_field)}
    assert {leaf for leaf in leaves(ev.apply["spec"], "spec") if leaf.startswith(f"{APP}.env")}, (
        "the rest applies"
    )
    assert not ev.compliant
