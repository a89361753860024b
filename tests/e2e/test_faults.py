"""Faults: the operator killed mid-rollout, the apiserver killed and restarted, etcd paused, the
CRD deleted and re-created, the operator started before its CRD. Nothing is lost, nothing is
done twice, the operator recovers without a restart and /readyz says what is wrong meanwhile.

The control-plane faults run on a control plane of their own, so the other tests never see them.
"""

from __future__ import annotations

import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest
import yaml
from tests.e2e.support import (
    MIDWAY_FLEET,
    PROBES,
    RESYNC_SECONDS,
    Operator,
    container,
    events,
    fleet,
    probe,
    readyz,
    scrape,
    simple_deployment,
    simple_profile,
    start_operator,
    stop_operator,
    target_in,
    wait_for,
)
from tests.support.kube import Kube
from tests.support.paths import ROOT

from readiness_testbed import Testbed as ControlPlane


def generations(kube: Kube, namespace: str) -> Counter[int]:
    items = kube.json("get", "deployments", "-n", namespace)["items"]
    return Counter(int(d["metadata"]["generation"]) for d in items)


def compliant(kube: Kube, namespace: str, matched: int) -> bool:
    sp = kube.json("get", "serviceprofile", "api", "-n", namespace)
    summary = sp.get("status", {}).get("summary", {})
    return bool(summary.get("matched") == matched and summary.get("compliant") == matched)


def unready_reason(op: Operator, timeout: float = 30) -> str:
    """Wait until /readyz answers 503; its reason."""

    def check() -> str | None:
        code, body = readyz(op)
        return body if code == 503 else None

    return wait_for(check, timeout=timeout, what="/readyz reporting the fault")


def ready(op: Operator) -> bool:
    if op.process.poll() is not None:
        raise AssertionError(f"operator exited with {op.process.returncode}:\n{op.log_text()[-3000:]}")
    return readyz(op)[0] == 200


@pytest.fixture
def own_namespace(kube: Kube) -> Iterator[str]:
    """Out of the session operator's reach (it watches t-*): only this test's operators act here."""
    name = f"fault-{uuid.uuid4().hex[:8]}"
    kube.run("create", "namespace", name)
    yield name
    kube.run("delete", "namespace", name, "--wait=false", check=False)


def test_an_operator_killed_mid_rollout_finishes_with_one_change_per_deployment(
    kube: Kube, own_namespace: str, testbed: Any, crd: None
) -> None:
    namespace, count = own_namespace, MIDWAY_FLEET
    fleet(kube, namespace, count)
    first = start_operator(kube.kubeconfig, testbed.log_dir, "killed", namespaces=namespace, workers="1")
    try:
        wait_for(lambda: ready(first), what="first operator ready")
        kube.apply(yaml.safe_dump(simple_profile(namespace, probes=PROBES)))
        wait_for(lambda: generations(kube, namespace)[2] >= 10, what="the rollout under way")
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=10)
    finally:
        stop_operator(first)
    midway = generations(kube, namespace)
    assert midway[1] > 0, f"the operator was killed mid-rollout, not after it: {midway}"
    second = start_operator(kube.kubeconfig, testbed.log_dir, "after-kill", namespaces=namespace)
    try:
        wait_for(lambda: compliant(kube, namespace, count), timeout=120, what="every Deployment compliant")
        assert generations(kube, namespace) == Counter({2: count}), "exactly one template change each"

        def announced() -> Counter[str]:
            found = events(kube, namespace, "reason=ProfileApplied")
            return Counter(e["involvedObject"]["name"] for e in found)

        # Events go out after the work, 10 a second: the second operator's arrive once it is done.
        wait_for(
            lambda: len(announced()) >= count - midway[2],
            timeout=60,
            what="the second operator's ProfileApplied events for what it changed",
        )
        per_deployment = announced()
        assert all(n == 1 for n in per_deployment.values()), per_deployment.most_common(3)
    finally:
        stop_operator(second)


def test_a_profile_deleted_mid_reconcile_stops_its_work_cleanly(
    kube: Kube, own_namespace: str, testbed: Any, crd: None
) -> None:
    namespace, count = own_namespace, MIDWAY_FLEET
    fleet(kube, namespace, count)
    op = start_operator(
        kube.kubeconfig, testbed.log_dir, "profile-deleted", namespaces=namespace, workers="1"
    )
    try:
        wait_for(lambda: ready(op), what="operator ready")
        kube.apply(yaml.safe_dump(simple_profile(namespace, probes=PROBES)))
        wait_for(lambda: generations(kube, namespace)[2] >= 10, what="the rollout under way")
        kube.run("delete", "serviceprofile", "api", "-n", namespace, "--wait=true")
        time.sleep(3)  # what was in flight lands
        stopped = generations(kube, namespace)
        time.sleep(RESYNC_SECONDS + 2)
        assert generations(kube, namespace) == stopped, "nothing more is written for a deleted profile"
        assert stopped[1] > 0, "deleted mid-reconcile, not after it"
        assert ready(op), "no crash, still ready"
        assert "Traceback" not in op.log_text()
        # Re-created, it finishes the rest with one change each.
        kube.apply(yaml.safe_dump(simple_profile(namespace, probes=PROBES)))
        wait_for(lambda: compliant(kube, namespace, count), timeout=120, what="every Deployment compliant")
        assert generations(kube, namespace) == Counter({2: count})
    finally:
        stop_operator(op)


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A control plane of this module's own: its apiserver and etcd are about to suffer."""
    testbed = ControlPlane(tmp_path_factory.mktemp("faults") / "testbed")
    testbed.up()
    try:
        yield testbed
    finally:
        testbed.down()


