"""What a kubelet decides, on the testbed's real node (real-0): containers of the sample
service (readiness-testbed/sample-service:dev, built here) really start, the probes the profile
wrote are really run, a SIGTERM really waits for the profile's grace period, and the Go runtime
really uses the GOMEMLIMIT and GOMAXPROCS the profile derived. On a machine that cannot run the
node, each test fails with the testbed's one line saying why."""

from __future__ import annotations

import json
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from tests.e2e.realnode import (
    app,
    get,
    one_pod,
    own_namespace,
    own_operator,
    pods,
    ready_at,
    rolled_out,
    service,
    started_at,
)
from tests.e2e.support import (
    Operator,
    events,
    simple_profile,
    target_in,
    wait_for,
)
from tests.support.kube import Kube

pytestmark = pytest.mark.e2e


@pytest.fixture
def ns(kube: Kube, crd: None, real: None) -> Iterator[str]:
    with own_namespace(kube, "solo-real") as name:
        yield name


@pytest.fixture
def op(kube: Kube, ns: str, testbed: Any) -> Iterator[Operator]:
    with own_operator(kube, testbed.log_dir, ns, f"real-{ns}") as started:
        yield started


def test_real_0_is_ready_and_a_pod_answers_on_its_ip(kube: Kube, ns: str) -> None:
    (node,) = kube.json("get", "nodes", "-l", "readiness.dev/testbed-node=real")["items"]
    assert node["metadata"]["name"] == "real-0"
    ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    taint = {"key": "readiness.dev/testbed-node", "value": "real", "effect": "NoSchedule"}
    assert taint in node["spec"]["taints"]

    kube.apply(json.dumps(service(ns)))
    rolled_out(kube, ns, "sample")
    pod = one_pod(kube, ns, "sample")
    assert pod["spec"]["nodeName"] == "real-0"
    status, body = get(f"http://{pod['status']['podIP']}:8080/")
    assert status == 200
    assert json.loads(body)["hostname"] == pod["metadata"]["name"], "the container itself answered"


def test_pods_become_ready_through_the_profiles_probes(kube: Kube, ns: str, op: Operator) -> None:
    """Without probes the kubelet calls a pod Ready as its container starts, while the service
    still says 503; with the profile's probes it is Ready once the service is, and the startup
    probe keeps the liveness probe from killing it while it starts."""
    delay = 6
    kube.apply(json.dumps(service(ns, START_DELAY=str(delay))))
    rolled_out(kube, ns, "sample")
    bare = one_pod(kube, ns, "sample")
    bare_ready = (ready_at(bare) or 0) - started_at(bare)
    assert bare_ready < delay, "no probe: Ready before the service is"

    probes = {
        "port": "http",
        "startup": {"path": "/startupz", "periodSeconds": 1, "failureThreshold": 60},
        "readiness": {"path": "/readyz", "periodSeconds": 1},
        "liveness": {"path": "/healthz", "periodSeconds": 1, "failureThreshold": 1},
    }
    kube.apply(yaml.safe_dump(simple_profile(ns, "sample", "sample", probes=probes)))
    wait_for(lambda: target_in(kube, ns, "sample", "sample", "Compliant"), timeout=90, what="Compliant")
    rolled_out(kube, ns, "sample")
    pod = one_pod(kube, ns, "sample")
    assert app(pod)["startupProbe"]["httpGet"]["path"] == "/startupz"
    probed_ready = (ready_at(pod) or 0) - started_at(pod)
    assert probed_ready >= delay - 1, (
        f"Ready {probed_ready:.1f}s after start: the probes waited for the service"
    )
    (status,) = pod["status"]["containerStatuses"]
    assert status["restartCount"] == 0, "the startup probe held the liveness probe off"
    assert get(f"http://{pod['status']['podIP']}:8080/readyz")[0] == 200
    unhealthy = events(kube, ns, f"involvedObject.name={pod['metadata']['name']},reason=Unhealthy")
    assert any("Startup probe failed" in e["message"] for e in unhealthy), "the kubelet ran the startup probe"
    sys.stderr.write(
        f"real node: Ready {bare_ready:.1f}s after start without probes (service ready at {delay}s), "
        f"{probed_ready:.1f}s with the profile's\n"
    )


