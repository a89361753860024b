"""Bounded corrections: the operator does not fight another manager forever."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class FightGuard:
    """Stops correcting a Deployment that another manager keeps reverting.

    After the first apply, ``limit`` corrections of one Deployment within ``window`` seconds
    for the same profile generation, and it is left alone (reported Conflicted) until the
    profile changes or the window passes.
    """

    limit: int = 5
    window: float = 600.0
    _applies: dict[tuple[str, str], tuple[int, deque[float]]] = field(default_factory=dict)

    def _recent(self, key: tuple[str, str], generation: int, now: float) -> deque[float]:
        gen, times = self._applies.get(key, (generation, deque()))
        if gen != generation:
            times = deque()
        while times and now - times[0] > self.window:
            times.popleft()
        if times:
            self._applies[key] = (generation, times)
        else:
            self._applies.pop(key, None)  # nothing recent: forget the Deployment altogether
        return times

    def blocked(self, key: tuple[str, str], generation: int, now: float) -> bool:
        return len(self._recent(key, generation, now)) > self.limit

    def record(self, key: tuple[str, str], generation: int, now: float) -> int:
        times = self._recent(key, generation, now)
        times.append(now)
        self._applies[key] = (generation, times)
        return len(times)
