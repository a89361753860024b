"""The mutating webhook against the real apiserver: READINESS_WEBHOOK=local, one operator per test
in a namespace of its own (the registration selects only that namespace, so nothing else on the
shared control plane is sent to it)."""

from __future__ import annotations

import json
import signal
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from tests.e2e.support import (
    PROBES,
    Operator,
    _free_port,
    _ready,
    container,
    deployment,
    profile,
    replicasets,
    scrape,
    simple_deployment,
    simple_profile,
    start_operator,
    stop_operator,
    target,
    target_in,
    wait_for,
)
from tests.support.kube import Kube

pytestmark = pytest.mark.e2e
ADMITTED = "readiness.dev/admitted"
RESOURCES: dict[str, Any] = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}}
PROFILE: dict[str, Any] = {
    "probes": PROBES,
    "resources": RESOURCES,
    "metrics": {"port": "metrics"},
    "logging": {"level": "info"},
}


@pytest.fixture
def ns(kube: Kube, crd: None) -> Iterator[str]:
    name = f"solo-wh-{uuid.uuid4().hex[:6]}"  # not t-*: the session operator does not watch it
    kube.run("create", "namespace", name)
    yield name
    kube.run("delete", "namespace", name, "--wait=false", check=False)


class Webhooked:
    """Operators with READINESS_WEBHOOK=local on one port, started and stopped by the test; the
    registration is checked gone after a clean stop, and removed by hand after a kill."""

    def __init__(self, kube: Kube, namespace: str, log_dir: Any) -> None:
        self.kube, self.namespace, self.log_dir = kube, namespace, log_dir
        self.port = _free_port()
        self.running: Operator | None = None

    @property
    def registration(self) -> str:
        return f"readiness-operator-local-{self.port}"

    def start(self, **settings: str) -> Operator:
        options: dict[str, Any] = {
            "namespaces": self.namespace,
            "webhook": "local",
            "webhook_port": str(self.port),
            "resync_seconds": "5",
            "log_level": "debug",
            **settings,
        }
        op = start_operator(self.kube.kubeconfig, self.log_dir, f"webhook-{self.namespace}", **options)
        self.running = op
        wait_for(lambda: _ready(op), timeout=60, what=f"operator /readyz (log: {op.log})")
        return op

    def registered(self) -> bool:
        found = self.kube.run("get", "mutatingwebhookconfiguration", self.registration, check=False)
        return found.returncode == 0

    def stop(self) -> None:
        assert self.running is not None
        stop_operator(self.running)
        assert self.running.process.returncode == 0, self.running.log_text()[-2000:]
        assert not self.registered(), "a clean stop removes the registration"
        self.running = None

    def kill(self) -> None:
        assert self.running is not None
        self.running.process.send_signal(signal.SIGKILL)
        self.running.process.wait(timeout=10)
        self.running = None

    def close(self) -> None:
        if self.running is not None:
            stop_operator(self.running)
        self.kube.run("delete", "mutatingwebhookconfiguration", self.registration, "--ignore-not-found")


@pytest.fixture
def webhooked(kube: Kube, ns: str, testbed: Any) -> Iterator[Webhooked]:
    hooks = Webhooked(kube, ns, testbed.log_dir)
    try:
        yield hooks
    finally:
        hooks.close()


def settle_profile(kube: Kube, namespace: str, name: str) -> None:
    """The operator has the profile (its status is written from it), so the webhook has it too."""
    wait_for(
        lambda: profile(kube, namespace, name).get("status", {}).get("observedGeneration") == 1,
        what=f"profile {name} observed",
    )


def create(kube: Kube, manifest: dict[str, Any]) -> float:
    started = time.monotonic()
    kube.run("create", "-f", "-", input_text=json.dumps(manifest))
    return time.monotonic() - started


def applies(op: Operator) -> float:
    return scrape(op, "readiness_deployment_applies_total")


def mutated(op: Operator) -> float:
    """Admission requests the operator answered with a mutation."""
    with urllib.request.urlopen(f"http://127.0.0.1:{op.metrics_port}/metrics", timeout=3) as response:
        lines = response.read().decode().splitlines()
    prefix = 'readiness_admission_reviews_total{outcome="Mutated"'
    return sum(float(line.split()[-1]) for line in lines if line.startswith(prefix))


