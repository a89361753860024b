"""Waves: how many Deployments a profile may have mid-rollout at once, and which ones wait.

A Deployment is in flight because of a profile from the apply that changed its template until
its rollout completes (the rule of `kubectl rollout status`). Slots are taken before the apply
is sent (one event loop: no two workers can take the last slot), and given back when the
rollout completes, when the apply changed nothing, or when the Deployment goes. Deployments
waiting for a slot are remembered so that a freed slot wakes exactly as many as it frees.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from .models.status import Rollout
from .world import Key

# What a profile's rollout budget is spelled as: a number of Deployments or a percentage.
Budget = int | str
# A Deployment's generation and rollout state as the watch last showed it (None: gone).
Observe = Callable[[str], tuple[int, Rollout] | None]


def slots(budget: Budget, matched: int) -> int:
    """The number of Deployments that may be in flight at once (percentages round up; at least 1)."""
    if isinstance(budget, str) and budget.endswith("%"):
        return max(1, math.ceil(matched * int(budget[:-1]) / 100))
    return max(1, int(budget))


@dataclass(frozen=True)
class Failure:
    """How a failed rollout ended: the Deployment's generation after it (a later one means its
    own template changed since), its target state and what to tell people."""

    generation: int
    state: Literal["RolloutFailed", "RolledBack"]
    message: str


class Waves:
    def __init__(self) -> None:
        # Profile -> Deployment -> the generation our apply produced (0 while the apply is on its way).
        self._flying: dict[Key, dict[str, int]] = {}
        self._waiting: dict[Key, set[str]] = {}
        # Profile -> (its generation, failed Deployment -> how it ended).
        self._halted: dict[Key, tuple[int, dict[str, Failure]]] = {}

    def halt(self, profile: Key, generation: int, deployment: str, failure: Failure) -> None:
        """A rollout this profile generation started failed: no further Deployment changes."""
        held, failed = self._halted.get(profile, (generation, {}))
        if held != generation:
            failed = {}
        failed[deployment] = failure
        self._halted[profile] = (generation, failed)
        self._flying.get(profile, {}).pop(deployment, None)

    def halted(self, profile: Key, generation: int, observe: Observe) -> dict[str, Failure] | None:
        """The failed Deployments when the profile is halted at ``generation``, else None. The
        halt ends with a new profile generation, or when a failed Deployment's own template
        changed since (someone fixed it): then the waves start again."""
        held = self._halted.get(profile)
        if held is None:
            return None
        if held[0] != generation or any(
            (seen := observe(name)) is not None and seen[0] > failure.generation
            for name, failure in held[1].items()
        ):
            del self._halted[profile]
            return None
        return dict(held[1])

    def in_flight(self, profile: Key, observe: Observe) -> dict[str, int]:
        """The profile's Deployments in flight; those whose rollout of our generation completed
        (or that are gone) are dropped first."""
        flying = self._flying.get(profile, {})
        for name, generation in list(flying.items()):
            seen = observe(name)
            if seen is None or (generation and seen[0] >= generation and seen[1] == "Complete"):
                del flying[name]
        return dict(flying)

    def take(self, profile: Key, deployment: str, budget: int, observe: Observe) -> bool:
        """Take a slot for ``deployment``'s apply; False (and remembered as waiting) when the
        profile has ``budget`` Deployments in flight already."""
        flying = self._flying.setdefault(profile, {})
        if deployment in flying:
            return True
        if len(self.in_flight(profile, observe)) >= budget:
            self._waiting.setdefault(profile, set()).add(deployment)
            return False
        flying[deployment] = 0
        self._waiting.get(profile, set()).discard(deployment)
        return True

    def started(self, profile: Key, deployment: str, generation: int | None) -> None:
        """The apply returned: in flight until that generation's rollout completes, or the slot
        is given back at once when the apply started no rollout (``generation`` None)."""
        flying = self._flying.setdefault(profile, {})
        if generation is None:
            flying.pop(deployment, None)
        else:
            flying[deployment] = generation

    def adopt(self, profile: Key, deployment: str, generation: int) -> None:
        """A rollout an earlier run of the operator started and the cluster shows unfinished."""
        self._flying.setdefault(profile, {}).setdefault(deployment, generation)

    def flying(self, profile: Key, deployment: str) -> bool:
        return deployment in self._flying.get(profile, {})

    def wake(self, profile: Key, free: int) -> list[str]:
        """Up to ``free`` waiting Deployments of the profile, by name, taken off the waiting list."""
        waiting = self._waiting.get(profile, set())
        woken = sorted(waiting)[: max(0, free)]
        waiting.difference_update(woken)
        return woken

    def profiles_flying(self, deployment: str, namespace: str) -> list[Key]:
        return [p for p, flying in self._flying.items() if p[0] == namespace and deployment in flying]

    def forget_profile(self, profile: Key) -> None:
        """The profile went (or was re-created under its name): its waves and halt go with it."""
        self._flying.pop(profile, None)
        self._waiting.pop(profile, None)
        self._halted.pop(profile, None)

    def forget_deployment(self, namespace: str, deployment: str) -> None:
        for profile, flying in self._flying.items():
            if profile[0] == namespace:
                flying.pop(deployment, None)
                self._waiting.get(profile, set()).discard(deployment)
