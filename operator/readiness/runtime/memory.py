"""Hand memory freed after a burst of work back to the operating system.

A fleet-wide rollout parses thousands of objects at once; CPython frees them, but glibc's
allocator keeps the pages, so the resident size stays at the burst's peak for the life of the
process. ``malloc_trim`` returns them. It is a no-op where the C library lacks it (musl, macOS).
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable


def _trimmer() -> Callable[[], object] | None:
    # The process's own symbols include the C library's; no find_library (it runs ldconfig).
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    return lambda: trim(0)


class Trimmer:
    """Trims the heap once after work was done, when none is in progress: ``tick`` it every so
    often (the assembly does, every 15 s)."""

    def __init__(
        self,
        busy: Callable[[], bool],
        worked: Callable[[], int],
        trim: Callable[[], object] | None = None,
    ) -> None:
        self._busy, self._worked = busy, worked
        self._trim = trim or _trimmer()
        self._seen = 0

    def tick(self) -> None:
        worked = self._worked()
        if self._trim is not None and worked != self._seen and not self._busy():
            self._seen = worked
            self._trim()
