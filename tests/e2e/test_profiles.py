"""End to end: the real operator, the real control plane, kubectl as the client."""

from __future__ import annotations

import json
import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.e2e.support import (
    MAX_CORRECTIONS,
    PROBES,
    RESYNC_SECONDS,
    Operator,
    container,
    deployment,
    events,
    profile,
    replicasets,
    simple_deployment,
    simple_profile,
    target,
    target_in,
    wait_for,
)
from tests.support.kube import Kube
from tests.support.paths import ROOT

pytestmark = pytest.mark.e2e


def _docs(path: Path, namespace: str) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    for doc in docs:
        doc["metadata"]["namespace"] = namespace
    return docs


def _apply(kube: Kube, docs: list[dict[str, Any]], *extra: str) -> None:
    kube.apply(yaml.safe_dump_all(docs), *extra)


def condition(sp: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in sp.get("status", {}).get("conditions", []) if c["type"] == type_), {})


def test_examples_reach_compliance_with_one_rollout_each(
    kube: Kube, namespace: str, operator: Operator
) -> None:
    deployments = _docs(ROOT / "examples" / "10-deployments.yaml", namespace)
    _apply(kube, deployments)
    for dep in deployments:
        kube.run(
            "rollout", "status", "-n", namespace, f"deployment/{dep['metadata']['name']}", "--timeout=90s"
        )
    _apply(kube, _docs(ROOT / "examples" / "20-profiles.yaml", namespace))

    kube.run(
        "wait",
        "-n",
        namespace,
        "--for=condition=Compliant",
        "serviceprofile/checkout",
        "serviceprofile/payments",
        "--timeout=90s",
    )
    for dep in deployments:
        name = dep["metadata"]["name"]
        kube.run("rollout", "status", "-n", namespace, f"deployment/{name}", "--timeout=90s")
        live = deployment(kube, namespace, name)
        assert live["metadata"]["generation"] == 2, f"{name}: exactly one write that changed the template"
        assert len(replicasets(kube, namespace, name)) == 2, f"{name}: exactly one new ReplicaSet"
        assert live["status"]["readyReplicas"] == dep["spec"]["replicas"]

    # The status follows the rollouts within about a second (one at a time: a wave of 25% of 2).
    checkout = wait_for(
        lambda: (
            (sp := profile(kube, namespace, "checkout"))["status"]["summary"]
            == {"matched": 2, "compliant": 2, "score": 100}
            and sp
        ),
        what=f"checkout's summary with both rollouts complete ({profile(kube, namespace, 'checkout')['status']})",
    )
    assert condition(checkout, "Ready")["status"] == "True"
    assert condition(checkout, "Conflicted")["status"] == "False"
    api = container(deployment(kube, namespace, "checkout-api"))
    assert api["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http", "scheme": "HTTP"}
    assert api["resources"] == {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}}
    assert api["lifecycle"]["preStop"] == {"sleep": {"seconds": 5}}
    env = {e["name"]: e.get("value") for e in api["env"]}
    assert env["OTEL_RESOURCE_ATTRIBUTES"] == (
        f"team=checkout,k8s.namespace.name={namespace},k8s.deployment.name=checkout-api,"
        "k8s.pod.name=$(OTEL_K8S_POD_NAME)"
    ), "appended to the team's own value"
    assert env["OTEL_SERVICE_NAME"] == "checkout"
    assert env["GOMEMLIMIT"] == str(int(256 * 2**20 * 0.9))
    template = deployment(kube, namespace, "checkout-api")["spec"]["template"]
    assert template["spec"]["terminationGracePeriodSeconds"] == 30
    assert template["metadata"]["annotations"]["prometheus.io/port"] == "9090"
    payments = container(deployment(kube, namespace, "payments"))
    assert payments["livenessProbe"]["grpc"]["port"] == 50051
    assert {e["name"]: e.get("value") for e in payments["env"]}["LOG_LEVEL"] == "debug", "user value kept"
    assert "env" not in container(deployment(kube, namespace, "payments"), "envoy"), (
        "unmanaged container untouched"
    )
    rollouts = {t["name"]: t["rollout"] for t in checkout["status"]["targets"]}
    assert set(rollouts) == {"checkout-api", "checkout-worker"}

    # A second pass and a resync write nothing: no generation, no resourceVersion change.
    before = {
        d["metadata"]["name"]: deployment(kube, namespace, d["metadata"]["name"])["metadata"]
        for d in deployments
    }
    kube.run("annotate", "-n", namespace, "serviceprofile/checkout", "serviceprofile/payments", "touched=yes")
    time.sleep(RESYNC_SECONDS * 2 + 1)
    for name, meta in before.items():
        now = deployment(kube, namespace, name)["metadata"]
        assert (now["generation"], now["resourceVersion"]) == (meta["generation"], meta["resourceVersion"]), (
            name
        )

    def applied() -> list[str]:
        return sorted(e["involvedObject"]["name"] for e in events(kube, namespace, "reason=ProfileApplied"))

    expected = sorted(d["metadata"]["name"] for d in deployments)
    wait_for(lambda: applied() == expected, what="one ProfileApplied event per Deployment")  # after the work


