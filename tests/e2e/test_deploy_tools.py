"""Deployments as the tools teams deploy with write them, under the default policy (Report).

Client-side kubectl, kubectl create, Helm and an Argo-CD-style sync are Update operations: they
hold the API server's defaults (a grace period of 30 s, probe timings) as if they had chosen
them. The profile takes a default nobody chose, in one rollout; a value a team wrote (in its
last-applied configuration, or applied server-side) stays the team's and is reported."""

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
    RESYNC_SECONDS,
    Operator,
    container,
    deployment,
    events,
    replicasets,
    simple_deployment,
    simple_profile,
    target_in,
    wait_for,
)
from tests.e2e.tools import TOOLS, Helm, put
from tests.support.kube import Kube

from readiness.engine import defaults

pytestmark = pytest.mark.e2e
PROBES = {"port": "http", "readiness": {"type": "httpGet", "path": "/ready", "periodSeconds": 5}}
GRACE_40: dict[str, Any] = {"shutdown": {"terminationGracePeriodSeconds": 40}}


@pytest.fixture
def helm(testbed: Any, tmp_path: Path) -> Helm:
    return Helm(testbed, tmp_path / "helm-home")


def bare(namespace: str, **template_spec: Any) -> dict[str, Any]:
    """What a team writes: no grace period, no probes."""
    manifest = simple_deployment(namespace, **template_spec)
    del manifest["metadata"]["namespace"]
    return manifest


def messages(kube: Kube, namespace: str, reason: str) -> list[str]:
    return [e["message"] for e in events(kube, namespace, f"reason={reason}")]


def quiet(kube: Kube, namespace: str, name: str, generation: int) -> None:
    """Nothing more is written: the generation stays through two resyncs."""
    time.sleep(2 * RESYNC_SECONDS + 1)
    assert deployment(kube, namespace, name)["metadata"]["generation"] == generation


