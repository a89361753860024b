"""Operating the operator: health, metrics, graceful shutdown."""

from __future__ import annotations

import json
import signal
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from tests.e2e.support import (
    PROBES,
    Operator,
    fleet,
    readyz,
    simple_deployment,
    simple_profile,
    start_operator,
    stop_operator,
    wait_for,
)
from tests.support.kube import Kube

pytestmark = pytest.mark.e2e


def scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def test_health_endpoints(operator: Operator) -> None:
    for path in ("/healthz", "/readyz"):
        with urllib.request.urlopen(f"http://127.0.0.1:{operator.health_port}{path}", timeout=5) as response:
            assert response.status == 200


def test_metrics_describe_the_work_and_each_profile(kube: Kube, namespace: str, operator: Operator) -> None:
    kube.apply(
        yaml.safe_dump_all(
            [
                simple_deployment(namespace),
                simple_profile(namespace, probes=PROBES, resources={"limits": {"memory": "64Mi"}}),
                simple_deployment(namespace, "audited"),
                simple_profile(namespace, "audit", selects="audited", mode="Audit", probes=PROBES),
            ]
        )
    )
    kube.run("wait", "-n", namespace, "--for=condition=Compliant", "serviceprofile/api", "--timeout=60s")

    def audited() -> dict[str, list[tuple[dict[str, str], float]]] | None:
        found = scrape(operator.metrics_port)
        violations = [
            (labels, value)
            for labels, value in found.get("readiness_profile_violations", [])
            if labels["profile_namespace"] == namespace
        ]
        return found if violations else None

    samples = wait_for(audited, what="violation series")
    for name in (
        "readiness_reconciles_total",
        "readiness_reconcile_duration_seconds_bucket",
        "readiness_deployment_applies_total",
        "readiness_queue_depth",
        "readiness_workers_busy",
        "readiness_workers",
        "readiness_status_writes_total",
    ):
        assert name in samples, name
    mine = {
        (labels["profile"], labels["state"]): value
        for labels, value in samples["readiness_profile_targets"]
        if labels["profile_namespace"] == namespace
    }
    assert mine[("api", "Compliant")] == 1
    assert mine[("audit", "Violating")] == 1
    checks = {
        labels["check"]: value
        for labels, value in samples["readiness_profile_violations"]
        if labels["profile_namespace"] == namespace and labels["profile"] == "audit"
    }
    assert checks == {"probes.readiness.missing": 1}
    applied = sum(
        v for labels, v in samples["readiness_deployment_applies_total"] if labels["result"] == "applied"
    )
    assert applied >= 1

    kube.run("delete", "-n", namespace, "serviceprofile/audit")

    def forgotten() -> bool:
        series = scrape(operator.metrics_port).get("readiness_profile_targets", [])
        return not [
            1
            for labels, _ in series
            if labels["profile_namespace"] == namespace and labels["profile"] == "audit"
        ]

    wait_for(forgotten, what="series of the deleted profile gone")


@pytest.fixture
def solo_namespace(kube: Kube) -> Iterator[str]:
    """A namespace the session operator does not watch (it watches t-*)."""
    name = f"solo-{uuid.uuid4().hex[:8]}"
    kube.run("create", "namespace", name)
    yield name
    kube.run("delete", "namespace", name, "--wait=false", check=False)


def test_sigterm_finishes_in_flight_work_and_exits_cleanly(
    kube: Kube, solo_namespace: str, crd: None, testbed: Any
) -> None:
    """SIGTERM mid-convergence: every reconcile a worker holds when the shutdown begins ends
    with its apply (none is cut off), no new one starts, and the process exits 0."""
    count = 200
    fleet(kube, solo_namespace, count)
    profile = simple_profile(solo_namespace, probes=PROBES, resources={"limits": {"memory": "64Mi"}})
    op = start_operator(kube.kubeconfig, testbed.log_dir, "sigterm", namespaces=solo_namespace, workers="1")
    try:
        wait_for(lambda: readyz(op)[0] == 200, what="operator ready")
        kube.apply(yaml.safe_dump(profile))

        # At the operator's first apply (its own log says so at once), while the rest wait.
        wait_for(lambda: '"deployment_applied"' in op.log_text(), timeout=30, what="first applies")
        op.process.send_signal(signal.SIGTERM)
        op.process.wait(timeout=40)
    finally:
        if op.process.poll() is None:
            op.process.kill()
    log = op.log_text()
    assert op.process.returncode == 0, log[-2000:]
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    events = [line.get("event") for line in lines]
    assert "operator_stopped" in events
    stop = events.index("shutting_down")
    held = [k.split("/")[2] for k in lines[stop]["working_on"] if k.startswith("Deployment/")]
    after = [line["deployment"] for line in lines[stop:] if line.get("event") == "deployment_applied"]
    assert held, f"SIGTERM arrived mid-work (in flight: {lines[stop]['working_on']})"
    assert sorted(after) == sorted(held), "each held reconcile finished with its apply; no new one began"
    items = kube.json("get", "deployments", "-n", solo_namespace, "--show-managed-fields")["items"]
    written = sorted(
        d["metadata"]["name"]
        for d in items
        if any(m["manager"] == "readiness-operator" for m in d["metadata"]["managedFields"])
    )
    applied = sorted(line["deployment"] for line in lines if line.get("event") == "deployment_applied")
    assert written == applied, "every apply that reached the apiserver finished its reconcile"
    assert len(written) < count, "stopped before the end: the rest is left for the next start"
    for dep in items:
        container = dep["spec"]["template"]["spec"]["containers"][0]
        if dep["metadata"]["name"] in written:  # applied: all of it, in one write
            assert dep["metadata"]["generation"] == 2
            assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
            assert container["resources"]["limits"]["memory"] == "64Mi"
        else:  # untouched: none of it
            assert dep["metadata"]["generation"] == 1
            assert "readinessProbe" not in container
            assert not container.get("resources")


