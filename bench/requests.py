"""The request path: this process's CPU per call, the operator's transport (aiohttp on the event
loop) against the official client's generated API in a thread pool (how the operator called
before, and how the bare loop calls). Same apiserver, same bodies, 8 calls in flight, rounds
interleaved; the apiserver's own work is not in these figures.

    PYTHONPATH=testbed python -m bench.requests [--calls 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

from bench.workload import api_client
from kubernetes import client

from readiness.k8s import KubernetesCluster, ObjectRef, Transport

IN_FLIGHT = 8
KUBECONFIG = Path(__file__).resolve().parent.parent / ".testbed" / "kubeconfig"


def deployment(namespace: str, i: int, tag: str) -> dict[str, Any]:
    """A Deployment whose apply changes an annotation each round (a real write, no rollout)."""
    labels = {"app": f"d{i}"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"d{i}", "namespace": namespace, "annotations": {"bench/round": tag}},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": "app:1"}]},
            },
        },
    }


def event(namespace: str, i: int) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"d{i}.{uuid.uuid4().hex[:16]}", "namespace": namespace},
        "involvedObject": {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "namespace": namespace,
            "name": f"d{i}",
        },
        "type": "Normal",
        "reason": "Bench",
        "message": "bench",
        "source": {"component": "bench"},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


class Official:
    """The generated API, unparsed answers read whole (as the operator did), in a thread pool."""

    def __init__(self, api: Any) -> None:
        self._apps, self._core = client.AppsV1Api(api), client.CoreV1Api(api)
        self._pool = ThreadPoolExecutor(max_workers=IN_FLIGHT)

    async def apply(self, body: dict[str, Any]) -> None:
        meta = body["metadata"]

        def call() -> None:
            response: Any = self._apps.patch_namespaced_deployment(
                meta["name"],
                meta["namespace"],
                body,
                field_manager="bench-requests",
                force=True,
                _content_type="application/apply-patch+yaml",
                _preload_content=False,
            )
            response.data  # noqa: B018 - read whole, so the connection goes back to the pool
            response.release_conn()

        await asyncio.get_running_loop().run_in_executor(self._pool, call)

    async def post(self, body: dict[str, Any]) -> None:
        def call() -> None:
            response: Any = self._core.create_namespaced_event(
                body["metadata"]["namespace"], cast(Any, body), _preload_content=False
            )
            response.data  # noqa: B018
            response.release_conn()

        await asyncio.get_running_loop().run_in_executor(self._pool, call)


async def _cpu_per_call(calls: int, one: Callable[[int], Awaitable[None]]) -> float:
    """Milliseconds of this process's CPU (every thread) per call."""
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def gated(i: int) -> None:
        async with gate:
            await one(i)

    started = time.process_time()
    await asyncio.gather(*(gated(i) for i in range(calls)))
    return (time.process_time() - started) / calls * 1e3


async def measure(calls: int, rounds: int) -> dict[str, list[float]]:
    api = api_client(KUBECONFIG, pool=IN_FLIGHT + 2)
    official = Official(api)
    transport = Transport(api.configuration, connections=IN_FLIGHT + 2)
    ours = KubernetesCluster(transport)
    namespace = f"bench-requests-{int(time.time())}"
    core = client.CoreV1Api(api)
    core.create_namespace(cast(Any, {"metadata": {"name": namespace}}))
    try:
        await asyncio.gather(
            *(ours.apply_deployment(deployment(namespace, i, "0"), force=True) for i in range(calls))
        )
        results: dict[str, list[float]] = {}
        for r in range(rounds):
            sides = _sides(official, ours, namespace, str(r))
            for name, one in sides.items():
                results.setdefault(name, []).append(await _cpu_per_call(calls, one))
        return results
    finally:
        await transport.close()
        core.delete_namespace(namespace)


def _sides(
    official: Official, ours: KubernetesCluster, namespace: str, round_: str
) -> dict[str, Callable[[int], Awaitable[None]]]:
    async def official_apply(i: int) -> None:
        await official.apply(deployment(namespace, i, f"o{round_}"))

    async def our_apply(i: int) -> None:
        await ours.apply_deployment(deployment(namespace, i, f"t{round_}"), force=True)

    async def official_event(i: int) -> None:
        await official.post(event(namespace, i))

    async def our_event(i: int) -> None:
        ref = ObjectRef("apps/v1", "Deployment", namespace, f"d{i}")
        await ours.post_event(ref, "Normal", "Bench", "bench")

    return {
        "apply, official client": official_apply,
        "apply, operator's transport": our_apply,
        "Event, official client": official_event,
        "Event, operator's transport": our_event,
    }


def report(results: dict[str, list[float]]) -> None:
    print(f"request path: this process's CPU per call, {IN_FLIGHT} in flight (median, range over rounds)")
    for name, values in results.items():
        print(f"  {name:30} {statistics.median(values):6.3f} ms  ({min(values):.3f}-{max(values):.3f})")
    for what in ("apply", "Event"):
        official = statistics.median(results[f"{what}, official client"])
        ours = statistics.median(results[f"{what}, operator's transport"])
        print(f"  {what}: the official client costs {official / ours:.1f}x the operator's transport")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.requests", description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300, help="calls per side per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    args = parser.parse_args(argv)
    if not KUBECONFIG.exists():
        print("request path: skipped (no .testbed/kubeconfig; run `make testbed-up`)")
        return
    report(asyncio.run(measure(args.calls, args.rounds)))


if __name__ == "__main__":
    main()
