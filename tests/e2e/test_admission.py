"""The invalid-profile corpus (tests/data/invalid-profiles.yaml): every entry refused at
admission, by the real apiserver, with a message naming the field and saying what is wrong."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.conftest import ROOT, Kube

CORPUS = yaml.safe_load((ROOT / "tests" / "data" / "invalid-profiles.yaml").read_text())
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
    return yaml.safe_dump(
        {
            "apiVersion": "readiness.dev/v1alpha1",
            "kind": "ServiceProfile",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
    )


def test_the_corpus_is_large_and_its_base_is_valid(kube: Kube, namespace: str, crd: None) -> None:
    assert len(CORPUS) >= 40
    assert len({case["name"] for case in CORPUS}) == len(CORPUS)
    result = kube.run("apply", "--dry-run=server", "-f", "-", input_text=manifest(namespace, "base", VALID))
    assert "created (server dry run)" in result.stdout


@pytest.mark.parametrize("case", CORPUS, ids=[case["name"] for case in CORPUS])
def test_an_invalid_profile_is_refused_naming_the_field(
    kube: Kube, namespace: str, crd: None, case: dict[str, Any]
) -> None:
    spec = merged(VALID, case["spec"])
    result = kube.run(
        "apply",
        "--dry-run=server",
        "-f",
        "-",
        input_text=manifest(namespace, case["name"], spec),
        check=False,
    )
    assert result.returncode != 0, f"accepted: {yaml.safe_dump(spec)}"
    assert case["field"] in result.stderr, result.stderr
    assert case["says"] in result.stderr, result.stderr


def test_the_corpus_file_is_where_the_docs_say() -> None:
    assert Path(ROOT / "tests" / "data" / "invalid-profiles.yaml").is_file()
