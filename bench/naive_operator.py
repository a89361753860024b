"""The operator a kopf tutorial produces, as the fleet benchmark's baseline.

Per-object handlers on Deployments with kopf's default settings: the last-handled
configuration and handler progress are kept in annotations on each Deployment (writes of their
own); every handler call reads the namespace's ServiceProfiles from the API and patches the
Deployment with the profile's fields, whether or not anything differs. It writes no status.

The Deployment handlers alone would never converge in the benchmark, which applies the profile
after the operator has handled every Deployment once: nothing would call them again. So, as
tutorials do, the profile has handlers too, which patch every Deployment it selects in turn.

    python -m bench.naive_operator --namespace NS [--liveness http://127.0.0.1:PORT/healthz]
    kopf run bench/naive_operator.py --namespace NS --standalone
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import Any, cast

import kopf
from kubernetes import client, config

from readiness import API_GROUP, API_VERSION, PLURAL
from readiness.engine import DeploymentView, evaluate, matches
from readiness.models import ServiceProfileSpec

MANAGER = "naive-operator"


@kopf.on.startup()
def login(**_: Any) -> None:
    config.load_kube_config()  # type: ignore[no-untyped-call]


def desired_patch(spec: ServiceProfileSpec, body: Mapping[str, Any]) -> dict[str, Any]:
    """The profile's fields as a strategic-merge patch, computed as if none were set yet: the
    naive operator sends all of them every time instead of comparing."""
    meta = body.get("metadata", {})
    template = body.get("spec", {}).get("template", {})
    blank = {
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "labels": meta.get("labels") or {},
        },
        "spec": {
            "template": {
                "metadata": {"labels": template.get("metadata", {}).get("labels", {})},
                "spec": {
                    "containers": [
                        {"name": c["name"], "ports": c.get("ports", [])}
                        for c in template.get("spec", {}).get("containers", [])
                    ]
                },
            }
        },
    }
    forced = spec.model_copy(update={"conflict_policy": "Force"})  # the blank copy has no owners anyway
    apply = evaluate(forced, DeploymentView.from_body(blank)).apply
    return {"spec": dict(apply["spec"])} if apply else {}


def profiles(namespace: str) -> list[ServiceProfileSpec]:
    listed = cast(
        dict[str, Any],
        client.CustomObjectsApi().list_namespaced_custom_object(API_GROUP, API_VERSION, namespace, PLURAL),
    )
    return [ServiceProfileSpec.model_validate(p["spec"]) for p in listed["items"]]


def patch(namespace: str, name: str, body: dict[str, Any]) -> None:
    client.AppsV1Api().patch_namespaced_deployment(
        name,
        namespace,
        body,
        field_manager=MANAGER,
        _content_type="application/strategic-merge-patch+json",
        _preload_content=False,
    )


def enforce(body: Mapping[str, Any], specs: list[ServiceProfileSpec]) -> None:
    meta = body["metadata"]
    for spec in specs:
        if matches(spec.selector, meta.get("labels") or {}):
            desired = desired_patch(spec, body)
            if desired:
                patch(meta["namespace"], meta["name"], desired)


@kopf.on.resume("apps", "v1", "deployments")
@kopf.on.create("apps", "v1", "deployments")
@kopf.on.update("apps", "v1", "deployments")
def deployment_changed(body: kopf.Body, namespace: str | None, **_: Any) -> None:
    enforce(body, profiles(namespace or ""))


@kopf.on.resume(API_GROUP, API_VERSION, PLURAL)
@kopf.on.create(API_GROUP, API_VERSION, PLURAL)
@kopf.on.update(API_GROUP, API_VERSION, PLURAL)
def profile_changed(spec: kopf.Spec, namespace: str | None, logger: kopf.Logger, **_: Any) -> None:
    profile = ServiceProfileSpec.model_validate(dict(spec))
    listed = client.AppsV1Api().list_namespaced_deployment(namespace or "", _preload_content=False)
    items: list[dict[str, Any]] = json.loads(cast(Any, listed).data)["items"]
    for item in items:
        enforce(item, [profile])
    logger.info("patched the %d Deployments of %s", len(items), namespace)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.naive_operator", description=__doc__)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--liveness", default=None, help="e.g. http://127.0.0.1:8080/healthz")
    parser.add_argument("--verbose", action="store_true", help="kopf's INFO log (default: warnings)")
    args = parser.parse_args(argv)
    kopf.configure(verbose=args.verbose, quiet=not args.verbose)
    kopf.run(standalone=True, namespaces=[args.namespace], liveness_endpoint=args.liveness)


if __name__ == "__main__":
    main()
