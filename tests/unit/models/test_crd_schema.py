"""The ServiceProfile CRD: generated from the models, structural, described, and what kubectl shows."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pydantic
import pytest
import yaml
from tests.support.paths import ROOT

from readiness.models import ServiceProfileSpec
from readiness.models.crd import build_crd, render_crd_yaml

CRD_FILE = ROOT / "crds" / "serviceprofiles.readiness.dev.yaml"


def version() -> dict[str, Any]:
    versions: list[dict[str, Any]] = build_crd()["spec"]["versions"]
    assert len(versions) == 1
    return versions[0]


def schema() -> dict[str, Any]:
    root: dict[str, Any] = version()["schema"]["openAPIV3Schema"]
    return root


def properties(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every property below ``node`` (through objects, arrays and maps), with its dotted path."""
    for name, child in (node.get("properties") or {}).items():
        yield f"{path}.{name}", child
        yield from properties(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from properties(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from properties(node["additionalProperties"], f"{path}{{}}")


def nodes(document: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every mapping anywhere in ``document``."""
    if isinstance(document, dict):
        yield path, document
        for name, child in document.items():
            yield from nodes(child, f"{path}.{name}")
    elif isinstance(document, list):
        for i, child in enumerate(document):
            yield from nodes(child, f"{path}[{i}]")


def test_committed_crd_is_the_generated_one() -> None:
    assert CRD_FILE.read_text() == render_crd_yaml(), (
        f"{CRD_FILE.relative_to(ROOT)} is stale: run `make crds` and commit the result"
    )


def test_rendered_yaml_is_the_built_crd() -> None:
    text = render_crd_yaml()
    assert text.startswith("# Generated from readiness.models")
    assert "make crds" in text.splitlines()[0]
    assert yaml.safe_load(text) == build_crd()
    assert "&id" not in text, "no YAML anchors"
    assert "*id" not in text, "no YAML aliases"


def test_every_spec_property_has_a_description() -> None:
    spec = schema()["properties"]["spec"]
    found = list(properties(spec, "spec"))
    assert len(found) > 40, "the walk reaches nested properties"
    assert "spec.selector.matchExpressions[].operator" in dict(found)
    assert "spec.tracing.samplerArg" in dict(found)
    undescribed = [path for path, node in found if not node.get("description")]
    assert undescribed == []
    assert spec.get("description")


def test_every_status_property_has_a_description() -> None:
    status = schema()["properties"]["status"]
    undescribed = [path for path, node in properties(status, "status") if not node.get("description")]
    assert undescribed == []


def test_no_additional_properties_false_anywhere() -> None:
    closed = [path for path, node in nodes(build_crd()) if node.get("additionalProperties") is False]
    assert closed == []


@pytest.mark.parametrize("forbidden", ["$ref", "$defs", "anyOf", "oneOf", "allOf", "const", "title"])
def test_schema_is_structural(forbidden: str) -> None:
    assert [path for path, node in nodes(schema()) if forbidden in node] == []


def test_every_schema_node_has_a_type() -> None:
    untyped = [
        path
        for path, node in properties(schema(), "")
        if "type" not in node and not node.get("x-kubernetes-int-or-string")
    ]
    assert untyped == []


@pytest.mark.parametrize(
    ("path", "int_or_string"),
    [
        ("spec.probes.port", True),
        ("spec.metrics.port", True),
        ("spec.resources.limits.memory", True),
        ("spec.resources.requests.cpu", True),
        ("spec.mode", False),
    ],
)
def test_int_or_string_fields(path: str, int_or_string: bool) -> None:
    node = dict(properties(schema()["properties"]["spec"], "spec"))[path]
    assert bool(node.get("x-kubernetes-int-or-string")) is int_or_string
    assert ("type" in node) is not int_or_string


def test_printer_columns() -> None:
    columns = version()["additionalPrinterColumns"]
    assert [c["name"].upper() for c in columns] == [
        "MODE",
        "MATCHED",
        "COMPLIANT",
        "READY",
        "ROLLOUT",
        "AGE",
        "PENDING",
    ]
    assert {c["name"]: c["jsonPath"] for c in columns} == {
        "Mode": ".spec.mode",
        "Matched": ".status.summary.matched",
        "Compliant": ".status.summary.compliant",
        "Ready": '.status.conditions[?(@.type=="Ready")].status',
        "Rollout": '.status.conditions[?(@.type=="Progressing")].reason',
        "Age": ".metadata.creationTimestamp",
        "Pending": ".status.summary.pending",
    }


def test_names_scope_and_subresources() -> None:
    crd = build_crd()
    assert crd["metadata"]["name"] == "serviceprofiles.readiness.dev"
    assert crd["spec"]["group"] == "readiness.dev"
    assert crd["spec"]["scope"] == "Namespaced"
    names = crd["spec"]["names"]
    assert names["shortNames"] == ["sp", "svcprofile"]
    assert (names["kind"], names["plural"], names["singular"]) == (
        "ServiceProfile",
        "serviceprofiles",
        "serviceprofile",
    )
    v = version()
    assert (v["name"], v["served"], v["storage"]) == ("v1alpha1", True, True)
    assert v["subresources"] == {"status": {}}
    assert schema()["required"] == ["spec"]


def test_status_lists_are_maps_keyed_for_server_side_apply() -> None:
    status = schema()["properties"]["status"]["properties"]
    assert status["conditions"]["x-kubernetes-list-type"] == "map"
    assert status["conditions"]["x-kubernetes-list-map-keys"] == ["type"]
    assert status["targets"]["x-kubernetes-list-type"] == "map"
    assert status["targets"]["x-kubernetes-list-map-keys"] == ["name"]


def test_admission_rules_are_in_the_schema() -> None:
    messages = [
        rule["message"]
        for _, node in nodes(schema()["properties"]["spec"])
        for rule in node.get("x-kubernetes-validations", [])
    ]
    for expected in (
        "selector must not be empty",
        "requests.cpu must not exceed limits.cpu",
        "requests.memory must not exceed limits.memory",
        "terminationGracePeriodSeconds must be longer than preStopSleepSeconds",
        "an httpGet probe needs a path",
        "must be a non-negative Kubernetes quantity",
        "must be a port number (1-65535) or an IANA port name",
        "samplerArg must be a number between 0 and 1",
    ):
        assert any(m.startswith(expected) for m in messages), expected


CONTRACT: dict[str, Any] = {
    "selector": {"matchLabels": {"app.kubernetes.io/name": "checkout"}},
    "mode": "Enforce",
    "conflictPolicy": "Report",
    "containers": [],
    "probes": {
        "port": "http",
        "liveness": {"type": "httpGet", "path": "/healthz", "periodSeconds": 10, "failureThreshold": 3},
        "readiness": {"type": "httpGet", "path": "/ready", "periodSeconds": 5, "failureThreshold": 3},
        "startup": {"type": "httpGet", "path": "/startup", "periodSeconds": 5, "failureThreshold": 30},
    },
    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
    "shutdown": {"terminationGracePeriodSeconds": 30, "preStopSleepSeconds": 5},
    "metrics": {"port": "metrics", "path": "/metrics", "scheme": "http"},
    "tracing": {
        "endpoint": "http://otel-collector.observability:4317",
        "protocol": "grpc",
        "sampler": "parentbased_traceidratio",
        "samplerArg": "0.1",
        "serviceName": "checkout",
        "propagators": ["tracecontext", "baggage"],
    },
    "runtime": {"go": {"memoryLimitRatio": 0.9}},
    "logging": {"format": "json", "level": "info"},
}


def test_the_contract_example_validates_and_round_trips() -> None:
    spec = ServiceProfileSpec.model_validate(CONTRACT)
    assert spec.probes is not None
    assert spec.probes.readiness is not None
    assert spec.probes.readiness.period_seconds == 5
    assert spec.runtime is not None
    assert spec.runtime.go is not None
    assert spec.runtime.go.memory_limit_ratio == 0.9
    assert spec.model_dump(by_alias=True, exclude_unset=True) == CONTRACT


def test_only_the_selector_is_required() -> None:
    spec = ServiceProfileSpec.model_validate({"selector": {"matchLabels": {"a": "b"}}})
    assert (spec.mode, spec.conflict_policy, spec.containers) == ("Enforce", "Report", [])
    assert [
        spec.probes,
        spec.resources,
        spec.shutdown,
        spec.metrics,
        spec.tracing,
        spec.runtime,
        spec.logging,
    ] == [None] * 7


@pytest.mark.parametrize(
    "change",
    [
        {"selector": None},
        {"mode": "Dry"},
        {"conflictPolicy": "Steal"},
        {"unknownField": 1},
        {"probes": {"port": "http", "readiness": {"type": "exec"}}},
        {"probes": {"liveness": {"path": "/healthz"}}},  # probes.port is required
        {"probes": {"port": "http", "readiness": {"path": "/ready", "periodSeconds": 0}}},
        {"resources": {"limits": {"memory": 1.5}}},
        {"resources": {"limits": {"gpu": "1"}}},
        {"shutdown": {"terminationGracePeriodSeconds": 0}},
        {"shutdown": {"preStopSleepSeconds": 601}},
        {"metrics": {"path": "/metrics"}},
        {"metrics": {"port": "metrics", "scheme": "ftp"}},
        {"tracing": {"endpoint": "otel-collector:4317"}},
        {"tracing": {"endpoint": "http://c:4317", "protocol": "thrift"}},
        {"tracing": {"endpoint": "http://c:4317", "propagators": ["w3c"]}},
        {"runtime": {"go": {"memoryLimitRatio": 0}}},
        {"runtime": {"go": {"memoryLimitRatio": 1.5}}},
        {"logging": {"level": "trace"}},
        {"containers": [""]},
    ],
)
def test_the_model_rejects(change: dict[str, Any]) -> None:
    body = {**CONTRACT, **change}
    body = {k: v for k, v in body.items() if v is not None}
    with pytest.raises(pydantic.ValidationError):
        ServiceProfileSpec.model_validate(body)


def test_the_model_is_frozen() -> None:
    spec = ServiceProfileSpec.model_validate(CONTRACT)
    with pytest.raises(pydantic.ValidationError):
        spec.mode = "Audit"  # type: ignore[misc]
