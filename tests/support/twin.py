"""An in-memory twin of the Kubernetes API, just enough server-side apply for the reconciler.

It merges apply configurations (lists keyed by name), records managedFields, refuses to change
a field another manager owns unless forced, bumps generation only when the spec changes, and
counts every request, so tests can assert "zero needless writes".
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from readiness.cache.world import ProfileRecord, World
from readiness.k8s import ApiError, FieldCause, ObjectRef

_ABSENT = object()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _leaves(fields: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The leaf paths of a fieldsV1 document: the twin's own reading, not the engine's."""
    for name, child in fields.items():
        if name == ".":
            continue
        if child:
            yield from _leaves(child, (*prefix, name))
        else:
            yield (*prefix, name)


def _at(body: Any, path: tuple[str, ...]) -> Any:
    """The value at a fieldsV1 path (f:field, k:{"name": ...} list items), or _ABSENT."""
    node = body
    for element in path:
        if element.startswith("f:") and isinstance(node, Mapping) and element[2:] in node:
            node = node[element[2:]]
        elif element.startswith("k:") and isinstance(node, list):
            wanted = json.loads(element[2:])
            node = next((i for i in node if isinstance(i, Mapping) and wanted.items() <= i.items()), _ABSENT)
            if node is _ABSENT:
                return node
        else:
            return _ABSENT
    return node


def fields_of(body: Mapping[str, Any]) -> dict[str, Any]:
    """fieldsV1 of an apply configuration, as the apiserver records it."""
    out: dict[str, Any] = {}
    for name, value in body.items():
        if name in ("apiVersion", "kind", "metadata"):
            continue
        if isinstance(value, Mapping):
            out[f"f:{name}"] = fields_of(value) if value else {}
        elif isinstance(value, list) and value and all(isinstance(v, Mapping) and "name" in v for v in value):
            items: dict[str, Any] = {}
            for item in value:
                key = "k:" + json.dumps({"name": item["name"]}, separators=(",", ":"))
                items[key] = {".": {}, **fields_of(item)}
            out[f"f:{name}"] = items
        else:
            out[f"f:{name}"] = {}
    return out


def _merge(live: Any, patch: Any) -> Any:
    if isinstance(live, Mapping) and isinstance(patch, Mapping):
        merged = dict(live)
        for k, v in patch.items():
            merged[k] = _merge(live.get(k), v) if k in live else copy.deepcopy(v)
        return merged
    if (
        isinstance(live, list)
        and isinstance(patch, list)
        and all(isinstance(p, Mapping) and "name" in p for p in patch)
    ):
        by_name = {item.get("name"): item for item in live}
        merged_list = [
            _merge(by_name[p["name"]], p) if p["name"] in by_name else copy.deepcopy(p) for p in patch
        ]
        patched = {p["name"] for p in patch}
        return [item for item in live if item.get("name") not in patched] + merged_list
    return copy.deepcopy(patch)


