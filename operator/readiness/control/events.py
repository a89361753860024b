"""Kubernetes Events, posted beside the work that causes them, never in its way."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog

from readiness.k8s import ApiError, Cluster, ObjectRef
from readiness.observe.metrics import Metrics

log = structlog.get_logger("readiness.events")
Pending = tuple[ObjectRef, str, str, str, float]
# While Deployments are being worked on, Events wait (each at most MAX_DEFER seconds): an Event
# is an apiserver write as costly as the apply it tells of, and a fleet rollout would otherwise
# send two writes per Deployment at once. Then they go out at RATE a second (each costs about
# 2 ms of CPU: 2 % of a core), stamped with the time of what they tell.
BUSY_POLL = 0.25
MAX_DEFER = 60.0
RATE = 10.0


class EventSink:
    """Posts from a queue, ``limit`` at once, at ``rate`` a second, after the work in flight
    (``busy``): a rollout of a thousand Deployments is not slowed by its thousand Events, a
    waiting Event costs a tuple (not a task), and a failed post is a log line, never a failed
    reconcile."""

    def __init__(
        self,
        cluster: Cluster,
        metrics: Metrics,
        limit: int = 8,
        busy: Callable[[], bool] = lambda: False,
        rate: float = RATE,
    ) -> None:
        self._cluster = cluster
        self._metrics = metrics
        self._limit = limit
        self._busy = busy
        self._pace = limit / rate  # each sender's pause after a post
        self._queue: asyncio.Queue[Pending] = asyncio.Queue()
        self._senders: list[asyncio.Task[None]] = []
        self._hurry = False  # draining at shutdown: no waiting, no pace

    def post(self, ref: ObjectRef, type_: str, reason: str, message: str) -> None:
        if not self._senders:
            self._senders = [
                asyncio.create_task(self._send(), name=f"event-sender-{i}") for i in range(self._limit)
            ]
        self._queue.put_nowait((ref, type_, reason, message, time.time()))

    async def _send(self) -> None:
        while True:
            ref, type_, reason, message, at = await self._queue.get()
            try:
                deadline = time.monotonic() + MAX_DEFER
                while not self._hurry and self._busy() and time.monotonic() < deadline:  # noqa: ASYNC110 - busy is a callable, polled only while an Event waits
                    await asyncio.sleep(BUSY_POLL)
                await self._cluster.post_event(ref, type_, reason, message, at=at)
            except ApiError as error:
                self._metrics.api_errors.labels(str(error.status)).inc()
                log.warning(
                    "event_failed", namespace=ref.namespace, name=ref.name, reason=reason, error=error.message
                )
            finally:
                self._queue.task_done()
            if not self._hurry and not self._queue.empty():
                await asyncio.sleep(self._pace)

    async def drain(self) -> None:
        """Until every Event posted so far is sent, without waiting or pacing (bound it with
        asyncio.timeout)."""
        self._hurry = True
        await self._queue.join()

    def close(self) -> None:
        """Stop sending; what is still queued is dropped."""
        for task in self._senders:
            task.cancel()
        self._senders = []
