"""What the end-to-end tests share: the operator as a process (started as a user starts it, its
endpoints), reading the cluster as kubectl shows it, the manifests several tests put in it, and
control planes of a test module's own. Fixtures live in conftest.py; this module is imported."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from tests.support.kube import Kube

from readiness_testbed import Testbed as ControlPlane

T = TypeVar("T")
# The session operator's settings (tests/e2e/conftest.py), which some tests count on.
RESYNC_SECONDS = 5
MAX_CORRECTIONS = 3
# A fleet that one worker cannot finish while a test sees ten of it done and kills, deletes or
# stops something: one worker applied all of 120 first (seen in CI).
MIDWAY_FLEET = 400


# ---- The operator, as a process ----


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Operator:
    def __init__(
        self, process: subprocess.Popen[bytes], log: Path, metrics_port: int, health_port: int
    ) -> None:
        self.process = process
        self.log = log
        self.metrics_port = metrics_port
        self.health_port = health_port

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def wait_for(check: Callable[[], T | None], timeout: float = 60.0, what: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def start_operator(
    kubeconfig: Path,
    log_dir: Path,
    name: str = "operator",
    environ: dict[str, str] | None = None,
    **settings: str,
) -> Operator:
    """``readiness run`` as a user starts it: KUBECONFIG, free ports for /metrics and /readyz,
    JSON logs to a file in ``log_dir``, READINESS_* settings given as keywords
    (``namespaces="t-*"`` becomes READINESS_NAMESPACES=t-*) and any other ``environ``."""
    log = Path(log_dir) / f"{name}-{time.time_ns()}.log"
    metrics_port, health_port = _free_port(), _free_port()
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "READINESS_LOG_FORMAT": "json",
        "READINESS_LOG_LEVEL": "info",
        "READINESS_METRICS_PORT": str(metrics_port),
        "READINESS_HEALTH_PORT": str(health_port),
        **{f"READINESS_{key.upper()}": value for key, value in settings.items()},
        **(environ or {}),
    }
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "readiness", "run"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    return Operator(process, log, metrics_port, health_port)


def stop_operator(op: Operator) -> None:
    op.process.terminate()
    try:
        op.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        op.process.kill()
        op.process.wait(timeout=10)


def probe(op: Operator, path: str) -> tuple[int, str]:
    """The status code and body of the operator's ``path`` (/readyz, /healthz); (0, error)
    when nothing answers."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{op.health_port}{path}", timeout=3) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read().decode()
    except OSError as error:
        return 0, str(error)


def readyz(op: Operator) -> tuple[int, str]:
    return probe(op, "/readyz")


def _ready(op: Operator) -> bool:
    import urllib.request

    if op.process.poll() is not None:
        raise AssertionError(f"operator exited with {op.process.returncode}:\n{op.log_text()[-3000:]}")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{op.health_port}/readyz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def scrape(op: Operator, name: str) -> float:
    """The sum of a metric's samples on the operator's /metrics (0 when absent)."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{op.metrics_port}/metrics", timeout=3) as response:
        text = response.read().decode()
    values = [
        float(line.split()[-1]) for line in text.splitlines() if line.startswith((f"{name} ", f"{name}{{"))
    ]
    return sum(values)


# ---- Reading the cluster ----


def deployment(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = kube.json("get", "deployment", name, "-n", namespace, "--show-managed-fields")
    return result


def profile(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = kube.json("get", "serviceprofile", name, "-n", namespace)
    return result


def target(sp: dict[str, Any], name: str) -> dict[str, Any]:
    return next((t for t in sp.get("status", {}).get("targets", []) if t["name"] == name), {})


def target_in(kube: Kube, namespace: str, sp: str, name: str, state: str) -> dict[str, Any] | None:
    """The target entry once it reaches ``state``, else None (for ``wait_for``)."""
    t = target(profile(kube, namespace, sp), name)
    return t if t.get("state") == state else None


def container(dep: dict[str, Any], name: str = "app") -> dict[str, Any]:
    found: dict[str, Any] = next(
        c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == name
    )
    return found


def events(kube: Kube, namespace: str, selector: str) -> list[dict[str, Any]]:
    """The namespace's Events that match a field selector such as ``reason=ProfileApplied``."""
    found: list[dict[str, Any]] = kube.json("get", "events", "-n", namespace, "--field-selector", selector)[
        "items"
    ]
    return found