def test_drift_is_corrected(kube: Kube, namespace: str, operator: Operator) -> None:
    _apply(kube, [simple_deployment(namespace), simple_profile(namespace, probes=PROBES)])
    kube.run("wait", "-n", namespace, "--for=condition=Compliant", "serviceprofile/api", "--timeout=60s")
    generation = deployment(kube, namespace, "api")["metadata"]["generation"]
    kube.run(
        "patch",
        "-n",
        namespace,
        "deployment/api",
        "--type=json",
        "-p",
        '[{"op": "remove", "path": "/spec/template/spec/containers/0/readinessProbe"}]',
    )
    restored = wait_for(
        lambda: container(deployment(kube, namespace, "api")).get("readinessProbe"), what="probe restored"
    )
    assert restored["httpGet"]["path"] == "/ready"
    assert deployment(kube, namespace, "api")["metadata"]["generation"] == generation + 2


def test_conflict_is_reported_not_taken_then_force_takes_it(
    kube: Kube, namespace: str, operator: Operator
) -> None:
    dep = simple_deployment(namespace)
    dep["spec"]["template"]["spec"]["containers"][0]["readinessProbe"] = {
        "httpGet": {"path": "/custom", "port": "http"},
        "periodSeconds": 5,
    }
    _apply(kube, [dep])
    resources = {"requests": {"cpu": "50m"}}
    _apply(kube, [simple_profile(namespace, probes=PROBES, resources=resources)])

    t = wait_for(partial(target_in, kube, namespace, "api", "api", "Conflicted"), what="target Conflicted")
    assert {
        "manager": "kubectl-client-side-apply",
        "field": "spec.template.spec.containers[app].readinessProbe.httpGet.path",
    } in t["conflicts"]
    assert condition(profile(kube, namespace, "api"), "Conflicted")["status"] == "True"
    live = container(deployment(kube, namespace, "api"))
    assert live["readinessProbe"]["httpGet"]["path"] == "/custom", "not taken"
    assert live["resources"]["requests"]["cpu"] == "50m", "the fields nobody else owns are still applied"
    # Events go out after the work, so the status can say Conflicted a moment before the Event is there.
    wait_for(
        lambda: events(kube, namespace, "type=Warning,reason=Conflicted"),
        what="a Warning event: a person is told",
    )

    kube.run(
        "patch",
        "-n",
        namespace,
        "serviceprofile/api",
        "--type=merge",
        "-p",
        '{"spec":{"conflictPolicy":"Force"}}',
    )
    kube.run("wait", "-n", namespace, "--for=condition=Compliant", "serviceprofile/api", "--timeout=60s")
    assert container(deployment(kube, namespace, "api"))["readinessProbe"]["httpGet"]["path"] == "/ready"