def test_reconciles_are_traced_over_otlp(kube: Kube, solo_namespace: str, crd: None, testbed: Any) -> None:
    import http.server
    import threading

    received: list[bytes] = []

    class Collector(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    kube.apply(
        yaml.safe_dump_all([simple_deployment(solo_namespace), simple_profile(solo_namespace, probes=PROBES)])
    )
    op = start_operator(
        kube.kubeconfig,
        testbed.log_dir,
        "traced",
        namespaces=solo_namespace,
        tracing_endpoint=f"http://127.0.0.1:{server.server_address[1]}",
    )
    try:
        kube.run(
            "wait", "-n", solo_namespace, "--for=condition=Compliant", "serviceprofile/api", "--timeout=60s"
        )
        op.process.send_signal(signal.SIGTERM)  # flushes the batch of spans on the way out
        op.process.wait(timeout=40)
    finally:
        if op.process.poll() is None:
            op.process.kill()
        server.shutdown()
    payload = b"".join(received)
    for span in (b"reconcile", b"k8s.apply_deployment", b"k8s.patch_profile_status"):
        assert span in payload, span
    assert solo_namespace.encode() in payload, "spans carry the namespace"


def test_no_secret_value_reaches_logs_events_or_status(
    kube: Kube, solo_namespace: str, crd: None, testbed: Any
) -> None:
    """Secret-looking env values, label and annotation values on Deployments the operator
    changes, reports conflicts on and fights over: none of them in its debug log, its Events or
    the profile's status."""
    ns = solo_namespace
    secrets = {f"s3cr3t{uuid.uuid4().hex}" for _ in range(5)}
    env_secret, attr_secret, level_secret, label_secret, note_secret = sorted(secrets)
    changed = simple_deployment(ns, "changed")
    changed["metadata"]["labels"]["token"] = label_secret
    changed["metadata"]["annotations"] = {"db-password": note_secret}
    changed["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "DB_PASSWORD", "value": env_secret},
        {"name": "OTEL_RESOURCE_ATTRIBUTES", "value": f"auth={attr_secret}"},
        {"name": "API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}},
    ]
    conflicted = simple_deployment(ns, "conflicted")
    conflicted["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "LOG_LEVEL", "value": level_secret}
    ]
    sections = {
        "probes": PROBES,
        "tracing": {"endpoint": "http://collector:4317"},
        "logging": {"level": "info"},
    }
    op = start_operator(kube.kubeconfig, testbed.log_dir, "secrets", namespaces=ns, log_level="debug")
    try:
        kube.apply(
            yaml.safe_dump_all(
                [
                    changed,
                    conflicted,
                    simple_profile(ns, "forced", selects="changed", conflictPolicy="Force", **sections),
                    simple_profile(ns, "reported", selects="conflicted", **sections),
                ]
            )
        )
        kube.run("wait", "-n", ns, "--for=condition=Compliant", "serviceprofile/forced", "--timeout=60s")
        wait_for(
            lambda: (
                "LOG_LEVEL" in kube.run("get", "serviceprofile", "reported", "-n", ns, "-o", "yaml").stdout
            ),
            what="the conflict reported",
        )
        live = kube.json("get", "deployment", "changed", "-n", ns)
        env = {e["name"]: e.get("value") for e in live["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["DB_PASSWORD"] == env_secret, "the team's value is kept"
        assert env["OTEL_RESOURCE_ATTRIBUTES"].startswith(f"auth={attr_secret},"), "appended to, under Force"
        time.sleep(6)  # a resync pass at debug level
    finally:
        stop_operator(op)
    said = {
        "log": op.log_text(),
        "events": kube.run("get", "events", "-n", ns, "-o", "yaml").stdout,
        "status": kube.run("get", "serviceprofiles", "-n", ns, "-o", "yaml").stdout,
    }
    assert '"deployment_applied"' in said["log"], "the log is the operator's, at work"
    leaked = {(where, secret) for where, text in said.items() for secret in secrets if secret in text}
    assert not leaked