def test_the_go_runtime_uses_what_the_profile_derived(kube: Kube, ns: str, op: Operator) -> None:
    kube.apply(json.dumps(service(ns)))
    resources = {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "256Mi"}}
    kube.apply(
        yaml.safe_dump(
            simple_profile(
                ns, "sample", "sample", resources=resources, runtime={"go": {"memoryLimitRatio": 0.9}}
            )
        )
    )
    wait_for(lambda: target_in(kube, ns, "sample", "sample", "Compliant"), timeout=90, what="Compliant")
    rolled_out(kube, ns, "sample")
    pod = one_pod(kube, ns, "sample")
    env = {e["name"]: e.get("value") for e in app(pod)["env"]}
    status, text = get(f"http://{pod['status']['podIP']}:9090/metrics")
    assert status == 200
    metrics = {
        line.split()[0]: float(line.split()[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert metrics["go_gc_gomemlimit_bytes"] == int(env["GOMEMLIMIT"]), env["GOMEMLIMIT"]
    assert metrics["go_gc_gomemlimit_bytes"] == int(0.9 * 256 * 2**20)
    assert metrics["go_sched_gomaxprocs_threads"] == int(env["GOMAXPROCS"]) == 1


def test_a_container_that_ignores_sigterm_is_killed_at_the_profiles_grace(
    kube: Kube, ns: str, op: Operator
) -> None:
    grace = 8
    kube.apply(json.dumps(service(ns, IGNORE_SIGTERM="true")))
    kube.apply(
        yaml.safe_dump(
            simple_profile(ns, "sample", "sample", shutdown={"terminationGracePeriodSeconds": grace})
        )
    )
    wait_for(lambda: target_in(kube, ns, "sample", "sample", "Compliant"), timeout=90, what="Compliant")
    rolled_out(kube, ns, "sample")
    pod = one_pod(kube, ns, "sample")
    assert pod["spec"]["terminationGracePeriodSeconds"] == grace
    started = time.monotonic()
    kube.run("delete", "pod", "-n", ns, pod["metadata"]["name"], "--wait=true", "--timeout=90s")
    took = time.monotonic() - started
    assert took >= grace, f"gone {took:.1f}s after the delete: killed before the grace period ended"
    sys.stderr.write(
        f"real node: a SIGTERM-ignoring container went {took:.1f}s after delete (grace {grace}s)\n"
    )


def shop_profile(namespace: str, path: str) -> dict[str, Any]:
    return {
        "apiVersion": "readiness.dev/v1alpha1",
        "kind": "ServiceProfile",
        "metadata": {"name": "shop", "namespace": namespace},
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/part-of": "shop"}},
            "probes": {"port": "http", "readiness": {"path": path, "periodSeconds": 1}},
            "rollout": {"maxConcurrent": 1, "onFailure": "Revert"},
        },
    }


def profile_condition(kube: Kube, namespace: str, type_: str) -> dict[str, Any]:
    sp = kube.json("get", "serviceprofile", "shop", "-n", namespace)
    found: dict[str, Any] = next(
        (c for c in sp.get("status", {}).get("conditions", []) if c["type"] == type_), {}
    )
    return found


def test_a_readiness_path_the_service_lacks_halts_the_first_wave_and_is_put_back(
    kube: Kube, ns: str, op: Operator
) -> None:
    names = ["cart", "catalog", "checkout"]
    for name in names:
        manifest = service(ns, name)
        manifest["metadata"]["labels"]["app.kubernetes.io/part-of"] = "shop"
        kube.apply(json.dumps(manifest))
    kube.apply(yaml.safe_dump(shop_profile(ns, "/readyz")))
    kube.run("wait", "-n", ns, "--for=condition=Compliant", "serviceprofile/shop", "--timeout=180s")
    for name in names:
        rolled_out(kube, ns, name)
    before = {n: kube.json("get", "deployment", n, "-n", ns)["metadata"]["generation"] for n in names}

    edited = time.monotonic()
    kube.apply(yaml.safe_dump(shop_profile(ns, "/not-served")))
    halted = wait_for(
        lambda: (c := profile_condition(kube, ns, "Progressing")).get("reason") == "RolloutFailed" and c,
        timeout=120,
        what="the halt",
    )
    detected = time.monotonic() - edited
    now = {n: kube.json("get", "deployment", n, "-n", ns) for n in names}
    touched = [n for n in names if now[n]["metadata"]["generation"] > before[n]]
    assert len(touched) == 1, f"only the first wave was changed: {touched}"
    (bad,) = touched
    assert bad in halted["message"]
    unready = events(kube, ns, "reason=Unhealthy")
    assert any("Readiness probe failed" in e["message"] and "404" in e["message"] for e in unready), (
        "the kubelet found the new pods unready"
    )
    wait_for(lambda: target_in(kube, ns, "shop", bad, "RolledBack"), timeout=60, what=f"{bad} rolled back")
    rolled_out(kube, ns, bad)
    put_back = time.monotonic() - edited - detected
    template = kube.json("get", "deployment", bad, "-n", ns)["spec"]["template"]["spec"]["containers"][0]
    assert template["readinessProbe"]["httpGet"]["path"] == "/readyz", "the old template is back"
    for pod in pods(kube, ns, bad):
        assert ready_at(pod) is not None
        assert get(f"http://{pod['status']['podIP']}:8080/readyz")[0] == 200
    sys.stderr.write(
        f"real node: a bad readiness path halted {detected:.1f}s after the edit (progressDeadlineSeconds 20), "
        f"put back and rolled out {put_back:.1f}s later\n"
    )


class Traffic:
    """A bounded request loop against the service's ready pods, as a client behind a load
    balancer sees them: the list of ready pods is refreshed every three seconds (kube-proxy and
    ingress controllers lag behind the API by up to that). A refused or reset connection or an
    error status is lost: that is what a pod that stops listening before its clients do causes.
    A request that merely outlasts the client's timeout is counted apart as slow: on a shared
    2-core machine under a whole test suite it says the machine was busy, not that a pod went
    away (a pod that exits mid-request resets the connection). Three clients send at once, as
    behind a real load balancer: a pod that stops listening is then sent to within the moment
    before its network goes away, which one sequential client can miss."""

    CLIENTS = 3

    def __init__(self, kube: Kube, namespace: str, name: str, seconds: float) -> None:
        self.kube, self.namespace, self.name, self.seconds = kube, namespace, name, seconds
        self.sent = 0
        self._count = threading.Lock()
        self.lost: list[str] = []
        self.slow: list[str] = []
        self._ips: list[str] = []
        self._stop = threading.Event()
        self._start = time.monotonic()

    def _refresh(self) -> None:
        while not self._stop.is_set():
            self._ips = [
                p["status"]["podIP"]
                for p in pods(self.kube, self.namespace, self.name)
                if ready_at(p) is not None and p["status"].get("podIP")
            ] or self._ips
            self._stop.wait(3.0)

    def _send(self) -> None:
        deadline = time.monotonic() + self.seconds
        turn = 0
        while time.monotonic() < deadline and not self._stop.is_set():
            if self._ips:
                turn += 1
                ip = self._ips[turn % len(self._ips)]
                with self._count:
                    self.sent += 1
                at = f"{time.monotonic() - self._start:.1f}s {ip}"
                try:
                    status = get(f"http://{ip}:8080/?sleep=20", timeout=5)[0]
                    if status != 200:
                        self.lost.append(f"{at} HTTP {status}")
                except TimeoutError:
                    self.slow.append(at)
                except urllib.error.URLError as error:
                    if isinstance(error.reason, TimeoutError):
                        self.slow.append(at)
                    else:
                        self.lost.append(f"{at} {error.reason}")
                except OSError as error:
                    self.lost.append(f"{at} {error}")
            time.sleep(0.01)

    def during(self, action: Callable[[], None]) -> Traffic:
        """Runs the loop while ``action`` runs and for the loop's remaining seconds."""
        refresher = threading.Thread(target=self._refresh, daemon=True)
        senders = [threading.Thread(target=self._send, daemon=True) for _ in range(self.CLIENTS)]
        refresher.start()
        wait_for(lambda: bool(self._ips), timeout=30, what="ready endpoints")
        self._start = time.monotonic()
        for sender in senders:
            sender.start()
        try:
            action()
            for sender in senders:
                sender.join(self.seconds + 10)
        finally:
            self._stop.set()
            refresher.join(5)
        return self

    def __str__(self) -> str:
        return f"{len(self.lost)} of {self.sent} requests lost ({len(self.slow)} slow)"


def test_a_rollout_and_a_scale_down_lose_no_request_with_the_profiles_shutdown_and_some_without(
    kube: Kube, ns: str, op: Operator
) -> None:
    """The same service, rolled out and scaled down under a steady request loop twice: with the probes only,
    its pods stop listening on SIGTERM while clients still send to them; with the profile's
    grace period and preStop sleep, they serve until no client does."""
    kube.apply(json.dumps(service(ns, replicas=2)))
    probes = {"port": "http", "readiness": {"path": "/readyz", "periodSeconds": 1}}
    kube.apply(yaml.safe_dump(simple_profile(ns, "sample", "sample", probes=probes)))
    wait_for(lambda: target_in(kube, ns, "sample", "sample", "Compliant"), timeout=90, what="Compliant")
    rolled_out(kube, ns, "sample")

    def restart_and_scale_down() -> None:
        kube.run("rollout", "restart", "-n", ns, "deployment/sample")
        rolled_out(kube, ns, "sample")
        kube.run("scale", "-n", ns, "deployment/sample", "--replicas=1")
        wait_for(lambda: len(pods(kube, ns, "sample")) == 1, timeout=60, what="scaled down")
        kube.run("scale", "-n", ns, "deployment/sample", "--replicas=2")
        rolled_out(kube, ns, "sample")

    without = Traffic(kube, ns, "sample", seconds=35).during(restart_and_scale_down)
    shutdown = {"terminationGracePeriodSeconds": 30, "preStopSleepSeconds": 6}
    kube.apply(yaml.safe_dump(simple_profile(ns, "sample", "sample", probes=probes, shutdown=shutdown)))
    wait_for(
        lambda: (
            target_in(kube, ns, "sample", "sample", "Compliant")
            and "lifecycle" in app(kube.json("get", "deployment", "sample", "-n", ns)["spec"]["template"])
        ),
        timeout=90,
        what="the shutdown section applied",
    )
    rolled_out(kube, ns, "sample")
    with_shutdown = Traffic(kube, ns, "sample", seconds=35).during(restart_and_scale_down)
    sys.stderr.write(
        f"real node: a rollout and a scale-down under load, {without} without the shutdown section, "
        f"{with_shutdown} with it\n"
    )
    assert min(with_shutdown.sent, without.sent) > 200, "the loop ran"
    assert with_shutdown.lost == [], (
        f"no request lost with the profile's grace and preStop sleep: {with_shutdown.lost}"
    )
    assert without.lost, "without them, pods stop listening while clients still send"


ROOT_IMAGE = "readiness-testbed/sample-service:root"


def test_runasnonroot_over_a_root_image_fails_the_first_wave_at_once_and_is_put_back(
    kube: Kube, ns: str, op: Operator
) -> None:
    """The kubelet refuses to start a container that would run as root under runAsNonRoot
    (CreateContainerConfigError). The Deployment shows nothing of it before its
    progressDeadlineSeconds (600 here): the operator finds it in the rollout's new pods, halts
    the first wave and puts the old template back."""
    names = ["cart", "catalog"]
    for name in names:
        manifest = service(ns, name)
        manifest["metadata"]["labels"]["app.kubernetes.io/part-of"] = "shop"
        manifest["spec"]["progressDeadlineSeconds"] = 600
        manifest["spec"]["template"]["spec"]["containers"][0]["image"] = ROOT_IMAGE
        kube.apply(json.dumps(manifest))
    for name in names:
        rolled_out(kube, ns, name)
    before = {n: kube.json("get", "deployment", n, "-n", ns)["metadata"]["generation"] for n in names}
    hardened = {
        "apiVersion": "readiness.dev/v1alpha1",
        "kind": "ServiceProfile",
        "metadata": {"name": "shop", "namespace": ns},
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/part-of": "shop"}},
            "security": {"runAsNonRoot": True},
            "rollout": {"maxConcurrent": 1, "onFailure": "Revert"},
        },
    }
    edited = time.monotonic()
    kube.apply(yaml.safe_dump(hardened))
    halted = wait_for(
        lambda: (c := profile_condition(kube, ns, "Progressing")).get("reason") == "RolloutFailed" and c,
        timeout=120,
        what="the halt",
    )
    detected = time.monotonic() - edited
    now = {n: kube.json("get", "deployment", n, "-n", ns) for n in names}
    touched = [n for n in names if now[n]["metadata"]["generation"] > before[n]]
    assert len(touched) == 1, f"only the first wave was changed: {touched}"
    (bad,) = touched
    assert bad in halted["message"]
    assert "CreateContainerConfigError" in halted["message"], halted["message"]
    for d in now.values():
        conditions = {c["type"]: c.get("reason") for c in d["status"].get("conditions", [])}
        assert conditions.get("Progressing") != "ProgressDeadlineExceeded", (
            "the pods said it, not the deadline"
        )
    t = wait_for(
        lambda: target_in(kube, ns, "shop", bad, "RolledBack"), timeout=60, what=f"{bad} rolled back"
    )
    assert "cannot start" in t["message"]
    rolled_out(kube, ns, bad)
    put_back = time.monotonic() - edited - detected
    template = kube.json("get", "deployment", bad, "-n", ns)["spec"]["template"]["spec"]["containers"][0]
    assert "runAsNonRoot" not in (template.get("securityContext") or {}), "the old template is back"
    (other,) = set(names) - {bad}
    assert target_in(kube, ns, "shop", other, "Pending") is not None, "the next wave waits for a fix"
    for pod in pods(kube, ns, bad):
        assert ready_at(pod) is not None
    sys.stderr.write(
        f"real node: runAsNonRoot over a root image halted {detected:.1f}s after the edit "
        f"(progressDeadlineSeconds 600), put back and rolled out {put_back:.1f}s later\n"
    )


def test_a_hardened_service_runs_and_serves_profiles_where_its_annotations_say(
    kube: Kube, ns: str, op: Operator
) -> None:
    """The whole security section on the sample service (its image runs as a non-root user, its
    root filesystem is never written), and the profiling annotations lead to a real CPU profile."""
    kube.apply(json.dumps(service(ns)))
    security = {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "dropAllCapabilities": True,
        "readOnlyRootFilesystem": True,
        "seccompProfile": "RuntimeDefault",
        "automountServiceAccountToken": False,
    }
    profiling = {"port": "metrics", "profiles": ["cpu", "goroutine"]}
    kube.apply(yaml.safe_dump(simple_profile(ns, "sample", "sample", security=security, profiling=profiling)))
    wait_for(lambda: target_in(kube, ns, "sample", "sample", "Compliant"), timeout=90, what="Compliant")
    rolled_out(kube, ns, "sample")
    pod = one_pod(kube, ns, "sample")
    assert ready_at(pod) is not None
    assert app(pod)["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert not any(v.get("name", "").startswith("kube-api-access") for v in pod["spec"].get("volumes", []))
    annotations = pod["metadata"]["annotations"]
    ports = {p["name"]: p["containerPort"] for p in app(pod)["ports"]}
    for kind in ("cpu", "goroutine"):
        assert annotations[f"profiles.grafana.com/{kind}.scrape"] == "true"
        port = ports[annotations[f"profiles.grafana.com/{kind}.port_name"]]
        path = annotations[f"profiles.grafana.com/{kind}.path"]
        query = "?seconds=1" if kind == "cpu" else ""
        url = f"http://{pod['status']['podIP']}:{port}{path}{query}"
        with urllib.request.urlopen(url, timeout=15) as response:
            body = response.read()
        assert response.status == 200
        assert body[:2] == b"\x1f\x8b", f"{kind}: a gzipped pprof profile, as pyroscope.scrape takes"


def test_the_node_stops_leaving_nothing_behind_and_starts_again(kube: Kube, ns: str, testbed: Any) -> None:
    """What `make testbed-down` does to the node, with pods running on it: no container,
    mount, network interface, network namespace or iptables rule stays; the next `up` brings
    `real-0` back Ready. (Last in this file: it takes the node away for a moment.)"""
    kube.apply(json.dumps(service(ns, replicas=2)))
    rolled_out(kube, ns, "sample")
    assert testbed.real_node_leftovers(), "a running node has processes, mounts and interfaces"
    testbed.node.stop()
    assert testbed.real_node_leftovers() == []
    testbed.up()
    assert testbed.real_node_unavailable is None
    kube.run("wait", "--for=condition=Ready", "node/real-0", "--timeout=120s")

    def answering() -> bool:
        # The kubelet gives the pods new sandboxes (and addresses) when it comes back.
        found = pods(kube, ns, "sample")
        try:
            return len(found) == 2 and all(
                ready_at(p) is not None and get(f"http://{p['status']['podIP']}:8080/", timeout=1)[0] == 200
                for p in found
            )
        except (OSError, KeyError):
            return False

    wait_for(answering, timeout=120, what="its pods run again")
