"""The invalid-profile corpus (tests/data/invalid-profiles.yaml) and its one loader: each entry's
``spec`` merged over ``VALID``. The apiserver's admission (tests/e2e/test_admission.py) and
``readiness audit`` (tests/unit/audit/test_audit_parity.py) are checked against the same cases."""

from __future__ import annotations

import copy
from typing import Any

import yaml
from tests.support.paths import DATA

CORPUS_FILE = DATA / "invalid-profiles.yaml"
CORPUS: list[dict[str, Any]] = yaml.safe_load(CORPUS_FILE.read_text())
HUGE = {"HUGE_PATH": "/" + "p" * 2000, "HUGE_NAME": "n" * 300}
VALID: dict[str, Any] = {
    "selector": {"matchLabels": {"app": "api"}},
    "probes": {
        "port": "http",
        "liveness": {"type": "httpGet", "path": "/healthz"},
        "readiness": {"type": "httpGet", "path": "/ready", "periodSeconds": 5},
    },
    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
    "shutdown": {"terminationGracePeriodSeconds": 30, "preStopSleepSeconds": 5},
    "metrics": {"port": "metrics", "path": "/metrics"},
    "tracing": {"endpoint": "http://collector:4317", "samplerArg": "0.1"},
    "runtime": {"go": {"memoryLimitRatio": 0.9}},
    "logging": {"format": "json", "level": "info"},
}


def merged(base: Any, change: Any) -> Any:
    """``change`` over ``base``: mappings merge, None removes, an empty mapping or anything else
    replaces."""
    if isinstance(base, dict) and isinstance(change, dict) and change:
        out = copy.deepcopy(base)
        for key, value in change.items():
            if value is None:
                out.pop(key, None)
            else:
                out[key] = merged(base.get(key), value)
        return out
    if isinstance(change, str):
        return HUGE.get(change, change)
    if isinstance(change, list):
        return [merged(None, item) for item in change]
    return copy.deepcopy(change)


def manifest(namespace: str, name: str, spec: dict[str, Any]) -> str:
    """A ServiceProfile manifest with ``spec``, as YAML."""
    return yaml.safe_dump(
        {
            "apiVersion": "readiness.dev/v1alpha1",
            "kind": "ServiceProfile",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
    )
