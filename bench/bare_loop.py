"""The physical limit: one pass of server-side applies, as many in flight as allowed, no framework.

Lists the bench's Deployments of the namespaces P and P-* and sends each the apply the operator
would send (the pure engine computes it), as field manager readiness-operator. No watch, no status, no
retries: what is left is the cost of the writes themselves.

    python -m bench.bare_loop --prefix P [--kubeconfig PATH] [--concurrency 8] [--wait]

With ``--wait`` (the fleet harness) it loads everything, prints ``ready``, starts on a line on
stdin, prints ``done {json}`` and stays alive (so its memory and idle CPU can be read) until
stdin closes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

from bench.workload import FIELD_MANAGER, LABELS, api_client, profile_spec
from kubernetes import client

from readiness.engine import DeploymentView, evaluate
from readiness.models import ServiceProfileSpec

SELECTOR = ",".join(f"{k}={v}" for k, v in LABELS.items())


def apply_all(api: Any, prefix: str, spec: ServiceProfileSpec, concurrency: int) -> dict[str, Any]:
    apps = client.AppsV1Api(api)
    listed = apps.list_deployment_for_all_namespaces(
        label_selector=SELECTOR, _preload_content=False, _request_timeout=300
    )
    items: list[dict[str, Any]] = [
        i
        for i in json.loads(cast(Any, listed).data)["items"]
        if i["metadata"]["namespace"] == prefix or i["metadata"]["namespace"].startswith(prefix + "-")
    ]

    def apply(body: dict[str, Any]) -> bool:
        evaluation = evaluate(spec, DeploymentView.from_body(body))
        if evaluation.apply is None:
            return False
        response = apps.patch_namespaced_deployment(
            body["metadata"]["name"],
            body["metadata"]["namespace"],
            dict(evaluation.apply),
            field_manager=FIELD_MANAGER,
            force=evaluation.force,
            _content_type="application/apply-patch+yaml",
            _preload_content=False,
        )
        # Read the answer and return the connection to the pool, as a careful client does:
        # an unread response keeps its connection and the next apply pays a TLS handshake.
        cast(Any, response).data  # noqa: B018
        cast(Any, response).release_conn()
        return True

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        applied = sum(pool.map(apply, items))
    return {"listed": len(items), "applied": applied}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bare_loop", description=__doc__)
    parser.add_argument("--prefix", required=True, help="the namespaces PREFIX and PREFIX-*")
    parser.add_argument("--kubeconfig", default=None, help="default: $KUBECONFIG or ~/.kube/config")
    parser.add_argument("--concurrency", type=int, default=8, help="applies in flight")
    parser.add_argument("--wait", action="store_true", help="ready/go/done handshake on stdin/stdout")
    args = parser.parse_args(argv)

    api = api_client(args.kubeconfig, pool=max(args.concurrency, 10))
    spec = ServiceProfileSpec.model_validate(profile_spec())
    if args.wait:
        print("ready", flush=True)
        sys.stdin.readline()
    started = time.monotonic()
    result = apply_all(api, args.prefix, spec, args.concurrency)
    result["elapsed_s"] = round(time.monotonic() - started, 3)
    print("done", json.dumps(result), flush=True)
    if args.wait:
        sys.stdin.read()  # until the harness closes stdin


if __name__ == "__main__":
    main()
