"""A call every so many seconds, in the background, stopped with the operator."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Callable

import structlog

log = structlog.get_logger("readiness.periodic")


class Every:
    """Calls ``fn`` every ``period`` seconds (the first time after one period) until stopped;
    a coroutine function is awaited, and what it raises is logged, not fatal to the loop."""

    def __init__(self, period: float, fn: Callable[[], object], name: str) -> None:
        self._period, self._fn, self._name = period, fn, name
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=self._name)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _loop(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                await asyncio.sleep(self._period)
                try:
                    result = self._fn()
                    if inspect.isawaitable(result):
                        await result
                except Exception as error:  # a failed round must not end the loop
                    log.warning("periodic_failed", task=self._name, error=str(error))
