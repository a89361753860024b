"""The slice of a Deployment the engine reads: what the index keeps, nothing more."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any


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
    observed_generation: int = 0
    replicas: int = 0
    updated_replicas: int = 0
    ready_replicas: int = 0
    available_replicas: int = 0
    conditions: tuple[Mapping[str, Any], ...] = ()


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
    containers: tuple[Mapping[str, Any], ...] = ()
    managed: tuple[ManagedEntry, ...] = ()
    replicas: int = 1
    status: RolloutStatus = RolloutStatus()

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> DeploymentView:
        """Project an apps/v1 Deployment (as the API returns it) onto the view."""
        meta = body.get("metadata") or {}
        spec = body.get("spec") or {}
        template = spec.get("template") or {}
        tmeta = template.get("metadata") or {}
        tspec = template.get("spec") or {}
        status = body.get("status") or {}
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
            containers=tuple(dict(c) for c in tspec.get("containers") or ()),
            managed=tuple(
                ManagedEntry(
                    manager=str(m.get("manager", "")),
                    operation=str(m.get("operation", "")),
                    fields=m.get("fieldsV1") or {},
                    subresource=str(m.get("subresource", "")),
                    time=str(m.get("time", "")),
                )
                for m in meta.get("managedFields") or ()
            ),
            replicas=int(spec["replicas"]) if spec.get("replicas") is not None else 1,
            status=RolloutStatus(
                observed_generation=int(status.get("observedGeneration") or 0),
                replicas=int(status.get("replicas") or 0),
                updated_replicas=int(status.get("updatedReplicas") or 0),
                ready_replicas=int(status.get("readyReplicas") or 0),
                available_replicas=int(status.get("availableReplicas") or 0),
                conditions=tuple(dict(c) for c in status.get("conditions") or ()),
            ),
        )
