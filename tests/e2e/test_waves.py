"""Safe fleet rollouts: a profile change goes out in waves, a failing one is halted and put back.

The testbed's kwok leaves pods probed on /not-served unready (an app that does not serve what
the profile asks) and the real scheduler leaves pods that request more memory than any node has
unscheduled: two ways for a rollout to fail for real, each within the Deployment's own short
progressDeadlineSeconds.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest
import yaml
from tests.e2e.support import (
    Operator,
    container,
    events,
    profile,
    readyz,
    simple_deployment,
    simple_profile,
    start_operator,
    stop_operator,
    wait_for,
)
from tests.support.kube import Kube

from readiness_testbed.binaries import NEVER_READY_PATH

pytestmark = pytest.mark.e2e
COUNT, BUDGET, DEADLINE = 8, 2, 10


def fleet(kube: Kube, namespace: str) -> None:
    items = []
    for i in range(COUNT):
        item = simple_deployment(namespace, f"web-{i}")
        labels = {"app.kubernetes.io/name": "web"}
        item["metadata"]["labels"] = labels
        item["spec"].update(
            {"replicas": 2, "selector": {"matchLabels": labels}, "progressDeadlineSeconds": DEADLINE}
        )
        item["spec"]["template"]["metadata"]["labels"] = labels
        items.append(item)
    kube.apply(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": items}))
    for item in items:
        kube.run(
            "rollout", "status", "-n", namespace, f"deployment/{item['metadata']['name']}", "--timeout=60s"
        )


def web_profile(namespace: str, **spec: Any) -> dict[str, Any]:
    return simple_profile(
        namespace, "web", selects="web", rollout={"maxConcurrent": BUDGET, **spec.pop("rollout", {})}, **spec
    )


def deployments(kube: Kube, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kube.json("get", "deployments", "-n", namespace)["items"]
    return items


def rolling(dep: dict[str, Any]) -> bool:
    """Mid-rollout, as `kubectl rollout status` sees it (a rollout past its deadline has failed)."""
    status, want = dep.get("status", {}), dep["spec"]["replicas"]
    failed = any(c.get("reason") == "ProgressDeadlineExceeded" for c in status.get("conditions", []))
    caught_up = status.get("observedGeneration", 0) >= dep["metadata"]["generation"]
    if failed and caught_up:
        return False
    return bool(
        status.get("observedGeneration", 0) < dep["metadata"]["generation"]
        or status.get("updatedReplicas", 0) < want
        or status.get("availableReplicas", 0) < want
        or status.get("replicas", 0) > want
    )


class Sampler:
    """Counts, a few times a second, the Deployments mid-rollout because of the profile."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        self.kube, self.namespace, self.peak = kube, namespace, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            found = deployments(self.kube, self.namespace)
            self.peak = max(
                self.peak, sum(1 for d in found if d["metadata"]["generation"] > 1 and rolling(d))
            )
            time.sleep(0.2)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def readiness_paths(kube: Kube, namespace: str) -> dict[str, str | None]:
    return {
        d["metadata"]["name"]: container(d).get("readinessProbe", {}).get("httpGet", {}).get("path")
        for d in deployments(kube, namespace)
    }


def condition(kube: Kube, namespace: str, type_: str) -> dict[str, Any]:
    sp = profile(kube, namespace, "web")
    return next((c for c in sp.get("status", {}).get("conditions", []) if c["type"] == type_), {})


@pytest.fixture
def web(kube: Kube, namespace: str, operator: Operator) -> str:
    fleet(kube, namespace)
    return namespace


