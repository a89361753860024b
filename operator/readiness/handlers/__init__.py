"""kopf wiring only: indexes feed the world, events feed the work queue.

Deployments are only indexed and watched, never handled with change-detecting handlers,
so kopf writes no annotations and no finalizers on them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import kopf

from .. import API_GROUP, API_VERSION, PLURAL
from ..engine import DeploymentView
from ..reconcile import ProfileRecord, Reconciler
from ..workqueue import WorkQueue

ProfileKey = tuple[str, str]
# A new profile waits this long before its first reconcile, so that profiles applied together
# (one `kubectl apply -f dir/`) are all indexed before any of them decides it is alone.
SETTLE_SECONDS = 1.0


class IndexedWorld:
    """The reconciler's ``World`` over kopf's in-memory indexes (bound at start-up)."""

    def __init__(self) -> None:
        self._deployments: Mapping[str, Any] = {}
        self._profiles: Mapping[str, Any] = {}

    def bind(self, deployments: Mapping[str, Any], profiles: Mapping[str, Any]) -> None:
        self._deployments = deployments
        self._profiles = profiles

    def profile(self, namespace: str, name: str) -> ProfileRecord | None:
        return next((p for p in self.profiles(namespace) if p.name == name), None)

    def profiles(self, namespace: str) -> Sequence[ProfileRecord]:
        return list(self._profiles.get(namespace, ()))

    def all_profiles(self) -> list[ProfileKey]:
        return [(ns, p.name) for ns, store in list(self._profiles.items()) for p in list(store)]

    def deployments(self, namespace: str) -> Sequence[DeploymentView]:
        return list(self._deployments.get(namespace, ()))


def _record(body: kopf.Body) -> ProfileRecord:
    meta = body.get("metadata", {})
    return ProfileRecord(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        generation=int(meta.get("generation") or 0),
        spec=dict(body.get("spec") or {}),
        status=dict(body.get("status") or {}),
        deleting=bool(meta.get("deletionTimestamp")),
    )


def register(
    registry: kopf.OperatorRegistry,
    world: IndexedWorld,
    queue: WorkQueue[ProfileKey],
    reconciler: Reconciler,
) -> None:
    """Register every handler on ``registry`` (no module-level registry, no globals)."""

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # The same credentials as the official client: KUBECONFIG, else the in-cluster account.
        return kopf.login_via_client(**kwargs)

    @kopf.index("apps", "v1", "deployments", id="deployment_index", registry=registry)
    def deployment_index(body: kopf.Body, namespace: str | None, **_: Any) -> dict[str, DeploymentView]:
        return {namespace or "": DeploymentView.from_body(body)}

    @kopf.index(API_GROUP, API_VERSION, PLURAL, id="profile_index", registry=registry)
    def profile_index(body: kopf.Body, namespace: str | None, **_: Any) -> dict[str, ProfileRecord]:
        return {namespace or "": _record(body)}

    @kopf.on.event("apps", "v1", "deployments", registry=registry)
    async def deployment_event(namespace: str | None, **_: Any) -> None:
        for profile in world.profiles(namespace or ""):
            queue.add((profile.namespace, profile.name))

    @kopf.on.event(API_GROUP, API_VERSION, PLURAL, registry=registry)
    async def profile_event(type: str | None, namespace: str | None, name: str | None, **_: Any) -> None:
        key = (namespace or "", name or "")
        if type == "DELETED":
            reconciler.forget(*key)
        elif type in (None, "ADDED"):
            queue.hold(key, SETTLE_SECONDS)
        else:
            queue.add(key)
