"""Fleet-scale benchmark on the local control plane: ``python -m bench fleet`` (``make bench-fleet``).

Three contenders make the same N non-compliant Deployments compliant, side by side in one run:

- bare: one pass of server-side applies, 8 in flight, no framework (bench/bare_loop.py): the
  physical limit the apiserver allows here;
- operator: the real operator (``python -m readiness run``) at its default settings;
- naive: a kopf operator as a tutorial writes it (bench/naive_operator.py).

For each (contender, N), in a fresh namespace: create the Deployments, start the contender,
apply the profile (bare: start its pass) and measure, from the API, the time until every
Deployment is compliant (and, for the operator, until the profile's status says so); the
writes to Deployments the apiserver counted; 30 s of idling after that (writes, CPU); memory;
and, at the N closest to 1000, how fast a removed probe comes back (drift latency).

One JSON record per run goes to bench/results/fleet-<time>-<contender>-<N>.json; the table to
stdout and bench/results/fleet.md; convergence time against N to bench/results/fleet.png.

Environment: BENCH_FLEET_N="100,1000" (default 100,1000,3000), BENCH_DRIFTS (default 100),
BENCH_FLEET_IDLE_S (default 30), BENCH_FLEET_TIMEOUT (seconds per convergence; default
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
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

from bench import cluster_metrics
from bench.workload import FIELD_MANAGER, PROFILE_NAME, ROOT, api_client, deployment, profile, profile_spec
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from readiness import API_GROUP, API_VERSION, PLURAL

if TYPE_CHECKING:
    from readiness_testbed import Testbed

CONTENDERS = ("bare", "operator", "naive")
DEFAULT_SIZES = (100, 1000, 3000)
RESULTS = ROOT / "bench" / "results"
POLL_S = 0.25
CREATE_THREADS = 8
LAST_HANDLED = "kopf.zalando.org/last-handled-configuration"
# Only the metadata of each Deployment: generation and managedFields are all a poll needs, and
# a LIST of 3,000 whole Deployments every 0.25 s would load the 2 cores we measure on.
METADATA_ONLY = {"Accept": "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"}


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


def sizes_from_env() -> list[int]:
    raw = os.environ.get("BENCH_FLEET_N", "")
    return [int(n) for n in raw.split(",") if n.strip()] or list(DEFAULT_SIZES)


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

    def deployment_writes(self) -> int:
        return cluster_metrics.deployment_writes(cluster_metrics.scrape_apiserver(self.api))

    def list_metadata(self, namespace: str) -> list[dict[str, Any]]:
        response = self.apps.list_namespaced_deployment(
            namespace, _preload_content=False, _headers=METADATA_ONLY, _request_timeout=120
        )
        items: list[dict[str, Any]] = json.loads(response.data)["items"]
        return items

    def list_full(self, namespace: str) -> list[dict[str, Any]]:
        response = self.apps.list_namespaced_deployment(
            namespace, _preload_content=False, _request_timeout=120
        )
        items: list[dict[str, Any]] = json.loads(response.data)["items"]
        return items

    def create_fleet(self, namespace: str, count: int) -> None:
        self.core.create_namespace(
            {"metadata": {"name": namespace, "labels": {"readiness.dev/bench": "fleet"}}}
        )

        def create(index: int) -> None:
            self.apps.create_namespaced_deployment(
                namespace, deployment(namespace, index), _preload_content=False
            )

        with ThreadPoolExecutor(max_workers=CREATE_THREADS) as pool:
            list(pool.map(create, range(count)))
        deadline = time.monotonic() + 120
        while len(self.list_metadata(namespace)) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{namespace}: the apiserver never listed {count} Deployments")
            time.sleep(0.5)

    def delete_namespace(self, namespace: str, timeout: float) -> float | None:
        """Delete and wait until it is gone; the seconds it took, or None past ``timeout``."""
        started = time.monotonic()
        with contextlib.suppress(ApiException):
            self.core.delete_namespace(namespace, _preload_content=False)
        while time.monotonic() - started < timeout:
            try:
                self.core.read_namespace(namespace, _preload_content=False)
            except ApiException as exc:
                if exc.status == 404:
                    return time.monotonic() - started
                raise
            time.sleep(1)
        return None

    def profile_status(self, namespace: str) -> dict[str, Any]:
        body = self.custom.get_namespaced_custom_object(
            API_GROUP, API_VERSION, namespace, PLURAL, PROFILE_NAME, _preload_content=False
        )
        status: dict[str, Any] = json.loads(body.data).get("status") or {}
        return status


# ---- compliance, as read from the API -------------------------------------------------------


def applied_by_operator(meta: Mapping[str, Any]) -> bool:
    """Written by the operator's field manager with a server-side apply (operator and bare)."""
    return meta.get("generation", 0) >= 2 and any(
        e.get("manager") == FIELD_MANAGER and e.get("operation") == "Apply"
        for e in meta.get("managedFields") or []
    )


