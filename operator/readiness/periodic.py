"""A call every so many seconds, in the background, stopped with the operator."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable


class Every:
    """Calls ``fn`` every ``period`` seconds (the first time after one period) until stopped."""

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
                self._fn()