def test_audit_writes_nothing_and_reports_the_same_violations(
    kube: Kube, namespace: str, operator: Operator
) -> None:
    _apply(
        kube,
        [
            simple_deployment(namespace),
            simple_profile(
                namespace,
                mode="Audit",
                probes=PROBES,
                resources={"limits": {"memory": "64Mi"}},
            ),
        ],
    )

    def audited() -> dict[str, Any] | None:
        t = target(profile(kube, namespace, "api"), "api")
        return t if t.get("violations") else None

    t = wait_for(audited, what="audit report")
    checks = sorted(v["check"] for v in t["violations"])
    assert checks == ["probes.readiness.missing", "resources.limits.memory.missing"]
    assert t["state"] == "Violating"
    assert t["compliant"] is False
    assert condition(profile(kube, namespace, "api"), "Compliant")["reason"] == "ViolationsFound"
    time.sleep(RESYNC_SECONDS + 1)
    live = deployment(kube, namespace, "api")
    assert live["metadata"]["generation"] == 1
    assert "readiness-operator" not in {m["manager"] for m in live["metadata"]["managedFields"]}


def test_two_profiles_selecting_one_deployment_are_ambiguous(
    kube: Kube, namespace: str, operator: Operator
) -> None:
    _apply(
        kube,
        [
            simple_deployment(namespace),
            simple_profile(namespace, "first", probes=PROBES),
            simple_profile(namespace, "second", resources={"limits": {"memory": "64Mi"}}),
        ],
    )
    for name in ("first", "second"):
        t = wait_for(partial(target_in, kube, namespace, name, "api", "Ambiguous"), what=f"{name} Ambiguous")
        assert "also selected by ServiceProfile" in t["message"]
        assert condition(profile(kube, namespace, name), "Conflicted")["reason"] == "Ambiguous"
    assert deployment(kube, namespace, "api")["metadata"]["generation"] == 1


def test_profile_reaches_only_its_namespace(kube: Kube, namespace: str, operator: Operator) -> None:
    other = f"{namespace}-b"[:63]
    kube.run("create", "namespace", other)
    try:
        _apply(kube, [simple_deployment(other), simple_profile(namespace, probes=PROBES)])
        kube.run(
            "wait", "-n", namespace, "--for=condition=Compliant=false", "serviceprofile/api", "--timeout=60s"
        )
        assert profile(kube, namespace, "api")["status"]["summary"] == {
            "matched": 0,
            "compliant": 0,
            "score": 0,
        }
        assert condition(profile(kube, namespace, "api"), "Compliant")["reason"] == "NoTargets", (
            "a selector that matches nothing is not success"
        )
        assert deployment(kube, other, "api")["metadata"]["generation"] == 1
    finally:
        kube.run("delete", "namespace", other, "--wait=false", check=False)


def test_invalid_profiles_are_rejected_at_admission(kube: Kube, namespace: str, crd: None) -> None:
    bad = simple_profile(
        namespace,
        probes={"port": "http", "liveness": {"type": "httpGet", "path": "healthz"}},
        resources={"requests": {"memory": "1Gi"}, "limits": {"memory": "512Mi"}},
        shutdown={"terminationGracePeriodSeconds": 5, "preStopSleepSeconds": 5},
        tracing={"endpoint": "http://collector:4317", "samplerArg": "1.5"},
    )
    bad["spec"]["selector"] = {}
    result = kube.run("apply", "-f", "-", input_text=yaml.safe_dump(bad), check=False)
    assert result.returncode != 0
    for message in (
        "selector must not be empty",
        "must be an absolute HTTP path starting with '/'",
        "requests.memory must not exceed limits.memory",
        "terminationGracePeriodSeconds must be longer than preStopSleepSeconds",
        "samplerArg must be a number between 0 and 1",
    ):
        assert message in result.stderr, message
    typo = simple_profile(namespace, mode="enforce")
    assert (
        'Unsupported value: "enforce"'
        in kube.run("apply", "-f", "-", input_text=yaml.safe_dump(typo), check=False).stderr
    )