def owns_app_readiness_probe(meta: Mapping[str, Any]) -> bool:
    """Someone has set container app's readinessProbe (naive patches as its own manager):
    managedFields record every field that is set, so metadata alone tells."""
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
    with open(log, "wb") as out:
        process = subprocess.Popen(
            argv,
            env=dict(env),
            cwd=ROOT,
            stdin=subprocess.PIPE if pipe else subprocess.DEVNULL,
            stdout=subprocess.PIPE if pipe else out,
            stderr=out,
        )
    return Contender(name, process, log, time.monotonic())


def _wait_http_ok(url: str, contender: Contender, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        contender.check_alive()
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{contender.name}: {url} never answered 200; log: {contender.log}")


def _base_env(cluster: Cluster) -> dict[str, str]:
    # Inherited READINESS_* settings would skew the comparison: the contenders run at defaults.
    env = {k: v for k, v in os.environ.items() if not k.startswith("READINESS_")}
    env["KUBECONFIG"] = str(cluster.testbed.kubeconfig)
    return env


def start_operator(cluster: Cluster, namespace: str, log: Path, extra_env: Mapping[str, str]) -> Contender:
    health = _free_port()
    env = _base_env(cluster) | {
        "READINESS_NAMESPACES": namespace,
        "READINESS_LOG_LEVEL": "warning",
        "READINESS_METRICS_PORT": str(_free_port()),
        "READINESS_HEALTH_PORT": str(health),
        **extra_env,
    }
    contender = _spawn("operator", [_python(), "-m", "readiness", "run"], env, log)
    _wait_http_ok(f"http://127.0.0.1:{health}/readyz", contender)
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
        items = cluster.list_metadata(namespace)
        if sum(LAST_HANDLED in (i["metadata"].get("annotations") or {}) for i in items) >= count:
            return contender
        time.sleep(POLL_S)
    raise TimeoutError(f"naive never handled all {count} Deployments at start-up; log: {log}")


def start_bare(cluster: Cluster, namespace: str, log: Path) -> Contender:
    argv = [_python(), "-m", "bench.bare_loop", "--namespace", namespace, "--wait"]
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


def wait_converged(
    cluster: Cluster,
    namespace: str,
    count: int,
    compliant: Callable[[Mapping[str, Any]], bool],
    want_status: bool,
    started: float,
    timeout: float,
    contender: Contender,
) -> tuple[float | None, float | None]:
    """Seconds from ``started`` until every Deployment is compliant, and until the profile's
    status says so; None for what did not happen within ``timeout``. Each is stamped when the
    read that showed it returned: an upper bound, within one poll (0.25 s + a LIST)."""
    converge_s: float | None = None
    status_s: float | None = None
    while time.monotonic() - started < timeout:
        contender.check_alive()
        if converge_s is None:
            items = cluster.list_metadata(namespace)
            if len(items) == count and all(compliant(i["metadata"]) for i in items):
                converge_s = time.monotonic() - started
        if want_status and status_s is None and status_compliant(cluster.profile_status(namespace), count):
            status_s = time.monotonic() - started
        if converge_s is not None and (status_s is not None or not want_status):
            break
        time.sleep(POLL_S)
    return converge_s, status_s


def engine_verdicts(cluster: Cluster, namespace: str) -> dict[str, Any]:
    """What the pure engine says of the Deployments as they are now: the ground truth that the
    managedFields-based check above stands in for, and the generations (a second write shows)."""
    from readiness.engine import DeploymentView, evaluate
    from readiness.models import ServiceProfileSpec

    spec = ServiceProfileSpec.model_validate(profile_spec())
    items = cluster.list_full(namespace)
    generations = Counter(i["metadata"].get("generation", 0) for i in items)
    return {
        "engine_compliant": sum(evaluate(spec, DeploymentView.from_body(i)).compliant for i in items),
        "with_readiness_probe": sum(has_app_readiness_probe(i) for i in items),
        "generations": {str(g): n for g, n in sorted(generations.items())},
    }


def _watch_lines(response: Any) -> Iterator[dict[str, Any]]:
    buffer = b""
    for chunk in response.stream(amt=None, decode_content=False):
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                yield json.loads(line)


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
        for event in _watch_lines(watch):
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
    return commit + ("-dirty" if git("status", "--porcelain").strip() else "")


def _machine(cluster: Cluster) -> dict[str, Any]:
    version: Any = client.VersionApi(cluster.api).get_code(_preload_content=False)
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "kubernetes": json.loads(version.data).get("gitVersion"),
    }


