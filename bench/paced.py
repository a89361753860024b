"""The fleet benchmark's paced run: N one-replica Deployments under a profile at default pacing
(maxConcurrent 25%), watched as the waves go out.

Prints the budget, the peak number of Deployments mid-rollout because of the profile (sampled
twice a second), and the seconds until every Deployment runs the profile's template with its
rollout complete. Environment: BENCH_PACED_N (default 1000). Writes bench/results/paced-*.json.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.fleet import RESULTS, Cluster, applied_by_operator, start_operator
from bench.workload import deployment, profile

from readiness import API_GROUP, API_VERSION, PLURAL


def rolling(item: dict[str, Any]) -> bool:
    status, want = item.get("status", {}), item["spec"]["replicas"]
    return bool(
        status.get("observedGeneration", 0) < item["metadata"]["generation"]
        or status.get("updatedReplicas", 0) < want
        or status.get("availableReplicas", 0) < want
        or status.get("replicas", 0) > want
    )


def main() -> None:
    count = int(os.environ.get("BENCH_PACED_N", "1000"))
    cluster = Cluster.connect()
    namespace = f"bench-paced-{int(time.time())}"
    cluster.core.create_namespace(
        {"metadata": {"name": namespace, "labels": {"readiness.dev/bench": "paced"}}}
    )

    def create(index: int) -> None:
        body = deployment(namespace, index)
        body["spec"]["replicas"] = 1
        cluster.apps.create_namespaced_deployment(namespace, body, _preload_content=False)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(create, range(count)))
    deadline = time.monotonic() + 600
    while True:
        items = cluster.list_full(namespace)
        if len(items) == count and not any(rolling(d) for d in items):
            break
        if time.monotonic() > deadline:
            raise TimeoutError("the fleet's own first rollouts did not complete")
        time.sleep(1)
    log = RESULTS / "logs" / f"{namespace}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    operator = start_operator(cluster, namespace, log, {})
    paced = profile(namespace)
    paced["spec"].pop("rollout", None)  # default pacing: 25% of the matched Deployments
    started = time.monotonic()
    cluster.custom.create_namespaced_custom_object(API_GROUP, API_VERSION, namespace, PLURAL, paced)
    peak, converged = 0, None
    samples: list[tuple[float, int, int]] = []
    try:
        while time.monotonic() - started < 900:
            items = cluster.list_full(namespace)
            ours = [d for d in items if applied_by_operator(d["metadata"])]
            flying = sum(1 for d in ours if rolling(d))
            peak = max(peak, flying)
            samples.append((round(time.monotonic() - started, 1), len(ours), flying))
            if len(ours) == count and flying == 0:
                converged = time.monotonic() - started
                break
            time.sleep(0.5)
    finally:
        operator.stop()
        cluster.delete_namespace(namespace, timeout=300)
    budget = math.ceil(count * 25 / 100)
    result: dict[str, Any] = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "deployments": count,
        "replicas": 1,
        "budget": budget,
        "peak_in_flight": peak,
        "converge_s": None if converged is None else round(converged, 1),
        "samples": samples,
    }
    out = RESULTS / f"paced-{result['when'][:10]}-n{count}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(
        f"paced run: {count} Deployments x 1 replica, budget {budget} (25%), peak {peak} in flight, "
        f"converged in {result['converge_s']} s -> {out.relative_to(RESULTS.parent.parent)}"
    )


if __name__ == "__main__":
    main()