def replicasets(kube: Kube, namespace: str, owner: str) -> list[dict[str, Any]]:
    items = kube.json("get", "replicasets", "-n", namespace)["items"]
    return [rs for rs in items if any(o["name"] == owner for o in rs["metadata"].get("ownerReferences", []))]


# ---- Manifests ----


def simple_deployment(namespace: str, name: str = "api", **template_spec: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [
            {
                "name": "app",
                "image": "registry.example/api:1",
                "ports": [
                    {"name": "http", "containerPort": 8080},
                    {"name": "metrics", "containerPort": 9090},
                ],
            }
        ],
        **template_spec,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/name": name}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "template": {"metadata": {"labels": {"app.kubernetes.io/name": name}}, "spec": spec},
        },
    }


def simple_profile(namespace: str, name: str = "api", selects: str = "api", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "readiness.dev/v1alpha1",
        "kind": "ServiceProfile",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": selects}}, **spec},
    }


PROBES = {"port": "http", "readiness": {"type": "httpGet", "path": "/ready", "periodSeconds": 5}}


def fleet(kube: Kube, namespace: str, count: int) -> None:
    """``count`` Deployments, all selected by the profile "api"; no pods, so rollouts finish at once."""
    labels = {"app.kubernetes.io/name": "api"}
    items = []
    for i in range(count):
        item = simple_deployment(namespace, f"api-{i:03}")
        item["metadata"]["labels"] = labels
        item["spec"].update({"replicas": 0, "selector": {"matchLabels": labels}})
        item["spec"]["template"]["metadata"]["labels"] = labels
        items.append(item)
    kube.apply(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": items}))


def web_and_profile(namespace: str) -> str:
    """A bare Deployment ``web`` and a profile that sets its resources."""
    return yaml.safe_dump_all(
        [
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "web", "namespace": namespace, "labels": {"app": "web"}},
                "spec": {
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {
                        "metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "app", "image": "web:1"}]},
                    },
                },
            },
            {
                "apiVersion": "readiness.dev/v1alpha1",
                "kind": "ServiceProfile",
                "metadata": {"name": "web", "namespace": namespace},
                "spec": {
                    "selector": {"matchLabels": {"app": "web"}},
                    "resources": {
                        "requests": {"cpu": "50m", "memory": "64Mi"},
                        "limits": {"memory": "128Mi"},
                    },
                },
            },
        ]
    )


# ---- Control planes of a test module's own ----
# For what would disturb the session's operator: deleting the CRDs, killing the apiserver.

IMAGE = "registry.example.com/platform/readiness-operator"

CRDS = ("serviceprofiles.readiness.dev", "clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev")


def own_control_plane(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[ControlPlane]:
    """A control plane of a test module's own (one fake node), stopped after it."""
    bed = ControlPlane(tmp_path_factory.mktemp(name) / "testbed", nodes=1)
    bed.up()
    try:
        yield bed
    finally:
        bed.down()


def without_the_crds(bed: ControlPlane) -> Kube:
    """kubectl on ``bed`` with none of the install's CRDs (deleted if a previous test left
    them), as on a cluster that never had it."""
    kube = Kube(kubectl=bed.kubectl, kubeconfig=bed.kubeconfig)
    kube.run("delete", "crd", *CRDS, "--ignore-not-found", "--wait=true")
    assert not kube.run("get", "crd", "-o", "name").stdout.strip()
    return kube
