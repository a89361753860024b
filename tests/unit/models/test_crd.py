"""The CRD in crds/ is generated from the models and reads well in `kubectl explain`."""

from __future__ import annotations

from typing import Any

import yaml
from tests.support.paths import ROOT

from readiness.models.crd import build_crd, render_crd_yaml

CRD_FILE = ROOT / "crds" / "serviceprofiles.readiness.dev.yaml"


def test_committed_crd_is_not_stale() -> None:
    assert CRD_FILE.read_text() == render_crd_yaml(), "crds/ is stale: run `make crds` and commit the result"


def _walk(node: dict[str, Any], path: str = "spec") -> list[tuple[str, dict[str, Any]]]:
    found = [(path, node)]
    for name, child in (node.get("properties") or {}).items():
        found += _walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        found += _walk(node["items"], f"{path}[]")
    return found


def test_every_spec_field_is_described_and_structural() -> None:
    schema = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema["properties"]["spec"]):
        if path.endswith("[]"):
            continue
        assert node.get("description"), f"{path} has no description"
        assert node.get("additionalProperties") is not False, path
        assert not {"anyOf", "$ref"} & set(node), path
        assert "type" in node or node.get("x-kubernetes-int-or-string"), path


def test_names_columns_and_subresources() -> None:
    crd = build_crd()
    spec = crd["spec"]
    assert spec["names"]["shortNames"] == ["sp", "svcprofile"]
    assert spec["names"]["categories"] == ["readiness"]
    version = spec["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Mode",
        "Matched",
        "Compliant",
        "Ready",
        "Rollout",
        "Age",
        "Pending",
    ]
    rules = [
        rule["message"]
        for _, node in _walk(version["schema"]["openAPIV3Schema"]["properties"]["spec"])
        for rule in node.get("x-kubernetes-validations", [])
    ]
    for message in (
        "selector must not be empty",
        "requests.memory must not exceed limits.memory",
        "terminationGracePeriodSeconds must be longer than preStopSleepSeconds",
        "samplerArg must be a number between 0 and 1",
    ):
        assert any(m.startswith(message) for m in rules), message
    assert yaml.safe_load(render_crd_yaml()) == crd
