"""The observed cluster as the watches last showed it: Deployments and ServiceProfiles.

The kopf handlers fill it; the reconciler and the status writer read it. Plain dictionaries,
so a test can fill one by hand and a lookup by name is O(1) at any fleet size.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import orjson
from pydantic import ValidationError

from readiness.engine import DeploymentView, matches, rollout_state
from readiness.models import ServiceProfileSpec
from readiness.models.status import Rollout

# (namespace, name) of a ServiceProfile or a Deployment.
Key = tuple[str, str]
# What a decision about a Deployment depends on besides the Deployment: every valid profile of
# its namespace, by (name, uid, generation). Any profile change makes it differ.
Context = tuple[tuple[str, str, int], ...]


@dataclass(frozen=True)
class ProfileRecord:
    """What the operator keeps of a ServiceProfile between events."""

    namespace: str
    name: str
    uid: str
    generation: int
    spec: Mapping[str, Any]
    status: Mapping[str, Any]
    deleting: bool = False

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> ProfileRecord:
        meta = body.get("metadata") or {}
        return cls(
            namespace=str(meta.get("namespace", "")),
            name=str(meta.get("name", "")),
            uid=str(meta.get("uid", "")),
            generation=int(meta.get("generation") or 0),
            spec=dict(body.get("spec") or {}),
            status=dict(body.get("status") or {}),
            deleting=bool(meta.get("deletionTimestamp")),
        )

    @cached_property
    def parsed(self) -> ServiceProfileSpec | str:
        """The validated spec, or a message naming what is wrong (parsed once per version)."""
        try:
            return ServiceProfileSpec.model_validate(self.spec)
        except ValidationError as error:
            return "; ".join(
                f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()[:5]
            )

    @property
    def identity(self) -> tuple[str, int, bool]:
        """Changes when what the profile asks for changes; a status update leaves it alone."""
        return (self.uid, self.generation, self.deleting)


@dataclass(frozen=True, slots=True)
class StoredDeployment:
    """A Deployment as the world keeps it: what every watch event is checked against, and the
    engine's slice of the object packed as compressed JSON (about 1 KiB, a twentieth of the
    parsed form), unpacked only when a decision is due (tens of microseconds)."""

    name: str
    labels: Mapping[str, str]
    generation: int
    fingerprint: int
    rollout: Rollout
    packed: bytes

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> StoredDeployment:
        essentials = DeploymentView.essentials(body)
        view = DeploymentView.from_body(essentials)
        return cls(
            name=view.name,
            labels=view.labels,
            generation=view.generation,
            fingerprint=view.fingerprint,
            rollout=rollout_state(view),
            packed=zlib.compress(orjson.dumps(essentials), level=1),
        )

    def view(self) -> DeploymentView:
        return DeploymentView.from_body(orjson.loads(zlib.decompress(self.packed)))


class World:
    """Deployments and profiles by namespace and name."""

    def __init__(self) -> None:
        self._deployments: dict[str, dict[str, StoredDeployment]] = {}
        self._profiles: dict[str, dict[str, ProfileRecord]] = {}
        self._specs: dict[str, dict[str, tuple[ProfileRecord, ServiceProfileSpec]]] = {}
        self._held: dict[str, set[str]] = {}  # new profiles not applied yet, by namespace
        self._contexts: dict[str, Context] = {}
        # Per namespace: how many Deployments each profile selects, for the context it was counted
        # under; kept up to date as Deployments come, go and change labels (O(profiles) each).
        self._counts: dict[str, tuple[Context, dict[str, int]]] = {}

    # ---- Deployments ----
    def put_deployment(self, body: Mapping[str, Any]) -> StoredDeployment:
        """Keep the Deployment as an API object ``body`` shows it."""
        stored = StoredDeployment.from_body(body)
        namespace = str((body.get("metadata") or {}).get("namespace", ""))
        store = self._deployments.setdefault(namespace, {})
        old = store.get(stored.name)
        store[stored.name] = stored
        if old is None or old.labels != stored.labels:
            self._recount(namespace, old.labels if old is not None else None, stored.labels)
        return stored

    def remove_deployment(self, namespace: str, name: str) -> None:
        store = self._deployments.get(namespace, {})
        old = store.pop(name, None)
        if not store:
            self._deployments.pop(namespace, None)
        if old is not None:
            self._recount(namespace, old.labels, None)

    def _recount(
        self, namespace: str, before: Mapping[str, str] | None, after: Mapping[str, str] | None
    ) -> None:
        counted = self._counts.get(namespace)
        if counted is None or counted[0] != self._contexts.get(namespace):
            self._counts.pop(namespace, None)  # counted afresh when next asked
            return
        for name, (_, spec) in self.specs(namespace).items():
            change = int(after is not None and matches(spec.selector, after)) - int(
                before is not None and matches(spec.selector, before)
            )
            counted[1][name] = counted[1].get(name, 0) + change

    def matched(self, namespace: str, profile: str) -> int:
        """How many Deployments of the namespace the (valid, live) profile selects."""
        context = self.context(namespace)
        counted = self._counts.get(namespace)
        if counted is None or counted[0] != context:
            stored = self.deployments(namespace)
            counted = (
                context,
                {
                    name: sum(1 for d in stored if matches(spec.selector, d.labels))
                    for name, (_, spec) in self.specs(namespace).items()
                },
            )
            self._counts[namespace] = counted
        return counted[1].get(profile, 0)

    def stored(self, namespace: str, name: str) -> StoredDeployment | None:
        return self._deployments.get(namespace, {}).get(name)

    def deployments(self, namespace: str) -> list[StoredDeployment]:
        return list(self._deployments.get(namespace, {}).values())

    def all_deployments(self) -> Iterator[Key]:
        for namespace, store in list(self._deployments.items()):
            for name in list(store):
                yield namespace, name

    # ---- ServiceProfiles ----
    def put_profile(self, record: ProfileRecord) -> ProfileRecord | None:
        store = self._profiles.setdefault(record.namespace, {})
        old = store.get(record.name)
        store[record.name] = record
        if old is None or old.identity != record.identity:
            self._specs.pop(record.namespace, None)
        return old

    def remove_profile(self, namespace: str, name: str) -> ProfileRecord | None:
        store = self._profiles.get(namespace, {})
        old = store.pop(name, None)
        if not store:
            self._profiles.pop(namespace, None)
        self._specs.pop(namespace, None)
        return old

    def profile(self, namespace: str, name: str) -> ProfileRecord | None:
        return self._profiles.get(namespace, {}).get(name)

    def profiles(self, namespace: str) -> list[ProfileRecord]:
        return list(self._profiles.get(namespace, {}).values())

    def all_profiles(self) -> Iterator[Key]:
        for namespace, store in list(self._profiles.items()):
            for name in list(store):
                yield namespace, name

    def hold(self, namespace: str, name: str) -> None:
        """Leave a new profile out of every decision until ``release``."""
        self._held.setdefault(namespace, set()).add(name)
        self._specs.pop(namespace, None)

    def release(self, namespace: str) -> None:
        self._held.pop(namespace, None)
        self._specs.pop(namespace, None)

    def specs(self, namespace: str) -> Mapping[str, tuple[ProfileRecord, ServiceProfileSpec]]:
        """The valid, live profiles of a namespace: the ones that can select a Deployment.
        An invalid profile selects nothing; a profile being deleted no longer applies; a new one
        applies once it is released."""
        cached = self._specs.get(namespace)
        if cached is None:
            held = self._held.get(namespace, set())
            cached = {
                r.name: (r, r.parsed)
                for r in self.profiles(namespace)
                if not r.deleting and r.name not in held and isinstance(r.parsed, ServiceProfileSpec)
            }
            self._specs[namespace] = cached
            self._contexts[namespace] = tuple(
                sorted((n, r.uid, r.generation) for n, (r, _) in cached.items())
            )
        return cached

    def context(self, namespace: str) -> Context:
        self.specs(namespace)
        return self._contexts.get(namespace, ())
