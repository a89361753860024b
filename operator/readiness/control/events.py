"""Kubernetes Events, posted beside the work that causes them, never in its way."""

from __future__ import annotations

import asyncio

import structlog

from readiness.k8s import ApiError, Cluster, ObjectRef
from readiness.observe.metrics import Metrics

log = structlog.get_logger("readiness.events")
Pending = tuple[ObjectRef, str, str, str]


class EventSink:
    """Posts from a queue, ``limit`` at once: a rollout of a thousand Deployments is not slowed
    by its thousand Events, a waiting Event costs a tuple (not a task), and a failed post is a
    log line, never a failed reconcile."""

    def __init__(self, cluster: Cluster, metrics: Metrics, limit: int = 8) -> None:
        self._cluster = cluster
        self._metrics = metrics
        self._limit = limit
        self._queue: asyncio.Queue[Pending] = asyncio.Queue()
        self._senders: list[asyncio.Task[None]] = []

    def post(self, ref: ObjectRef, type_: str, reason: str, message: str) -> None:
        if not self._senders:
            self._senders = [
                asyncio.create_task(self._send(), name=f"event-sender-{i}") for i in range(self._limit)
            ]
        self._queue.put_nowait((ref, type_, reason, message))

    async def _send(self) -> None:
        while True:
            ref, type_, reason, message = await self._queue.get()
            try:
                await self._cluster.post_event(ref, type_, reason, message)
            except ApiError as error:
                self._metrics.api_errors.labels(str(error.status)).inc()
                log.warning(
                    "event_failed", namespace=ref.namespace, name=ref.name, reason=reason, error=error.message
                )
            finally:
                self._queue.task_done()

    async def drain(self) -> None:
        """Until every Event posted so far is sent (bound it with asyncio.timeout)."""
        await self._queue.join()

    def close(self) -> None:
        """Stop sending; what is still queued is dropped."""
        for task in self._senders:
            task.cancel()
        self._senders = []