def test_rejections_name_the_value_given(kube: Kube, namespace: str, crd: None) -> None:
    bad = simple_profile(
        namespace,
        probes={"port": 70000, "readiness": {"type": "httpGet", "path": "/ready"}},
        resources={"limits": {"memory": "-1Gi", "cpu": "2 cores"}},
    )
    result = kube.run("apply", "-f", "-", input_text=yaml.safe_dump(bad), check=False)
    assert result.returncode != 0
    assert "spec.probes.port" in result.stderr
    assert "IANA port name (lowercase, at most 15 characters), not 70000" in result.stderr
    assert "spec.resources.limits.memory" in result.stderr
    assert "non-negative Kubernetes quantity such as 100m, 0.5, 128Mi or 1Gi, not -1Gi" in result.stderr
    assert "not 2 cores" in result.stderr


@pytest.mark.parametrize(
    ("sections", "said"),
    [
        pytest.param(
            {
                "probes": {
                    "port": "healthz",
                    **{
                        k: {"type": "httpGet", "path": "/healthz"}
                        for k in ("liveness", "readiness", "startup")
                    },
                },
                "resources": {"limits": {"memory": "64Mi"}},
            },
            "probe port 'healthz' is not a port of container app",
            id="unknown-port",
        ),
        pytest.param(
            {"containers": ["web"], "resources": {"limits": {"memory": "64Mi"}}},
            "container(s) web named by the profile do not exist",
            id="unknown-container",
        ),
        pytest.param(
            {"shutdown": {"preStopSleepSeconds": 40}},
            "a preStop sleep of 40s does not end before terminationGracePeriodSeconds 30",
            id="prestop-longer-than-the-deployments-grace",
        ),
    ],
)
def test_a_profile_that_cannot_apply_says_why_once_and_writes_nothing(
    kube: Kube, namespace: str, operator: Operator, sections: dict[str, Any], said: str
) -> None:
    _apply(kube, [simple_deployment(namespace), simple_profile(namespace, **sections)])
    degraded = wait_for(
        lambda: (
            condition(profile(kube, namespace, "api"), "Degraded").get("status") == "True"
            and condition(profile(kube, namespace, "api"), "Degraded")
        ),
        what="Degraded",
    )
    assert degraded["reason"] == "InvalidReference"
    assert degraded["message"].count(said) == 1, degraded["message"]
    assert condition(profile(kube, namespace, "api"), "Ready")["status"] == "False"
    t = target(profile(kube, namespace, "api"), "api")
    assert t["state"] == "Invalid"
    assert t["message"].count(said) == 1, "once, not once per probe"
    time.sleep(RESYNC_SECONDS * 2 + 1)  # resyncs decide again and say nothing new
    assert deployment(kube, namespace, "api")["metadata"]["generation"] == 1, "zero writes"
    warnings = events(kube, namespace, "type=Warning,involvedObject.kind=ServiceProfile")
    assert [(e["reason"], e.get("count", 1)) for e in warnings] == [("Invalid", 1)], warnings


def test_no_framework_footprint_and_deletion_leaves_deployments_alone(
    kube: Kube, namespace: str, operator: Operator
) -> None:
    _apply(kube, [simple_deployment(namespace), simple_profile(namespace, probes=PROBES)])
    kube.run("wait", "-n", namespace, "--for=condition=Compliant", "serviceprofile/api", "--timeout=60s")
    for obj in (deployment(kube, namespace, "api"), profile(kube, namespace, "api")):
        meta = obj["metadata"]
        assert not [k for k in meta.get("annotations", {}) if "kopf.zalando.org" in k], meta.get(
            "annotations"
        )
        assert not meta.get("finalizers"), meta.get("finalizers")
    before = deployment(kube, namespace, "api")["metadata"]
    kube.run("delete", "-n", namespace, "serviceprofile/api", "--timeout=30s")
    time.sleep(RESYNC_SECONDS + 1)
    after = deployment(kube, namespace, "api")
    assert after["metadata"]["generation"] == before["generation"]
    assert container(after)["readinessProbe"]["httpGet"]["path"] == "/ready", "no surprise rollout"


