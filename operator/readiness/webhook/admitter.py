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
from typing import Any

import structlog

from readiness.cache.world import ProfileRecord, World
from readiness.engine.mutation import Admission, Candidate, admit, precheck
from readiness.models import ServiceProfileSpec
from readiness.observe.metrics import Metrics

log = structlog.get_logger("readiness.webhook")

HANDLER_ID = "admit-deployments"  # the path it is served on: /admit-deployments
PROFILES_TTL = 2.0  # how long profiles read through the API answer for their namespace
# How long a request may wait for its namespace's profiles (the registration's timeout is 5 s).
PROFILES_PATIENCE = 1.5
LIST_TIMEOUT = 2.0  # a read that would take longer leaves the request to the reconciler

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