def run_one(
    cluster: Cluster,
    contender_name: str,
    count: int,
    *,
    drifts: int = 0,
    operator_env: Mapping[str, str] | None = None,
    stamp: str,
) -> dict[str, Any]:
    namespace = f"fleet-{contender_name}-{count}-{stamp}"
    log = RESULTS / "logs" / f"{namespace}.log"
    idle_s = _env_int("BENCH_FLEET_IDLE_S", 30)
    timeout = float(os.environ.get("BENCH_FLEET_TIMEOUT") or 120 + 0.3 * count)
    record: dict[str, Any] = {
        "contender": contender_name,
        "n": count,
        "namespace": namespace,
        "commit": _git_commit(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": _machine(cluster),
        "loadavg_before": os.getloadavg(),
        "log": str(log.relative_to(ROOT)),
    }
    if contender_name == "operator":
        record["operator_env"] = dict(operator_env or {})
    print(f"fleet: {contender_name} N={count}: creating {namespace}", file=sys.stderr, flush=True)
    contender: Contender | None = None
    try:
        cluster.create_fleet(namespace, count)
        writes_before = cluster.deployment_writes()
        spawned = time.monotonic()
        if contender_name == "operator":
            contender = start_operator(cluster, namespace, log, operator_env or {})
        elif contender_name == "naive":
            contender = start_naive(cluster, namespace, log, count)
        else:
            contender = start_bare(cluster, namespace, log)
        record["ready_s"] = round(time.monotonic() - spawned, 3)
        # Naive writes its annotations on every Deployment at start-up, before any profile:
        # part of its cost (counted in "writes"), shown apart too.
        record["startup_writes"] = cluster.deployment_writes() - writes_before
        cpu_start = cluster_metrics.cpu_seconds(contender.pid)
        started = time.monotonic()
        if contender_name == "bare":
            go_bare(contender)
            compliant = applied_by_operator
        else:
            cluster.custom.create_namespaced_custom_object(
                API_GROUP, API_VERSION, namespace, PLURAL, profile(namespace), _preload_content=False
            )
            compliant = applied_by_operator if contender_name == "operator" else owns_app_readiness_probe
        converge_s, status_s = wait_converged(
            cluster, namespace, count, compliant, contender_name == "operator", started, timeout, contender
        )
        cpu_busy = cluster_metrics.cpu_seconds(contender.pid) - cpu_start
        if contender_name == "bare" and converge_s is not None:
            record["bare"] = bare_result(contender)
        writes_done = cluster.deployment_writes()
        record |= {
            "converge_s": None if converge_s is None else round(converge_s, 3),
            "status_s": None if status_s is None else round(status_s, 3),
            "timed_out": converge_s is None or (contender_name == "operator" and status_s is None),
            "writes": writes_done - writes_before,
            "writes_per_deployment": round((writes_done - writes_before) / count, 3),
            "busy_cpu_s": round(cpu_busy, 2),
        }
        print(f"fleet: {contender_name} N={count}: converged, idling {idle_s} s", file=sys.stderr, flush=True)

        cpu_idle = cluster_metrics.cpu_seconds(contender.pid)
        time.sleep(idle_s)
        record |= {
            "idle_s": idle_s,
            "idle_writes": cluster.deployment_writes() - writes_done,
            "idle_cpu_share": round((cluster_metrics.cpu_seconds(contender.pid) - cpu_idle) / idle_s, 4),
        }
        # Then as long again with nothing left to settle: what the contender costs when idle.
        cpu_quiet, writes_quiet = cluster_metrics.cpu_seconds(contender.pid), cluster.deployment_writes()
        time.sleep(idle_s)
        record |= {
            "quiet_writes": cluster.deployment_writes() - writes_quiet,
            "quiet_cpu_share": round((cluster_metrics.cpu_seconds(contender.pid) - cpu_quiet) / idle_s, 4),
        }
        record |= engine_verdicts(cluster, namespace)
        if drifts and contender_name != "bare":
            names = [i["metadata"]["name"] for i in cluster.list_metadata(namespace)]
            print(f"fleet: {contender_name} N={count}: {drifts} drifts", file=sys.stderr, flush=True)
            record["drift"] = measure_drift(cluster, namespace, names, drifts)
        contender.check_alive()
        memory = cluster_metrics.memory(contender.pid)
        record |= {"rss_mib": round(memory.rss_kib / 1024, 1), "hwm_mib": round(memory.hwm_kib / 1024, 1)}
    except Exception as exc:  # one failed run is reported, and the others still run
        traceback.print_exc()
        record["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        if contender is not None:
            contender.stop()
            record["exit_code"] = contender.process.returncode
        gone = cluster.delete_namespace(namespace, timeout=max(180.0, count / 10))
        record["namespace_deleted_s"] = None if gone is None else round(gone, 1)
    return record


# ---- reporting ------------------------------------------------------------------------------


def _fmt(value: Any, spec: str = ".2f", none: str = "n/a") -> str:
    return none if value is None else format(value, spec)


def table(records: Sequence[Mapping[str, Any]]) -> str:
    bare = {r["n"]: r.get("converge_s") for r in records if r["contender"] == "bare"}
    idle = records[0].get("idle_s", 30) if records else 30
    header = (
        f"| contender | N | converge s | ratio to bare | status s | writes/Deployment | idle writes ({idle} s) "
        "| idle CPU % of a core | then quiet: writes, CPU % | RSS MiB | drift p50/p99 ms |"
    )
    lines = [header, "|---" * header.count(" |") + "|"]
    order = {name: i for i, name in enumerate(CONTENDERS)}
    for r in sorted(records, key=lambda r: (r["n"], order.get(r["contender"], 99))):
        converge = r.get("converge_s")
        base = bare.get(r["n"])
        ratio = f"{converge / base:.2f}x" if converge and base else "n/a"
        drift = r.get("drift") or {}
        drift_text = f"{drift['p50_ms']:.0f} / {drift['p99_ms']:.0f}" if "p50_ms" in drift else "n/a"
        if drift and drift.get("repaired", 0) < drift.get("count", 0):
            drift_text += f" ({drift['count'] - drift['repaired']} not repaired)"
        idle_cpu = r.get("idle_cpu_share")
        quiet_cpu = r.get("quiet_cpu_share")
        quiet = "n/a" if quiet_cpu is None else f"{r.get('quiet_writes')}, {quiet_cpu * 100:.1f}"
        lines.append(
            "| "
            + " | ".join(
                [
                    r["contender"],
                    str(r["n"]),
                    "error" if r.get("error") else _fmt(converge, ".1f", "timeout"),
                    ratio,
                    _fmt(r.get("status_s"), ".1f", "timeout" if r["contender"] == "operator" else "n/a"),
                    _fmt(r.get("writes_per_deployment"), ".2f"),
                    _fmt(r.get("idle_writes"), "d"),
                    "n/a" if idle_cpu is None else f"{idle_cpu * 100:.1f}",
                    quiet,
                    _fmt(r.get("rss_mib"), ".0f"),
                    drift_text,
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def report(records: Sequence[Mapping[str, Any]]) -> str:
    first = records[0]
    machine = first.get("machine", {})
    head = (
        f"# Fleet benchmark\n\n{first.get('date')}, commit {first.get('commit')}, "
        f"{machine.get('nproc')} cores, Python {machine.get('python')}, "
        f"Kubernetes {machine.get('kubernetes')} (local testbed, kwok nodes)\n\n"
        "- converge: from the profile's creation (bare: the start of its pass) until every "
        "Deployment is compliant, read from the API every 0.25 s; status: until the profile's "
        "status counts them all compliant (operator only).\n"
        "- writes/Deployment: writes to Deployments (PATCH, APPLY, PUT; not status, not dry runs) "
        "that the apiserver counted from the contender's start until convergence (and status), per "
        "Deployment; naive's start-up annotations are included.\n"
        f"- idle: the {first.get('idle_s', 30)} s after that: writes, and the contender's CPU time "
        f"as a share of one core; then quiet: {first.get('idle_s', 30)} s more, the same figures. RSS at the end of the run. Drift: container app's readinessProbe "
        "removed by another client, time until it is back (at the N closest to 1000).\n"
    )
    return head + "\n" + table(records) + "\n\n" + targets(records) + "\n"


def targets(records: Sequence[Mapping[str, Any]]) -> str:
    """The operator's targets from the fleet-scale issue, each met or missed in this run."""
    ours = {r["n"]: r for r in records if r["contender"] == "operator" and not r.get("error")}
    bare = {r["n"]: r for r in records if r["contender"] == "bare" and not r.get("error")}
    lines = ["| target | measured | met |", "|---|---|---|"]

    def add(what: str, value: float | None, text: str, ok: bool) -> None:
        lines.append(
            f"| {what} | {text if value is not None else 'not run'} | {'yes' if value is not None and ok else 'no'} |"
        )

    n = 1000 if 1000 in ours else max(ours, default=0)
    if n in ours and n in bare and ours[n].get("converge_s") and bare[n].get("converge_s"):
        ratio = ours[n]["converge_s"] / bare[n]["converge_s"]
        add(f"converge <= 1.2x the bare loop (N={n})", ratio, f"{ratio:.2f}x", ratio <= 1.2)
    writes = [r.get("writes_per_deployment") for r in ours.values()]
    if writes and None not in writes:
        worst = max(cast(list[float], writes))
        add(
            "exactly 1 write per Deployment needing one",
            worst,
            f"{', '.join(f'{w:.2f}' for w in cast(list[float], writes))}",
            all(w == 1.0 for w in cast(list[float], writes)),
        )
    idle = [float(r["idle_cpu_share"]) for r in ours.values() if r.get("idle_cpu_share") is not None]
    if idle:
        add(
            "CPU after convergence <= 5% of a core",
            max(idle),
            f"{max(idle) * 100:.1f}% (worst N)",
            max(idle) <= 0.05,
        )
    quiet = [float(r["quiet_cpu_share"]) for r in ours.values() if r.get("quiet_cpu_share") is not None]
    if quiet:
        add(
            "CPU when idle <= 1% of a core",
            max(quiet),
            f"{max(quiet) * 100:.1f}% (worst N)",
            max(quiet) <= 0.01,
        )
    idle_writes = [
        int(r[k]) for r in ours.values() for k in ("idle_writes", "quiet_writes") if r.get(k) is not None
    ]
    if idle_writes:
        add("0 writes when idle", max(idle_writes), str(max(idle_writes)), max(idle_writes) == 0)
    big = max(ours, default=0)
    if big and ours[big].get("rss_mib"):
        rss = ours[big]["rss_mib"]
        add(
            f"RSS <= 120 MiB at 3,000 Deployments (N={big})",
            rss,
            f"{rss:.0f} MiB",
            rss <= 120 and big >= 3000,
        )
    drift = next((r["drift"] for r in ours.values() if r.get("drift", {}).get("p99_ms") is not None), None)
    if drift:
        add(
            "drift correction p99 <= 1 s",
            drift["p99_ms"],
            f"p50 {drift['p50_ms']:.0f} ms, p99 {drift['p99_ms']:.0f} ms",
            drift["p99_ms"] <= 1000,
        )
    return "\n".join(lines)


def plot(records: Sequence[Mapping[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    figure, axes = plt.subplots(figsize=(7, 4.5))
    colors = {"bare": "tab:blue", "operator": "tab:orange", "naive": "tab:green"}
    lines = [(name, "converge_s", name, "-", "o") for name in CONTENDERS]
    lines.append(("operator", "status_s", "operator (status)", ":", "s"))
    for name, key, label, style, marker in lines:
        points = sorted((r["n"], r[key]) for r in records if r["contender"] == name and r.get(key))
        if points:
            axes.plot(
                *zip(*points, strict=True), marker=marker, linestyle=style, color=colors[name], label=label
            )
    axes.set_xscale("log")
    axes.set_yscale("log")
    # Plain numbers: ticks at the sizes that were run, and at 1-2-5 steps of time.
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    axes.set_xticks(sorted({r["n"] for r in records}))
    axes.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    for axis in (axes.xaxis, axes.yaxis):
        axis.set_major_formatter(plain)
        axis.set_minor_formatter(NullFormatter())
    axes.set_xlabel("Deployments (N)")
    axes.set_ylabel("time to converge (s)")
    axes.set_title("Fleet convergence after a profile is applied")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_outputs(records: Sequence[Mapping[str, Any]]) -> None:
    text = report(records)
    print(text)
    (RESULTS / "fleet.md").write_text(text)
    plot(records, RESULTS / "fleet.png")
    print(f"results: {RESULTS.relative_to(ROOT)}/fleet.md, fleet.png and one fleet-*.json per run")


def latest_records() -> list[dict[str, Any]]:
    """The newest record of each (contender, N) in bench/results/."""
    newest: dict[tuple[str, int], dict[str, Any]] = {}
    for path in sorted(RESULTS.glob("fleet-*.json")):
        record = json.loads(path.read_text())
        newest[(record["contender"], record["n"])] = record
    return list(newest.values())


# ---- entry point ----------------------------------------------------------------------------


def run(
    sizes: Sequence[int] | None = None,
    contenders: Sequence[str] = CONTENDERS,
    operator_env: Mapping[str, str] | None = None,
    drifts: int | None = None,
) -> list[dict[str, Any]]:
    """Every contender at every N (smallest N first), one record each; writes the outputs."""
    sizes = list(sizes or sizes_from_env())
    drifts = _env_int("BENCH_DRIFTS", 100) if drifts is None else drifts
    drift_size = min(sizes, key=lambda n: abs(n - 1000))
    RESULTS.mkdir(parents=True, exist_ok=True)
    cluster = Cluster.connect()
    records: list[dict[str, Any]] = []
    for count in sorted(sizes):
        for name in contenders:
            stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            record = run_one(
                cluster,
                name,
                count,
                drifts=drifts if count == drift_size else 0,
                operator_env=operator_env,
                stamp=stamp,
            )
            (RESULTS / f"fleet-{stamp}-{name}-{count}.json").write_text(json.dumps(record, indent=2) + "\n")
            records.append(record)
            print(table([record]).splitlines()[-1], file=sys.stderr, flush=True)
    write_outputs(records)
    return records


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench fleet", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", help="comma-separated sizes (default: $BENCH_FLEET_N or 100,1000,3000)")
    parser.add_argument("--contenders", default=",".join(CONTENDERS), help="subset of bare,operator,naive")
    parser.add_argument(
        "--operator-env", action="append", default=[], metavar="KEY=VALUE", help="extra env of the operator"
    )
    parser.add_argument("--report", action="store_true", help="only redo the table and plot from results/")
    args = parser.parse_args(argv)
    if args.report:
        write_outputs(latest_records())
        return
    contenders = [c for c in args.contenders.split(",") if c]
    unknown = set(contenders) - set(CONTENDERS)
    if unknown:
        parser.error(f"unknown contenders: {', '.join(sorted(unknown))}")
    sizes = [int(n) for n in args.n.split(",")] if args.n else None
    operator_env = dict(item.split("=", 1) for item in args.operator_env)
    run(sizes, contenders, operator_env)
