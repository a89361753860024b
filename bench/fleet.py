"""Fleet-scale benchmark on the local control plane: ``python -m bench fleet`` (``make bench-fleet``).

Contenders make the same N non-compliant Deployments (replicas 0) compliant:

- bare: one pass of server-side applies, 8 in flight, no framework (bench/bare_loop.py): the
  physical limit the apiserver allows here;
- operator: the real operator (``python -m readiness run``) at its default settings;
- naive (on request, one namespace only): a kopf operator as a tutorial writes it
  (bench/naive_operator.py).

The machine is shared and noisy (one run of the bare loop moves by 70 % from the next), so the
contenders run interleaved: bare, operator, bare, operator, ... ``--pairs`` times per N, each
run in fresh namespaces, and a size's figure is the median ratio of its pairs with the spread.
Beside time, per run, figures contention cannot move much: the contender's CPU seconds (from
/proc) from the start of its work to the last write it needed (the operator: to its last
status write) per 1,000 Deployments, and the apiserver's requests per Deployment by resource
and verb (``apiserver_request_total``: every client's; a bare run over the same fleet shows the
part that is not the contender's).

Layouts: N in one namespace with one profile (default), or ``--namespaces M``: N spread over M
namespaces, one profile each, the operator watching the whole cluster. By default the profile
is applied to a contender that is already up; ``--from-start`` applies the profiles first and
measures from the contender's start. ``--restart`` (operator) then restarts it with everything
compliant: time to Ready, writes and requests in the next idle window (there should be none).
``--profile`` records the operator with py-spy up to convergence (bench/results/profiles/;
``python -m bench.profiles FILE`` prints the top frames).

Results: one JSON record per run in bench/results/fleet-<time>-<contender>-<N>.json, the table to
stdout and bench/results/fleet.md, time against N to bench/results/fleet.png
(``python -m bench fleet --report`` redoes them from the records).

Environment: BENCH_FLEET_N (default 100,1000,3000,10000), BENCH_FLEET_PAIRS (3), BENCH_DRIFTS
(100), BENCH_FLEET_IDLE_S (30), BENCH_FLEET_TIMEOUT (seconds per convergence; default
120 + 0.3 N), READINESS_TESTBED_DIR (default .testbed, as the tests).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import platform
import random
import socket
import subprocess
import sys
import time
import traceback
import urllib.request
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

from bench import cluster_metrics, fleet_report, profiles
from bench.tracker import METADATA_LIST, Tracker, watch_lines
from bench.workload import (
    FIELD_MANAGER,
    LABELS,
    PROFILE_NAME,
    ROOT,
    api_client,
    deployment,
    profile,
    profile_spec,
)
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from readiness import API_GROUP, API_VERSION, PLURAL

if TYPE_CHECKING:
    from readiness_testbed import Testbed

CONTENDERS = ("bare", "operator", "naive")
DEFAULT_CONTENDERS = ("bare", "operator")
DEFAULT_SIZES = (100, 1000, 3000, 10000)
RESULTS = fleet_report.RESULTS
CREATE_THREADS = 8
SELECTOR = ",".join(f"{k}={v}" for k, v in LABELS.items())
LAST_HANDLED = "kopf.zalando.org/last-handled-configuration"


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


def sizes_from_env() -> list[int]:
    raw = os.environ.get("BENCH_FLEET_N", "")
    return [int(n) for n in raw.split(",") if n.strip()] or list(DEFAULT_SIZES)


@dataclass(frozen=True)
class Layout:
    """N Deployments over ``namespaces`` namespaces (one profile each) under one prefix."""

    count: int
    namespaces: int = 1
    from_start: bool = False

    def names(self, prefix: str) -> list[str]:
        if self.namespaces == 1:
            return [prefix]
        return [f"{prefix}-{i:03d}" for i in range(self.namespaces)]

    def per_namespace(self) -> list[int]:
        """How many Deployments each namespace gets (as even as N allows)."""
        base, extra = divmod(self.count, self.namespaces)
        return [base + (i < extra) for i in range(self.namespaces)]

    @property
    def label(self) -> str:
        shape = "1 namespace" if self.namespaces == 1 else f"{self.namespaces} namespaces"
        return shape + (", from start" if self.from_start else "")


def _in_run(prefix: str) -> Any:
    return lambda meta: (
        meta.get("namespace") == prefix or str(meta.get("namespace", "")).startswith(prefix + "-")
    )


# ---- the control plane ----------------------------------------------------------------------


@dataclass
class Cluster:
    testbed: Testbed
    api: Any  # kubernetes.client.ApiClient
    apps: Any
    core: Any
    custom: Any

    @classmethod
    def connect(cls) -> Cluster:
        """Start the testbed (or reuse a running one; it is left running) and install the CRD."""
        testbed_src = str(ROOT / "testbed")
        if testbed_src not in sys.path:
            sys.path.insert(0, testbed_src)
        from readiness_testbed import Testbed

        testbed = Testbed(Path(os.environ.get("READINESS_TESTBED_DIR") or ROOT / ".testbed"))
        testbed.up()
        testbed.run_kubectl("apply", "--server-side", "--force-conflicts", "-k", str(ROOT / "crds"))
        testbed.run_kubectl(
            "wait", "--for=condition=Established", "crd/serviceprofiles.readiness.dev", "--timeout=60s"
        )
        api = api_client(testbed.kubeconfig, pool=2 * CREATE_THREADS)
        return cls(testbed, api, client.AppsV1Api(api), client.CoreV1Api(api), client.CustomObjectsApi(api))

    def requests(self) -> dict[cluster_metrics.RequestKey, float]:
        return cluster_metrics.requests(cluster_metrics.scrape_apiserver(self.api))

    def deployment_writes(self) -> int:
        return cluster_metrics.deployment_writes(cluster_metrics.scrape_apiserver(self.api))

    def list_bench(self, prefix: str, *, metadata: bool = True) -> list[dict[str, Any]]:
        """The bench's Deployments in the run's namespaces (metadata only, or whole)."""
        response = self.apps.list_deployment_for_all_namespaces(
            label_selector=SELECTOR,
            _preload_content=False,
            _headers=METADATA_LIST if metadata else {},
            _request_timeout=300,
        )
        keep = _in_run(prefix)
        return [i for i in json.loads(response.data)["items"] if keep(i["metadata"])]

    def list_metadata(self, namespace: str) -> list[dict[str, Any]]:
        response = self.apps.list_namespaced_deployment(
            namespace, _preload_content=False, _headers=METADATA_LIST, _request_timeout=120
        )
        items: list[dict[str, Any]] = json.loads(response.data)["items"]
        return items

    def list_full(self, namespace: str) -> list[dict[str, Any]]:
        response = self.apps.list_namespaced_deployment(
            namespace, _preload_content=False, _request_timeout=120
        )
        items: list[dict[str, Any]] = json.loads(response.data)["items"]
        return items

    def profile_status(self, namespace: str) -> dict[str, Any]:
        body = self.custom.get_namespaced_custom_object(
            API_GROUP, API_VERSION, namespace, PLURAL, PROFILE_NAME, _preload_content=False
        )
        status: dict[str, Any] = json.loads(body.data).get("status") or {}
        return status

    def create_fleet(self, prefix: str, layout: Layout) -> None:
        names = layout.names(prefix)
        for namespace in names:
            self.core.create_namespace(
                {"metadata": {"name": namespace, "labels": {"readiness.dev/bench": "fleet"}}}
            )
        work = [(ns, i) for ns, n in zip(names, layout.per_namespace(), strict=True) for i in range(n)]

        def create(item: tuple[str, int]) -> None:
            namespace, index = item
            self.apps.create_namespaced_deployment(
                namespace, deployment(namespace, index), _preload_content=False, _request_timeout=60
            )

        with ThreadPoolExecutor(max_workers=CREATE_THREADS) as pool:
            list(pool.map(create, work))
        deadline = time.monotonic() + 120
        while len(self.list_bench(prefix)) < layout.count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{prefix}: the apiserver never listed {layout.count} Deployments")
            time.sleep(0.5)

    def create_profiles(self, prefix: str, layout: Layout) -> None:
        def create(namespace: str) -> None:
            self.custom.create_namespaced_custom_object(
                API_GROUP, API_VERSION, namespace, PLURAL, profile(namespace), _preload_content=False
            )

        with ThreadPoolExecutor(max_workers=CREATE_THREADS) as pool:
            list(pool.map(create, layout.names(prefix)))

    def delete_namespace(self, namespace: str, timeout: float) -> float | None:
        return self.delete_namespaces([namespace], timeout)

    def delete_namespaces(self, names: Sequence[str], timeout: float) -> float | None:
        """Delete and wait until all are gone; the seconds it took, or None past ``timeout``."""
        started = time.monotonic()
        for namespace in names:
            with contextlib.suppress(ApiException):
                self.core.delete_namespace(namespace, _preload_content=False)
        left = set(names)
        while time.monotonic() - started < timeout:
            listed = json.loads(self.core.list_namespace(_preload_content=False, _headers=METADATA_LIST).data)
            left &= {i["metadata"]["name"] for i in listed["items"]}
            if not left:
                return time.monotonic() - started
            time.sleep(1)
        return None


# ---- compliance, as read from the API -------------------------------------------------------


def applied_by_operator(item: Mapping[str, Any]) -> bool:
    """Written by the operator's field manager with a server-side apply (operator and bare)."""
    meta = item.get("metadata") or item
    return meta.get("generation", 0) >= 2 and any(
        e.get("manager") == FIELD_MANAGER and e.get("operation") == "Apply"
        for e in meta.get("managedFields") or []
    )


