"""Admission: what the webhook costs a deploy, and the rollout it saves.

Side by side in one run, on the local control plane: two namespaces with the same profile, one
operator each, one with READINESS_WEBHOOK=local and one without. N Deployments are created in
turns (one here, one there, as a team would: one create at a time), and each create's latency is
timed as the client sees it: p50 and p99, with and without the webhook. Then, once both profiles
report every Deployment compliant, the ReplicaSets per Deployment: the rollouts each new
Deployment cost (1 when admission set the profile's fields; 2 when the reconciler had to roll it
again). Last, the webhook's decision alone, in process (no HTTP, no apiserver).

``make bench-admission`` (BENCH_ADMISSION_N, default 200). Writes bench/results/admission-*.json.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import statistics
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from bench.fleet import RESULTS, Cluster, Contender, _free_port, start_operator
from bench.workload import deployment, profile

from readiness import API_GROUP, API_VERSION, PLURAL
from readiness.cache.world import ProfileRecord, World
from readiness.engine.mutation import Candidate, admit, held_by
from readiness.models import ServiceProfileSpec
from readiness.observe.logconfig import configure
from readiness.observe.metrics import Metrics
from readiness.webhook.admitter import Admitter, ProfileSource


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary_ms(samples: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(samples, 0.5) * 1000, 2),
        "p99_ms": round(percentile(samples, 0.99) * 1000, 2),
        "mean_ms": round(statistics.fmean(samples) * 1000, 2),
    }


def compliant(cluster: Cluster, namespace: str, count: int) -> bool:
    status = cluster.profile_status(namespace)
    return bool((status.get("summary") or {}).get("compliant") == count)


def replica_sets(cluster: Cluster, namespace: str) -> dict[str, int]:
    response = cluster.apps.list_namespaced_replica_set(
        namespace, _preload_content=False, _request_timeout=120
    )
    per: dict[str, int] = {}
    for rs in json.loads(response.data)["items"]:
        for owner in rs["metadata"].get("ownerReferences") or ():
            per[owner["name"]] = per.get(owner["name"], 0) + 1
    return per


def generations(cluster: Cluster, namespace: str) -> float:
    """Pod templates per Deployment: 1 when it was stored compliant, 2 when it was rolled again."""
    items = cluster.list_metadata(namespace)
    return round(sum(int(d["metadata"]["generation"]) for d in items) / max(1, len(items)), 3)


def operator_metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        lines = response.read().decode().splitlines()
    return sum(float(line.split()[-1]) for line in lines if line.startswith((f"{name} ", f"{name}{{")))


def in_process(count: int = 2000) -> dict[str, Any]:
    """The decision alone: the engine's ``admit`` and the Admitter around it (World lookup,
    metrics, logging), on the benchmark's Deployment as kubectl creates it."""
    spec = profile("bench")["spec"]
    body = deployment("bench", 0)
    body["metadata"]["managedFields"] = [held_by("kubectl-create", body)]
    request = {"uid": "1", "operation": "CREATE", "namespace": "bench", "object": body}
    candidates = {"bench": Candidate(1, ServiceProfileSpec.model_validate(spec))}
    world = World()
    world.put_profile(
        ProfileRecord.from_body(
            {"metadata": {"name": "bench", "namespace": "bench", "generation": 1}, "spec": spec}
        )
    )

    async def trusted(_: str) -> bool:
        return True

    async def no_reads(_: str) -> list[dict[str, Any]]:
        raise AssertionError("the World is trusted: no read")

    admitter = Admitter(ProfileSource(world, trusted, no_reads), Metrics(), lambda ns: True)

    def timed(fn: Callable[[], object]) -> list[float]:
        samples = []
        for _ in range(count):
            started = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - started)
        return samples

    assert admit(request, candidates).outcome == "Mutated"
    engine = timed(lambda: admit(request, candidates))
    loop = asyncio.new_event_loop()
    try:
        handler = timed(lambda: loop.run_until_complete(admitter.review(request)))
    finally:
        loop.close()
    return {"calls": count, "engine": summary_ms(engine), "admitter": summary_ms(handler)}


