"""What can be checked of the image and the install without a Docker engine or a cluster."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from readiness.metrics import Metrics

ROOT = Path(__file__).resolve().parent.parent.parent


def _stages() -> list[list[str]]:
    stages: list[list[str]] = []
    for raw in (ROOT / "Dockerfile").read_text().replace("\\\n", " ").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        stages[-1].append(line)
    return stages


def test_image_is_multi_stage_non_root_and_compiler_free() -> None:
    stages = _stages()
    assert len(stages) >= 2
    final = stages[-1]
    text = "\n".join(final).lower()
    for compiler in ("gcc", "build-essential", "clang", "apt-get install", "pip install"):
        assert compiler not in text, compiler
    users = [line.split()[1] for line in final if line.upper().startswith("USER ")]
    assert users == ["65532:65532"]
    assert any(line.startswith("COPY --from=") for line in final)
    entry = next(line for line in final if line.upper().startswith("ENTRYPOINT"))
    assert json.loads(entry.split(None, 1)[1]) == ["readiness"]
    assert "PYTHONDONTWRITEBYTECODE=1" in "\n".join(final), "read-only root filesystem friendly"


def _deploy() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted((ROOT / "deploy").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def test_operator_deployment_practises_what_it_enforces() -> None:
    deployment = next(d for d in _deploy() if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]
    assert deployment["spec"]["replicas"] == 2
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    spec = pod["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 65532
    assert spec["terminationGracePeriodSeconds"] >= 20
    (container,) = spec["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["resources"]["limits"]["memory"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["READINESS_PEERING"] == "readiness-operator"


def test_rbac_is_least_privilege() -> None:
    role = next(d for d in _deploy() if d["kind"] == "ClusterRole")
    granted = {
        (group, resource): set(rule["verbs"])
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert granted[("apps", "deployments")] == {"get", "list", "watch", "patch"}
    assert granted[("readiness.dev", "serviceprofiles/status")] == {"get", "patch"}
    for (group, resource), verbs in granted.items():
        assert "*" not in verbs
        assert "*" not in (resource, group)
        assert resource not in ("secrets", "pods", "pods/exec", "configmaps"), resource
        assert not verbs & {"delete", "deletecollection", "escalate", "bind", "impersonate"}, (
            resource,
            verbs,
        )


def _exposed_names() -> set[str]:
    names: set[str] = set()
    for family in Metrics().registry.collect():
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names |= {f"{family.name}_bucket", f"{family.name}_sum", f"{family.name}_count"}
        else:
            names.add(family.name)
    return names


def test_dashboard_and_alerts_use_exactly_the_exposed_metric_names() -> None:
    exposed = _exposed_names()
    dashboard = json.loads((ROOT / "deploy" / "monitoring" / "dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    rules = yaml.safe_load((ROOT / "deploy" / "monitoring" / "prometheusrule.yaml").read_text())
    exprs += [r["expr"] for group in rules["spec"]["groups"] for r in group["rules"]]
    used = {name for expr in exprs for name in re.findall(r"\breadiness_[a-z_]+", expr)}
    assert used, "the monitoring files name metrics"
    assert used <= exposed, used - exposed
    alerts = {r["alert"] for group in rules["spec"]["groups"] for r in group["rules"]}
    assert alerts == {
        "ReadinessOperatorDown",
        "ReadinessReconcileErrors",
        "ReadinessProfileNotCompliant",
        "ReadinessConflicts",
    }