@pytest.fixture
def bed_kube(bed: ControlPlane) -> Kube:
    kube = Kube(kubectl=bed.kubectl, kubeconfig=bed.kubeconfig)
    kube.run("apply", "--server-side", "-k", str(ROOT / "crds"))
    kube.established("serviceprofiles.readiness.dev")
    return kube


def probe_path(kube: Kube, namespace: str) -> str | None:
    dep = kube.json("get", "deployment", "api", "-n", namespace)
    path = container(dep).get("readinessProbe", {}).get("httpGet", {}).get("path")
    return None if path is None else str(path)


def drift_and_wait(kube: Kube, namespace: str) -> None:
    remove = '[{"op": "remove", "path": "/spec/template/spec/containers/0/readinessProbe"}]'
    kube.run(
        "patch", "-n", namespace, "deployment/api", "--type=json", "-p", remove, "--field-manager=drifter"
    )
    wait_for(lambda: probe_path(kube, namespace) == "/ready", timeout=60, what="the drift corrected")


def test_apiserver_killed_and_etcd_paused(bed: ControlPlane, bed_kube: Kube) -> None:
    kube, namespace = bed_kube, "faults-apiserver"
    kube.run("create", "namespace", namespace)
    kube.apply(yaml.safe_dump_all([simple_deployment(namespace), simple_profile(namespace, probes=PROBES)]))
    op = start_operator(bed.kubeconfig, bed.log_dir, "faults", namespaces=namespace)
    try:
        wait_for(lambda: ready(op), what="operator ready")
        wait_for(lambda: compliant(kube, namespace, 1), what="compliant")

        bed.stop("kube-apiserver", kill=True)
        down = time.monotonic()
        reason = unready_reason(op)
        assert "apiserver" in reason, reason
        assert scrape(op, "readiness_apiserver_up") == 0, "the outage shows as a metric"
        assert scrape(op, "readiness_api_errors_total") >= 1
        time.sleep(5)  # the operator keeps running without its apiserver
        assert op.process.poll() is None
        bed.start("kube-apiserver")
        back = time.monotonic()
        wait_for(lambda: ready(op), timeout=60, what="/readyz back after the apiserver returned")
        assert scrape(op, "readiness_apiserver_up") == 1, "and clears"
        sys.stderr.write(
            f"apiserver outage: {back - down:.1f}s down, ready {time.monotonic() - back:.1f}s after it returned\n"
        )
        drift_and_wait(kube, namespace)

        bed.pause("etcd")
        time.sleep(10)
        bed.resume("etcd")
        wait_for(lambda: ready(op), timeout=60, what="/readyz after etcd resumed")
        drift_and_wait(kube, namespace)
        assert op.process.poll() is None, "no restart needed"
        dep = kube.json("get", "deployment", "api", "-n", namespace)
        assert dep["metadata"]["generation"] == 6, "one apply, two drifts, two corrections"
    finally:
        stop_operator(op)


def healthz(op: Operator) -> tuple[int, str]:
    return probe(op, "/healthz")


def asks_for_restart(op: Operator) -> bool:
    readyz(op)  # the readiness probe is what looks at the CRD, as the kubelet's does
    code, body = healthz(op)
    return code == 503 and "restart to serve it" in body


