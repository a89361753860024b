"""Bounded corrections: the operator does not fight another manager forever."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

# How a target left alone says so; the words a restarted operator recognises in the status.
LEFT_ALONE = "keeps reverting this Deployment; left alone"


@dataclass
class FightGuard:
    """Stops correcting a Deployment that another manager keeps reverting.

    After the first apply, ``limit`` corrections of one Deployment within ``window`` seconds
    for the same profile generation, and it is left alone (reported Conflicted). It stays left
    alone until the profile changes, or until the reverting manager has been quiet for
    ``window`` seconds (its time in managedFields says so, across restarts): then one correction
    is tried, and a manager that reverts it again within the window is left alone at once.
    """

    limit: int = 5
    window: float = 600.0
    _applies: dict[tuple[str, str], tuple[int, deque[float]]] = field(default_factory=dict)
    _left: dict[tuple[str, str], int] = field(default_factory=dict)

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

    def blocked(self, key: tuple[str, str], generation: int, now: float, quiet: float | None = None) -> bool:
        """True while ``key`` is left alone. ``quiet``: seconds since another manager last wrote
        the Deployment's spec (None when unknown)."""
        if self._left.get(key) == generation:
            if quiet is None or quiet < self.window:
                return True
            # Quiet long enough: one more try, on probation (the next correction blocks again).
            del self._left[key]
            self._applies[key] = (generation, deque([now] * self.limit))
            return False
        self._left.pop(key, None)  # left alone under an older profile generation: start over
        if len(self._recent(key, generation, now)) > self.limit:
            self._left[key] = generation
            return True
        return False

    def record(self, key: tuple[str, str], generation: int, now: float) -> int:
        """Note an apply; returns how many applies of this generation fall in the window."""
        times = self._recent(key, generation, now)
        times.append(now)
        self._applies[key] = (generation, times)
        return len(times)

    def recall(self, key: tuple[str, str], generation: int) -> None:
        """A restarted operator finds the Deployment reported left alone under this generation:
        it stays left alone, as if the operator had never stopped."""
        if key not in self._applies and key not in self._left:
            self._left[key] = generation

    def forget(self, key: tuple[str, str]) -> None:
        """The Deployment is gone."""
        self._applies.pop(key, None)
        self._left.pop(key, None)