def test_a_manager_that_keeps_reverting_is_not_fought_forever(
    kube: Kube, namespace: str, operator: Operator
) -> None:
    _apply(
        kube, [simple_deployment(namespace), simple_profile(namespace, probes=PROBES, conflictPolicy="Force")]
    )
    kube.run("wait", "-n", namespace, "--for=condition=Compliant", "serviceprofile/api", "--timeout=60s")
    revert = '{"spec":{"template":{"spec":{"containers":[{"name":"app","readinessProbe":{"httpGet":{"path":"/bot"}}}]}}}}'

    def path() -> str:
        return str(container(deployment(kube, namespace, "api"))["readinessProbe"]["httpGet"]["path"])

    for _ in range(MAX_CORRECTIONS):
        kube.run("patch", "-n", namespace, "deployment/api", "-p", revert, "--field-manager=gitops-bot")
        wait_for(lambda: path() == "/ready", what="corrected")
    kube.run("patch", "-n", namespace, "deployment/api", "-p", revert, "--field-manager=gitops-bot")
    t = wait_for(partial(target_in, kube, namespace, "api", "api", "Conflicted"), what="left alone")
    assert "gitops-bot" in t["message"]
    time.sleep(RESYNC_SECONDS + 1)
    assert path() == "/bot", "no longer fought"


def test_status_writes_stop_when_nothing_moves(kube: Kube, namespace: str, operator: Operator) -> None:
    _apply(kube, [simple_deployment(namespace), simple_profile(namespace, probes=PROBES)])
    kube.run("wait", "-n", namespace, "--for=condition=Compliant", "serviceprofile/api", "--timeout=60s")
    kube.run("rollout", "status", "-n", namespace, "deployment/api", "--timeout=60s")
    wait_for(
        lambda: target(profile(kube, namespace, "api"), "api").get("rollout") == "Complete", what="rollout"
    )
    rv = profile(kube, namespace, "api")["metadata"]["resourceVersion"]
    transition = condition(profile(kube, namespace, "api"), "Compliant")["lastTransitionTime"]
    time.sleep(RESYNC_SECONDS * 2 + 1)
    sp = profile(kube, namespace, "api")
    assert sp["metadata"]["resourceVersion"] == rv, json.dumps(sp["status"])
    assert condition(sp, "Compliant")["lastTransitionTime"] == transition


def test_a_profile_change_is_one_rollout_and_dropped_sections_are_released(
    kube: Kube, namespace: str, operator: Operator
) -> None:
    _apply(
        kube,
        [simple_deployment(namespace), simple_profile(namespace, probes=PROBES, logging={"level": "info"})],
    )
    kube.run("wait", "-n", namespace, "--for=condition=Compliant", "serviceprofile/api", "--timeout=60s")
    assert deployment(kube, namespace, "api")["metadata"]["generation"] == 2
    kube.run(
        "patch",
        "-n",
        namespace,
        "serviceprofile/api",
        "--type=json",
        "-p",
        '[{"op": "remove", "path": "/spec/logging"}, {"op": "replace", "path": '
        '"/spec/probes/readiness/periodSeconds", "value": 7}]',
    )

    def updated() -> dict[str, Any] | None:
        c = container(deployment(kube, namespace, "api"))
        return c if c["readinessProbe"]["periodSeconds"] == 7 else None

    c = wait_for(updated, what="profile change applied")
    assert "env" not in c or "LOG_LEVEL" not in {e["name"] for e in c["env"]}, "released with the section"
    assert deployment(kube, namespace, "api")["metadata"]["generation"] == 3, "both changes in one rollout"
    wait_for(lambda: profile(kube, namespace, "api")["status"]["observedGeneration"] == 2, what="observed")
