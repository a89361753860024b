"""What the engine's table tests (tests/unit/engine/test_evaluate_*.py) and its properties
share: Deployments shaped as the API returns them (defaults filled in, managedFields in fieldsV1
form, owned by their creator), profiles, evaluating one against the other, reading the verdict,
and the two checks every row of a section's table goes through.

Applies go through the simulator (tests/support/apiserver.py), which is what checks the engine's
central promise: apply what it asks, evaluate again, and nothing is left to write.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest
from tests.support.apiserver import fields_v1, server_side_apply

from readiness.engine import DeploymentView, Evaluation, evaluate
from readiness.models import ServiceProfileSpec

NS = "shop"
KUBECTL = "kubectl-client-side-apply"
SELECT = {"matchLabels": {"app": "api"}}
PORTS = (("http", 8080), ("metrics", 9090))
APP = "spec.template.spec.containers[app]"
CONTAINER_APP = ("f:spec", "f:template", "f:spec", "f:containers", 'k:{"name":"app"}')
ENDPOINT = "http://otel-collector.observability:4317"
POD_NAME = {
    "name": "OTEL_K8S_POD_NAME",
    "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}},
}
OURS = "k8s.namespace.name=shop,k8s.deployment.name=api,k8s.pod.name=$(OTEL_K8S_POD_NAME)"


# ---- Deployments as the API returns them ----


def ctr(name: str = "app", *, ports: tuple[tuple[str, int], ...] = PORTS, **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "image": f"registry.example/shop/{name}:1.0",
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": n, "containerPort": p, "protocol": "TCP"} for n, p in ports],
        "resources": {},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        **fields,
    }


def deployment(
    *containers: dict[str, Any],
    labels: dict[str, str] | None = None,
    grace: int = 30,
    annotations: dict[str, str] | None = None,
    init_containers: list[dict[str, Any]] | None = None,
    creator: str | None = KUBECTL,
) -> dict[str, Any]:
    """An apps/v1 Deployment created by ``creator`` (who owns every field it holds, defaults too)."""
    labels = {"app": "api"} if labels is None else labels
    template_meta: dict[str, Any] = {"labels": dict(labels)}
    if annotations:
        template_meta["annotations"] = dict(annotations)
    pod: dict[str, Any] = {
        "containers": list(containers) or [ctr()],
        "restartPolicy": "Always",
        "dnsPolicy": "ClusterFirst",
        "schedulerName": "default-scheduler",
        "securityContext": {},
        "terminationGracePeriodSeconds": grace,
    }
    if init_containers:
        pod["initContainers"] = init_containers
    spec = {
        "replicas": 2,
        "selector": {"matchLabels": dict(labels)},
        "template": {"metadata": template_meta, "spec": pod},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
        "revisionHistoryLimit": 10,
        "progressDeadlineSeconds": 600,
    }
    return with_creator(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "api",
                "namespace": NS,
                "uid": "uid-api",
                "generation": 1,
                "resourceVersion": "1000",
                "labels": dict(labels),
            },
            "spec": spec,
        },
        creator,
    )


def with_creator(body: dict[str, Any], creator: str | None) -> dict[str, Any]:
    """Add what the apiserver and the Deployment controller add: annotations, status, managedFields."""
    meta = body["metadata"]
    meta.setdefault("annotations", {})["deployment.kubernetes.io/revision"] = "1"
    replicas = body["spec"].get("replicas", 1)
    body["status"] = {
        "observedGeneration": meta["generation"],
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
        "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}],
    }
    managed: list[dict[str, Any]] = []
    if creator is not None:
        owned = {"metadata": {"labels": meta.get("labels", {})}, "spec": body["spec"]}
        managed.append(
            {
                "manager": creator,
                "operation": "Update",
                "apiVersion": "apps/v1",
                "fieldsV1": fields_v1(owned, dots=True),
            }
        )
    managed += [
        {
            "manager": "kube-controller-manager",
            "operation": "Update",
            "apiVersion": "apps/v1",
            "fieldsV1": {
                "f:metadata": {"f:annotations": {".": {}, "f:deployment.kubernetes.io/revision": {}}}
            },
        },
        {
            "manager": "kube-controller-manager",
            "operation": "Update",
            "apiVersion": "apps/v1",
            "subresource": "status",
            "fieldsV1": {"f:status": fields_v1(body["status"], dots=True, depth=1)},
        },
    ]
    meta["managedFields"] = managed
    return body


def owner(manager: str, *path: str) -> dict[str, Any]:
    """A managedFields Update entry for ``manager`` owning the field at ``path``."""
    node: dict[str, Any] = {}
    for element in reversed(path):
        node = {element: node}
    return {"manager": manager, "operation": "Update", "apiVersion": "apps/v1", "fieldsV1": node}


def profile(**sections: Any) -> ServiceProfileSpec:
    return ServiceProfileSpec.model_validate({"selector": SELECT, **sections})


def run(spec: ServiceProfileSpec, body: Mapping[str, Any]) -> Evaluation:
    return evaluate(spec, DeploymentView.from_body(body))


def make(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``deployment`` from one dict: its one container under "container", the rest as keywords."""
    kwargs = dict(kwargs)
    return deployment(kwargs.pop("container", ctr()), **kwargs)


