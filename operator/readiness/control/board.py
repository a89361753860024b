"""What is known of every profile's targets: written by the per-Deployment work, read by the
status writer. The per-Deployment verdicts are the source; a profile's status is rebuilt from
them, never from what was written before.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from readiness.cache.world import Key
from readiness.models import Target
from readiness.models.status import Rollout


@dataclass(frozen=True)
class Entry:
    generation: int  # of the profile the verdict was reached under
    target: Target


@dataclass
class Board:
    _targets: dict[Key, dict[str, Entry]] = field(default_factory=dict)
    _member: dict[Key, set[str]] = field(default_factory=dict)  # Deployment -> profiles listing it
    _applied: dict[Key, list[str]] = field(default_factory=dict)  # profile -> Deployments applied

    def record(self, namespace: str, deployment: str, entries: Mapping[str, Entry]) -> set[Key]:
        """The Deployment's verdict under each profile that selects it (and no other);
        returns the profiles whose status this changes."""
        key = (namespace, deployment)
        before = self._member.get(key, set())
        changed: set[Key] = set()
        for profile in before - set(entries):
            self._targets.get((namespace, profile), {}).pop(deployment, None)
            changed.add((namespace, profile))
        for profile, entry in entries.items():
            targets = self._targets.setdefault((namespace, profile), {})
            if targets.get(deployment) != entry:
                targets[deployment] = entry
                changed.add((namespace, profile))
        if entries:
            self._member[key] = set(entries)
        else:
            self._member.pop(key, None)
        return changed

    def rollout(self, namespace: str, deployment: str, rollout: Rollout) -> set[Key]:
        """A status-only change of the Deployment: only the rollout column moves."""
        changed: set[Key] = set()
        for profile in self._member.get((namespace, deployment), ()):
            targets = self._targets.get((namespace, profile), {})
            entry = targets.get(deployment)
            if entry is not None and entry.target.rollout != rollout:
                targets[deployment] = Entry(
                    entry.generation, entry.target.model_copy(update={"rollout": rollout})
                )
                changed.add((namespace, profile))
        return changed

    def targets(self, namespace: str, profile: str) -> Mapping[str, Entry]:
        return self._targets.get((namespace, profile), {})

    def note_applied(self, namespace: str, profile: str, deployment: str) -> None:
        self._applied.setdefault((namespace, profile), []).append(deployment)

    def take_applied(self, namespace: str, profile: str) -> list[str]:
        return self._applied.pop((namespace, profile), [])

    def forget_profile(self, namespace: str, profile: str) -> None:
        for deployment in self._targets.pop((namespace, profile), {}):
            members = self._member.get((namespace, deployment))
            if members is not None:
                members.discard(profile)
                if not members:
                    del self._member[(namespace, deployment)]
        self._applied.pop((namespace, profile), None)
