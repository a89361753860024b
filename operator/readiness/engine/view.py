"""The slice of a Deployment the engine reads: what the operator keeps, nothing more."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import orjson

from .defaults import TOOK, packed, took, written


@dataclass(frozen=True)
class ManagedEntry:
    """One metadata.managedFields entry: who owns which fields (fieldsV1)."""

    manager: str
    operation: str
    fields: Mapping[str, Any]
    subresource: str = ""
    time: str = ""

    @cached_property
    def covered(self) -> frozenset[tuple[str, ...]]:
        """Every owned path and all of their prefixes: "owns X or something below X" in O(1)."""
        out: set[tuple[str, ...]] = set()
        stack: list[tuple[tuple[str, ...], Mapping[str, Any]]] = [((), self.fields)]
        while stack:
            prefix, node = stack.pop()
            for name, child in node.items():
                if name == ".":
                    continue
                path = (*prefix, name)
                out.add(path)
                if isinstance(child, Mapping) and child:
                    stack.append((path, child))
        return frozenset(out)


@dataclass(frozen=True)
class RolloutStatus:
    """What `kubectl rollout status` reads; nothing else of .status is kept."""

    observed_generation: int = 0
    replicas: int = 0
    updated_replicas: int = 0
    available_replicas: int = 0
    progressing_reason: str = ""  # reason of the Progressing condition


@dataclass(frozen=True)
class DeploymentView:
    namespace: str
    name: str
    uid: str = ""
    generation: int = 0
    resource_version: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    template_labels: Mapping[str, str] = field(default_factory=dict)
    template_annotations: Mapping[str, str] = field(default_factory=dict)
    termination_grace_period_seconds: int | None = None
    automount_service_account_token: bool | None = None
    pod_security_context: Mapping[str, Any] = field(default_factory=dict)
    containers: tuple[Mapping[str, Any], ...] = ()
    managed: tuple[ManagedEntry, ...] = ()
    replicas: int = 1
    status: RolloutStatus = RolloutStatus()
    # What kubectl's last-applied configuration says of the defaulted fields the engine sets
    # (``defaults.written``): None when the Deployment carries none.
    last_applied: Mapping[str, Any] | None = None
    took: Mapping[str, str] = field(default_factory=dict)  # defaults.took: what the operator took

    @cached_property
    def fingerprint(self) -> int:
        """Changes whenever anything the engine decides from changes, and only then.

        A Deployment's generation moves with every spec change; labels and field ownership
        live in metadata and are hashed as they are. Status, resourceVersion and the times in
        managedFields are left out: the controller-manager's status updates cost no evaluation.
        """
        owners = [(e.manager, e.operation, e.fields) for e in self.managed]
        digest = orjson.dumps(
            [sorted(self.labels.items()), owners, self.last_applied, sorted(self.took.items())],
            default=dict,  # any other Mapping
        )
        return hash((self.uid, self.generation, digest))

    @staticmethod
    def essentials(body: Mapping[str, Any]) -> dict[str, Any]:
        """The part of an apps/v1 Deployment the view is made from, in the API's own shape:
        ``from_body(essentials(body))`` is the same view as ``from_body(body)``. An operator
        watching thousands of Deployments keeps this, packed, and nothing more."""
        meta, spec, tmeta, tspec, status = _parts(body)
        return {
            "metadata": {
                **{
                    k: meta[k]
                    for k in ("namespace", "name", "uid", "generation", "resourceVersion", "labels")
                    if k in meta
                },
                **(
                    {"annotations": kept}
                    if (kept := _kept_annotations(meta.get("annotations") or {}))
                    else {}
                ),
                "managedFields": [
                    {k: m[k] for k in ("manager", "operation", "fieldsV1", "time") if k in m}
                    for m in meta.get("managedFields") or ()
                    if not m.get("subresource")
                ],
            },
            "spec": {
                **({"replicas": spec["replicas"]} if "replicas" in spec else {}),
                "template": {
                    "metadata": {k: tmeta[k] for k in ("labels", "annotations") if k in tmeta},
                    "spec": {
                        k: tspec[k]
                        for k in (
                            "terminationGracePeriodSeconds",
                            "automountServiceAccountToken",
                            "securityContext",
                            "containers",
                        )
                        if k in tspec
                    },
                },
            },
            "status": {
                **{
                    k: status[k]
                    for k in ("observedGeneration", "replicas", "updatedReplicas", "availableReplicas")
                    if k in status
                },
                "conditions": [
                    {"type": c.get("type"), "reason": c.get("reason")}
                    for c in status.get("conditions") or ()
                    if c.get("type") == "Progressing"
                ],
            },
        }

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> DeploymentView:
        """Project an apps/v1 Deployment (as the API returns it) onto the view."""
        meta, spec, tmeta, tspec, status = _parts(body)
        progressing = next(
            (c for c in status.get("conditions") or () if c.get("type") == "Progressing"), None
        )
        return cls(
            namespace=str(meta.get("namespace", "")),
            name=str(meta.get("name", "")),
            uid=str(meta.get("uid", "")),
            generation=int(meta.get("generation") or 0),
            resource_version=str(meta.get("resourceVersion", "")),
            labels=dict(meta.get("labels") or {}),
            template_labels=dict(tmeta.get("labels") or {}),
            template_annotations=dict(tmeta.get("annotations") or {}),
            termination_grace_period_seconds=tspec.get("terminationGracePeriodSeconds"),
            automount_service_account_token=tspec.get("automountServiceAccountToken"),
            pod_security_context=dict(tspec.get("securityContext") or {}),
            containers=tuple(dict(c) for c in tspec.get("containers") or ()),
            # Entries of the status subresource own only .status: no decision reads them.
            managed=tuple(
                ManagedEntry(
                    manager=str(m.get("manager", "")),
                    operation=str(m.get("operation", "")),
                    fields=m.get("fieldsV1") or {},
                    time=str(m.get("time", "")),
                )
                for m in meta.get("managedFields") or ()
                if not m.get("subresource")
            ),
            replicas=int(spec["replicas"]) if spec.get("replicas") is not None else 1,
            last_applied=written(meta.get("annotations") or {}),
            took=took(meta.get("annotations") or {}),
            status=RolloutStatus(
                observed_generation=int(status.get("observedGeneration") or 0),
                replicas=int(status.get("replicas") or 0),
                updated_replicas=int(status.get("updatedReplicas") or 0),
                available_replicas=int(status.get("availableReplicas") or 0),
                progressing_reason=str((progressing or {}).get("reason") or ""),
            ),
        )


def _kept_annotations(annotations: Mapping[str, Any]) -> dict[str, str]:
    """The Deployment annotations a decision reads, the last-applied configuration trimmed to
    what the engine needs of it."""
    kept = packed(written(annotations))
    if isinstance(annotations.get(TOOK), str):
        kept[TOOK] = annotations[TOOK]
    return kept


def _parts(body: Mapping[str, Any]) -> tuple[Mapping[str, Any], ...]:
    """metadata, spec, the pod template's metadata and spec, status: each {} when absent."""
    spec = body.get("spec") or {}
    template = spec.get("template") or {}
    return (
        body.get("metadata") or {},
        spec,
        template.get("metadata") or {},
        template.get("spec") or {},
        body.get("status") or {},
    )
