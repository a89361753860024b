"""The mutating admission webhook: Deployments stored compliant from their first pod.

The decision is the engine's (``engine.mutation.admit``); this module gives it the profiles of
the request's namespace, never lets an error become a refusal, measures, and describes the
MutatingWebhookConfiguration that registers it. The reconciler stays the backstop: for what
existed before, for drift, and for anything admitted while the webhook was down
(``failurePolicy: Ignore``).
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import structlog

from .engine.mutation import Admission, Candidate, admit, precheck
from .k8s import ApiError
from .metrics import Metrics
from .models import ServiceProfileSpec
from .world import ProfileRecord, World

log = structlog.get_logger("readiness.webhook")

HANDLER_ID = "admit-deployments"  # the path it is served on: /admit-deployments
WEBHOOK_NAME = "deployments.readiness.dev"
TIMEOUT_SECONDS = 5  # what the apiserver waits at most; then it admits as sent (Ignore)
PROFILES_TTL = 2.0  # how long profiles read through the API answer for their namespace
# How long a request may wait for its namespace's profiles (the registration's timeout is 5 s).
PROFILES_PATIENCE = 1.5
LIST_TIMEOUT = 2.0  # a read that would take longer leaves the request to the reconciler
# Never mutated, whatever the profiles there: the control plane's own, and the operator's own
# namespace (an operator Deployment that waited on its own webhook could not start it).
SYSTEM_NAMESPACES = ("kube-system",)
OPERATOR_NAME = "readiness-operator"

# The AdmissionReview request being served: set by the server, read by the kopf handler, since
# kopf hands a handler the object but not the request's options (whose write it is).
REVIEW: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar("review", default=None)

Lister = Callable[[str], Awaitable[list[dict[str, Any]]]]
Trusted = Callable[[str], Awaitable[bool]]


class ProfileSource:
    """The valid, live profiles of a namespace for admission.

    The World is used while it can be trusted for the namespace: this replica acts for it (a
    standby's watches are paused by kopf peering, so its World goes stale) and its watches have
    delivered (a replica still starting has not listed them yet). Otherwise the namespace's
    profiles are read through the API, shared by concurrent requests and kept ``ttl`` seconds:
    any replica behind the Service answers as the active one would.
    """

    def __init__(
        self,
        world: World,
        trusted: Trusted,
        lister: Lister,
        ttl: float = PROFILES_TTL,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._world = world
        self._trusted = trusted
        self._lister = lister
        self._ttl = ttl
        self._monotonic = monotonic
        self._cache: dict[str, tuple[float, list[ProfileRecord]]] = {}
        self._reading: dict[str, asyncio.Future[list[ProfileRecord]]] = {}
        self.reads = 0  # API reads made, for tests and the benchmark

    async def candidates(self, namespace: str) -> dict[str, Candidate]:
        try:
            trusted = await self._trusted(namespace)
        except Exception:  # the peering object cannot be read: ask the API for the profiles
            trusted = False
        records = self._world.profiles(namespace) if trusted else await self._read(namespace)
        return {
            r.name: Candidate(r.generation, r.parsed, halted=halted(r))
            for r in records
            if not r.deleting and isinstance(r.parsed, ServiceProfileSpec)
        }

    async def _read(self, namespace: str) -> list[ProfileRecord]:
        cached = self._cache.get(namespace)
        if cached is not None and self._monotonic() - cached[0] < self._ttl:
            return cached[1]
        reading = self._reading.get(namespace)
        if reading is not None:
            return await asyncio.shield(reading)
        future: asyncio.Future[list[ProfileRecord]] = asyncio.get_running_loop().create_future()
        self._reading[namespace] = future
        try:
            self.reads += 1
            records = [ProfileRecord.from_body(body) for body in await self._lister(namespace)]
            self._cache[namespace] = (self._monotonic(), records)
            future.set_result(records)
            return records
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # retrieved: a read nobody else waited for is not "never retrieved"
            raise
        finally:
            del self._reading[namespace]


def halted(record: ProfileRecord) -> bool:
    """The profile's status says a rollout of its current generation failed (the reconciler
    halted it): what it sets is known to break Deployments."""
    status = record.status or {}
    return status.get("observedGeneration") == record.generation and any(
        c.get("type") == "Progressing" and c.get("reason") == "RolloutFailed"
        for c in status.get("conditions") or ()
        if isinstance(c, Mapping)
    )


class Admitter:
    """Answers admission requests for Deployments. Never raises: an error is logged and the
    request is admitted as it was sent (a refusal would block a team's deploy)."""

    def __init__(
        self,
        profiles: ProfileSource,
        metrics: Metrics,
        watches: Callable[[str], bool],
        monotonic: Callable[[], float] = time.perf_counter,
        patience: float = PROFILES_PATIENCE,
    ) -> None:
        self._profiles = profiles
        self._patience = patience
        self._metrics = metrics
        self._watches = watches
        self._monotonic = monotonic

    async def review(self, request: Mapping[str, Any]) -> Admission:
        started = self._monotonic()
        namespace = str(request.get("namespace") or "")
        name = str(((request.get("object") or {}).get("metadata") or {}).get("name") or "")
        try:
            skipped = "not-watched" if not self._watches(namespace) else precheck(request)
            if skipped is not None:
                admission = Admission("Skipped", skipped)
            else:
                # The apiserver waits for us (its timeout), and every Deployment write with it:
                # profiles that cannot be had quickly admit the request as sent.
                async with asyncio.timeout(self._patience):
                    candidates = await self._profiles.candidates(namespace)
                admission = admit(request, candidates)
        except TimeoutError:
            log.warning("admission_slow", namespace=namespace, deployment=name, seconds=self._patience)
            admission = Admission("Skipped", "profiles-unavailable")
        except Exception as error:
            log.warning("admission_failed", namespace=namespace, deployment=name, error=repr(error))
            admission = Admission("Skipped", "error")
        elapsed = self._monotonic() - started
        self._metrics.admissions.labels(admission.outcome, admission.reason).inc()
        self._metrics.admission_seconds.observe(elapsed)
        fields = {
            "namespace": namespace,
            "deployment": name,
            "operation": request.get("operation"),
            "dry_run": bool(request.get("dryRun")),
            "outcome": admission.outcome,
            "reason": admission.reason,
            "profile": admission.profile,
            "ms": round(elapsed * 1000, 2),
        }
        if admission.outcome == "Mutated":
            log.info("deployment_admitted", checks=list(admission.checks), **fields)
        else:
            log.debug("deployment_admitted", **fields)
        return admission


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
