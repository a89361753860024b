"""An in-memory twin of the Kubernetes API, just enough for the reconciler and the controller.

Its server-side apply is the simulator's (tests/support/apiserver.py: managedFields, the conflict
rule, releases, defaults); around it the twin keeps what the control loop sees of a cluster: the
objects by key, resourceVersions bumped only by real changes, a watch (``world``) that gets every
change at once, the templates a revert puts back, and every request counted, so tests can assert
"zero needless writes".
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.support.apiserver import OPERATOR, Refused, api_defaults, fields_of, server_side_apply

from readiness.cache.world import ProfileRecord, World
from readiness.k8s import ApiError, FieldCause, ObjectRef


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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
        # Stored as the apiserver stores it, defaulted: its creator owns the defaults too.
        body = api_defaults(copy.deepcopy(body))
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
        try:
            merged = server_side_apply(live, body, force=force, manager=OPERATOR, time=_now())
        except Refused as refused:
            causes = [
                FieldCause(field=".".join(path), message="conflict", manager=m)
                for m, path in refused.conflicts
            ]
            raise ApiError(409, "Conflict", "Apply failed with conflicts", causes) from None
        meta = merged["metadata"]
        if merged["spec"] != live["spec"]:
            self.templates.setdefault(key, []).append(copy.deepcopy(live["spec"]["template"]))
        changed = merged["spec"] != live["spec"] or not any(
            m["manager"] == OPERATOR for m in live["metadata"]["managedFields"]
        )
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

    async def post_event(
        self, ref: ObjectRef, type_: str, reason: str, message: str, at: float | None = None
    ) -> None:
        self.events.append((ref.name, type_, reason))
        self.event_messages.append(message)
