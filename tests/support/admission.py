"""Admission requests for the webhook's tests: the profile that sets every section, a Deployment
as its creator sends it (holding every field it sent, as the apiserver records before admission)
and the AdmissionReview request that carries it."""

from __future__ import annotations

from typing import Any

from tests.support.apiserver import fields_of

FULL: dict[str, Any] = {
    "probes": {
        "port": "http",
        "readiness": {"path": "/ready", "periodSeconds": 5},
        "liveness": {"path": "/healthz"},
    },
    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
    "shutdown": {"terminationGracePeriodSeconds": 45, "preStopSleepSeconds": 5},
    "metrics": {"port": "metrics"},
    "tracing": {"endpoint": "http://otel:4317"},
    "logging": {"format": "json", "level": "info"},
}


def deployment(manager: str = "kubectl-create", **container: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "api", "labels": {"app": "api"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "api"}},
            "template": {
                "metadata": {"labels": {"app": "api"}},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "api:1",
                            "ports": [
                                {"name": "http", "containerPort": 8080},
                                {"name": "metrics", "containerPort": 9090},
                            ],
                            **container,
                        }
                    ]
                },
            },
        },
    }
    # What the apiserver computes before admission: the creator holds everything it sent.
    body["metadata"]["managedFields"] = [
        {"manager": manager, "operation": "Update", "fieldsV1": fields_of(body)}
    ]
    return body


def request(obj: dict[str, Any], operation: str = "CREATE", **extra: Any) -> dict[str, Any]:
    return {
        "uid": "1",
        "operation": operation,
        "namespace": "shop",
        "userInfo": {"username": "alice"},
        "object": obj,
        **extra,
    }
