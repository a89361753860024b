"""What the control loop's tests put in the twin: a namespace, a profile and a Deployment it
selects (as a team writes it; the twin stores it defaulted, owned by its creator)."""

from __future__ import annotations

from typing import Any

NS = "shop"
PROFILE = {
    "selector": {"matchLabels": {"app": "api"}},
    "probes": {"port": "http", "readiness": {"type": "httpGet", "path": "/ready"}},
    "resources": {"limits": {"memory": "256Mi"}},
    "rollout": {"maxConcurrent": "100%"},  # the twin's rollouts never complete: no waves here
}


def deployment(name: str = "api", app: str = "api") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS, "labels": {"app": app}, "uid": f"uid-{name}"},
        "spec": {
            "replicas": 1,
            "template": {
                "metadata": {"labels": {"app": app}},
                "spec": {
                    "containers": [
                        {"name": "app", "image": "x", "ports": [{"name": "http", "containerPort": 80}]}
                    ]
                },
            },
        },
    }
