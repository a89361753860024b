"""The production chapter's last sections against the real apiserver, with the real operator:
security and profiling applied to Deployments that exist, in one rollout; images and secrets
reported and never written; and a planted secret's value found in no output at all (the
profile's status, Events, the operator's log, `readiness audit` in every format)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
import yaml
from tests.e2e.support import (
    Operator,
    container,
    deployment,
    profile,
    replicasets,
    simple_deployment,
    simple_profile,
    target_in,
    wait_for,
)
from tests.support.kube import Kube

pytestmark = pytest.mark.e2e
PLANTED = "pl4nted-e2e-9c1d"
SECTIONS: dict[str, Any] = {
    "security": {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "dropAllCapabilities": True,
        "readOnlyRootFilesystem": True,
        "seccompProfile": "RuntimeDefault",
        "automountServiceAccountToken": False,
    },
    "profiling": {"port": "metrics", "profiles": ["cpu", "memory"]},
    "images": {"forbidLatest": True},
    "secrets": {},
}


def leaky(namespace: str) -> dict[str, Any]:
    """A Deployment as teams write them too often: latest image, secrets in literal env."""
    manifest = simple_deployment(namespace, "leaky")
    container(manifest)["image"] = "registry.example/leaky:latest"
    container(manifest)["env"] = [
        {"name": "DB_PASSWORD", "value": PLANTED},
        {"name": "DATABASE_URL", "value": f"postgres://app:{PLANTED}@db:5432/shop"},
        {"name": "LOG_LEVEL", "value": "info"},
    ]
    return manifest


def test_security_and_profiling_are_applied_in_one_rollout_and_findings_never_write(
    kube: Kube, namespace: str, operator: Operator
) -> None:
    kube.apply(json.dumps(simple_deployment(namespace, "api")))
    kube.apply(json.dumps(leaky(namespace)))
    # The first ReplicaSet exists before the profile, so the rollout it makes is the second.
    kube.run("rollout", "status", "-n", namespace, "deployment/api", "--timeout=60s")
    kube.apply(json.dumps(simple_profile(namespace, "api", "api", **SECTIONS)))
    kube.apply(json.dumps(simple_profile(namespace, "leaky", "leaky", **SECTIONS)))
    wait_for(lambda: target_in(kube, namespace, "api", "api", "Compliant"), timeout=90, what="api Compliant")

    live = deployment(kube, namespace, "api")
    assert container(live)["securityContext"] == {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert live["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    annotations = live["spec"]["template"]["metadata"]["annotations"]
    assert {k: v for k, v in annotations.items() if k.startswith("profiles.grafana.com/")} == {
        "profiles.grafana.com/cpu.scrape": "true",
        "profiles.grafana.com/cpu.port_name": "metrics",
        "profiles.grafana.com/cpu.path": "/debug/pprof/profile",
        "profiles.grafana.com/memory.scrape": "true",
        "profiles.grafana.com/memory.port_name": "metrics",
        "profiles.grafana.com/memory.path": "/debug/pprof/allocs",
    }
    assert live["metadata"]["generation"] == 2, "one apply, one rollout"
    # Compliant can come before the controller-manager has seen the change (seen in CI).
    kube.run("rollout", "status", "-n", namespace, "deployment/api", "--timeout=60s")
    assert len(replicasets(kube, namespace, "api")) == 2

    t = wait_for(
        lambda: target_in(kube, namespace, "leaky", "leaky", "Violating"), timeout=90, what="leaky Violating"
    )
    assert sorted(v["check"] for v in t["violations"]) == [
        "images.latest",
        "secrets.literal",
        "secrets.literal",
    ]
    leaked = deployment(kube, namespace, "leaky")
    assert container(leaked)["image"] == "registry.example/leaky:latest", "an image is never rewritten"
    assert {e["name"]: e["value"] for e in container(leaked)["env"]}["DB_PASSWORD"] == PLANTED


def test_a_planted_secret_shows_in_no_status_event_log_or_report(
    kube: Kube, namespace: str, operator: Operator, testbed: Any, tmp_path: Any
) -> None:
    kube.apply(json.dumps(leaky(namespace)))
    kube.apply(json.dumps(simple_profile(namespace, "leaky", "leaky", **SECTIONS)))
    wait_for(lambda: target_in(kube, namespace, "leaky", "leaky", "Violating"), timeout=90, what="Violating")
    wait_for(
        lambda: any(
            "secrets.literal" in e.get("message", "") or "DB_PASSWORD" in e.get("message", "")
            for e in kube.json("get", "events", "-n", namespace)["items"]
        ),
        timeout=60,
        what="the findings told in Events",
    )
    outputs = {
        "the profile": yaml.safe_dump(profile(kube, namespace, "leaky")),
        "kubectl describe": kube.run("describe", "serviceprofile", "leaky", "-n", namespace).stdout,
        "Events": json.dumps(kube.json("get", "events", "-n", namespace)),
        "the operator's log": operator.log_text(),
    }
    manifests = tmp_path / "leaky.yaml"
    manifests.write_text(
        yaml.safe_dump_all(
            [
                {**leaky(namespace), "metadata": {**leaky(namespace)["metadata"]}},
                simple_profile(namespace, "leaky", "leaky", **SECTIONS),
            ]
        )
    )
    for output in ("text", "json", "sarif"):
        audited = subprocess.run(
            [sys.executable, "-m", "readiness", "audit", "-o", output, str(manifests)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert audited.returncode == 1, audited.stderr
        outputs[f"readiness audit -o {output}"] = audited.stdout + audited.stderr
    for where, text in outputs.items():
        assert "DB_PASSWORD" in text or where == "the operator's log", f"{where} names the variable"
        assert PLANTED not in text, f"the value shows in {where}"