# ---- Applying what the engine asks, and reading its verdict ----


def converge(spec: ServiceProfileSpec, body: dict[str, Any]) -> tuple[Evaluation, dict[str, Any]]:
    """Evaluate, apply what the engine asks; return the first verdict and the resulting Deployment."""
    first = run(spec, body)
    assert first.apply is not None
    return first, server_side_apply(body, first.apply, force=first.force)


def containers(ev: Evaluation) -> dict[str, dict[str, Any]]:
    assert ev.apply is not None
    return {c["name"]: c for c in ev.apply["spec"]["template"]["spec"]["containers"]}


def env(container: Mapping[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def checks(ev: Evaluation) -> list[str]:
    return [v.check for v in ev.violations]


def leaves(doc: Any, prefix: str = "") -> set[str]:
    """Every leaf of an apply body as a human path (list items by name)."""
    found: set[str] = set()
    if isinstance(doc, Mapping) and doc:
        for k, v in doc.items():
            found |= leaves(v, f"{prefix}.{k}" if prefix else k)
    elif isinstance(doc, list) and doc and all(isinstance(i, Mapping) and "name" in i for i in doc):
        for i in doc:
            found |= leaves({k: v for k, v in i.items() if k != "name"}, f"{prefix}[{i['name']}]")
    else:
        found.add(prefix)
    return found


# ---- Apply configurations, as the table rows write what the engine should ask for ----


def app(**fields: Any) -> dict[str, Any]:
    return {"name": "app", **fields}


def pod(
    *containers: dict[str, Any], grace: int | None = None, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    template: dict[str, Any] = {}
    if annotations:
        template["metadata"] = {"annotations": annotations}
    if containers or grace is not None:
        template["spec"] = {}
    if containers:
        template["spec"]["containers"] = list(containers)
    if grace is not None:
        template["spec"]["terminationGracePeriodSeconds"] = grace
    return {"template": template}


def env_list(*pairs: tuple[str, str] | dict[str, Any]) -> list[dict[str, Any]]:
    return [p if isinstance(p, dict) else {"name": p[0], "value": p[1]} for p in pairs]


LIMITED = ctr(resources={"limits": {"memory": "1Gi", "cpu": "1500m"}})


# ---- A section's table: every row is its first apply and its idempotence ----

# The columns of a section's rows: the profile's sections, the Deployment's one container, the
# checks the engine reports, and the spec of the apply it asks for.
SECTION_ROW = ("sections", "container", "expected_checks", "expected_spec")


def check_the_first_apply(
    sections: dict[str, Any],
    container: dict[str, Any],
    expected_checks: list[str],
    expected_spec: dict[str, Any],
) -> None:
    """The row's violations, and an apply of exactly the fields the section declares."""
    ev = run(profile(**sections), deployment(container))
    assert checks(ev) == expected_checks
    assert all(v.message for v in ev.violations)
    assert not ev.conflicts
    assert not ev.problems
    assert not ev.compliant
    assert ev.apply is not None
    assert dict(ev.apply) == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "api", "namespace": NS},
        "spec": expected_spec,
    }, "only the fields the profile declares"
    assert set(ev.changes) == {c.rsplit(".", 1)[0] for c in expected_checks}


def check_idempotence(sections: dict[str, Any], container: dict[str, Any]) -> None:
    """Apply what the engine asks: one write, one new generation, and then nothing to do."""
    spec = profile(**sections)
    _, after = converge(spec, deployment(container))
    assert after["metadata"]["generation"] == 2, "one write, one new generation"
    second = run(spec, after)
    assert second.apply is None
    assert second.violations == ()
    assert second.conflicts == ()
    assert second.problems == ()
    assert second.compliant
    assert run(spec, after) == second, "deterministic"


def row_tests(rows: list[Any]) -> tuple[Callable[..., None], Callable[..., None]]:
    """A section table's two tests: each row's first apply, and that applying it changes nothing
    more (bind them to ``test_each_section`` and ``test_each_section_is_idempotent``)."""

    @pytest.mark.parametrize(SECTION_ROW, rows)
    def test_each_section(
        sections: dict[str, Any],
        container: dict[str, Any],
        expected_checks: list[str],
        expected_spec: dict[str, Any],
    ) -> None:
        check_the_first_apply(sections, container, expected_checks, expected_spec)

    @pytest.mark.parametrize(SECTION_ROW, rows)
    def test_each_section_is_idempotent(
        sections: dict[str, Any],
        container: dict[str, Any],
        expected_checks: list[str],
        expected_spec: dict[str, Any],
    ) -> None:
        check_idempotence(sections, container)

    return test_each_section, test_each_section_is_idempotent
