"""What an earlier run of the operator reported, read back from a profile's status.

A restarted operator has no memory but the status it wrote: which Deployments it left alone in
a fight, which rollouts of this profile generation failed, which were in flight. Only typed
fields are read (state, reason, rollout), never message text, so rewording a message changes
no behaviour. Entries of another profile generation say nothing about this one.
"""

from __future__ import annotations

from readiness.cache.world import ProfileRecord, World
from readiness.control.board import Board
from readiness.models import Target


class Recall:
    def __init__(self, world: World, board: Board) -> None:
        self._world = world
        self._board = board

    def reported(self, record: ProfileRecord, name: str) -> Target | None:
        """The Deployment's last verdict under this profile generation: ours since start-up,
        else what the profile's status shows."""
        entry = self._board.targets(record.namespace, record.name).get(name)
        if entry is not None:
            return entry.target if entry.generation == record.generation else None
        return next((t for t in self.status_targets(record) if t.name == name), None)

    def status_targets(self, record: ProfileRecord) -> list[Target]:
        """The targets the profile's status lists for this very generation (none otherwise; an
        entry the model cannot read is skipped)."""
        latest = self._world.profile(record.namespace, record.name)  # specs() keeps an older status
        status = latest.status if latest is not None else {}
        if status.get("observedGeneration") != record.generation:
            return []
        found: list[Target] = []
        for item in status.get("targets") or ():
            if isinstance(item, dict):
                try:
                    found.append(Target.model_validate(item))
                except ValueError:
                    continue
        return found