@pytest.mark.parametrize(
    ("on_failure", "bad"),
    [
        pytest.param(
            "Revert",
            {"probes": {"port": "http", "readiness": {"path": NEVER_READY_PATH}}},
            id="revert-unready",
        ),
        pytest.param("Pause", {"resources": {"requests": {"memory": "512Gi"}}}, id="pause-unschedulable"),
    ],
)
def test_a_bad_profile_edit_is_halted_after_one_wave(
    kube: Kube, web: str, on_failure: str, bad: dict[str, Any]
) -> None:
    ns = web
    good = {"probes": {"port": "http", "readiness": {"path": "/ready"}}}
    with Sampler(kube, ns) as sampler:
        kube.apply(yaml.safe_dump(web_profile(ns, rollout={"onFailure": on_failure}, **good)))
        kube.run("wait", "-n", ns, "--for=condition=Compliant", "serviceprofile/web", "--timeout=120s")
    assert 1 <= sampler.peak <= BUDGET, f"peak {sampler.peak} rollouts in flight; the budget is {BUDGET}"
    assert set(readiness_paths(kube, ns).values()) == {"/ready"}
    before = {d["metadata"]["name"]: d["metadata"]["generation"] for d in deployments(kube, ns)}

    # The bad edit.
    edited = time.monotonic()
    kube.apply(yaml.safe_dump(web_profile(ns, rollout={"onFailure": on_failure}, **{**good, **bad})))
    halted = wait_for(
        lambda: (c := condition(kube, ns, "Progressing")).get("reason") == "RolloutFailed" and c,
        timeout=DEADLINE * 6,
        what="the halt",
    )
    detected = time.monotonic() - edited
    touched = sorted(
        d["metadata"]["name"]
        for d in deployments(kube, ns)
        if d["metadata"]["generation"] > before[d["metadata"]["name"]]
    )
    assert 1 <= len(touched) <= BUDGET, f"only the first wave was changed: {touched}"
    assert halted["status"] == "False"
    assert any(name in halted["message"] for name in touched), halted["message"]
    ready = condition(kube, ns, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "RolloutFailed"), "a halted profile is not Ready"
    state = "RolledBack" if on_failure == "Revert" else "RolloutFailed"

    def failed_names() -> list[str]:
        return sorted(t["name"] for t in profile(kube, ns, "web")["status"]["targets"] if t["state"] == state)

    # The first failure halts; the rest of that wave fails within a moment and goes the same way.
    wait_for(lambda: failed_names() == touched, timeout=DEADLINE * 3, what="the whole wave failed")
    failed = touched

    def announced() -> set[str]:
        return {e["involvedObject"]["name"] for e in events(kube, ns, f"reason={state}")}

    wait_for(lambda: announced() >= set(failed), what="announced")  # Events go out after the work
    if on_failure == "Revert":
        for name in failed:
            kube.run("rollout", "status", "-n", ns, f"deployment/{name}", "--timeout=60s")
        assert set(readiness_paths(kube, ns).values()) == {"/ready"}, "put back: the old template serves"
    sys.stderr.write(
        f"waves ({on_failure}): peak {sampler.peak} in flight (budget {BUDGET}); bad edit touched {len(touched)} "
        f"of {COUNT}, halted {detected:.1f}s after it (progressDeadlineSeconds {DEADLINE})\n"
    )

    # Halted: nothing more is written for this profile generation.
    frozen = {d["metadata"]["name"]: d["metadata"]["generation"] for d in deployments(kube, ns)}
    time.sleep(60)
    assert {d["metadata"]["name"]: d["metadata"]["generation"] for d in deployments(kube, ns)} == frozen

    # The profile is fixed: the waves go on, never more than the budget at once.
    fixed = {"probes": {"port": "http", "readiness": {"path": "/healthz"}}}
    with Sampler(kube, ns) as sampler:
        kube.apply(yaml.safe_dump(web_profile(ns, rollout={"onFailure": on_failure}, **fixed)))
        kube.run("wait", "-n", ns, "--for=condition=Compliant", "serviceprofile/web", "--timeout=180s")
    assert sampler.peak <= BUDGET
    assert set(readiness_paths(kube, ns).values()) == {"/healthz"}
    assert condition(kube, ns, "Progressing")["status"] == "True"
    assert condition(kube, ns, "Ready")["status"] == "True"


@pytest.fixture
def own_namespace(kube: Kube) -> Iterator[str]:
    """Out of the session operator's reach (it watches t-*): only this test's operators act here."""
    name = f"waves-{uuid.uuid4().hex[:8]}"
    kube.run("create", "namespace", name)
    yield name
    kube.run("delete", "namespace", name, "--wait=false", check=False)


def test_a_restart_mid_wave_resumes_from_what_the_cluster_shows(
    kube: Kube, own_namespace: str, testbed: Any, crd: None
) -> None:
    """Two rollouts in flight (their pods never become ready, the deadline is far) when the
    operator is killed: the new one counts them, starts nothing more, and goes on once fixed."""
    ns = own_namespace
    items = []
    for i in range(6):
        item = simple_deployment(ns, f"web-{i}")
        labels = {"app.kubernetes.io/name": "web"}
        item["metadata"]["labels"] = labels
        item["spec"].update(
            {"replicas": 1, "selector": {"matchLabels": labels}, "progressDeadlineSeconds": 600}
        )
        item["spec"]["template"]["metadata"]["labels"] = labels
        items.append(item)
    kube.apply(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": items}))

    def changed() -> list[str]:
        return sorted(d["metadata"]["name"] for d in deployments(kube, ns) if d["metadata"]["generation"] > 1)

    first = start_operator(
        kube.kubeconfig, testbed.log_dir, "waves-killed", namespaces=ns, resync_seconds="5"
    )
    second: Operator | None = None
    try:
        wait_for(lambda: readyz(first)[0] == 200, what="operator ready")
        stuck = {"probes": {"port": "http", "readiness": {"path": NEVER_READY_PATH}}}
        kube.apply(yaml.safe_dump(web_profile(ns, **stuck)))
        wave = wait_for(lambda: len(c := changed()) >= BUDGET and c, what="the first wave")
        time.sleep(6)
        assert changed() == wave, "the budget holds while the wave is in flight"
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=10)

        second = start_operator(
            kube.kubeconfig, testbed.log_dir, "waves-resumed", namespaces=ns, resync_seconds="5"
        )
        wait_for(partial(lambda op: readyz(op)[0] == 200, second), what="the new operator ready")
        time.sleep(12)  # two resyncs
        assert changed() == wave, "the unfinished rollouts of the killed operator still hold their slots"
        pending = profile(kube, ns, "web")["status"]["summary"].get("pending")
        assert pending == len(items) - BUDGET

        kube.apply(yaml.safe_dump(web_profile(ns, probes={"port": "http", "readiness": {"path": "/ready"}})))
        kube.run("wait", "-n", ns, "--for=condition=Compliant", "serviceprofile/web", "--timeout=90s")
        assert set(readiness_paths(kube, ns).values()) == {"/ready"}
    finally:
        for op in (first, second):
            if op is not None and op.process.poll() is None:
                stop_operator(op)