def owns_app_readiness_probe(item: Mapping[str, Any]) -> bool:
    """Someone has set container app's readinessProbe (naive patches as its own manager):
    managedFields record every field that is set, so metadata alone tells."""
    meta = item.get("metadata") or item
    if meta.get("generation", 0) < 2:
        return False
    for entry in meta.get("managedFields") or []:
        fields = entry.get("fieldsV1") or {}
        for key in ("f:spec", "f:template", "f:spec", "f:containers", 'k:{"name":"app"}'):
            fields = fields.get(key) or {}
        if "f:readinessProbe" in fields:
            return True
    return False


def has_app_readiness_probe(body: Mapping[str, Any]) -> bool:
    containers = body.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
    return any(c.get("name") == "app" and "readinessProbe" in c for c in containers)


def status_compliant(status: Mapping[str, Any], count: int) -> bool:
    summary = status.get("summary") or {}
    return summary.get("compliant") == count and any(
        c.get("type") == "Compliant" and c.get("status") == "True" for c in status.get("conditions") or []
    )


def profile_compliant(layout: Layout, prefix: str) -> Any:
    wanted = dict(zip(layout.names(prefix), layout.per_namespace(), strict=True))

    def done(item: Mapping[str, Any]) -> bool:
        namespace = (item.get("metadata") or {}).get("namespace", "")
        return status_compliant(item.get("status") or {}, wanted.get(namespace, -1))

    return done


