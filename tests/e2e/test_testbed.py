"""The local control plane is a real Kubernetes: scheduling, rollouts, admission, server-side apply."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from tests.support.kube import Kube
from tests.support.paths import ROOT

pytestmark = pytest.mark.e2e

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: %s}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: app, image: registry.example/web:1}]
"""


def test_deployment_becomes_available_on_kwok_nodes(kube: Kube, namespace: str) -> None:
    kube.apply(DEPLOYMENT % namespace)
    kube.run("wait", "-n", namespace, "--for=condition=Available", "deployment/web", "--timeout=90s")
    pods = kube.json("get", "pods", "-n", namespace)["items"]
    assert len(pods) == 2
    nodes = {n["metadata"]["name"] for n in kube.json("get", "nodes")["items"]}
    for pod in pods:
        assert pod["status"]["phase"] == "Running"
        assert pod["spec"]["nodeName"] in nodes
        ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
        assert ready["Ready"] == "True"


def test_apiserver_rejects_an_invalid_object(kube: Kube, namespace: str) -> None:
    bad = (DEPLOYMENT % namespace).replace("replicas: 2", "replicas: -1")
    result = kube.run("apply", "-f", "-", input_text=bad, check=False)
    assert result.returncode != 0
    assert "spec.replicas" in result.stderr
    assert "greater than or equal to 0" in result.stderr


def test_server_side_apply_records_the_field_manager(kube: Kube, namespace: str) -> None:
    kube.apply(DEPLOYMENT % namespace, "--server-side", "--field-manager=testbed-proof")
    managers = {
        m["manager"]: m["operation"]
        for m in kube.json("get", "deployment", "web", "-n", namespace, "--show-managed-fields")["metadata"][
            "managedFields"
        ]
    }
    assert managers["testbed-proof"] == "Apply"
    # A second manager changing an owned field is refused without --force-conflicts.
    changed = (DEPLOYMENT % namespace).replace("web:1", "web:2")
    conflict = kube.run(
        "apply", "--server-side", "--field-manager=other", "-f", "-", input_text=changed, check=False
    )
    assert conflict.returncode != 0
    assert "conflict" in conflict.stderr.lower()


def test_a_second_testbed_starts_and_stops_without_orphans(testbed: object, tmp_path: Path) -> None:
    from readiness_testbed import Testbed

    bed = Testbed(tmp_path / "bed", nodes=1)
    assert bed.up() is True
    try:
        assert bed.is_healthy()
        assert bed.up() is False, "idempotent: a healthy testbed is reused"
        state = json.loads((tmp_path / "bed" / "state.json").read_text())
        pids = [int(p) for p in state["pids"].values()]
        assert len(pids) == 5
        observers = json.loads((tmp_path / "bed" / "observers" / "state.json").read_text())
        pids += [int(p) for p in observers["pids"].values()]
        assert len(pids) == 7, "and its own Prometheus and collector"
        assert all(Path(f"/proc/{p}").exists() for p in pids)
    finally:
        bed.down()
    assert not bed.is_healthy()
    for pid in pids:
        assert (
            not Path(f"/proc/{pid}").exists()
            or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[-1][:3]
        )


def test_urls_says_where_prometheus_the_collector_and_containerd_are(testbed: object) -> None:
    state_dir = getattr(testbed, "state_dir")  # noqa: B009 - the session's testbed, untyped here
    printed = subprocess.run(
        [sys.executable, "-m", "readiness_testbed", "urls", f"--dir={state_dir}"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT / "testbed")},
    ).stdout
    urls = json.loads(printed)
    assert set(urls) == {"prometheus", "otlp_grpc", "otlp_http", "traces_file", "containerd"}
    with urllib.request.urlopen(urls["prometheus"] + "/-/ready", timeout=5) as ready:
        assert ready.status == 200
    empty = urllib.request.Request(
        urls["otlp_http"] + "/v1/traces", data=b"{}", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(empty, timeout=5) as accepted:
        assert accepted.status == 200
    assert Path(urls["traces_file"]).is_file()
    assert Path(urls["containerd"]).is_socket()