def test_the_crd_deleted_and_recreated_and_an_operator_started_before_it(
    bed: ControlPlane, bed_kube: Kube
) -> None:
    kube, namespace = bed_kube, "faults-crd"
    kube.run("create", "namespace", namespace)
    kube.apply(yaml.safe_dump(simple_deployment(namespace)))
    running = start_operator(bed.kubeconfig, bed.log_dir, "crd-running", namespaces=namespace)
    early: Operator | None = None
    try:
        wait_for(lambda: ready(running), what="operator ready")
        kube.run("delete", "crd", "serviceprofiles.readiness.dev", "--wait=true")

        # kopf either stops the operator when the resource under a live watch vanishes (exit 1:
        # the kubelet restarts it) or keeps it up; up, it says what is missing.
        def reacted() -> str | None:
            if running.process.poll() is not None:
                return f"exited {running.process.returncode}"
            code, body = readyz(running)
            return body if code == 503 and "is not installed" in body else None

        wait_for(reacted, timeout=30, what="the running operator noticing the CRD is gone")
        early = start_operator(bed.kubeconfig, bed.log_dir, "crd-early", namespaces=namespace)
        time.sleep(5)
        assert early.process.poll() is None, f"started before its CRD it waits:\n{early.log_text()[-2000:]}"
        assert "is not installed" in readyz(early)[1]
        assert healthz(early)[0] == 200, "alive: nothing to restart for while the CRD is away"
        kube.run("apply", "--server-side", "-k", str(ROOT / "crds"))
        kube.established("serviceprofiles.readiness.dev")
        # kopf may not serve a CRD that appeared after it started; the operator says so rather
        # than look ready, and its liveness probe restarts it.
        for op in (running, early):
            if op.process.poll() is None:
                wait_for(partial(asks_for_restart, op), timeout=30, what="a request to be restarted")
        assert early.process.poll() is None
        stop_operator(early)
        stop_operator(running)
        restarted = start_operator(bed.kubeconfig, bed.log_dir, "crd-restarted", namespaces=namespace)
        try:
            wait_for(lambda: ready(restarted), timeout=60, what="ready after the restart")
            kube.apply(yaml.safe_dump(simple_profile(namespace, probes=PROBES)))
            wait_for(lambda: compliant(kube, namespace, 1), timeout=60, what="compliant after the restart")
            assert probe_path(kube, namespace) == "/ready"
            assert healthz(restarted)[0] == 200
        finally:
            stop_operator(restarted)
    finally:
        if early is not None:
            stop_operator(early)
        stop_operator(running)


def applies(op: Operator) -> int:
    return op.log_text().count('"event": "deployment_applied"')


FIGHT_SECONDS, REVERT_EVERY, LIMIT, WINDOW = 60, 3, 3, 25


def test_a_gitops_manager_reverting_for_a_minute_is_not_fought_and_a_restart_does_not_restart_it(
    kube: Kube, own_namespace: str, testbed: Any, crd: None
) -> None:
    """A Flux-like manager applies its own readiness path every few seconds for a minute; the
    operator is killed and restarted half-way. Corrections stay within the limit plus one try
    per quiet window, the target names the manager, and when the manager stops the operator
    converges."""
    ns = own_namespace

    def launch(name: str) -> Operator:
        return start_operator(
            kube.kubeconfig,
            testbed.log_dir,
            name,
            namespaces=ns,
            max_corrections=str(LIMIT),
            correction_window_seconds=str(WINDOW),
            resync_seconds="5",
        )

    bot = simple_deployment(ns)
    container(bot)["readinessProbe"] = {"httpGet": {"path": "/bot", "port": "http"}}
    manifest = yaml.safe_dump(bot)

    def revert() -> None:
        kube.apply(manifest, "--server-side", "--force-conflicts", "--field-manager=gitops-bot")

    def path() -> str:
        return str(
            container(kube.json("get", "deployment", "api", "-n", ns))["readinessProbe"]["httpGet"]["path"]
        )

    first = launch("fought")
    second: Operator | None = None
    try:
        wait_for(partial(ready, first), what="the operator ready")
        revert()
        kube.apply(yaml.safe_dump(simple_profile(ns, probes=PROBES, conflictPolicy="Force")))
        wait_for(lambda: path() == "/ready", what="the first apply")
        start = int(kube.json("get", "deployment", "api", "-n", ns)["metadata"]["generation"])
        began, restarted = time.monotonic(), False
        while time.monotonic() - began < FIGHT_SECONDS:
            revert()
            if not restarted and time.monotonic() - began > FIGHT_SECONDS / 2:
                t = target_in(kube, ns, "api", "api", "Conflicted")
                assert t is not None, "left alone before the restart"
                assert "gitops-bot" in t["message"]
                first.process.send_signal(signal.SIGKILL)
                first.process.wait(timeout=10)
                second = launch("fought-again")
                wait_for(partial(ready, second), what="the restarted operator ready")
                restarted = True
            time.sleep(REVERT_EVERY)
        assert second is not None
        t = target_in(kube, ns, "api", "api", "Conflicted")
        assert t is not None, "still reported"
        assert "gitops-bot" in t["message"], "naming the manager"
        corrections = applies(first) + applies(second) - 1
        allowed = LIMIT + FIGHT_SECONDS // WINDOW
        fought = int(kube.json("get", "deployment", "api", "-n", ns)["metadata"]["generation"]) - start
        sys.stderr.write(f"fight: {corrections} corrections, {fought} template changes in {FIGHT_SECONDS}s\n")
        assert corrections <= allowed, f"{corrections} corrections: the limit, then one try per quiet window"
        assert applies(second) <= FIGHT_SECONDS // WINDOW, "the restart did not start the fight again"

        # The manager stops: once it has been quiet for the window, one correction converges.
        wait_for(
            lambda: path() == "/ready", timeout=WINDOW + 30, what="convergence after the manager stopped"
        )
        wait_for(partial(target_in, kube, ns, "api", "api", "Compliant"), what="reported compliant")
        assert scrape(second, "readiness_drift_corrections_total") >= 1
    finally:
        for op in (first, second):
            if op is not None and op.process.poll() is None:
                stop_operator(op)
