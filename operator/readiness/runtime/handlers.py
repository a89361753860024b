"""kopf wiring only: profile events go to the controller, admission requests to the admitter.

kopf watches ServiceProfiles (indexed, so every profile is known to the controller before its
first event) and serves admission; it writes no annotations and no finalizers. Deployments are
not kopf's: they come from runtime/deployments.py, at a JSON parse per event instead of kopf's
per-object worker and handler context (the controller-manager's status updates after a fleet
rollout arrive by the dozen a second, and change nothing the operator reads). Every function
here is async: kopf would run a sync one in a thread, per event.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import kopf

from readiness import API_GROUP, API_VERSION, PLURAL
from readiness.control.controller import Controller
from readiness.webhook.admitter import HANDLER_ID, REVIEW, Admitter


def register(
    registry: kopf.OperatorRegistry, controller: Controller, admitter: Admitter | None = None
) -> None:
    """Register every handler on ``registry`` (no module-level registry, no globals); the
    admission handler only when the webhook is on."""

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # The same credentials as the official client: KUBECONFIG, else the in-cluster account.
        return kopf.login_via_client(**kwargs)

    @kopf.index(API_GROUP, API_VERSION, PLURAL, id="profile_index", registry=registry)
    async def profile_index(body: kopf.Body, **_: Any) -> None:
        controller.index_profile(body)

    @kopf.on.event(API_GROUP, API_VERSION, PLURAL, registry=registry)
    async def profile_event(type: str | None, namespace: str | None, name: str | None, **_: Any) -> None:
        controller.profile_event(type, namespace or "", name or "")

    if admitter is None:
        return

    @kopf.on.mutate(
        "apps",
        "v1",
        "deployments",
        id=HANDLER_ID,
        operations=["CREATE", "UPDATE"],
        side_effects=False,
        ignore_failures=True,
        registry=registry,
    )
    async def admit_deployment(
        patch: kopf.Patch, warnings: list[str], body: kopf.Body, dryrun: bool, **kwargs: Any
    ) -> None:
        # The server hands over the whole request; kopf's own arguments lack its options.
        old = kwargs.get("old")
        request = REVIEW.get() or {
            "operation": kwargs.get("operation"),
            "namespace": body.metadata.namespace,
            "object": dict(body),
            "oldObject": dict(old) if old is not None else None,
            "dryRun": dryrun,
            "userInfo": dict(kwargs.get("userinfo") or {}),
        }
        admission = await admitter.review(request)
        if admission.obj is not None:
            stored = admission.obj
            patch.fns.append(lambda raw: _replace(raw, stored))
            warnings.append(admission.message)


def _replace(raw: Any, stored: Mapping[str, Any]) -> None:
    """kopf turns the difference into the response's JSON patch."""
    raw.clear()
    raw.update(copy.deepcopy(dict(stored)))
