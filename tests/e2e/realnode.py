"""The real node's side of the end-to-end tests: the sample service as a team writes it, placed
on real-0, and what a test reads off its pods (times the kubelet recorded, answers on pod IPs)."""

from __future__ import annotations

import urllib.error
import urllib.request
from datetime import datetime
from typing import Any

from tests.e2e.support import wait_for
from tests.support.kube import Kube

SAMPLE_IMAGE = "readiness-testbed/sample-service:dev"
ON_REAL_NODE: dict[str, Any] = {
    "nodeSelector": {"readiness.dev/testbed-node": "real"},
    "tolerations": [
        {"key": "readiness.dev/testbed-node", "operator": "Equal", "value": "real", "effect": "NoSchedule"}
    ],
}


def service(namespace: str, name: str = "sample", replicas: int = 1, **env: str) -> dict[str, Any]:
    """The sample service as its team writes it: no probes, limits, annotations or OTEL env."""
    labels = {"app.kubernetes.io/name": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "progressDeadlineSeconds": 20,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    **ON_REAL_NODE,
                    "containers": [
                        {
                            "name": "app",
                            "image": SAMPLE_IMAGE,
                            "imagePullPolicy": "Never",
                            "ports": [
                                {"name": "http", "containerPort": 8080},
                                {"name": "metrics", "containerPort": 9090},
                            ],
                            "env": [{"name": k, "value": v} for k, v in env.items()],
                        }
                    ],
                },
            },
        },
    }


def app(pod: dict[str, Any]) -> dict[str, Any]:
    (found,) = pod["spec"]["containers"]
    return dict(found)


def pods(kube: Kube, namespace: str, name: str) -> list[dict[str, Any]]:
    found = kube.json("get", "pods", "-n", namespace, "-l", f"app.kubernetes.io/name={name}")["items"]
    return [p for p in found if not p["metadata"].get("deletionTimestamp")]


def get(url: str, timeout: float = 3.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read().decode()


def ready_at(pod: dict[str, Any]) -> float | None:
    cond = next((c for c in pod["status"].get("conditions", []) if c["type"] == "Ready"), None)
    if cond is None or cond["status"] != "True":
        return None
    return datetime.fromisoformat(cond["lastTransitionTime"].replace("Z", "+00:00")).timestamp()


def started_at(pod: dict[str, Any]) -> float:
    (status,) = pod["status"]["containerStatuses"]
    stamp = status["state"]["running"]["startedAt"]
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def rolled_out(kube: Kube, namespace: str, name: str) -> None:
    kube.run("rollout", "status", "-n", namespace, f"deployment/{name}", "--timeout=120s")


def one_pod(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    """The Deployment's one pod once the others are gone."""

    def alone() -> dict[str, Any] | None:
        found = pods(kube, namespace, name)
        return found[0] if len(found) == 1 else None

    return wait_for(alone, timeout=90, what=f"one pod of {name}")
