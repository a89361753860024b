"""One admission request for a Deployment -> the object as it should be stored, and why.

The mutating webhook decides here, with the reconciler's own engine (``judge``), so a Deployment
admitted by the webhook is one the reconciler finds compliant and leaves alone: the same
profile, the same fields, the same rule for values someone else set. The request's object
carries the managedFields the apiserver computed for this very request before admission (the
requester holds every field it sent, API defaults included on create); the engine's Report rule
keeps exactly those, as it does for the reconciler. Fields the webhook adds belong to nobody,
which is what the reconciler then finds.

What is never mutated: an Audit profile's Deployments, a Deployment two profiles select
(Ambiguous), the operator's own writes (its apply, and its revert of a failed rollout, must
land as sent), an update that leaves the pod template as it is (nothing rolls out, so nothing
rides along: the reconciler's waves decide), and a Deployment without a name yet
(``generateName``: its name feeds OTEL_SERVICE_NAME).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .. import API_GROUP, FIELD_MANAGER, REVERT_MANAGER
from ..models.profile import ServiceProfileSpec
from .evaluate import taken_text
from .verdict import judge
from .view import DeploymentView

ADMITTED = f"{API_GROUP}/admitted"
"""Annotation on a Deployment the webhook changed: ``<profile>@<generation>: <checks>``."""

AdmissionOutcome = Literal["Mutated", "Compliant", "Skipped"]
# Only one of these may be set at once: setting one of them takes the others away, as the
# server-side apply the reconciler sends would (it owns no other handler there).
_ONE_OF: Mapping[str, frozenset[str]] = {
    "livenessProbe": frozenset({"httpGet", "grpc", "tcpSocket", "exec"}),
    "readinessProbe": frozenset({"httpGet", "grpc", "tcpSocket", "exec"}),
    "startupProbe": frozenset({"httpGet", "grpc", "tcpSocket", "exec"}),
    "preStop": frozenset({"sleep", "httpGet", "tcpSocket", "exec"}),
    "env": frozenset({"value", "valueFrom"}),
}


@dataclass(frozen=True)
class Candidate:
    """A valid, live profile of the request's namespace."""

    generation: int
    spec: ServiceProfileSpec
    halted: bool = False  # a rollout of this generation failed: it changes nothing more


@dataclass(frozen=True)
class Admission:
    """The webhook's answer to one request."""

    outcome: AdmissionOutcome
    reason: str  # why, for logs and the metric
    profile: str | None = None
    checks: tuple[str, ...] = ()
    obj: Mapping[str, Any] | None = None  # the object to store, when Mutated
    took: str = ""  # the API defaults nobody chose that it replaced, for people

    @property
    def message(self) -> str:
        """What a person reads (kubectl prints it as a warning)."""
        done = f"ServiceProfile {self.profile} set {', '.join(self.checks)} at admission"
        return f"{done}; {self.took}" if self.took else done


def admit(request: Mapping[str, Any], profiles: Mapping[str, Candidate]) -> Admission:
    """Decide an AdmissionReview ``request`` (its ``.request``) for an apps/v1 Deployment under
    the valid, live profiles of its namespace, by name. Pure: a dry run gets the same answer."""
    skipped = precheck(request)
    if skipped is not None:
        return Admission("Skipped", skipped)
    obj: Mapping[str, Any] = request["object"]
    meta = obj.get("metadata") or {}
    body = {**obj, "metadata": {**meta, "namespace": meta.get("namespace") or request.get("namespace", "")}}
    if not meta.get("managedFields"):
        user = str((request.get("userInfo") or {}).get("username") or "admission-request")
        body["metadata"]["managedFields"] = [held_by(user, obj)]
    view = DeploymentView.from_body(body)
    judgement = judge(view, {name: c.spec for name, c in profiles.items()})
    owner, ev = judgement.owner, judgement.evaluation
    if owner is None or ev is None:
        return Admission("Skipped", "ambiguous" if judgement.targets else "no-profile")
    spec = profiles[owner].spec
    if spec.mode != "Enforce":
        return Admission("Skipped", "audit", profile=owner)
    if ev.problems:
        return Admission("Skipped", "invalid", profile=owner)
    if profiles[owner].halted:  # the reconciler writes nothing for it; neither does admission
        return Admission("Skipped", "halted", profile=owner)
    checks = tuple(c for c in ev.changes if c != "released")
    if ev.apply is None or not checks:
        return Admission("Compliant", "conflicted" if ev.conflicts else "compliant", profile=owner)
    mutated = copy.deepcopy(dict(obj))
    merge(mutated, {k: v for k, v in ev.apply.items() if k not in ("apiVersion", "kind", "metadata")})
    annotations = dict((mutated.setdefault("metadata", {})).get("annotations") or {})
    annotations[ADMITTED] = f"{owner}@{profiles[owner].generation}: {', '.join(checks)}"
    mutated["metadata"]["annotations"] = annotations
    return Admission(
        "Mutated",
        "mutated",
        profile=owner,
        checks=checks,
        obj=mutated,
        took=taken_text(ev.taken, "took"),
    )