@pytest.mark.parametrize("tool", ["kubectl-apply", "kubectl-create", "helm", "argocd"])
def test_a_default_nobody_chose_is_taken_in_one_rollout(
    kube: Kube, namespace: str, operator: Operator, helm: Helm, tool: str
) -> None:
    put(tool, kube, helm, namespace, json.dumps(bare(namespace)))
    live = deployment(kube, namespace, "api")
    assert live["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 30
    holders = {m["manager"] for m in live["metadata"]["managedFields"] if m["operation"] == "Update"}
    assert TOOLS[tool] in holders, "the tool holds the API's defaults"
    kube.apply(yaml.safe_dump(simple_profile(namespace, probes=PROBES, **GRACE_40)))

    kube.run("wait", "-n", namespace, "--for=condition=Compliant", "serviceprofile/api", "--timeout=120s")
    after = deployment(kube, namespace, "api")
    assert after["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 40
    assert container(after)["readinessProbe"]["periodSeconds"] == 5
    assert after["metadata"]["generation"] == 2, "one template change"
    kube.run("rollout", "status", "-n", namespace, "deployment/api", "--timeout=90s")
    # Two ReplicaSets, or one when the controller-manager had not made the first one yet.
    assert 1 <= len(replicasets(kube, namespace, "api")) <= 2, "one rollout"
    t = wait_for(partial(target_in, kube, namespace, "api", "api", "Compliant"), what="target Compliant")
    took = "took terminationGracePeriodSeconds=30 (API default"
    assert took in t["message"], t
    assert any(took in m for m in messages(kube, namespace, "ProfileApplied")), "the Event says so"
    quiet(kube, namespace, "api", 2)


def test_a_default_the_team_wrote_is_its_choice(kube: Kube, namespace: str, operator: Operator) -> None:
    """Client-side apply records the manifest: a grace period of 30 written on purpose is kept."""
    manifest = bare(namespace, terminationGracePeriodSeconds=30)
    kube.run("apply", "-n", namespace, "-f", "-", input_text=json.dumps(manifest))
    kube.apply(yaml.safe_dump(simple_profile(namespace, **GRACE_40)))
    t = wait_for(partial(target_in, kube, namespace, "api", "api", "Conflicted"), what="target Conflicted")
    assert t["conflicts"] == [
        {"manager": "kubectl-client-side-apply", "field": "spec.template.spec.terminationGracePeriodSeconds"}
    ]
    quiet(kube, namespace, "api", 1)


def test_a_server_side_appliers_explicit_default_is_its_choice(
    kube: Kube, namespace: str, operator: Operator, helm: Helm
) -> None:
    """A GitOps tool that applies server-side holds only what its manifest says: its explicit
    30 is its choice, reported Conflicted, and nothing is written."""
    put("gitops-ssa", kube, helm, namespace, json.dumps(bare(namespace, terminationGracePeriodSeconds=30)))
    kube.apply(yaml.safe_dump(simple_profile(namespace, **GRACE_40)))
    t = wait_for(partial(target_in, kube, namespace, "api", "api", "Conflicted"), what="target Conflicted")
    assert t["conflicts"] == [
        {"manager": "kustomize-controller", "field": "spec.template.spec.terminationGracePeriodSeconds"}
    ]
    live = deployment(kube, namespace, "api")
    assert not [m for m in live["metadata"]["managedFields"] if m["manager"] == "readiness-operator"]
    quiet(kube, namespace, "api", 1)


def test_the_defaults_table_is_the_apiservers(kube: Kube, namespace: str) -> None:
    """A bare Deployment with one probe of each kind and no timings, created and read back: the
    apiserver fills in exactly the engine's table, no more and no less."""
    manifest = bare(namespace)
    (app,) = manifest["spec"]["template"]["spec"]["containers"]
    app["livenessProbe"] = {"httpGet": {"path": "/healthz", "port": "http"}}
    app["readinessProbe"] = {"tcpSocket": {"port": "http"}}
    app["startupProbe"] = {"grpc": {"port": 8080}}
    sent = json.loads(json.dumps(manifest))
    kube.run("create", "-n", namespace, "-f", "-", input_text=json.dumps(manifest))
    stored = deployment(kube, namespace, "api")["spec"]["template"]["spec"]
    for key, value in defaults.POD.items():
        assert stored[key] == value, key
    (live,) = stored["containers"]
    for key, value in defaults.CONTAINER.items():
        assert live[key] == value, key
    (sent_app,) = sent["spec"]["template"]["spec"]["containers"]
    for kind in defaults.PROBES:
        added = _added(sent_app[kind], live[kind])
        handler = next(h for h in ("httpGet", "tcpSocket", "grpc", "exec") if h in sent_app[kind])
        expected = {k: v for k, v in defaults.PROBE.items() if len(k) == 1 or k[0] == handler}
        assert added == expected, kind


def _added(sent: Any, stored: Any, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """The leaves ``stored`` has that ``sent`` did not."""
    if isinstance(stored, dict):
        out: dict[tuple[str, ...], Any] = {}
        for key, value in stored.items():
            out.update(
                _added((sent or {}).get(key) if isinstance(sent, dict) else None, value, (*prefix, key))
            )
        return out
    return {} if sent is not None else {prefix: stored}


def test_a_helm_upgrade_that_rewrites_a_taken_default_is_a_fight_not_fought_forever(
    kube: Kube, namespace: str, operator: Operator, helm: Helm
) -> None:
    """A chart that spells out the default: Helm keeps no last-applied configuration, so the
    profile takes it; every `helm upgrade` writes it back (three-way merge), and the operator
    gives up after its correction limit, naming helm."""
    manifest = bare(namespace, terminationGracePeriodSeconds=30)
    helm.install_manifest("app", namespace, json.dumps(manifest))
    kube.apply(yaml.safe_dump(simple_profile(namespace, **GRACE_40)))

    def grace() -> int:
        return int(
            deployment(kube, namespace, "api")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        )

    wait_for(lambda: grace() == 40, what="the default taken")
    for image in range(2, MAX_CORRECTIONS + 3):
        manifest["spec"]["template"]["spec"]["containers"][0]["image"] = f"registry.example/api:{image}"
        helm.install_manifest("app", namespace, json.dumps(manifest), upgrade=True)
        if target_in(kube, namespace, "api", "api", "Conflicted"):
            break
        wait_for(
            lambda: grace() == 40 or target_in(kube, namespace, "api", "api", "Conflicted"),
            what="taken again",
        )
    t = wait_for(partial(target_in, kube, namespace, "api", "api", "Conflicted"), what="left alone")
    assert "helm" in t["message"], t
    time.sleep(RESYNC_SECONDS + 1)
    assert grace() == 30, "no longer fought"