# ---- contender processes --------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _python() -> str:
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


@dataclass
class Contender:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    spawned: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}; log: {self.log}")

    def cpu(self) -> float:
        return cluster_metrics.cpu_seconds(self.pid)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 20 s."""
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()  # bare leaves when its stdin closes
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _spawn(name: str, argv: list[str], env: Mapping[str, str], log: Path, *, pipe: bool = False) -> Contender:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        process = subprocess.Popen(
            argv,
            env=dict(env),
            cwd=ROOT,
            stdin=subprocess.PIPE if pipe else subprocess.DEVNULL,
            stdout=subprocess.PIPE if pipe else out,
            stderr=out,
        )
    return Contender(name, process, log, time.monotonic())


def _wait_http_ok(url: str, contender: Contender, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        contender.check_alive()
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{contender.name}: {url} never answered 200; log: {contender.log}")


def _base_env(cluster: Cluster) -> dict[str, str]:
    # Inherited READINESS_* settings would skew the comparison: the contenders run at defaults.
    env = {k: v for k, v in os.environ.items() if not k.startswith("READINESS_")}
    env["KUBECONFIG"] = str(cluster.testbed.kubeconfig)
    return env


def spawn_operator(
    cluster: Cluster, watch: str, log: Path, extra_env: Mapping[str, str]
) -> tuple[Contender, str]:
    """The operator process and its /readyz URL; ``watch`` is READINESS_NAMESPACES ("" = all)."""
    health = _free_port()
    env = _base_env(cluster) | {
        "READINESS_NAMESPACES": watch,
        "READINESS_LOG_LEVEL": "warning",
        "READINESS_METRICS_PORT": str(_free_port()),
        "READINESS_HEALTH_PORT": str(health),
        **extra_env,
    }
    contender = _spawn("operator", [_python(), "-m", "readiness", "run"], env, log)
    return contender, f"http://127.0.0.1:{health}/readyz"


def start_operator(cluster: Cluster, namespace: str, log: Path, extra_env: Mapping[str, str]) -> Contender:
    """The operator, watching ``namespace``, once it answers /readyz."""
    contender, ready_url = spawn_operator(cluster, namespace, log, extra_env)
    _wait_http_ok(ready_url, contender)
    return contender


def start_naive(cluster: Cluster, namespace: str, log: Path, count: int) -> Contender:
    url = f"http://127.0.0.1:{_free_port()}/healthz"
    argv = [_python(), "-m", "bench.naive_operator", "--namespace", namespace, "--liveness", url]
    contender = _spawn("naive", argv, _base_env(cluster), log)
    _wait_http_ok(url, contender)
    # kopf handles every existing Deployment once at start-up (no profile yet: nothing to
    # patch, but it stores its annotations). The profile comes after that, as for the operator.
    deadline = time.monotonic() + 60 + count * 0.2
    while time.monotonic() < deadline:
        contender.check_alive()
        items = cluster.list_bench(namespace)
        if sum(LAST_HANDLED in (i["metadata"].get("annotations") or {}) for i in items) >= count:
            return contender
        time.sleep(0.25)
    raise TimeoutError(f"naive never handled all {count} Deployments at start-up; log: {log}")


def spawn_bare(cluster: Cluster, prefix: str, log: Path) -> Contender:
    argv = [_python(), "-m", "bench.bare_loop", "--prefix", prefix, "--wait"]
    argv += ["--kubeconfig", str(cluster.testbed.kubeconfig)]
    contender = _spawn("bare", argv, _base_env(cluster), log, pipe=True)
    stdout = cast(IO[bytes], contender.process.stdout)
    if stdout.readline().strip() != b"ready":
        raise RuntimeError(f"bare did not start; log: {log}")
    return contender


def go_bare(contender: Contender) -> None:
    stdin = cast(IO[bytes], contender.process.stdin)
    stdin.write(b"go\n")
    stdin.flush()


def bare_result(contender: Contender) -> dict[str, Any]:
    line = cast(IO[bytes], contender.process.stdout).readline().decode()
    if not line.startswith("done "):
        raise RuntimeError(f"bare failed ({line!r}); log: {contender.log}")
    result: dict[str, Any] = json.loads(line[5:])
    return result


# ---- measurements ---------------------------------------------------------------------------


def engine_verdicts(cluster: Cluster, prefix: str) -> dict[str, Any]:
    """What the pure engine says of the Deployments as they are now: the ground truth that the
    managedFields-based check stands in for, and the generations (a second write shows)."""
    from readiness.engine import DeploymentView, evaluate
    from readiness.models import ServiceProfileSpec

    spec = ServiceProfileSpec.model_validate(profile_spec())
    items = cluster.list_bench(prefix, metadata=False)
    generations = Counter(i["metadata"].get("generation", 0) for i in items)
    return {
        "engine_compliant": sum(evaluate(spec, DeploymentView.from_body(i)).compliant for i in items),
        "with_readiness_probe": sum(has_app_readiness_probe(i) for i in items),
        "generations": {str(g): n for g, n in sorted(generations.items())},
    }


# ---- drift ----------------------------------------------------------------------------------


def drift_once(cluster: Cluster, namespace: str, name: str, timeout: float) -> float | None:
    """Remove container app's readinessProbe as another client would; seconds until it is back."""
    current = json.loads(
        cluster.apps.read_namespaced_deployment(name, namespace, _preload_content=False).data
    )
    containers = current["spec"]["template"]["spec"]["containers"]
    index = next(i for i, c in enumerate(containers) if c["name"] == "app")
    # Watch from before the drift, so the repair cannot slip between the patch and the watch.
    watch = cluster.apps.list_namespaced_deployment(
        namespace,
        field_selector=f"metadata.name={name}",
        watch=True,
        resource_version=current["metadata"]["resourceVersion"],
        timeout_seconds=int(timeout),
        _preload_content=False,
        _request_timeout=timeout + 10,
    )
    try:
        cluster.apps.patch_namespaced_deployment(
            name,
            namespace,
            [
                {"op": "test", "path": f"/spec/template/spec/containers/{index}/name", "value": "app"},
                {"op": "remove", "path": f"/spec/template/spec/containers/{index}/readinessProbe"},
            ],
            field_manager="drifter",
            _content_type="application/json-patch+json",
            _preload_content=False,
        )
        drifted = time.monotonic()
        removed = False
        for event in watch_lines(watch):
            if event.get("type") not in ("ADDED", "MODIFIED"):
                continue
            probe = has_app_readiness_probe(event["object"])
            removed = removed or not probe
            if removed and probe:
                return time.monotonic() - drifted
        return None
    finally:
        watch.release_conn()


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile: with 100 samples, p99 is the second largest."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def measure_drift(cluster: Cluster, namespace: str, names: Sequence[str], drifts: int) -> dict[str, Any]:
    rng = random.Random(0)
    # Distinct Deployments while there are enough: the operator caps corrections per Deployment.
    picks = rng.sample(list(names), drifts) if drifts <= len(names) else rng.choices(list(names), k=drifts)
    latencies: list[float] = []
    for name in picks:
        latency = drift_once(cluster, namespace, name, timeout=30)
        if latency is not None:
            latencies.append(latency)
        time.sleep(0.3)
    result: dict[str, Any] = {"count": drifts, "repaired": len(latencies)}
    if latencies:
        result |= {
            "p50_ms": round(percentile(latencies, 0.5) * 1000, 1),
            "p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
            "max_ms": round(max(latencies) * 1000, 1),
        }
    return result