def precheck(request: Mapping[str, Any]) -> str | None:
    """Why ``request`` is left as it is whatever the profiles say, or None: decided before any
    profile is looked up."""
    operation = request.get("operation")
    if operation not in ("CREATE", "UPDATE"):
        return "operation"
    if (request.get("options") or {}).get("fieldManager") in (FIELD_MANAGER, REVERT_MANAGER):
        return "own-write"
    obj = request.get("object")
    if not isinstance(obj, Mapping):
        return "no-object"
    if not (obj.get("metadata") or {}).get("name"):
        return "no-name"
    if operation == "UPDATE":
        old = request.get("oldObject") or {}
        if (old.get("spec") or {}).get("template") == (obj.get("spec") or {}).get("template"):
            return "template-unchanged"
    return None


def held_by(manager: str, obj: Mapping[str, Any]) -> dict[str, Any]:
    """A managedFields entry in which ``manager`` holds every field ``obj`` sets: for a request
    that carries none, every value in it is the requester's."""
    fields = {k: _fields(obj[k]) for k in ("spec",) if isinstance(obj.get(k), Mapping)}
    labels = (obj.get("metadata") or {}).get("labels")
    if labels:
        fields["metadata"] = {"labels": {key: {} for key in labels}}
    return {"manager": manager, "operation": "Update", "fieldsV1": _prefixed(fields)}


def _fields(node: Any) -> Any:
    if isinstance(node, Mapping):
        return {k: _fields(v) for k, v in node.items()}
    if isinstance(node, list) and node and all(isinstance(i, Mapping) and "name" in i for i in node):
        return {
            "k:" + json.dumps({"name": i["name"]}, separators=(",", ":")): {".": {}, **_fields(i)}
            for i in node
        }
    return {}


def _prefixed(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {
        (k if k.startswith(("k:", ".")) else f"f:{k}"): _prefixed(v) if isinstance(v, Mapping) else v
        for k, v in fields.items()
    }


def merge(target: dict[str, Any], apply: Mapping[str, Any], parent: str = "") -> None:
    """Merge an apply configuration into an object as server-side apply merges it: maps field by
    field, lists of named items (containers, env) by name, anything else replaced. Setting one
    handler of a probe or preStop, or one form of an env variable, drops the others."""
    exclusive = _ONE_OF.get(parent)
    if exclusive is not None and exclusive & apply.keys():
        for other in exclusive - apply.keys():
            target.pop(other, None)
    for name, value in apply.items():
        live = target.get(name)
        if isinstance(value, Mapping) and isinstance(live, dict):
            merge(live, value, name)
        elif _named(value) and isinstance(live, list):
            for item in value:
                # The last of a name: a variable defined twice takes its last value in the pod.
                found = next(
                    (i for i in reversed(live) if isinstance(i, dict) and i.get("name") == item["name"]), None
                )
                if found is None:
                    live.append(copy.deepcopy(dict(item)))
                else:
                    merge(found, item, name)
        else:
            target[name] = copy.deepcopy(value)


def _named(value: Any) -> bool:
    return (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and all(isinstance(i, Mapping) and "name" in i for i in value)
    )
