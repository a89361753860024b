"""Generate the ServiceProfile CustomResourceDefinition from the pydantic models.

Pydantic emits JSON Schema; Kubernetes wants a structural OpenAPI v3 schema. The conversion
inlines ``$ref``s, turns ``Optional[X]`` into X (absent means unset), ``int | str`` into
``x-kubernetes-int-or-string`` and ``Literal`` into ``enum``, and drops what the apiserver rejects.
"""

from __future__ import annotations

from typing import Any

import yaml

from .. import API_GROUP, API_VERSION, KIND, PLURAL
from .profile import ServiceProfileSpec
from .status import ServiceProfileStatus

_KEEP = {
    "type",
    "description",
    "properties",
    "required",
    "items",
    "enum",
    "default",
    "format",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "additionalProperties",
    "x-kubernetes-validations",
    "x-kubernetes-int-or-string",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
}


def _structural(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        # The referencing field's docstring wins over the referenced class's one.
        return _structural(merged, defs)
    if "anyOf" in node:
        branches = [b for b in node["anyOf"] if b.get("type") != "null"]
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        types = sorted(b.get("type", "") for b in branches)
        if types == ["integer", "string"]:
            return _structural({"x-kubernetes-int-or-string": True, **rest}, defs)
        if len(branches) == 1:
            return _structural({**branches[0], **rest}, defs)
        raise ValueError(f"cannot express {node} in a structural schema")
    if "const" in node:
        node = {**{k: v for k, v in node.items() if k != "const"}, "enum": [node["const"]]}
    if node.get("exclusiveMinimum") is not None and not isinstance(node["exclusiveMinimum"], bool):
        node = {**node, "minimum": node["exclusiveMinimum"], "exclusiveMinimum": True}
    if node.get("exclusiveMaximum") is not None and not isinstance(node["exclusiveMaximum"], bool):
        node = {**node, "maximum": node["exclusiveMaximum"], "exclusiveMaximum": True}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key not in _KEEP:
            continue
        if key == "properties":
            out[key] = {name: _structural(sub, defs) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = _structural(value, defs)
        elif key == "additionalProperties":
            continue  # structural schemas forbid `false`; unknown fields are pruned instead
        elif key == "default" and value is None:
            continue
        elif key == "default" and value in ({}, []):
            continue  # empty defaults only add noise to every stored object
        elif key == "default" and isinstance(value, dict):
            out[key] = {k: v for k, v in value.items() if v is not None}  # unset means left out
        else:
            out[key] = value
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    if out.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
    return out


def _schema(model: type[Any]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="serialization")
    return _structural(raw, raw.get("$defs", {}))


def build_crd() -> dict[str, Any]:
    spec = _schema(ServiceProfileSpec)
    status = _schema(ServiceProfileStatus)
    status["properties"]["conditions"]["x-kubernetes-list-type"] = "map"
    status["properties"]["conditions"]["x-kubernetes-list-map-keys"] = ["type"]
    status["properties"]["targets"]["x-kubernetes-list-type"] = "map"
    status["properties"]["targets"]["x-kubernetes-list-map-keys"] = ["name"]
    status.pop("required", None)
    status["description"] = "Where each selected Deployment stands. Written by the operator only."
    root = {
        "type": "object",
        "description": "Declares how the Deployments it selects must run in production; "
        "the operator brings them there and reports where each stands.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }
    columns = [
        {"name": "Mode", "type": "string", "jsonPath": ".spec.mode"},
        {"name": "Matched", "type": "integer", "jsonPath": ".status.summary.matched"},
        {"name": "Compliant", "type": "integer", "jsonPath": ".status.summary.compliant"},
        {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
        # RollingOut, RolledOut, or RolloutFailed when a wave failed and the profile is halted.
        {
            "name": "Rollout",
            "type": "string",
            "jsonPath": '.status.conditions[?(@.type=="Progressing")].reason',
        },
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        {"name": "Pending", "type": "integer", "jsonPath": ".status.summary.pending", "priority": 1},
    ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{API_GROUP}"},
        "spec": {
            "group": API_GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": ["sp", "svcprofile"],
                "categories": ["readiness"],
            },
            "versions": [
                {
                    "name": API_VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


class _NoAliasDumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def render_crd_yaml() -> str:
    header = "# Generated from readiness.models by `readiness crd`; do not edit (make crds).\n"
    return header + yaml.dump(build_crd(), Dumper=_NoAliasDumper, sort_keys=False, width=100)
