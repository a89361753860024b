"""The real node's side of the end-to-end tests: the sample service as a team writes it, placed
on real-0, and what a test reads off its pods (times the kubelet recorded, answers on pod IPs)."""

from __future__ import annotations

import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.e2e.support import Operator, _ready, start_operator, stop_operator, wait_for
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


@contextmanager
def own_namespace(kube: Kube, prefix: str) -> Iterator[str]:
    """A namespace of the test's own, outside t-* (which the session's operator serves)."""
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    kube.run("create", "namespace", name)
    try:
        yield name
    finally:
        kube.run("delete", "namespace", name, "--wait=false", check=False)


@contextmanager
def own_operator(kube: Kube, log_dir: Path, namespace: str, name: str) -> Iterator[Operator]:
    """An operator serving ``namespace`` alone, re-checking every 5 s, ready before it is used."""
    started = start_operator(kube.kubeconfig, log_dir, name, namespaces=namespace, resync_seconds="5")
    try:
        wait_for(lambda: _ready(started), timeout=60, what="operator ready")
        yield started
    finally:
        stop_operator(started)
