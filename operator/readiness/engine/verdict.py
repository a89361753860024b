"""One Deployment under the profiles of its namespace -> which applies, and each target's state.

The operator and ``readiness audit`` both decide here, so they always agree: two profiles that
select one Deployment make it Ambiguous for both, and neither applies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from .. import FIELD_MANAGER, REVERT_MANAGER
from ..models.profile import ServiceProfileSpec
from ..models.status import Conflict, Target, TargetReason, TargetState, Violation
from .evaluate import Evaluation, evaluate, taken_text
from .selector import matches
from .status import rollout_state
from .view import DeploymentView


@dataclass(frozen=True)
class Judgement:
    """The verdict on one Deployment: the profile that applies (if exactly one selects it),
    the engine's evaluation under that profile, and a target per selecting profile."""

    owner: str | None = None
    evaluation: Evaluation | None = None
    targets: Mapping[str, Target] = field(default_factory=dict)


def judge(view: DeploymentView, profiles: Mapping[str, ServiceProfileSpec]) -> Judgement:
    """Decide for ``view`` among the valid profiles of its namespace, by name."""
    selecting = sorted(name for name, spec in profiles.items() if matches(spec.selector, view.labels))
    if not selecting:
        return Judgement()
    if len(selecting) > 1:
        return Judgement(
            targets={
                name: Target(
                    name=view.name,
                    compliant=False,
                    state="Ambiguous",
                    rollout=rollout_state(view),
                    message=f"also selected by ServiceProfile {', '.join(n for n in selecting if n != name)}; "
                    "neither applies",
                )
                for name in selecting
            }
        )
    owner = selecting[0]
    evaluation = evaluate(profiles[owner], view)
    return Judgement(owner=owner, evaluation=evaluation, targets={owner: target(view, evaluation)})


def target(
    view: DeploymentView,
    ev: Evaluation,
    state: TargetState | None = None,
    message: str = "",
    extra: Sequence[Conflict] = (),
    reason: TargetReason = "",
) -> Target:
    """The target's status entry: ``state`` when the reconciler knows better (an API error, a
    fight), else derived from the evaluation."""
    conflicts = [*ev.conflicts, *[c for c in extra if c not in ev.conflicts]]
    violations: list[Violation] = [*ev.problems, *ev.violations]
    if state is None:
        if ev.problems:
            state, message = "Invalid", "; ".join(p.message for p in ev.problems)
        elif conflicts:
            state = "Conflicted"
            message = "fields owned by another manager: " + ", ".join(
                f"{c.field} ({c.manager})" for c in conflicts[:5]
            )
        elif violations:
            state, message = "Violating", f"{len(violations)} violation(s)"
            if ev.taken and ev.apply is not None:
                message = f"{message}; the apply {taken_text(ev.taken, 'takes')}"
        else:
            state = "Compliant"
    if ev.notices:
        message = "; ".join(part for part in (message, *ev.notices) if part)
    if ev.took:
        message = "; ".join(part for part in (message, "took " + "; ".join(ev.took)) if part)
    return Target(
        name=view.name,
        compliant=state == "Compliant",
        state=state,
        rollout=rollout_state(view),
        message=message,
        reason=reason,
        violations=violations,
        conflicts=conflicts,
    )


def last_writers(view: DeploymentView) -> list[str]:
    """The two managers that most recently wrote the Deployment's spec, other than us."""
    spec_writers = [
        e for e in view.managed if e.manager != FIELD_MANAGER and not e.subresource and "f:spec" in e.fields
    ]
    spec_writers.sort(key=lambda e: e.time, reverse=True)
    return [e.manager for e in spec_writers[:2]]


def _latest(stamps: list[str]) -> float | None:
    parsed = []
    for stamp in stamps:
        try:
            parsed.append(datetime.fromisoformat(stamp).timestamp())
        except ValueError:
            continue
    return max(parsed, default=None)


def last_written(view: DeploymentView) -> float | None:
    """When another manager last wrote the Deployment's spec (seconds since the epoch, from
    managedFields; whole seconds), or None when nobody else has."""
    return _latest(
        [
            e.time
            for e in view.managed
            if e.manager not in (FIELD_MANAGER, REVERT_MANAGER) and not e.subresource and "f:spec" in e.fields
        ]
    )


def applied_at(view: DeploymentView) -> float | None:
    """When our last apply wrote the Deployment (seconds since the epoch, whole seconds)."""
    return _latest([e.time for e in view.managed if e.manager == FIELD_MANAGER and e.operation == "Apply"])


def written_last_by_us(view: DeploymentView) -> bool:
    """True when our apply is the latest write of the Deployment's spec: a rollout under way
    then is ours (what a restarted operator finds of the waves it had started)."""
    ours = applied_at(view)
    theirs = last_written(view)
    return ours is not None and (theirs is None or ours > theirs)
