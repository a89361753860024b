"""Kubernetes Events, posted beside the work that causes them, never in its way."""

from __future__ import annotations

import asyncio

import structlog

from .k8s import ApiError, Cluster, ObjectRef
from .metrics import Metrics

log = structlog.get_logger("readiness.events")


class EventSink:
    """Posts in the background, at most ``limit`` at once: a rollout of a thousand Deployments
    is not slowed by its thousand Events, and a failed post is a log line, never a failed
    reconcile."""

    def __init__(self, cluster: Cluster, metrics: Metrics, limit: int = 4) -> None:
        self._cluster = cluster
        self._metrics = metrics
        self._slots = asyncio.Semaphore(limit)
        self._tasks: set[asyncio.Task[None]] = set()

    def post(self, ref: ObjectRef, type_: str, reason: str, message: str) -> None:
        task = asyncio.create_task(self._post(ref, type_, reason, message), name=f"event-{reason}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(self, ref: ObjectRef, type_: str, reason: str, message: str) -> None:
        async with self._slots:
            try:
                await self._cluster.post_event(ref, type_, reason, message)
            except ApiError as error:
                self._metrics.api_errors.labels(str(error.status)).inc()
                log.warning(
                    "event_failed", namespace=ref.namespace, name=ref.name, reason=reason, error=error.message
                )

    async def drain(self) -> None:
        """Until every Event posted so far is sent (bound it with asyncio.timeout)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