@dataclass
class Twin:
    """The API twin; every change it makes reaches ``world`` at once, as a watch would deliver it."""

    world: World = field(default_factory=World)
    deployments: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    profiles: dict[tuple[str, str], ProfileRecord] = field(default_factory=dict)
    applies: list[tuple[str, bool]] = field(default_factory=list)
    status_patches: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    events: list[tuple[str, str, str]] = field(default_factory=list)
    event_messages: list[str] = field(default_factory=list)
    reverts: list[str] = field(default_factory=list)
    templates: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)  # before each apply
    fail_next: ApiError | None = None
    _rv: int = 100

    # ---- setup ----
    def add_deployment(self, body: dict[str, Any], manager: str = "kubectl-client-side-apply") -> None:
        body = copy.deepcopy(body)
        meta = body["metadata"]
        meta.setdefault("generation", 1)
        meta["resourceVersion"] = self._next_rv()
        meta["managedFields"] = [{"manager": manager, "operation": "Update", "fieldsV1": fields_of(body)}]
        body.setdefault(
            "status", {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1}
        )
        self.deployments[(meta["namespace"], meta["name"])] = body
        self.world.put_deployment(body)

    def touch(self, namespace: str, name: str) -> None:
        """Deliver the Deployment again after the test changed it in place."""
        body = self.deployments[(namespace, name)]
        body["metadata"]["resourceVersion"] = self._next_rv()
        self.world.put_deployment(body)

    def delete_deployment(self, namespace: str, name: str) -> None:
        del self.deployments[(namespace, name)]
        self.world.remove_deployment(namespace, name)

    def add_profile(
        self, namespace: str, name: str, spec: dict[str, Any], generation: int = 1, uid: str = ""
    ) -> None:
        old = self.profiles.get((namespace, name))
        self._put_profile(
            ProfileRecord(
                namespace=namespace,
                name=name,
                uid=uid or f"uid-{name}",
                generation=generation,
                spec=spec,
                status=dict(old.status) if old else {},
            )
        )

    def delete_profile(self, namespace: str, name: str) -> None:
        del self.profiles[(namespace, name)]
        self.world.remove_profile(namespace, name)

    def _put_profile(self, record: ProfileRecord) -> None:
        self.profiles[(record.namespace, record.name)] = record
        self.world.put_profile(record)

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    # ---- Cluster ----
    async def apply_deployment(self, body: Mapping[str, Any], *, force: bool) -> dict[str, Any]:
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        self.applies.append((key[1], force))
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise error
        if key not in self.deployments:
            raise ApiError(404, "NotFound", f"deployments.apps {key[1]!r} not found")
        live = self.deployments[key]
        expected = body["metadata"].get("resourceVersion")
        if expected is not None and expected != live["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                "Conflict",
                "the object has been modified; please apply your changes to the latest version",
            )
        wanted = fields_of(body)
        if not force:
            causes: list[FieldCause] = []
            for entry in live["metadata"]["managedFields"]:
                if entry["manager"] == "readiness-operator":
                    continue
                # The apiserver's rule: a leaf another manager owns, holding another value.
                theirs = set(_leaves(entry["fieldsV1"]))
                causes += [
                    FieldCause(field=".".join(path), message="conflict", manager=entry["manager"])
                    for path in _leaves(wanted)
                    if path in theirs
                    and _at(live, path) is not _ABSENT
                    and _at(live, path) != _at(body, path)
                ]
            if causes:
                raise ApiError(409, "Conflict", "Apply failed with conflicts", causes)
        merged = _merge({k: v for k, v in live.items() if k != "metadata"}, {"spec": body.get("spec", {})})
        meta = live["metadata"]
        if merged["spec"] != live["spec"]:
            meta["generation"] += 1
            self.templates.setdefault(key, []).append(copy.deepcopy(live["spec"]["template"]))
        changed = merged["spec"] != live["spec"] or not any(
            m["manager"] == "readiness-operator" for m in meta["managedFields"]
        )
        merged["metadata"] = meta
        meta["managedFields"] = [m for m in meta["managedFields"] if m["manager"] != "readiness-operator"] + [
            {"manager": "readiness-operator", "operation": "Apply", "fieldsV1": wanted, "time": _now()}
        ]
        if changed:
            meta["resourceVersion"] = self._next_rv()
        self.deployments[key] = merged
        self.world.put_deployment(merged)
        return copy.deepcopy(merged)

    async def revert_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        """Put back the template the Deployment had before our last apply that changed it."""
        self.reverts.append(name)
        live = self.deployments[(namespace, name)]
        history = self.templates.get((namespace, name), [])
        if not history:
            return None
        live["spec"]["template"] = history.pop()
        live["metadata"]["generation"] += 1
        live["metadata"]["managedFields"].append(
            {
                "manager": "readiness-operator-revert",
                "operation": "Update",
                "fieldsV1": {"f:spec": {}},
                "time": _now(),
            }
        )
        live["metadata"]["resourceVersion"] = self._next_rv()
        self.world.put_deployment(live)
        return copy.deepcopy(live)

    async def patch_profile_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        self.status_patches.append((name, dict(status)))
        # A merge patch: a null removes the key.
        status = {
            **status,
            "summary": {k: v for k, v in (status.get("summary") or {}).items() if v is not None},
        }
        record = self.profiles[(namespace, name)]
        self._put_profile(
            ProfileRecord(
                namespace=record.namespace,
                name=record.name,
                uid=record.uid,
                generation=record.generation,
                spec=record.spec,
                status=dict(status),
            )
        )

    async def list_deployments(self, namespace: str, seconds: float) -> list[dict[str, Any]]:
        return [copy.deepcopy(b) for (ns, _), b in sorted(self.deployments.items()) if ns == namespace]

    async def list_profiles(self, namespace: str, seconds: float) -> list[dict[str, Any]]:
        return [
            {
                "metadata": {
                    "namespace": r.namespace,
                    "name": r.name,
                    "uid": r.uid,
                    "generation": r.generation,
                },
                "spec": copy.deepcopy(dict(r.spec)),
                "status": copy.deepcopy(dict(r.status)),
            }
            for (ns, _), r in sorted(self.profiles.items())
            if ns == namespace
        ]

    async def post_event(self, ref: ObjectRef, type_: str, reason: str, message: str) -> None:
        self.events.append((ref.name, type_, reason))
        self.event_messages.append(message)
