"""What an earlier run of the operator reported, read back from a profile's status.

A restarted operator has no memory but the status it wrote: which Deployments it left alone in
a fight, which rollouts of this profile generation failed, which were in flight. Only typed
fields are read (state, reason, rollout), never message text, so rewording a message changes
no behaviour. Entries of another profile generation say nothing about this one.
"""

from __future__ import annotations

from readiness.cache.world import Key, ProfileRecord, World
from readiness.control.board import Board
from readiness.models import Target


class Recall:
    def __init__(self, world: World, board: Board) -> None:
        self._world = world
        self._board = board
        # The targets read from each profile's status, by name, for the record they came from:
        # read once per status the watch shows, not once per Deployment asked about.
        self._read: dict[Key, tuple[ProfileRecord, dict[str, Target]]] = {}

    def reported(self, record: ProfileRecord, name: str) -> Target | None:
        """The Deployment's last verdict under this profile generation: ours since start-up,
        else what the profile's status shows."""
        entry = self._board.targets(record.namespace, record.name).get(name)
        if entry is not None:
            return entry.target if entry.generation == record.generation else None
        return self._targets(record).get(name)

    def status_targets(self, record: ProfileRecord) -> list[Target]:
        """The targets the profile's status lists for this very generation (none otherwise; an
        entry the model cannot read is skipped)."""
        return list(self._targets(record).values())

    def _targets(self, record: ProfileRecord) -> dict[str, Target]:
        latest = self._world.profile(record.namespace, record.name)  # specs() keeps an older status
        if latest is None:
            return {}
        key = (record.namespace, record.name)
        cached = self._read.get(key)
        if cached is None or cached[0] is not latest:
            found: dict[str, Target] = {}
            for item in latest.status.get("targets") or ():
                if isinstance(item, dict):
                    try:
                        target = Target.model_validate(item)
                    except ValueError:
                        continue
                    found.setdefault(target.name, target)
            cached = (latest, found)
            self._read[key] = cached
        if latest.status.get("observedGeneration") != record.generation:
            return {}
        return cached[1]

    def forget(self, namespace: str, name: str) -> None:
        self._read.pop((namespace, name), None)
