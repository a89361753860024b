"""The API server's defaults for the pod-template fields a profile sets, and who chose a value.

Update-operation managers (client-side ``kubectl apply``, ``kubectl create``, Helm, Argo CD's
default sync) send whole objects, so managedFields credit them with every value the API server
filled in: a Deployment nobody gave a grace period is recorded as its team's
``terminationGracePeriodSeconds: 30``. This table is what the apiserver fills in for apps/v1
Deployment pod templates in the Kubernetes version the testbed runs (v1.34); an end-to-end test
creates a bare Deployment and reads them back, so a version that changes one fails there.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
"""What client-side apply (kubectl, Argo CD's default sync) records of the manifest as written."""
TOOK = "readiness.dev/took-defaults"
"""Deployment annotation the operator's apply carries: the API defaults nobody chose that it
took, one per line (``terminationGracePeriodSeconds=30 (API default, ...)``). Once taken, a field
is the operator's in managedFields and nothing else says it was a default; status and the audit
read it here."""

EVERYTHING = "*"
"""Key of a ``written`` result that could not be read: it names every field."""
_MISSING: Any = object()

POD: Mapping[str, Any] = {
    "terminationGracePeriodSeconds": 30,
    "restartPolicy": "Always",
    "dnsPolicy": "ClusterFirst",
    "schedulerName": "default-scheduler",
}
CONTAINER: Mapping[str, Any] = {
    "terminationMessagePath": "/dev/termination-log",
    "terminationMessagePolicy": "File",
}
PROBE: Mapping[tuple[str, ...], Any] = {
    ("timeoutSeconds",): 1,
    ("periodSeconds",): 10,
    ("successThreshold",): 1,
    ("failureThreshold",): 3,
    ("httpGet", "scheme"): "HTTP",
    ("grpc", "service"): "",
}
PROBES = ("livenessProbe", "readinessProbe", "startupProbe")
_POD_SPEC = ("f:spec", "f:template", "f:spec")


def api_default(path: tuple[str, ...]) -> Any:
    """The value the API server gives the pod-template field at ``path`` (fieldsV1 notation)
    when a request leaves it out, or ``MISSING`` when it gives none."""
    if path[:3] != _POD_SPEC or len(path) < 4:
        return _MISSING
    rest = [p[2:] for p in path[3:] if p.startswith("f:")]
    if len(path) == 4:
        return POD.get(rest[0], _MISSING)
    if path[3] != "f:containers" or len(path) < 6 or not path[4].startswith("k:"):
        return _MISSING
    inner = tuple(p[2:] for p in path[5:])
    if len(inner) == 1:
        return CONTAINER.get(inner[0], _MISSING)
    if inner[0] in PROBES:
        return PROBE.get(inner[1:], _MISSING)
    return _MISSING


def is_default(path: tuple[str, ...], value: Any) -> bool:
    default = api_default(path)
    return default is not _MISSING and value == default


def written(annotations: Mapping[str, str]) -> Mapping[str, Any] | None:
    """The part of the last-applied configuration that can name a defaulted field the engine
    sets (the pod spec's own defaults and each container's), in the Deployment's own shape, or
    None without one. A value
    that is not a JSON object names everything: nothing in it can be taken as a default."""
    raw = annotations.get(LAST_APPLIED)
    if raw is None:
        return None
    try:
        document = json.loads(raw)
        spec = document["spec"]["template"]["spec"]
        containers = spec.get("containers") or []
        pod = {
            **{k: spec[k] for k in POD if k in spec},
            "containers": [
                {k: c[k] for k in ("name", *CONTAINER, *PROBES) if k in c}
                for c in containers
                if isinstance(c, Mapping)
            ],
        }
        return {"spec": {"template": {"spec": pod}}}
    except (ValueError, TypeError, KeyError, AttributeError):
        return {EVERYTHING: True}


def took(annotations: Mapping[str, str]) -> dict[str, str]:
    """The ``TOOK`` annotation as {field: line}."""
    raw = annotations.get(TOOK)
    lines = raw.splitlines() if isinstance(raw, str) else []
    return {line.split("=", 1)[0]: line for line in lines if "=" in line}


def packed(written_part: Mapping[str, Any] | None) -> dict[str, str]:
    """``written``'s result as the annotation it came from, in the API's own shape: what a
    Deployment's packed copy keeps of its last-applied configuration."""
    if written_part is None:
        return {}
    if EVERYTHING in written_part:
        return {LAST_APPLIED: "{}"}
    return {LAST_APPLIED: json.dumps(written_part, separators=(",", ":"), sort_keys=True)}