# ---- one run --------------------------------------------------------------------------------


def _git_commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False).stdout

    commit = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    return commit + ("-dirty" if git("status", "--porcelain", "--", "operator").strip() else "")


def _machine(cluster: Cluster) -> dict[str, Any]:
    version: Any = client.VersionApi(cluster.api).get_code(_preload_content=False)
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "kubernetes": json.loads(version.data).get("gitVersion"),
    }


@dataclass(frozen=True)
class Plan:
    """What one run measures besides convergence."""

    drifts: int = 0
    idle_s: int = 0
    restart: bool = False
    profile: bool = False  # py-spy the operator from its start to convergence
    operator_env: Mapping[str, str] = field(default_factory=dict)


def _idle(cluster: Cluster, contender: Contender, seconds: int) -> dict[str, Any]:
    """Writes, requests and the contender's CPU share over ``seconds`` of nothing to do."""
    before, cpu = cluster.requests(), contender.cpu()
    time.sleep(seconds)
    after = cluster.requests()
    return {
        "writes": cluster_metrics.writes(after) - cluster_metrics.writes(before),
        "cpu_share": round((contender.cpu() - cpu) / seconds, 4),
        "requests": cluster_metrics.requests_between(before, after),
    }


def _restart(
    cluster: Cluster, contender: Contender, watch: str, log: Path, plan: Plan
) -> tuple[Contender, dict[str, Any]]:
    """Stop the operator with everything compliant, start a new one: time to Ready, then the
    writes and requests of that start and the idle window after it."""
    contender.stop()
    before = cluster.requests()
    fresh, ready_url = spawn_operator(cluster, watch, log, plan.operator_env)
    _wait_http_ok(ready_url, fresh)
    ready_s = time.monotonic() - fresh.spawned
    cpu_ready = fresh.cpu()
    idle = _idle(cluster, fresh, plan.idle_s or 30)
    after = cluster.requests()
    memory = cluster_metrics.memory(fresh.pid)
    return fresh, {
        "ready_s": round(ready_s, 2),
        "cpu_to_ready_s": round(cpu_ready, 2),
        "writes": cluster_metrics.writes(after) - cluster_metrics.writes(before),
        "requests": cluster_metrics.requests_between(before, after),
        "idle_cpu_share": idle["cpu_share"],
        "rss_mib": round(memory.rss_kib / 1024, 1),
    }


