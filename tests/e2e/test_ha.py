"""Two replicas with kopf peering: one acts; kill it and the other takes over."""

from __future__ import annotations

import signal
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.e2e.support import (
    MIDWAY_FLEET,
    PROBES,
    Operator,
    container,
    deployment,
    fleet,
    scrape,
    simple_deployment,
    simple_profile,
    start_operator,
    stop_operator,
    wait_for,
)
from tests.support.kube import Kube

pytestmark = pytest.mark.e2e
LIFETIME = 10


def start(kube: Kube, namespace: str, priority: int, log_dir: Path, workers: str = "32") -> Operator:
    return start_operator(
        kube.kubeconfig,
        log_dir,
        f"ha-{namespace}-{priority}",
        environ={"POD_ID": f"replica-{priority}"},
        namespaces=namespace,
        peering="readiness-operator",
        peering_priority=str(priority),
        peering_lifetime_seconds=str(LIFETIME),
        resync_seconds="5",
        workers=workers,
    )


def series(op: Operator, name: str) -> int:
    """How many series of ``name`` the replica exports."""
    with urllib.request.urlopen(f"http://127.0.0.1:{op.metrics_port}/metrics", timeout=3) as response:
        return sum(1 for line in response.read().decode().splitlines() if line.startswith(f"{name}{{"))


def in_order(kube: Kube, namespace: str, log_dir: Path, workers: str = "32") -> tuple[Operator, Operator]:
    """The active replica (priority 200), then the standby (100) once the first has announced
    itself: a replica alone acts until it sees the other, and these tests are about a replica
    that dies, not one that joins."""
    started = [start(kube, namespace, 200, log_dir, workers=workers)]
    active = started[0]
    try:
        wait_for(lambda: role(active) == 1, timeout=90, what="the active replica acts")
        # kopf says so once its own entry is in the peering object, where the standby sees it.
        wait_for(lambda: "Resuming operations" in active.log_text(), timeout=90, what="the active announced")
        started.append(standby := start(kube, namespace, 100, log_dir, workers=workers))
        wait_for(lambda: role(standby) == 0, timeout=90, what="the standby up, standing by")
    except BaseException:
        for op in started:
            stop_operator(op)
        raise
    return active, standby


def role(op: Operator) -> float | None:
    """The replica's readiness_active gauge, or None while its /metrics does not answer."""
    try:
        return scrape(op, "readiness_active")
    except OSError:
        return None


def applied_by(log: Path) -> int:
    return log.read_text(errors="replace").count('"event": "deployment_applied"')


def test_the_standby_takes_over_when_the_active_replica_dies(
    kube: Kube, peering_namespace: str, testbed: Any
) -> None:
    ns = peering_namespace
    active, standby = in_order(kube, ns, Path(testbed.log_dir))
    logs = {200: active.log, 100: standby.log}
    try:
        kube.apply(yaml.safe_dump_all([simple_deployment(ns), simple_profile(ns, probes=PROBES)]))
        kube.run("wait", "-n", ns, "--for=condition=Compliant", "serviceprofile/api", "--timeout=60s")
        assert applied_by(logs[200]) == 1
        assert applied_by(logs[100]) == 0, "the standby does not act"
        # The replicas made their own peering object, and say which of them acts.
        peers = kube.json("get", "kopfpeering", "readiness-operator", "-n", ns).get("status", {})
        assert {"replica-200", "replica-100"} <= set(peers), peers
        wait_for(lambda: scrape(active, "readiness_active") == 1, what="the active replica says so")
        wait_for(lambda: scrape(standby, "readiness_active") == 0, what="the standby says so")
        assert series(active, "readiness_profile_compliance_ratio") == 1
        assert series(standby, "readiness_profile_compliance_ratio") == 0, "no frozen gauges on standby"
        assert scrape(active, "readiness_build_info") == 1

        active.process.send_signal(signal.SIGKILL)  # a crash: no goodbye in the peering object
        active.process.wait(timeout=10)
        killed = time.monotonic()
        kube.run(
            "patch",
            "-n",
            ns,
            "deployment/api",
            "--type=json",
            "-p",
            '[{"op": "remove", "path": "/spec/template/spec/containers/0/readinessProbe"}]',
        )
        wait_for(
            lambda: "readinessProbe" in container(deployment(kube, ns, "api")),
            timeout=LIFETIME * 6,
            what="the standby corrects the drift",
        )
        takeover = time.monotonic() - killed
        assert applied_by(logs[100]) == 1
        wait_for(lambda: scrape(standby, "readiness_active") == 1, what="the new active replica says so")
        wait_for(
            lambda: series(standby, "readiness_profile_compliance_ratio") == 1,
            what="the new active replica's per-profile series",
        )
        sys.stderr.write(f"failover after SIGKILL: {takeover:.1f}s (peering lifetime {LIFETIME}s)\n")
        assert "Resuming operations" in logs[100].read_text()
    finally:
        for op in (active, standby):
            stop_operator(op)


def test_the_standby_finishes_what_the_killed_active_replica_began(
    kube: Kube, peering_namespace: str, testbed: Any
) -> None:
    """The active replica is killed mid-convergence of a fleet: the standby finishes, with
    exactly one template change per Deployment between them."""
    ns, count = peering_namespace, MIDWAY_FLEET
    fleet(kube, ns, count)
    active, standby = in_order(kube, ns, Path(testbed.log_dir), workers="1")
    try:
        kube.apply(yaml.safe_dump(simple_profile(ns, probes=PROBES)))
        # Its own log says so at once, where listing the fleet takes as long as applying dozens.
        wait_for(lambda: applied_by(active.log) >= 10, what="the active replica under way")
        active.process.send_signal(signal.SIGKILL)
        active.process.wait(timeout=10)
        before = applied_by(active.log)
        assert before < count, "killed mid-convergence"
        wait_for(
            lambda: (
                kube.json("get", "serviceprofile", "api", "-n", ns).get("status", {}).get("summary")
                == {"matched": count, "compliant": count, "score": 100}
            ),
            timeout=LIFETIME * 6 + 60,
            what="the standby finishing",
        )
        generations = {
            d["metadata"]["generation"] for d in kube.json("get", "deployments", "-n", ns)["items"]
        }
        assert generations == {2}, "exactly one template change per Deployment"
        # One apply may have reached the apiserver unlogged when the active replica died.
        assert count - 1 <= before + applied_by(standby.log) <= count, "nothing applied twice"
        sys.stderr.write(
            f"HA kill mid-convergence: {before} by the active replica, the rest by the standby\n"
        )
    finally:
        for op in (active, standby):
            stop_operator(op)
