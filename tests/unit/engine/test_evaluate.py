"""The engine, table-driven: profile + Deployment -> violations, conflicts, the one apply."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml
from tests.support.apiserver import fields_of, server_side_apply
from tests.support.paths import ROOT

from readiness.engine import DeploymentView, Evaluation, evaluate, target
from readiness.engine.defaults import LAST_APPLIED, TOOK
from readiness.engine.quantity import QuantityError, parse_quantity, same_quantity
from readiness.engine.selector import matches
from readiness.models import ServiceProfileSpec
from readiness.models.profile import LabelSelector

SELECT = {"selector": {"matchLabels": {"app": "api"}}}


def deployment(
    *, env: list[dict[str, Any]] | None = None, managers: list[dict[str, Any]] | None = None, **container: Any
) -> dict[str, Any]:
    c = {
        "name": "app",
        "image": "x",
        "ports": [{"name": "http", "containerPort": 8080}, {"name": "metrics", "containerPort": 9090}],
        **container,
    }
    if env is not None:
        c["env"] = env
    body = {
        "metadata": {"name": "api", "namespace": "shop", "labels": {"app": "api"}, "generation": 1},
        "spec": {
            "replicas": 1,
            "template": {
                "metadata": {"labels": {"app": "api"}},
                "spec": {"terminationGracePeriodSeconds": 30, "containers": [c]},
            },
        },
    }
    body["metadata"]["managedFields"] = (
        managers
        if managers is not None
        else [{"manager": "kubectl-client-side-apply", "operation": "Update", "fieldsV1": fields_of(body)}]
    )
    return body


def spec(**sections: Any) -> ServiceProfileSpec:
    return ServiceProfileSpec.model_validate({**SELECT, **sections})


def applied(body: dict[str, Any], ev: Evaluation) -> dict[str, Any]:
    """What the apiserver holds after the apply ``ev`` asks for (forced if it says so)."""
    assert ev.apply is not None
    return server_side_apply(body, ev.apply, force=ev.force)


@pytest.mark.parametrize(
    ("sections", "checks"),
    [
        ({"probes": {"port": "http", "readiness": {"path": "/ready"}}}, ["probes.readiness.missing"]),
        ({"probes": {"port": 8080, "liveness": {"type": "tcpSocket"}}}, ["probes.liveness.missing"]),
        ({"probes": {"port": "http", "startup": {"type": "grpc"}}}, ["probes.startup.missing"]),
        (
            {"resources": {"requests": {"cpu": "100m"}, "limits": {"memory": "256Mi"}}},
            ["resources.requests.cpu.missing", "resources.limits.memory.missing"],
        ),
        (
            {"shutdown": {"terminationGracePeriodSeconds": 60, "preStopSleepSeconds": 5}},
            ["shutdown.prestop.missing", "shutdown.grace.too-short"],
        ),
        ({"metrics": {"port": "metrics"}}, ["metrics.annotations.missing"]),
        ({"tracing": {"endpoint": "http://c:4317"}}, ["tracing.env.missing"]),
        ({"runtime": {"go": {}}}, ["runtime.go.memory-limit.missing"]),
        ({"logging": {"level": "info"}}, ["logging.env.missing"]),
    ],
)
def test_each_section_reports_its_violation(sections: dict[str, Any], checks: list[str]) -> None:
    ev = evaluate(spec(**sections), DeploymentView.from_body(deployment()))
    assert [v.check for v in ev.violations] == checks


@pytest.mark.parametrize(
    ("sections", "check"),
    [
        ({"probes": {"port": "web", "readiness": {"path": "/ready"}}}, "probes.port.unknown"),
        ({"probes": {"port": 1234, "liveness": {"type": "tcpSocket"}}}, "probes.port.unknown"),
        ({"metrics": {"port": "prom"}}, "metrics.port.unknown"),
        ({"containers": ["sidecar"], "logging": {"level": "info"}}, "containers.unknown"),
    ],
)
def test_what_only_the_operator_can_see_blocks_the_write(sections: dict[str, Any], check: str) -> None:
    ev = evaluate(spec(**sections), DeploymentView.from_body(deployment()))
    assert [p.check for p in ev.problems] == [check]
    assert ev.apply is None


def test_apply_holds_only_declared_fields_and_sorted_env() -> None:
    ev = evaluate(
        spec(logging={"level": "info", "format": "json"}, metrics={"port": "metrics"}),
        DeploymentView.from_body(deployment()),
    )
    assert ev.apply is not None
    template = ev.apply["spec"]["template"]
    assert set(template) == {"metadata", "spec"}
    assert template["metadata"]["annotations"]["prometheus.io/port"] == "9090", "named port resolved"
    (c,) = template["spec"]["containers"]
    assert set(c) == {"name", "env"}
    assert [e["name"] for e in c["env"]] == ["LOG_FORMAT", "LOG_LEVEL"]


def test_runtime_tuning_from_limits() -> None:
    body = deployment(resources={"limits": {"memory": "1Gi", "cpu": "1500m"}})
    ev = evaluate(spec(runtime={"go": {"memoryLimitRatio": 0.5}}), DeploymentView.from_body(body))
    assert ev.apply is not None
    env = {e["name"]: e["value"] for e in ev.apply["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env == {"GOMEMLIMIT": str(2**29), "GOMAXPROCS": "2"}


def test_tracing_appends_resource_attributes_and_defaults_the_service_name() -> None:
    body = deployment(env=[{"name": "OTEL_RESOURCE_ATTRIBUTES", "value": "team=a"}])
    ev = evaluate(
        spec(conflictPolicy="Force", tracing={"endpoint": "http://c:4317", "samplerArg": "0.25"}),
        DeploymentView.from_body(body),
    )
    assert ev.apply is not None
    env = {e["name"]: e for e in ev.apply["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["OTEL_RESOURCE_ATTRIBUTES"]["value"] == (
        "team=a,k8s.namespace.name=shop,k8s.deployment.name=api,k8s.pod.name=$(OTEL_K8S_POD_NAME)"
    )
    assert env["OTEL_K8S_POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["OTEL_SERVICE_NAME"]["value"] == "api"
    assert env["OTEL_TRACES_SAMPLER_ARG"]["value"] == "0.25"
    assert ev.force, "appending to the user's own value takes that one field"
    assert not ev.conflicts
    report = evaluate(spec(tracing={"endpoint": "http://c:4317"}), DeploymentView.from_body(body))
    assert [(c.manager, c.field) for c in report.conflicts] == [
        (
            "kubectl-client-side-apply",
            "spec.template.spec.containers[app].env[OTEL_RESOURCE_ATTRIBUTES].value",
        )
    ], "Report never takes another manager's value, not even to append to it"
    assert (report.force, report.apply) == (False, None)


def test_user_values_win_where_the_profile_is_silent() -> None:
    body = deployment(
        env=[
            {"name": "OTEL_SERVICE_NAME", "value": "mine"},
            {"name": "LOG_LEVEL", "value": "debug"},
            {"name": "GOMEMLIMIT", "value": "100MiB"},
        ],
        resources={"limits": {"memory": "1Gi"}},
    )
    ev = evaluate(
        spec(tracing={"endpoint": "http://c:4317"}, logging={"format": "json"}, runtime={"go": {}}),
        DeploymentView.from_body(body),
    )
    assert ev.apply is not None
    names = {e["name"] for e in ev.apply["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert not names & {"OTEL_SERVICE_NAME", "LOG_LEVEL", "GOMEMLIMIT"}


@pytest.mark.parametrize("policy", ["Report", "Force"])
def test_another_managers_field(policy: str) -> None:
    body = deployment(readinessProbe={"httpGet": {"path": "/mine", "port": "http"}})
    ev = evaluate(
        spec(
            conflictPolicy=policy,
            probes={"port": "http", "readiness": {"path": "/ready"}},
            logging={"level": "info"},
        ),
        DeploymentView.from_body(body),
    )
    assert ev.apply is not None
    c = ev.apply["spec"]["template"]["spec"]["containers"][0]
    if policy == "Report":
        assert [(x.manager, x.field) for x in ev.conflicts] == [
            ("kubectl-client-side-apply", "spec.template.spec.containers[app].readinessProbe.httpGet.path")
        ]
        assert "readinessProbe" not in c, "not taken"
        assert not ev.force
    else:
        assert not ev.conflicts
        assert c["readinessProbe"]["httpGet"]["path"] == "/ready"
        assert ev.force


def test_report_takes_a_default_nobody_chose_and_another_handler_is_always_a_conflict() -> None:
    ev = evaluate(
        spec(shutdown={"terminationGracePeriodSeconds": 60}), DeploymentView.from_body(deployment())
    )
    assert ev.conflicts == (), "a default kubectl recorded without choosing it is free"
    assert [(t.field, t.value) for t in ev.taken] == [("terminationGracePeriodSeconds", 30)]
    assert ev.force
    assert ev.apply is not None
    body = deployment()
    body["metadata"]["annotations"] = {LAST_APPLIED: json.dumps(copy.deepcopy(body))}
    ev = evaluate(spec(shutdown={"terminationGracePeriodSeconds": 60}), DeploymentView.from_body(body))
    assert [(c.manager, c.field) for c in ev.conflicts] == [
        ("kubectl-client-side-apply", "spec.template.spec.terminationGracePeriodSeconds")
    ], "a default the team's last-applied configuration names is its choice: Report leaves it"
    assert not ev.force
    assert ev.apply is None
    body = deployment(livenessProbe={"exec": {"command": ["true"]}})
    ev = evaluate(
        spec(conflictPolicy="Force", probes={"port": "http", "liveness": {"path": "/healthz"}}),
        DeploymentView.from_body(body),
    )
    assert [x.field for x in ev.conflicts] == ["spec.template.spec.containers[app].livenessProbe.exec"]
    assert ev.apply is None, "a pod may have one handler: nothing to write"


def test_examples_are_idempotent() -> None:
    """Apply what the engine asks, evaluate again: no write, no violation (zero needless writes)."""
    profiles = [d for d in yaml.safe_load_all((ROOT / "examples" / "20-profiles.yaml").read_text()) if d]
    deployments = [
        d for d in yaml.safe_load_all((ROOT / "examples" / "10-deployments.yaml").read_text()) if d
    ]
    for profile in profiles:
        s = ServiceProfileSpec.model_validate(profile["spec"])
        for dep in deployments:
            if not matches(s.selector, dep["metadata"]["labels"]):
                continue
            body = copy.deepcopy(dep)
            body["metadata"]["managedFields"] = [
                {"manager": "kubectl-client-side-apply", "operation": "Update", "fieldsV1": fields_of(dep)}
            ]
            first = evaluate(s, DeploymentView.from_body(body))
            assert first.apply is not None
            assert first.violations
            after = applied(body, first)
            second = evaluate(s, DeploymentView.from_body(after))
            assert second.apply is None, dep["metadata"]["name"]
            assert second.compliant, second.violations


def test_a_field_the_profile_dropped_is_released() -> None:
    with_probe = spec(probes={"port": "http", "readiness": {"path": "/ready"}}, logging={"level": "info"})
    body = deployment()
    first = evaluate(with_probe, DeploymentView.from_body(body))
    assert first.apply is not None
    after = applied(body, first)
    ev = evaluate(spec(logging={"level": "info"}), DeploymentView.from_body(after))
    assert ev.apply is not None, "we own readinessProbe and nobody asks for it any more"
    assert "readinessProbe" not in ev.apply["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [("100m", "0.1", True), ("1Gi", "1024Mi", True), (2, "2000m", True), ("128Mi", "128M", False)],
)
def test_quantities(a: str | int, b: str, same: bool) -> None:
    assert same_quantity(a, b) is same


def test_bad_quantity() -> None:
    with pytest.raises(QuantityError):
        parse_quantity("12 cores")


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]}, {"a": "2"}, True),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {"a": "1"}, False),
        ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {}, False),
        ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {}, True),
        ({}, {"a": "1"}, False),
    ],
)
def test_selector(selector: dict[str, Any], labels: dict[str, str], expected: bool) -> None:
    assert matches(LabelSelector.model_validate(selector), labels) is expected


def test_variables_a_container_may_get_from_env_from_are_not_shadowed() -> None:
    from readiness.engine import judge

    body = deployment(
        envFrom=[{"configMapRef": {"name": "app-settings"}}],
        resources={"limits": {"memory": "256Mi", "cpu": "1"}},
    )
    profile = spec(
        tracing={"endpoint": "http://collector:4317"},
        runtime={"go": {"memoryLimitRatio": 0.9}},
        logging={"level": "info"},
    )
    view = DeploymentView.from_body(body)
    ev = evaluate(profile, view)
    assert ev.apply is not None
    env = {e["name"] for e in ev.apply["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "LOG_LEVEL" in env, "a variable the profile declares is set whatever envFrom holds"
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in env
    assert not env & {"OTEL_SERVICE_NAME", "GOMEMLIMIT", "GOMAXPROCS"}, "derived ones would shadow envFrom"
    after = DeploymentView.from_body(applied(body, ev))
    target = judge(after, {"p": profile}).targets["p"]
    assert target.state == "Compliant"
    for var in ("OTEL_SERVICE_NAME", "GOMEMLIMIT", "GOMAXPROCS"):
        assert f"{var} is not set on container app: it may come from its envFrom" in target.message
    declared = spec(tracing={"endpoint": "http://collector:4317", "serviceName": "api"})
    ev = evaluate(declared, view)
    assert ev.apply is not None
    assert {"name": "OTEL_SERVICE_NAME", "value": "api"} in ev.apply["spec"]["template"]["spec"][
        "containers"
    ][0]["env"]


def test_what_an_apply_took_is_recorded_on_the_deployment_and_said_while_held() -> None:
    """Once taken, a default is the operator's in managedFields and nothing else tells it was
    one: the apply records it in an annotation, status reads it while the operator holds the
    field, later applies carry it while they set the field, and drop it once they do not."""
    grace = spec(shutdown={"terminationGracePeriodSeconds": 60})
    first = evaluate(grace, DeploymentView.from_body(deployment()))
    assert first.apply is not None
    record = first.apply["metadata"]["annotations"][TOOK]
    assert record.startswith("terminationGracePeriodSeconds=30 (API default"), record

    after = deployment(managers=[])
    after["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 60
    after["metadata"]["annotations"] = {TOOK: record}
    ours: dict[str, Any] = {"f:spec": {"f:template": {"f:spec": {"f:terminationGracePeriodSeconds": {}}}}}
    theirs = fields_of(
        {"spec": {"template": {"spec": {"containers": after["spec"]["template"]["spec"]["containers"]}}}}
    )
    after["metadata"]["managedFields"] = [
        {"manager": "kubectl-client-side-apply", "operation": "Update", "fieldsV1": theirs},
        {"manager": "readiness-operator", "operation": "Apply", "fieldsV1": ours},
    ]
    view = DeploymentView.from_body(after)
    again = evaluate(grace, view)
    assert (again.apply, again.compliant, again.took) == (None, True, (record,))
    assert target(view, again).message == f"took {record}"

    more = evaluate(spec(shutdown={"terminationGracePeriodSeconds": 60}, logging={"level": "debug"}), view)
    assert more.apply is not None
    assert more.apply["metadata"]["annotations"] == {TOOK: record}, "carried while the field is set"
    dropped = evaluate(spec(logging={"level": "debug"}), view)
    assert dropped.apply is not None
    assert "annotations" not in dropped.apply["metadata"], "the record goes with the field"