def run_one(
    cluster: Cluster, name: str, layout: Layout, *, stamp: str, pair: int, plan: Plan
) -> dict[str, Any]:
    count = layout.count
    prefix = f"fleet-{name}-{count}-{stamp}"
    log = RESULTS / "logs" / f"{prefix}.log"
    timeout = float(os.environ.get("BENCH_FLEET_TIMEOUT") or 120 + 0.3 * count)
    record: dict[str, Any] = {
        "contender": name,
        "n": count,
        "namespaces": layout.namespaces,
        "from_start": layout.from_start,
        "pair": pair,
        "prefix": prefix,
        "commit": _git_commit(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": _machine(cluster),
        "loadavg_before": os.getloadavg(),
        "log": str(log.relative_to(ROOT)),
    }
    if name == "operator":
        record["operator_env"] = dict(plan.operator_env)
    print(
        f"fleet: {name} N={count} ({layout.label}) pair {pair}: creating {prefix}",
        file=sys.stderr,
        flush=True,
    )
    contender: Contender | None = None
    trackers: list[Tracker] = []
    recording: profiles.Recording | None = None
    watch = prefix if layout.namespaces == 1 else ""  # many namespaces: the whole cluster
    try:
        cluster.create_fleet(prefix, layout)
        if layout.from_start and name != "bare":
            cluster.create_profiles(prefix, layout)
        done = owns_app_readiness_probe if name == "naive" else applied_by_operator
        written = Tracker(
            cluster.apps.list_deployment_for_all_namespaces,
            count=count,
            keep=_in_run(prefix),
            done=done,
            label_selector=SELECTOR,
        ).start()
        trackers.append(written)
        statuses: Tracker | None = None
        if name == "operator":
            statuses = Tracker(
                lambda **kw: cluster.custom.list_cluster_custom_object(API_GROUP, API_VERSION, PLURAL, **kw),
                count=layout.namespaces,
                keep=_in_run(prefix),
                done=profile_compliant(layout, prefix),
                metadata=False,
            ).start()
            trackers.append(statuses)
        before = cluster.requests()
        spawned = time.monotonic()
        if name == "operator":
            contender, ready_url = spawn_operator(cluster, watch, log, plan.operator_env)
            if plan.profile:
                recording = profiles.Recording(contender.pid, RESULTS / "profiles" / f"{prefix}.txt")
            _wait_http_ok(ready_url, contender)
        elif name == "naive":
            contender = start_naive(cluster, prefix, log, count)
        else:
            contender = spawn_bare(cluster, prefix, log)
        record["ready_s"] = round(time.monotonic() - spawned, 3)
        if layout.from_start:
            started, cpu_start = spawned, 0.0
        else:
            started, cpu_start = time.monotonic(), contender.cpu()
            if name != "bare":
                cluster.create_profiles(prefix, layout)
        if name == "bare":
            go_bare(contender)
            record["bare"] = bare_result(contender)
            cpu_done = contender.cpu()
        converge_s = written.wait(started, timeout, contender.check_alive)
        status_s = None if statuses is None else statuses.wait(started, timeout, contender.check_alive)
        if name != "bare":
            cpu_done = contender.cpu()
        if recording is not None:
            record["profile"] = str(recording.stop().relative_to(ROOT))
        after = cluster.requests()
        writes = cluster_metrics.writes(after) - cluster_metrics.writes(before)
        record |= {
            "converge_s": None if converge_s is None else round(converge_s, 3),
            "status_s": None if status_s is None else round(status_s, 3),
            "timed_out": converge_s is None or (name == "operator" and status_s is None),
            "writes": writes,
            "writes_per_deployment": round(writes / count, 3),
            "cpu_s": round(cpu_done - cpu_start, 2),
            "requests": cluster_metrics.requests_between(before, after),
        }
        print(
            f"fleet: {name} N={count}: converged in {converge_s} s (status {status_s} s)",
            file=sys.stderr,
            flush=True,
        )
        for tracker in trackers:
            tracker.stop()
        if plan.idle_s and name != "bare":
            record["idle"] = _idle(cluster, contender, plan.idle_s)
            record["quiet"] = _idle(cluster, contender, plan.idle_s)
        memory = cluster_metrics.memory(contender.pid)
        record |= {"rss_mib": round(memory.rss_kib / 1024, 1), "hwm_mib": round(memory.hwm_kib / 1024, 1)}
        record |= engine_verdicts(cluster, prefix)
        if plan.drifts and name != "bare" and layout.namespaces == 1:
            names = [i["metadata"]["name"] for i in cluster.list_bench(prefix)]
            print(f"fleet: {name} N={count}: {plan.drifts} drifts", file=sys.stderr, flush=True)
            record["drift"] = measure_drift(cluster, prefix, names, plan.drifts)
        if plan.restart and name == "operator":
            print(f"fleet: operator N={count}: restart", file=sys.stderr, flush=True)
            contender, record["restart"] = _restart(cluster, contender, watch, log, plan)
        contender.check_alive()
    except Exception as exc:  # one failed run is reported, and the others still run
        traceback.print_exc()
        record["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        for tracker in trackers:
            tracker.stop()
        if recording is not None:
            recording.stop()
        if contender is not None:
            contender.stop()
            record["exit_code"] = contender.process.returncode
        gone = cluster.delete_namespaces(layout.names(prefix), timeout=max(300.0, count / 10))
        record["namespace_deleted_s"] = None if gone is None else round(gone, 1)
    return record


# ---- entry point ----------------------------------------------------------------------------


def run(
    sizes: Sequence[int],
    contenders: Sequence[str],
    *,
    pairs: int,
    namespaces: int = 1,
    from_start: bool = False,
    restart: bool = False,
    profile: bool = False,
    operator_env: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Per N (smallest first), ``pairs`` rounds of every contender in turn; one record each.
    The idle windows, the drift run (at the N closest to 1,000) and the restart are measured in
    the first round only."""
    drifts = _env_int("BENCH_DRIFTS", 100)
    idle_s = _env_int("BENCH_FLEET_IDLE_S", 30)
    drift_size = min(sizes, key=lambda n: abs(n - 1000))
    RESULTS.mkdir(parents=True, exist_ok=True)
    cluster = Cluster.connect()
    records: list[dict[str, Any]] = []
    for count in sorted(sizes):
        layout = Layout(count, namespaces=min(namespaces, count), from_start=from_start)
        for pair in range(pairs):
            plan = Plan(
                drifts=drifts if count == drift_size and pair == 0 else 0,
                idle_s=idle_s if pair == 0 else 0,
                restart=restart and pair == 0,
                profile=profile and pair == 0,
                operator_env=dict(operator_env or {}),
            )
            for name in contenders:
                stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
                record = run_one(cluster, name, layout, stamp=stamp, pair=pair, plan=plan)
                (RESULTS / f"fleet-{stamp}-{name}-{count}.json").write_text(
                    json.dumps(record, indent=2) + "\n"
                )
                records.append(record)
                print(fleet_report.one_line(record), file=sys.stderr, flush=True)
    fleet_report.write_outputs(records)
    return records


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench fleet", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", help="comma-separated sizes (default: $BENCH_FLEET_N or 100,1000,3000,10000)")
    parser.add_argument("--pairs", type=int, default=_env_int("BENCH_FLEET_PAIRS", 3), help="rounds per N")
    parser.add_argument("--contenders", default=",".join(DEFAULT_CONTENDERS), help="of bare,operator,naive")
    parser.add_argument("--namespaces", type=int, default=1, help="spread N over this many namespaces")
    parser.add_argument("--from-start", action="store_true", help="profiles first, timed from the start")
    parser.add_argument("--restart", action="store_true", help="then restart the operator (first round)")
    parser.add_argument("--profile", action="store_true", help="py-spy the operator (first round)")
    parser.add_argument(
        "--operator-env", action="append", default=[], metavar="KEY=VALUE", help="extra env of the operator"
    )
    parser.add_argument(
        "--report", nargs="*", metavar="GLOB", help="only redo the table and plot from results/"
    )
    args = parser.parse_args(argv)
    if args.report is not None:
        fleet_report.write_outputs(fleet_report.load(args.report))
        return
    contenders = [c for c in args.contenders.split(",") if c]
    unknown = set(contenders) - set(CONTENDERS)
    if unknown:
        parser.error(f"unknown contenders: {', '.join(sorted(unknown))}")
    if "naive" in contenders and args.namespaces > 1:
        parser.error("naive watches one namespace")
    sizes = [int(n) for n in args.n.split(",")] if args.n else sizes_from_env()
    operator_env = dict(item.split("=", 1) for item in args.operator_env)
    run(
        sizes,
        contenders,
        pairs=args.pairs,
        namespaces=args.namespaces,
        from_start=args.from_start,
        restart=args.restart,
        profile=args.profile,
        operator_env=operator_env,
    )
