"""The operator's own image, built here from the Dockerfile (``readiness-operator:dev``), installed
with the Helm chart as a pod on the real node: it runs locked down (non-root, read-only root
filesystem) with its probes passing, reconciles a profile, serves the mutating webhook in
``cluster`` mode through the chart's Service and CA bundle, is scraped by the testbed's Prometheus
through its pod's annotations (every dashboard panel then has data, and every alert rule
evaluates), sends its reconcile spans to the testbed's collector, and drains on ``helm uninstall``.

The testbed has no kube-proxy: the pod is told the apiserver's address on the node
(KUBERNETES_SERVICE_HOST/PORT through the chart's ``extraEnv``), and the apiserver calls the
webhook at the pod's IP (``--enable-aggregator-routing``)."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml
from tests.e2e.consumers import Prometheus, spans_of
from tests.e2e.realnode import ON_REAL_NODE, get, rolled_out, service
from tests.e2e.support import events, simple_profile, target_in, wait_for
from tests.e2e.tools import Helm
from tests.support.kube import Kube
from tests.support.paths import ROOT

from readiness.webhook.certs import self_signed
from readiness_testbed.collector import Span
from readiness_testbed.node import NODE_IP
from readiness_testbed.observers import SCRAPE_INTERVAL_SECONDS

pytestmark = pytest.mark.e2e
DASHBOARD = ROOT / "deploy" / "monitoring" / "dashboard.json"
SUFFIX = r"_(total|bucket|sum|count)$"  # a family's series names


@dataclass(frozen=True)
class Installed:
    release: str  # also its full name: the cluster-wide objects' names are the test's own
    namespace: str  # the release's
    watched: str  # the one namespace it serves
    pod: dict[str, Any]
    helm: Helm
    urls: dict[str, str]


def _stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def operator_pod(kube: Kube, namespace: str) -> dict[str, Any] | None:
    found = kube.json("get", "pods", "-n", namespace, "-l", "app.kubernetes.io/name=readiness-operator")
    live = [p for p in found["items"] if not p["metadata"].get("deletionTimestamp")]
    return live[0] if len(live) == 1 else None


@pytest.fixture(scope="module")
def installed(
    kube: Kube, crd: None, testbed: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Installed]:
    reason = testbed.real_node_unavailable
    if reason:
        pytest.fail(reason)
    image = testbed.load_operator_image()
    suffix = uuid.uuid4().hex[:6]
    release, namespace, watched = f"ro-{suffix}", f"readiness-pod-{suffix}", f"solo-pod-{suffix}"
    for name in (namespace, watched):
        kube.run("create", "namespace", name)
    tmp = tmp_path_factory.mktemp("operator-pod")
    cert = self_signed(tmp, hosts=(f"{release}-webhook.{namespace}.svc",))
    kube.run(
        "create", "secret", "tls", f"{release}-webhook-tls", "-n", namespace,
        f"--cert={cert.certfile}", f"--key={cert.keyfile}",
    )  # fmt: skip
    urls = testbed.urls()
    apiserver = urlparse(
        yaml.safe_load(Path(kube.kubeconfig).read_text())["clusters"][0]["cluster"]["server"]
    )
    repository, tag = image.rsplit(":", 1)
    values = {
        "fullnameOverride": release,
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "replicas": 1,
        "watchNamespaces": [watched],
        **ON_REAL_NODE,
        "settings": {"webhook": "cluster", "tracingEndpoint": urls["otlp_http"], "resyncSeconds": 30},
        "webhook": {"certManager": {"enabled": False}, "caBundle": base64.b64encode(cert.ca).decode()},
        "extraEnv": [
            {"name": "KUBERNETES_SERVICE_HOST", "value": NODE_IP},
            {"name": "KUBERNETES_SERVICE_PORT", "value": str(apiserver.port)},
        ],
    }
    (tmp / "values.yaml").write_text(yaml.safe_dump(values))
    helm = Helm(testbed, tmp / "helm-home")
    began = time.time()
    helm.run(
        "install", release, str(ROOT / "charts" / "readiness-operator"), "-n", namespace,
        "-f", str(tmp / "values.yaml"), "--wait", "--timeout=180s",
    )  # fmt: skip
    pod = wait_for(lambda: operator_pod(kube, namespace), timeout=30, what="the operator's pod")
    ready = next(c for c in pod["status"]["conditions"] if c["type"] == "Ready")
    (status,) = pod["status"]["containerStatuses"]
    created = _stamp(pod["metadata"]["creationTimestamp"])
    sys.stderr.write(
        f"\noperator pod: Ready {_stamp(ready['lastTransitionTime']) - created:.0f}s after it was created "
        f"({_stamp(status['state']['running']['startedAt']) - created:.0f}s to start the container); "
        f"helm install --wait took {time.time() - began:.1f}s\n"
    )
    try:
        yield Installed(release, namespace, watched, pod, helm, urls)
    finally:
        helm.run("uninstall", release, "-n", namespace, "--wait", "--timeout=120s", check=False)
        for name in (watched, namespace):
            kube.run("delete", "namespace", name, "--wait=false", check=False)


def exec_in(kube: Kube, installed: Installed, *command: str) -> subprocess.CompletedProcess[str]:
    name = installed.pod["metadata"]["name"]
    return kube.run("exec", "-n", installed.namespace, name, "--", *command, check=False)


def test_the_operator_runs_locked_down_on_real_0_with_its_probes_passing(
    kube: Kube, installed: Installed
) -> None:
    pod = installed.pod
    assert pod["spec"]["nodeName"] == "real-0"
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "readiness-operator:dev"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    proc = exec_in(kube, installed, "cat", "/proc/1/status")
    assert proc.returncode == 0, proc.stderr
    uids = re.search(r"^Uid:\s+(\d+)", proc.stdout, re.M)
    assert uids is not None
    assert uids.group(1) == "65532", "non-root, the image's own user"
    assert "readiness run" in exec_in(kube, installed, "cat", "/proc/1/cmdline").stdout.replace("\0", " ")
    write = exec_in(kube, installed, "touch", "/opt/readiness/x")
    assert write.returncode != 0
    assert "Read-only file system" in write.stderr, write
    ip = pod["status"]["podIP"]
    assert get(f"http://{ip}:8080/healthz")[0] == 200
    assert get(f"http://{ip}:8080/readyz")[0] == 200
    time.sleep(12)  # a few more liveness and readiness periods
    now = operator_pod(kube, installed.namespace)
    assert now is not None
    assert now["metadata"]["uid"] == pod["metadata"]["uid"]
    (status,) = now["status"]["containerStatuses"]
    assert status["ready"] is True
    assert status["restartCount"] == 0, status
    unhealthy = events(
        kube, installed.namespace, f"involvedObject.name={pod['metadata']['name']},reason=Unhealthy"
    )
    assert unhealthy == [], [e["message"] for e in unhealthy]


def test_the_operator_in_its_pod_makes_a_deployment_compliant(kube: Kube, installed: Installed) -> None:
    ns = installed.watched
    kube.apply(json.dumps(service(ns)))
    probes = {"port": "http", "readiness": {"path": "/readyz", "periodSeconds": 1}}
    spec = {"probes": probes, "metrics": {"port": "metrics"}}
    kube.apply(yaml.safe_dump(simple_profile(ns, "sample", "sample", **spec)))
    wait_for(lambda: target_in(kube, ns, "sample", "sample", "Compliant"), timeout=90, what="Compliant")
    rolled_out(kube, ns, "sample")
    dep = kube.json("get", "deployment", "sample", "-n", ns)
    assert dep["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scrape"] == "true"


def test_the_webhook_in_cluster_mode_stores_a_new_deployment_compliant(
    kube: Kube, installed: Installed
) -> None:
    ns = installed.watched
    kube.apply(yaml.safe_dump(simple_profile(ns, "hooked", "hooked", metrics={"port": "metrics"})))
    wait_for(lambda: kube.json("get", "serviceprofile", "hooked", "-n", ns).get("status"), what="observed")
    time.sleep(2)  # the webhook reads profiles from its own watch

    def admitted() -> dict[str, Any] | None:
        name = f"hooked-{uuid.uuid4().hex[:4]}"
        manifest = service(ns, name)
        manifest["metadata"]["labels"]["app.kubernetes.io/name"] = "hooked"
        manifest["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] = "hooked"
        manifest["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] = "hooked"
        manifest["spec"]["replicas"] = 0
        created = json.loads(
            kube.run("create", "-o", "json", "-f", "-", input_text=json.dumps(manifest)).stdout
        )
        annotations = created["spec"]["template"]["metadata"].get("annotations", {})
        return created if annotations.get("prometheus.io/scrape") == "true" else None

    created = wait_for(admitted, timeout=30, what="a Deployment stored with the profile's annotations")
    assert created["metadata"]["generation"] == 1, "stored compliant: no second write"
    status, text = get(f"http://{installed.pod['status']['podIP']}:9090/metrics")
    answered = [
        line
        for line in text.splitlines()
        if line.startswith('readiness_admission_reviews_total{outcome="Mutated"')
        and not line.endswith(" 0.0")
    ]
    assert status == 200
    assert answered, "the pod's webhook answered the apiserver"


def test_prometheus_scrapes_the_operator_and_every_dashboard_panel_has_data(
    kube: Kube, installed: Installed
) -> None:
    prometheus = Prometheus(installed.urls["prometheus"])
    pod = installed.pod["metadata"]["name"]
    wait_for(
        lambda: prometheus.query(f'readiness_workers{{pod="{pod}"}}'), timeout=60, what="the operator scraped"
    )
    (up,) = prometheus.query(f'up{{pod="{pod}"}}')
    assert up["value"][1] == "1"
    # What the panels show: a compliant profile, and one in conflict with the Deployment's own
    # kubectl-applied readiness probe (a 409, a violation, a Conflicted target).
    ns = installed.watched
    kube.apply(json.dumps(service(ns, "panel")))
    kube.apply(yaml.safe_dump(simple_profile(ns, "panel", "panel", metrics={"port": "metrics"})))
    clash = service(ns, "clash")
    clash["spec"]["replicas"] = 0
    clash["spec"]["template"]["spec"]["containers"][0]["readinessProbe"] = {
        "httpGet": {"path": "/custom", "port": "http"}
    }
    kube.apply(json.dumps(clash))
    probes = {"port": "http", "readiness": {"path": "/readyz"}}
    kube.apply(yaml.safe_dump(simple_profile(ns, "clash", "clash", probes=probes)))
    for expr in (
        f'readiness_profile_compliance_ratio{{profile_namespace="{ns}", profile="panel"}} == 1',
        f'readiness_profile_targets{{profile_namespace="{ns}", profile="clash", state="Conflicted"}} == 1',
    ):
        wait_for(partial(prometheus.query, expr), timeout=120, what=f"{expr} in Prometheus")
    time.sleep(2 * SCRAPE_INTERVAL_SECONDS)  # two samples for rate()
    # Every metric a panel reads is one the scraped operator declares (its HELP and TYPE, which a
    # counter has before its first increment), and every panel has data.
    known = set(prometheus.get("/api/v1/metadata"))
    dashboard = json.loads(DASHBOARD.read_text())
    empty, unknown = [], []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            names = set(re.findall(r"\breadiness_[a-z_]+", target["expr"]))
            unknown += [n for n in names if n not in known and re.sub(SUFFIX, "", n) not in known]
            expr = target["expr"].replace("$namespace", ".*").replace("$profile", ".*")
            if not prometheus.query(expr):
                empty.append(f"{panel['title']}: {target['expr']}")
    assert unknown == [], "metrics the operator does not export"
    assert empty == [], "panels with no data"
    # The alert rules, loaded from deploy/monitoring/, evaluate against these series without error.
    groups = prometheus.get("/api/v1/rules")["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert {r["name"] for r in rules} >= {"ReadinessOperatorDown", "ReadinessConflicts"}
    assert all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError")) for r in rules]
    firing = {r["name"] for r in rules if r["state"] != "inactive"}
    assert "ReadinessOperatorDown" not in firing


def test_the_operators_own_spans_reach_the_collector(kube: Kube, installed: Installed) -> None:
    traces = Path(installed.urls["traces_file"])
    ns = installed.watched
    kube.apply(json.dumps(service(ns, "traced")))
    kube.apply(yaml.safe_dump(simple_profile(ns, "traced", "traced", metrics={"port": "metrics"})))

    def applied() -> list[Span]:
        """The reconcile spans of the traced Deployment that have its apply as a child span (a
        reconcile that only looked has none; each arrives with its batch, seconds apart)."""
        spans = spans_of(traces, service_name="readiness-operator")
        ours = {
            s["span_id"]: s
            for s in spans
            if s["name"] == "reconcile"
            and s["attributes"].get("k8s.deployment.name") == "traced"
            and s["attributes"].get("k8s.namespace.name") == ns
        }
        return [
            ours[s["parent_span_id"]]
            for s in spans
            if s["name"] == "k8s.apply_deployment" and s["parent_span_id"] in ours
        ]

    wait_for(applied, timeout=60, what="the operator's reconcile span with its apply as a child span")


def test_helm_uninstall_drains_the_operator(kube: Kube, installed: Installed) -> None:
    name = installed.pod["metadata"]["name"]
    follow = subprocess.Popen(
        [str(kube.kubectl), f"--kubeconfig={kube.kubeconfig}", "logs", "-f", "-n", installed.namespace, name],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    time.sleep(1)
    began = time.monotonic()
    installed.helm.run("uninstall", installed.release, "-n", installed.namespace, "--wait", "--timeout=120s")
    out, _ = follow.communicate(timeout=60)
    took = time.monotonic() - began
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    names = [e.get("event") for e in events]
    assert "shutting_down" in names, names[-5:]
    assert names[-1] == "operator_stopped", names[-5:]
    assert not [e for e in events if e.get("level") in ("error", "critical")], "a clean drain"
    sys.stderr.write(f"\nhelm uninstall: the operator drained and stopped in {took:.1f}s\n")
