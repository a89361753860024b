"""The MutatingWebhookConfiguration that sends Deployment creates and updates to the operator,
and keeping it registered while the operator's own server (READINESS_WEBHOOK=local) serves."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import structlog

from readiness.k8s import ApiError

log = structlog.get_logger("readiness.webhook")

WEBHOOK_NAME = "deployments.readiness.dev"
TIMEOUT_SECONDS = 5  # what the apiserver waits at most; then it admits as sent (Ignore)
# Never mutated, whatever the profiles there: the control plane's own, and the operator's own
# namespace (an operator Deployment that waited on its own webhook could not start it).
SYSTEM_NAMESPACES = ("kube-system",)
OPERATOR_NAME = "readiness-operator"


def namespace_selector(namespaces: str, exclude: tuple[str, ...] = SYSTEM_NAMESPACES) -> dict[str, Any]:
    """Which namespaces the apiserver sends requests from: never ``exclude``; and when
    READINESS_NAMESPACES lists plain names only, just those (globs cannot be a label selector:
    the webhook then declines the namespaces it does not watch itself)."""
    expressions: list[dict[str, Any]] = [
        {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": list(exclude)}
    ]
    names = [n.strip() for n in namespaces.split(",") if n.strip()]
    if names and not any(ch in n for n in names for ch in "*?[]!"):
        expressions.append({"key": "kubernetes.io/metadata.name", "operator": "In", "values": sorted(names)})
    return {"matchExpressions": expressions}


def webhook_configuration(
    name: str, client_config: Mapping[str, Any], namespaces: Mapping[str, Any]
) -> dict[str, Any]:
    """The MutatingWebhookConfiguration that sends Deployment creates and updates here. Safe by
    construction: no side effects (a dry run gets the same answer), called again when a later
    webhook changed the object, a short timeout, and a webhook that does not answer admits the
    Deployment as sent."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {
            "name": name,
            "labels": {
                "app.kubernetes.io/name": OPERATOR_NAME,
                "app.kubernetes.io/managed-by": OPERATOR_NAME,
            },
        },
        "webhooks": [
            {
                "name": WEBHOOK_NAME,
                "admissionReviewVersions": ["v1"],
                "clientConfig": dict(client_config),
                "rules": [
                    {
                        "apiGroups": ["apps"],
                        "apiVersions": ["v1"],
                        "resources": ["deployments"],
                        "operations": ["CREATE", "UPDATE"],
                        "scope": "Namespaced",
                    }
                ],
                "matchPolicy": "Equivalent",
                "failurePolicy": "Ignore",
                "sideEffects": "None",
                "reinvocationPolicy": "IfNeeded",
                "timeoutSeconds": TIMEOUT_SECONDS,
                "namespaceSelector": dict(namespaces),
                # The operator's own Deployment is never sent here, wherever it runs.
                "objectSelector": {
                    "matchExpressions": [
                        {"key": "app.kubernetes.io/name", "operator": "NotIn", "values": [OPERATOR_NAME]}
                    ]
                },
            }
        ],
    }


class Registry(Protocol):
    async def apply_webhook_configuration(self, body: Mapping[str, Any]) -> None: ...

    async def delete_webhook_configuration(self, name: str) -> None: ...


class Registration:
    """READINESS_WEBHOOK=local: the operator registers its own server (URL and CA), keeps the
    registration there (someone may delete it) and removes it when it stops cleanly."""

    def __init__(self, registry: Registry, body: Mapping[str, Any]) -> None:
        self._registry = registry
        self.body = body
        self._problem: str | None = "not registered yet"
        self._removed = False

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    async def ensure(self) -> None:
        try:
            await self._registry.apply_webhook_configuration(self.body)
        except ApiError as error:
            self._problem = f"MutatingWebhookConfiguration {self.name} could not be registered: {error}"
            log.warning("webhook_not_registered", name=self.name, error=str(error))
            return
        if self._problem is not None:
            log.info(
                "webhook_registered", name=self.name, url=self.body["webhooks"][0]["clientConfig"].get("url")
            )
        self._problem = None

    async def remove(self) -> None:
        if self._removed:
            return
        try:
            await self._registry.delete_webhook_configuration(self.name)
        except ApiError as error:
            log.warning("webhook_not_removed", name=self.name, error=str(error))
            return
        self._removed = True
        log.info("webhook_removed", name=self.name)

    def missing(self) -> str | None:
        return self._problem
