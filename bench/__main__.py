"""Benchmarks that print numbers: ``make bench`` (or ``python -m bench``).

Every figure is measured side by side in one run and reported with its ratio, because these
machines are shared and noisy; nothing here asserts a time.

1. engine: evaluating a Deployment that needs a write vs one already compliant (the no-op
   path every watch event and resync takes).
2. decide locally vs ask the server: the engine's comparison against a server-side dry-run
   apply of the same configuration (what a controller without a local comparison would send
   per Deployment per resync). Needs the local control plane (`make testbed-up`).
3. index memory: the slim DeploymentView the index keeps vs the whole Deployment object.
4. the request path: CPU per apply and per Event, the operator's transport against the official
   client's generated API (bench/requests.py; needs the local control plane).

Then the fleet benchmark (bench/fleet.py), which also runs alone: ``python -m bench fleet``
(``make bench-fleet``; ``python -m bench fleet --help``).
"""

from __future__ import annotations

import copy
import gc
import json
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import yaml

from readiness.engine import DeploymentView, evaluate
from readiness.models import ServiceProfileSpec

ROOT = Path(__file__).resolve().parent.parent


def _timeit(fn: Callable[[], object], repeat: int = 7, number: int = 200) -> float:
    """Median seconds per call over ``repeat`` batches of ``number`` calls."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - start) / number)
    return statistics.median(samples)


def _example() -> tuple[ServiceProfileSpec, dict[str, Any]]:
    profiles = [d for d in yaml.safe_load_all((ROOT / "examples" / "20-profiles.yaml").read_text()) if d]
    deployments = [
        d for d in yaml.safe_load_all((ROOT / "examples" / "10-deployments.yaml").read_text()) if d
    ]
    # Force: the benchmark measures the whole apply, whoever holds the fields.
    return ServiceProfileSpec.model_validate({**profiles[0]["spec"], "conflictPolicy": "Force"}), deployments[
        0
    ]


def _realistic(body: dict[str, Any]) -> dict[str, Any]:
    """A Deployment as the API returns it: status, managedFields, defaults, annotations."""
    full = copy.deepcopy(body)
    meta = full["metadata"]
    meta.update(
        {
            "uid": "0f4c3d2e-1111-2222-3333-444455556666",
            "resourceVersion": "123456",
            "generation": 3,
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "annotations": {
                "deployment.kubernetes.io/revision": "3",
                "kubectl.kubernetes.io/last-applied-configuration": json.dumps(body),
            },
            "managedFields": [
                {
                    "manager": "kubectl-client-side-apply",
                    "operation": "Update",
                    "fieldsV1": {"f:spec": {"f:template": {"f:spec": {"f:containers": {}}}}},
                }
            ],
        }
    )
    full["spec"].update(
        {
            "progressDeadlineSeconds": 600,
            "revisionHistoryLimit": 10,
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
            },
        }
    )
    full["spec"]["template"]["spec"].update(
        {
            "dnsPolicy": "ClusterFirst",
            "restartPolicy": "Always",
            "schedulerName": "default-scheduler",
            "securityContext": {},
        }
    )
    full["status"] = {
        "observedGeneration": 3,
        "replicas": 2,
        "updatedReplicas": 2,
        "readyReplicas": 2,
        "availableReplicas": 2,
        "conditions": [
            {
                "type": t,
                "status": "True",
                "reason": r,
                "message": "m" * 80,
                "lastTransitionTime": "2026-01-01T00:00:00Z",
                "lastUpdateTime": "2026-01-01T00:00:00Z",
            }
            for t, r in (("Available", "MinimumReplicasAvailable"), ("Progressing", "NewReplicaSetAvailable"))
        ],
    }
    return full


def _compliant(spec: ServiceProfileSpec, body: dict[str, Any]) -> DeploymentView:
    """The Deployment after the operator's apply: merge the apply body and record our fields."""
    view = DeploymentView.from_body(body)
    apply = evaluate(spec, view).apply
    assert apply is not None
    merged = copy.deepcopy(body)
    template = merged["spec"]["template"]
    template.setdefault("metadata", {}).setdefault("annotations", {}).update(
        apply["spec"]["template"]["metadata"]["annotations"]
    )
    template["spec"]["terminationGracePeriodSeconds"] = apply["spec"]["template"]["spec"][
        "terminationGracePeriodSeconds"
    ]
    wanted = {c["name"]: c for c in apply["spec"]["template"]["spec"]["containers"]}
    for c in template["spec"]["containers"]:
        extra = wanted.get(c["name"], {})
        env = {e["name"]: e for e in c.get("env", [])}
        env.update({e["name"]: e for e in extra.get("env", [])})
        c.update({k: v for k, v in extra.items() if k not in ("name", "env")})
        c["env"] = list(env.values())
    return DeploymentView.from_body(merged)


