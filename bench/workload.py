"""The fleet benchmark's workload, shared by the harness and the contenders it starts.

N non-compliant Deployments (no probes, no resources, ``replicas: 0`` so no pods are made) and
one ServiceProfile: the first example profile, its selector pointed at them.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config

from readiness import API_GROUP, API_VERSION

ROOT = Path(__file__).resolve().parent.parent
LABELS = {"app.kubernetes.io/name": "bench"}
PROFILE_NAME = "bench"
# readiness-operator's own field manager: bare and the operator write as it, so the apiserver's
# managedFields tell their writes apart from everyone else's.
FIELD_MANAGER = "readiness-operator"


def deployment(namespace: str, index: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"app-{index:05d}", "namespace": namespace, "labels": dict(LABELS)},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": dict(LABELS)},
            "template": {
                "metadata": {"labels": dict(LABELS)},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "example/app:1",
                            "ports": [
                                {"name": "http", "containerPort": 8080},
                                {"name": "metrics", "containerPort": 9090},
                            ],
                        }
                    ]
                },
            },
        },
    }


def profile_spec() -> dict[str, Any]:
    """The ``spec`` of examples/20-profiles.yaml's first profile, selecting the bench Deployments."""
    docs = [d for d in yaml.safe_load_all((ROOT / "examples" / "20-profiles.yaml").read_text()) if d]
    spec: dict[str, Any] = copy.deepcopy(docs[0]["spec"])
    spec["selector"] = {"matchLabels": dict(LABELS)}
    spec["conflictPolicy"] = "Force"
    spec["rollout"] = {"maxConcurrent": "100%"}  # unpaced: the benchmark measures the write path
    return spec


def profile(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "ServiceProfile",
        "metadata": {"name": PROFILE_NAME, "namespace": namespace},
        "spec": profile_spec(),
    }


def api_client(kubeconfig: str | Path | None, pool: int = 10) -> Any:
    """A client of its own (not the module-wide default) whose pool holds ``pool`` connections:
    with fewer than the threads sending, requests queue for a connection, not at the server."""
    configuration = client.Configuration()
    config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig) if kubeconfig else None, client_configuration=configuration
    )
    configuration.connection_pool_maxsize = pool
    return client.ApiClient(configuration)
