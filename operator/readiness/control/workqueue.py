"""A de-duplicating work queue with bounded workers, like controller-runtime's.

A key queued several times before a worker takes it runs once; a key queued while it
is being worked on runs once more afterwards, so the last event is never lost and one
object is never reconciled by two workers at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

import structlog

from readiness.observe.metrics import Metrics

K = TypeVar("K", bound=Hashable)
log = structlog.get_logger("readiness.workqueue")


@dataclass(frozen=True)
class RetryAfter:
    """Work's answer when the server said when to come back (a 429's or 503's Retry-After):
    the key is retried no sooner than that, and no sooner than its backoff either."""

    seconds: float


class WorkQueue(Generic[K]):
    def __init__(self, metrics: Metrics | None = None) -> None:
        self._queue: asyncio.Queue[K] = asyncio.Queue()
        self._pending: set[K] = set()
        self._active: set[K] = set()
        self._dirty: set[K] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self._throttled: dict[K, asyncio.TimerHandle] = {}
        self._started: dict[K, float] = {}
        self._metrics = metrics
        self._idle = asyncio.Event()
        self._idle.set()
        self.closed = False
        self.taken = 0  # keys handed to workers so far

    def add(self, key: K) -> None:
        if self.closed or key in self._pending:
            return
        if key in self._active:
            self._dirty.add(key)
            return
        self._pending.add(key)
        self._queue.put_nowait(key)
        self._gauge()

    def add_after(self, key: K, delay: float) -> None:
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle

        def fire() -> None:
            self._timers.discard(handle)
            self.add(key)

        handle = loop.call_later(delay, fire)
        self._timers.add(handle)

    def add_throttled(self, key: K, every: float) -> None:
        """Queue ``key`` no sooner than ``every`` seconds after its last run started; requests in
        between coalesce into that one run (a status written at most about once a second)."""
        if self.closed or key in self._throttled or key in self._pending:
            return
        loop = asyncio.get_running_loop()
        last = self._started.get(key)
        delay = 0.0 if last is None else last + every - loop.time()
        self._started.setdefault(key, float("-inf"))  # from now on its runs are timed
        if delay <= 0 and key not in self._active:
            self.add(key)
            return
        self._arm(key, delay)

    def defer(self, key: K, delay: float) -> None:
        """Queue ``key`` in ``delay`` seconds, in place of any throttled run it waits for: one
        timer per key however often it is deferred."""
        if self.closed:
            return
        self._disarm(key)
        self._arm(key, delay)

    def _arm(self, key: K, delay: float) -> None:
        handle: asyncio.TimerHandle

        def fire() -> None:
            self._timers.discard(handle)
            self._throttled.pop(key, None)
            self.add(key)

        handle = asyncio.get_running_loop().call_later(max(delay, 0.0), fire)
        self._throttled[key] = handle
        self._timers.add(handle)

    def _disarm(self, key: K) -> None:
        handle = self._throttled.pop(key, None)
        if handle is not None:
            handle.cancel()
            self._timers.discard(handle)

    def hurry(self, key: K) -> None:
        """Queue ``key`` now, ahead of the throttle's wait: for the one run that is news now (a
        status whose last undecided Deployment was just decided), not for every change."""
        self._disarm(key)
        self.add(key)

    def forget(self, key: K) -> None:
        """``key`` will not come back (its object is gone): drop its timing."""
        self._started.pop(key, None)

    async def get(self) -> K:
        while True:
            key = await self._queue.get()
            if not self.closed:
                break
            # Closed: what was queued is dropped. Without this, a worker done with its key would
            # take the next one in the same breath, and the shutdown would cancel it mid-apply.
            self._pending.discard(key)
        self.taken += 1
        if key in self._started:
            self._started[key] = asyncio.get_running_loop().time()
        self._pending.discard(key)
        self._active.add(key)
        self._idle.clear()
        self._gauge()
        return key

    def done(self, key: K) -> None:
        self._active.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)
        if not self._active:
            self._idle.set()
        self._gauge()

    async def wait_idle(self) -> None:
        """Until no key is being worked on."""
        await self._idle.wait()

    def close(self) -> None:
        """Take no new work; what is queued is dropped, what runs may finish."""
        self.closed = True
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()

    @property
    def depth(self) -> int:
        return len(self._pending)

    @property
    def busy(self) -> int:
        return len(self._active)

    @property
    def in_flight(self) -> list[K]:
        """The keys workers hold right now."""
        return list(self._active)

    def _gauge(self) -> None:
        if self._metrics is not None:
            self._metrics.queue_depth.set(len(self._pending))
            self._metrics.workers_busy.set(len(self._active))


class Workers(Generic[K]):
    """``count`` tasks draining ``queue`` through ``work``; failures retry with backoff. ``work``
    answers False (done), True (retry with backoff) or a ``RetryAfter``."""

    def __init__(
        self,
        queue: WorkQueue[K],
        work: Callable[[K], Awaitable[bool | RetryAfter]],
        count: int,
        max_backoff: float = 60.0,
    ) -> None:
        self._queue = queue
        self._work = work
        self._count = count
        self._max_backoff = max_backoff
        self._failures: dict[K, int] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._run(i), name=f"reconcile-worker-{i}") for i in range(self._count)
        ]

    async def _run(self, index: int) -> None:
        while True:
            key = await self._queue.get()
            retry: bool | RetryAfter = False
            try:
                retry = await self._work(key)
            except asyncio.CancelledError:
                self._queue.done(key)
                raise
            except Exception:
                log.exception("reconcile_crashed", key=str(key), worker=index)
                retry = True
            if retry and not self._queue.closed:
                failures = self._failures.get(key, 0) + 1
                self._failures[key] = failures
                delay = min(self._max_backoff, 0.5 * 2**failures)
                if isinstance(retry, RetryAfter):
                    delay = max(delay, retry.seconds)
                self._queue.add_after(key, delay)
            else:
                self._failures.pop(key, None)
            self._queue.done(key)

    async def stop(self, grace: float) -> None:
        """Close the queue, let in-flight work finish for up to ``grace`` seconds, then cancel."""
        self._queue.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.wait_idle(), timeout=grace)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