def main() -> None:
    configure("warning", "console")  # the in-process part would log every decision
    count = int(os.environ.get("BENCH_ADMISSION_N", "200"))
    cluster = Cluster.connect()
    stamp = int(time.time())
    spaces = {"webhook": f"bench-adm-on-{stamp}", "none": f"bench-adm-off-{stamp}"}
    operators: dict[str, tuple[Contender, int]] = {}
    latencies: dict[str, list[float]] = {name: [] for name in spaces}
    try:
        for name, namespace in spaces.items():
            cluster.core.create_namespace(
                {"metadata": {"name": namespace, "labels": {"readiness.dev/bench": "admission"}}}
            )
            cluster.custom.create_namespaced_custom_object(
                API_GROUP, API_VERSION, namespace, PLURAL, profile(namespace)
            )
            metrics_port = _free_port()
            env = {"READINESS_METRICS_PORT": str(metrics_port)}
            if name == "webhook":
                env |= {"READINESS_WEBHOOK": "local", "READINESS_WEBHOOK_PORT": "0"}
            log = RESULTS / "logs" / f"{namespace}.log"
            operators[name] = (start_operator(cluster, namespace, log, env), metrics_port)
        time.sleep(2)  # both operators have their profile
        for index in range(count):
            for name, namespace in spaces.items():
                body = deployment(namespace, index)
                body["spec"]["replicas"] = 1
                started = time.perf_counter()
                cluster.apps.create_namespaced_deployment(namespace, body, _preload_content=False)
                latencies[name].append(time.perf_counter() - started)
        deadline = time.monotonic() + 600
        while not all(compliant(cluster, ns, count) for ns in spaces.values()):
            if time.monotonic() > deadline:
                raise TimeoutError("the profiles never reported every Deployment compliant")
            time.sleep(1)
        time.sleep(3)  # a rollout the reconciler started has made its ReplicaSet by now
        rollouts = {name: replica_sets(cluster, ns) for name, ns in spaces.items()}
        templates = {name: generations(cluster, ns) for name, ns in spaces.items()}
        applies = {
            name: operator_metric(port, "readiness_deployment_applies_total")
            for name, (_, port) in operators.items()
        }
        port = operators["webhook"][1]
        handler = operator_metric(port, "readiness_admission_duration_seconds_sum")
        handled = operator_metric(port, "readiness_admission_duration_seconds_count")
    finally:
        for contender, _ in operators.values():
            contender.stop()
        for namespace in spaces.values():
            cluster.delete_namespace(namespace, timeout=5)
    result: dict[str, Any] = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "deployments": count,
        "create_latency": {name: summary_ms(samples) for name, samples in latencies.items()},
        "replicasets_per_deployment": {
            name: round(sum(per.values()) / max(1, len(per)), 3) for name, per in rollouts.items()
        },
        "generation_per_deployment": templates,
        "operator_applies": applies,
        "admitter_mean_ms_in_operator": round(handler / max(1.0, handled) * 1000, 3),
        "in_process": in_process(),
    }
    out = RESULTS / f"admission-{result['when'][:10]}-n{count}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    on, off = result["create_latency"]["webhook"], result["create_latency"]["none"]
    per = result["replicasets_per_deployment"]
    print(f"admission, {count} Deployments created one at a time, each namespace in turn:")
    print(f"  create latency with the webhook:    p50 {on['p50_ms']} ms, p99 {on['p99_ms']} ms")
    print(f"  create latency without the webhook: p50 {off['p50_ms']} ms, p99 {off['p99_ms']} ms")
    print(f"  ReplicaSets per new Deployment: {per['webhook']} with the webhook, {per['none']} without")
    print(
        f"  pod templates (generation) per new Deployment: {templates['webhook']} with the webhook, "
        f"{templates['none']} without (an apply that lands before the Deployment controller made "
        "the first ReplicaSet replaces the template without one)"
    )
    print(f"  the operator's applies: {applies['webhook']:g} with the webhook, {applies['none']:g} without")
    inproc = result["in_process"]
    print(
        f"  in process: the engine's admit p50 {inproc['engine']['p50_ms']} ms / p99 {inproc['engine']['p99_ms']} ms; "
        f"the Admitter p50 {inproc['admitter']['p50_ms']} ms / p99 {inproc['admitter']['p99_ms']} ms; "
        f"the Admitter in the operator mean {result['admitter_mean_ms_in_operator']} ms"
    )
    print(f"  -> {out.relative_to(RESULTS.parent.parent)}")


if __name__ == "__main__":
    main()
