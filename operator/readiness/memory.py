"""Hand memory freed after a burst of work back to the operating system.

A fleet-wide rollout parses thousands of objects at once; CPython frees them, but glibc's
allocator keeps the pages, so the resident size stays at the burst's peak for the life of the
process. ``malloc_trim`` returns them. It is a no-op where the C library lacks it (musl, macOS).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
from collections.abc import Callable

import structlog

log = structlog.get_logger("readiness.memory")


def _trimmer() -> Callable[[], object] | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    return lambda: trim(0)


class Trimmer:
    """Every ``period`` seconds, if work was done since the last look and none is in progress,
    trims the heap once."""

    def __init__(
        self,
        busy: Callable[[], bool],
        worked: Callable[[], int],
        period: float = 15.0,
        trim: Callable[[], object] | None = None,
    ) -> None:
        self._busy, self._worked, self._period = busy, worked, period
        self._trim = trim or _trimmer()
        self._seen = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._trim is not None:
            self._task = asyncio.create_task(self._loop(), name="malloc-trim")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _loop(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                await asyncio.sleep(self._period)
                worked = self._worked()
                if worked != self._seen and not self._busy() and self._trim is not None:
                    self._seen = worked
                    self._trim()