def test_a_new_deployment_is_stored_compliant_at_generation_1_and_its_updates_keep_it_so(
    kube: Kube, ns: str, webhooked: Webhooked
) -> None:
    op = webhooked.start()
    kube.apply(json.dumps(simple_profile(ns, **PROFILE)))
    settle_profile(kube, ns, "api")
    create(kube, simple_deployment(ns))

    live = deployment(kube, ns, "api")
    assert live["metadata"]["generation"] == 1
    app = container(live)
    assert app["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http", "scheme": "HTTP"}
    assert app["resources"] == RESOURCES
    assert {"name": "LOG_LEVEL", "value": "info"} in app["env"]
    assert live["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == "9090"
    assert live["metadata"]["annotations"][ADMITTED] == (
        "api@1: probes.readiness, resources.requests.cpu, resources.requests.memory, "
        "resources.limits.memory, logging.env, metrics.annotations"
    )
    kube.run("rollout", "status", "-n", ns, "deployment/api", "--timeout=60s")
    assert len(replicasets(kube, ns, "api")) == 1, "one rollout: the first ReplicaSet is right"
    # The reconciler finds it compliant and writes nothing.
    wait_for(lambda: target_in(kube, ns, "api", "api", "Compliant"), what="api Compliant")
    assert applies(op) == 0
    assert deployment(kube, ns, "api")["metadata"]["generation"] == 1

    # The team's next rollout: a new image keeps the profile's fields, in one new ReplicaSet.
    kube.run("set", "image", "-n", ns, "deployment/api", "app=registry.example/api:2")
    kube.run("rollout", "status", "-n", ns, "deployment/api", "--timeout=60s")
    live = deployment(kube, ns, "api")
    assert live["metadata"]["generation"] == 2
    assert container(live)["image"] == "registry.example/api:2"
    assert container(live)["readinessProbe"] == app["readinessProbe"]
    assert len(replicasets(kube, ns, "api")) == 2
    time.sleep(6)  # past a resync: still nothing to write
    assert applies(op) == 0
    assert target(profile(kube, ns, "api"), "api")["state"] == "Compliant"
    webhooked.stop()


def test_a_client_side_applied_deployment_is_stored_with_the_profiles_grace(
    kube: Kube, ns: str, webhooked: Webhooked
) -> None:
    """`kubectl apply` (client-side) holds the API's grace period of 30 without having chosen
    it: admission takes it, so the Deployment is stored with the profile's 40 at generation 1."""
    op = webhooked.start()
    kube.apply(json.dumps(simple_profile(ns, shutdown={"terminationGracePeriodSeconds": 40})))
    settle_profile(kube, ns, "api")
    applied = kube.run("apply", "-f", "-", input_text=json.dumps(simple_deployment(ns)))
    assert "took terminationGracePeriodSeconds=30 (API default" in applied.stderr, "kubectl says so"

    live = deployment(kube, ns, "api")
    assert live["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 40
    assert live["metadata"]["generation"] == 1
    assert live["metadata"]["annotations"][ADMITTED] == "api@1: shutdown.grace"
    wait_for(lambda: target_in(kube, ns, "api", "api", "Compliant"), what="api Compliant")
    assert applies(op) == 0, "the reconciler finds it compliant"
    webhooked.stop()


def test_a_dry_run_shows_the_mutation_and_gitops_diffs_see_none(
    kube: Kube, ns: str, webhooked: Webhooked
) -> None:
    webhooked.start()
    kube.apply(json.dumps(simple_profile(ns, **PROFILE)))
    settle_profile(kube, ns, "api")
    manifest = json.dumps(simple_deployment(ns))

    dry = json.loads(
        kube.run("apply", "--dry-run=server", "-o", "json", "-f", "-", input_text=manifest).stdout
    )
    assert container(dry)["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert ADMITTED in dry["metadata"]["annotations"]
    assert kube.run("get", "deployment", "api", "-n", ns, check=False).returncode != 0, "nothing stored"

    # As Argo CD (server-side diff) and Flux apply it: server-side, as the team wrote it.
    kube.run("apply", "--server-side", "--field-manager=gitops", "-f", "-", input_text=manifest)
    live = deployment(kube, ns, "api")
    assert live["metadata"]["generation"] == 1
    assert container(live)["readinessProbe"]["httpGet"]["path"] == "/ready"
    diff = kube.run(
        "diff", "--server-side", "--field-manager=gitops", "-f", "-", input_text=manifest, check=False
    )
    assert (diff.returncode, diff.stdout) == (0, ""), "no difference from the live object"
    again = json.loads(
        kube.run(
            "apply",
            "--server-side",
            "--field-manager=gitops",
            "--dry-run=server",
            "-o",
            "json",
            "-f",
            "-",
            input_text=manifest,
        ).stdout
    )
    assert again["spec"] == live["spec"]
    assert again["metadata"]["annotations"] == live["metadata"]["annotations"]
    plain = kube.run("diff", "-f", "-", input_text=manifest, check=False)
    assert (plain.returncode, plain.stdout) == (0, "")
    webhooked.stop()


def test_report_keeps_the_teams_values_and_force_takes_them(
    kube: Kube, ns: str, webhooked: Webhooked
) -> None:
    op = webhooked.start()
    kube.apply(
        yaml.safe_dump_all(
            [
                simple_profile(ns, "report", selects="rep", probes=PROBES, resources=RESOURCES),
                simple_profile(
                    ns, "force", selects="forced", conflictPolicy="Force", probes=PROBES, resources=RESOURCES
                ),
            ]
        )
    )
    settle_profile(kube, ns, "report")
    settle_profile(kube, ns, "force")
    mine = {"httpGet": {"path": "/mine", "port": 8080}}
    for name in ("rep", "forced"):
        manifest = simple_deployment(ns, name)
        container(manifest)["readinessProbe"] = mine
        create(kube, manifest)

    rep, forced = deployment(kube, ns, "rep"), deployment(kube, ns, "forced")
    assert (rep["metadata"]["generation"], forced["metadata"]["generation"]) == (1, 1)
    assert container(rep)["readinessProbe"]["httpGet"]["path"] == "/mine", "Report: the team's value"
    assert container(rep)["resources"] == RESOURCES, "what the team did not set is set"
    assert container(forced)["readinessProbe"]["httpGet"]["path"] == "/ready", "Force: the profile's"
    conflicted = wait_for(lambda: target_in(kube, ns, "report", "rep", "Conflicted"), what="rep Conflicted")
    assert {c["manager"] for c in conflicted["conflicts"]} == {"kubectl-create"}
    wait_for(lambda: target_in(kube, ns, "force", "forced", "Compliant"), what="forced Compliant")
    assert applies(op) == 0, "the reconciler keeps them exactly as the webhook did"
    webhooked.stop()


def test_an_audit_profile_mutates_nothing(kube: Kube, ns: str, webhooked: Webhooked) -> None:
    op = webhooked.start()
    kube.apply(json.dumps(simple_profile(ns, mode="Audit", **PROFILE)))
    settle_profile(kube, ns, "api")
    create(kube, simple_deployment(ns))
    live = deployment(kube, ns, "api")
    assert "readinessProbe" not in container(live)
    assert ADMITTED not in (live["metadata"].get("annotations") or {})
    wait_for(lambda: target_in(kube, ns, "api", "api", "Violating"), what="api Violating")
    assert applies(op) == 0
    assert deployment(kube, ns, "api")["metadata"]["generation"] == 1
    webhooked.stop()


def test_with_the_webhook_down_a_deploy_goes_through_and_the_reconciler_catches_up(
    kube: Kube, ns: str, webhooked: Webhooked
) -> None:
    webhooked.start()
    kube.apply(json.dumps(simple_profile(ns, **PROFILE)))
    settle_profile(kube, ns, "api")
    webhooked.kill()  # registered, and nothing listens: failurePolicy Ignore admits as sent
    assert webhooked.registered()
    took = create(kube, simple_deployment(ns))
    assert took < 10, "connection refused is answered at once; at worst the 5 s timeout"
    live = deployment(kube, ns, "api")
    assert (live["metadata"]["generation"], "readinessProbe" in container(live)) == (1, False)

    op = webhooked.start()  # the reconciler, the backstop, applies what admission did not
    wait_for(lambda: target_in(kube, ns, "api", "api", "Compliant"), what="api Compliant")
    live = deployment(kube, ns, "api")
    assert live["metadata"]["generation"] == 2
    assert container(live)["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert applies(op) == 1
    webhooked.stop()


def test_next_change_rides_the_teams_next_rollout(kube: Kube, ns: str, webhooked: Webhooked) -> None:
    op = webhooked.start()
    create(kube, simple_deployment(ns))  # before any profile: stored as written
    kube.run("rollout", "status", "-n", ns, "deployment/api", "--timeout=60s")
    kube.apply(json.dumps(simple_profile(ns, rollout={"trigger": "NextChange"}, **PROFILE)))
    pending = wait_for(lambda: target_in(kube, ns, "api", "api", "Pending"), what="api Pending")
    assert pending["message"].startswith("waits for the team's next rollout (rollout.trigger NextChange)")
    time.sleep(6)  # past a resync: the operator starts no rollout
    assert deployment(kube, ns, "api")["metadata"]["generation"] == 1
    assert applies(op) == 0
    progressing = next(
        c for c in profile(kube, ns, "api")["status"]["conditions"] if c["type"] == "Progressing"
    )
    assert "wait for their team's next rollout" in progressing["message"]

    kube.run("set", "image", "-n", ns, "deployment/api", "app=registry.example/api:2")
    kube.run("rollout", "status", "-n", ns, "deployment/api", "--timeout=60s")
    live = deployment(kube, ns, "api")
    assert live["metadata"]["generation"] == 2
    sets = replicasets(kube, ns, "api")
    assert len(sets) == 2, "exactly one new ReplicaSet"
    [new] = [rs for rs in sets if rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"]
    app = container(new)
    assert app["image"] == "registry.example/api:2"
    assert app["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert app["resources"] == RESOURCES
    wait_for(lambda: target_in(kube, ns, "api", "api", "Compliant"), what="api Compliant")
    assert applies(op) == 0
    webhooked.stop()


def test_a_standby_replica_answers_as_the_active_one_would(
    kube: Kube,
    peering_namespace: str,
    testbed: Any,
) -> None:
    """kopf peering pauses a standby's watches, so its World may not hold the profiles: it
    reads them through the API. Here another live peer outranks it for the whole test."""
    ns = peering_namespace
    now = datetime.now(UTC).isoformat()
    peer = {"priority": 1000, "lifetime": 3600, "lastseen": now}
    kube.apply(
        json.dumps(
            {
                "apiVersion": "kopf.dev/v1",
                "kind": "KopfPeering",
                "metadata": {"name": "readiness-operator", "namespace": ns},
                "status": {"elsewhere": peer},
            }
        )
    )
    hooks = Webhooked(kube, ns, testbed.log_dir)
    try:
        op = hooks.start(peering="readiness-operator", peering_priority="100")
        wait_for(
            lambda: "Pausing the watch-stream for serviceprofiles" in op.log_text(), what="its watches paused"
        )
        kube.apply(json.dumps(simple_profile(ns, **PROFILE)))
        time.sleep(1)  # the standby writes no status; the API has the profile at once
        create(kube, simple_deployment(ns))
        live = deployment(kube, ns, "api")
        assert live["metadata"]["generation"] == 1
        assert container(live)["readinessProbe"]["httpGet"]["path"] == "/ready"
        assert ADMITTED in live["metadata"]["annotations"]
        assert applies(op) == 0
        assert mutated(op) == 1
        hooks.stop()
    finally:
        hooks.close()


def test_the_production_chapter_is_set_at_admission_and_its_findings_never_mutate(
    kube: Kube, ns: str, webhooked: Webhooked
) -> None:
    """security and profiling are written into a new Deployment at generation 1; images and
    secrets are findings only, and security under mode Audit is only reported."""
    webhooked.start()
    sections: dict[str, Any] = {
        "security": {
            "runAsNonRoot": True,
            "dropAllCapabilities": True,
            "automountServiceAccountToken": False,
        },
        "profiling": {"port": "metrics", "profiles": ["cpu"]},
        "images": {"forbidLatest": True},
        "secrets": {},
    }
    kube.apply(json.dumps(simple_profile(ns, **sections)))
    settle_profile(kube, ns, "api")
    manifest = simple_deployment(ns)
    container(manifest)["image"] = "registry.example/api:latest"
    container(manifest)["env"] = [{"name": "DB_PASSWORD", "value": "planted-at-admission"}]
    create(kube, manifest)

    live = deployment(kube, ns, "api")
    assert live["metadata"]["generation"] == 1
    assert container(live)["securityContext"] == {"runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}
    assert live["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    annotations = live["spec"]["template"]["metadata"]["annotations"]
    assert annotations["profiles.grafana.com/cpu.port_name"] == "metrics"
    assert container(live)["image"] == "registry.example/api:latest", "an image is never rewritten"
    assert container(live)["env"] == [{"name": "DB_PASSWORD", "value": "planted-at-admission"}]
    t = wait_for(lambda: target_in(kube, ns, "api", "api", "Violating"), what="api Violating")
    assert {v["check"] for v in t["violations"]} == {"images.latest", "secrets.literal"}
    assert "planted-at-admission" not in json.dumps(profile(kube, ns, "api"))

    # The same rule rolled out as Audit first: reported, not written.
    audit = {**sections, "security": {**sections["security"], "mode": "Audit"}}
    kube.apply(json.dumps(simple_profile(ns, "audited", "audited", **audit)))
    settle_profile(kube, ns, "audited")
    create(kube, simple_deployment(ns, "audited"))
    live = deployment(kube, ns, "audited")
    assert "securityContext" not in container(live)
    assert "profiles.grafana.com/cpu.scrape" in live["spec"]["template"]["metadata"]["annotations"]
    t = wait_for(lambda: target_in(kube, ns, "audited", "audited", "Violating"), what="audited Violating")
    assert "security.runAsNonRoot.missing" in {v["check"] for v in t["violations"]}
    webhooked.stop()
