"""The ServiceProfile status: what SREs and app teams read, written only by the operator."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import Model

ConditionType = Literal["Ready", "Compliant", "Conflicted", "Degraded", "Progressing"]
TargetState = Literal[
    "Compliant",
    "Violating",
    "Pending",
    "Conflicted",
    "Ambiguous",
    "Invalid",
    "Error",
    "RolloutFailed",
    "RolledBack",
]
Rollout = Literal["Complete", "Progressing", "Failed", "Unknown"]
# Why a target is in its state when the state alone does not say: what the operator itself (and
# its next run, reading the status back) decides from, never the message text.
TargetReason = Literal["", "FightLeftAlone", "NextChange", "WaitingForSlot", "Halted"]


class Condition(Model):
    """metav1.Condition."""

    type: ConditionType
    """Ready, Compliant, Conflicted, Degraded or Progressing."""
    status: Literal["True", "False", "Unknown"]
    """Whether the condition holds."""
    reason: str = Field(pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$", max_length=1024)
    """One CamelCase word for machines."""
    message: str = Field(default="", max_length=32768)
    """What a person should know."""
    observed_generation: int = 0
    """The profile generation this condition was computed from."""
    last_transition_time: str
    """When the status last flipped (RFC 3339)."""


class Violation(Model):
    check: str
    """Stable check id, such as probes.readiness.missing."""
    field: str
    """The Deployment field concerned."""
    message: str
    """What is wrong and what the profile wants."""


class Conflict(Model):
    manager: str
    """The field manager that owns the field."""
    field: str
    """The field it owns."""


class Target(Model):
    name: str
    """Deployment name."""
    compliant: bool
    """True when the Deployment matches everything the profile declares."""
    state: TargetState
    """Compliant, Violating, Pending (waits for a rollout slot, or the profile is halted), Conflicted, Ambiguous, Invalid, Error, RolloutFailed (our rollout failed, left as it is) or RolledBack (our rollout failed, the previous pod template is back)."""
    rollout: Rollout
    """Rollout state from the Deployment's own status."""
    message: str = ""
    """Why the target is not compliant, when there is one reason."""
    reason: TargetReason = ""
    """One CamelCase word for machines when the state alone does not say why: FightLeftAlone (another field manager keeps reverting it; left alone until it is quiet or the profile changes), NextChange (set at the team's next rollout), WaitingForSlot (waits for a rollout slot) or Halted (the profile's waves are halted by a failed rollout)."""
    violations: list[Violation] = []
    """What does not match the profile."""
    conflicts: list[Conflict] = []
    """Fields another manager owns with another value (conflictPolicy Report)."""


class Summary(Model):
    matched: int = 0
    """Deployments the selector matches."""
    compliant: int = 0
    """Of those, how many are compliant."""
    score: int = Field(default=0, ge=0, le=100)
    """compliant / matched as a percentage (0 when nothing matches: silence is not success)."""
    pending: int | None = None
    """Waiting for a rollout slot or held by a halt (left out when none)."""
    rolling_out: int | None = None
    """Whose rollout is under way (left out when none)."""
    failed: int | None = None
    """Whose rollout failed and was left as it is (onFailure: Pause; left out when none)."""
    rolled_back: int | None = None
    """Whose rollout failed and was put back (onFailure: Revert; left out when none)."""


class ServiceProfileStatus(Model):
    observed_generation: int = 0
    """The profile generation this status describes."""
    conditions: list[Condition] = []
    """Ready, Compliant, Conflicted and Degraded."""
    summary: Summary = Summary()
    """Counts over the matched Deployments."""
    targets: list[Target] = []
    """One entry per matched Deployment, sorted by name; past 200 the compliant ones are left out first."""
    targets_omitted: int = 0
    """Matched Deployments not listed in targets, to keep the object small (summary counts them all)."""