def bench_engine() -> None:
    spec, body = _example()
    raw = DeploymentView.from_body(body)
    done = _compliant(spec, body)
    needs = _timeit(lambda: evaluate(spec, raw))
    noop = _timeit(lambda: evaluate(spec, done))
    parse = _timeit(lambda: DeploymentView.from_body(_realistic(body)), number=100)
    print("engine (full example profile, one container)")
    print(f"  evaluate, write needed     {needs * 1e6:8.1f} µs")
    print(f"  evaluate, already compliant{noop * 1e6:8.1f} µs   (ratio {noop / needs:.2f})")
    print(f"  index projection (from_body of an API object) {parse * 1e6:.1f} µs")


def bench_dry_run() -> None:
    kubeconfig = ROOT / ".testbed" / "kubeconfig"
    if not kubeconfig.exists():
        print("decide locally vs server dry-run: skipped (no .testbed/kubeconfig; run `make testbed-up`)")
        return
    from kubernetes import client, config

    config.load_kube_config(str(kubeconfig))  # type: ignore[no-untyped-call]
    apps, core = client.AppsV1Api(), client.CoreV1Api()
    spec, body = _example()
    ns = f"bench-{int(time.time())}"
    core.create_namespace(cast(Any, {"metadata": {"name": ns}}))
    try:
        body = copy.deepcopy(body)
        body["metadata"]["namespace"] = ns
        created = apps.create_namespaced_deployment(ns, cast(Any, body), _preload_content=False)
        live = json.loads(cast(Any, created).data)
        view = DeploymentView.from_body(live)
        apply = evaluate(spec, view).apply
        assert apply is not None

        def dry_run() -> None:
            apps.patch_namespaced_deployment(
                view.name,
                ns,
                dict(apply),
                field_manager="readiness-operator",
                force=True,
                dry_run="All",
                _content_type="application/apply-patch+yaml",
                _preload_content=False,
            )

        server = _timeit(dry_run, repeat=5, number=20)
        local = _timeit(lambda: evaluate(spec, view), repeat=5, number=200)
        print("decide locally vs ask the server (same Deployment, same configuration)")
        print(f"  engine comparison          {local * 1e3:8.3f} ms")
        print(f"  server-side dry-run apply  {server * 1e3:8.3f} ms   (ratio {server / local:.0f}x)")
        print(
            f"  per resync of 1000 Deployments: {local * 1000:.2f} s of CPU here vs 1000 requests "
            f"({server * 1000:.1f} s of round trips) to the apiserver"
        )
    finally:
        core.delete_namespace(ns)


def bench_memory(count: int = 1000) -> None:
    _, body = _example()
    full = _realistic(body)

    def measure(make: Callable[[int], object]) -> int:
        gc.collect()
        tracemalloc.start()
        keep = [make(i) for i in range(count)]
        size, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        del keep
        return size

    whole = measure(lambda i: json.loads(json.dumps(full)))
    slim = measure(lambda i: DeploymentView.from_body(json.loads(json.dumps(full))))
    print(f"index memory for {count} Deployments")
    print(f"  whole objects      {whole / 2**20:7.2f} MiB")
    print(f"  DeploymentView     {slim / 2**20:7.2f} MiB   (ratio {slim / whole:.2f})")


def bench_operator() -> None:
    """Start-up time to /readyz and idle memory of the real operator process."""
    import os
    import socket
    import subprocess
    import sys
    import urllib.request

    kubeconfig = ROOT / ".testbed" / "kubeconfig"
    if not kubeconfig.exists():
        print("operator start-up and idle RSS: skipped (run `make testbed-up`)")
        return
    # The operator is ready only once the ServiceProfile CRD is established: a fresh testbed has none.
    kubectl = [str(ROOT / ".testbed" / "bin" / "kubectl"), f"--kubeconfig={kubeconfig}"]
    subprocess.run(
        [*kubectl, "apply", "--server-side", "--force-conflicts", "-k", str(ROOT / "crds")],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *kubectl,
            "wait",
            "--for=condition=Established",
            "crd/serviceprofiles.readiness.dev",
            "--timeout=60s",
        ],
        check=True,
        capture_output=True,
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "READINESS_HEALTH_PORT": str(port),
        "READINESS_METRICS_PORT": "0",
        "READINESS_NAMESPACES": "bench-none-*",
    }
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "readiness", "run"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        ready = None
        while time.monotonic() - started < 60 and ready is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
                    if response.status == 200:
                        ready = time.monotonic() - started
            except OSError:
                time.sleep(0.05)
        time.sleep(10)
        status = Path(f"/proc/{process.pid}/status").read_text()
        rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
        print("operator process (python -m readiness run, idle, one namespace pattern)")
        print(f"  start-up to /readyz 200   {ready:.2f} s" if ready else "  never became ready")
        print(f"  idle RSS after 10 s       {rss / 1024:.0f} MiB")
    finally:
        process.terminate()
        process.wait(timeout=30)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["fleet"]:
        from bench import fleet

        fleet.main(args[1:])
        return
    from readiness.observe.logconfig import configure

    configure("warning", "console")  # the numbers, not the operator's log lines
    bench_engine()
    print()
    bench_memory()
    print()
    bench_dry_run()
    print()
    from bench import requests

    requests.main([])
    print()
    bench_operator()
    print()
    from bench import fleet

    fleet.main([])


if __name__ == "__main__":
    main()
