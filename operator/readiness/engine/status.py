"""The profile's status, computed from the targets' verdicts (no I/O, ``now`` passed in)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from ..models.status import Condition, ConditionType, Rollout, ServiceProfileStatus, Summary, Target
from .view import DeploymentView

NEXT_CHANGE = "waits for the team's next rollout"


def next_change(checks: Sequence[str]) -> str:
    """A NextChange target's message: what the webhook will set when the team next rolls out."""
    return (
        f"{NEXT_CHANGE} (rollout.trigger NextChange): {', '.join(checks)} will be set when the pod "
        "template next changes"
    )


def rollout_state(view: DeploymentView) -> Rollout:
    """Where the Deployment's own rollout stands, as `kubectl rollout status` would say."""
    status = view.status
    if status.observed_generation < view.generation:
        return "Progressing"  # the controller has not seen this template yet: an old failure is not its
    if status.progressing_reason == "ProgressDeadlineExceeded":
        return "Failed"
    done = (
        status.updated_replicas >= view.replicas
        and status.replicas == status.updated_replicas
        and status.available_replicas >= view.replicas
    )
    if done:
        return "Complete"
    return "Progressing" if status.observed_generation else "Unknown"


def summarize(targets: Sequence[Target]) -> Summary:
    matched = len(targets)
    compliant = sum(1 for t in targets if t.compliant)
    # Rounded (2 of 3 is 67, as in the contract), but 100 only when every target is compliant.
    score = 0 if matched == 0 else min(round(compliant * 100 / matched), 100 if compliant == matched else 99)

    def count(state: str) -> int | None:
        return sum(1 for t in targets if t.state == state) or None

    return Summary(
        matched=matched,
        compliant=compliant,
        score=score,
        pending=count("Pending"),
        rolling_out=sum(1 for t in targets if t.rollout == "Progressing") or None,
        failed=count("RolloutFailed"),
        rolled_back=count("RolledBack"),
    )


def set_condition(
    previous: Sequence[Condition],
    type_: ConditionType,
    status: Literal["True", "False", "Unknown"],
    reason: str,
    message: str,
    generation: int,
    now: str,
) -> Condition:
    """A condition whose lastTransitionTime moves only when its status flips."""
    old = next((c for c in previous if c.type == type_), None)
    since = old.last_transition_time if old is not None and old.status == status else now
    return Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        observed_generation=generation,
        last_transition_time=since,
    )


MAX_TARGETS = 200  # keeps a profile far below etcd's object size limit, whatever it selects


def _listed(ordered: Sequence[Target]) -> list[Target]:
    """All targets when few; else those needing attention first, then compliant ones, by name."""
    if len(ordered) <= MAX_TARGETS:
        return list(ordered)
    keep = sorted(ordered, key=lambda t: (t.compliant, t.name))[:MAX_TARGETS]
    return sorted(keep, key=lambda t: t.name)


def build_status(
    *,
    generation: int,
    targets: Sequence[Target],
    previous: Sequence[Condition],
    now: str,
    degraded: tuple[str, str] | None = None,
) -> ServiceProfileStatus:
    """Conditions, summary and targets; ``degraded`` is (reason, message) when enforcement is impaired."""
    ordered = sorted(targets, key=lambda t: t.name)
    summary = summarize(ordered)

    def cond(t: ConditionType, ok: bool, reason: str, message: str) -> Condition:
        return set_condition(previous, t, "True" if ok else "False", reason, message, generation, now)

    bad = [t for t in ordered if not t.compliant]
    conflicted = [t for t in ordered if t.state in ("Conflicted", "Ambiguous")]
    invalid = [t for t in ordered if t.state in ("Invalid", "Error")]
    if summary.matched == 0:  # silence is not success: a typo in the selector must not pass
        compliant = cond(
            "Compliant",
            False,
            "NoTargets",
            "no Deployment in this namespace matches spec.selector; check its labels",
        )
    elif not bad:
        compliant = cond(
            "Compliant", True, "AllCompliant", f"{summary.matched} of {summary.matched} Deployments compliant"
        )
    else:
        compliant = cond(
            "Compliant",
            False,
            "ViolationsFound",
            f"{len(bad)} of {summary.matched} Deployments not compliant: "
            + ", ".join(t.name for t in bad[:5])
            + ("" if len(bad) <= 5 else ", ..."),
        )
    if conflicted:
        ambiguous = [t for t in conflicted if t.state == "Ambiguous"]
        reason = "Ambiguous" if len(ambiguous) == len(conflicted) else "FieldConflict"
        conflicted_cond = cond(
            "Conflicted", True, reason, "; ".join(f"{t.name}: {t.message}" for t in conflicted[:5])
        )
    else:
        conflicted_cond = cond("Conflicted", False, "NoConflicts", "no field conflicts")
    if degraded is not None:
        degraded_cond = cond("Degraded", True, degraded[0], degraded[1])
    elif invalid:
        reason = "InvalidReference" if any(t.state == "Invalid" for t in invalid) else "ApiError"
        degraded_cond = cond(
            "Degraded", True, reason, "; ".join(f"{t.name}: {t.message}" for t in invalid[:5])
        )
    elif ambiguous := [t for t in ordered if t.state == "Ambiguous"]:
        degraded_cond = cond(
            "Degraded",
            True,
            "Ambiguous",
            f"{len(ambiguous)} of {summary.matched} Deployments are also selected by another profile, "
            "so neither applies to them: " + "; ".join(f"{t.name}: {t.message}" for t in ambiguous[:5]),
        )
    else:
        degraded_cond = cond("Degraded", False, "AsExpected", "profile applies to every matched Deployment")
    failed = [t for t in ordered if t.state in ("RolloutFailed", "RolledBack")]
    if failed:
        progressing = cond(
            "Progressing",
            False,
            "RolloutFailed",
            "halted: " + "; ".join(f"{t.name}: {t.message}" for t in failed[:5]) + "; nothing more changes "
            "until the profile (or a failed Deployment's own template) changes",
        )
    elif pending := [t for t in ordered if t.state == "Pending"]:
        riding = sum(1 for t in pending if t.reason == "NextChange")
        progressing = cond(
            "Progressing",
            True,
            "RollingOut",
            "; ".join(
                part
                for part in (
                    f"{len(pending) - riding} Deployments wait for a rollout slot"
                    if riding < len(pending)
                    else "",
                    f"{riding} Deployments wait for their team's next rollout (rollout.trigger NextChange)"
                    if riding
                    else "",
                )
                if part
            ),
        )
    else:
        progressing = cond("Progressing", True, "RolledOut", "no Deployment waits for this profile")
    if degraded_cond.status == "True":
        ready = cond("Ready", False, degraded_cond.reason, degraded_cond.message)
    elif failed:  # a halted profile applies to nothing more: `kubectl wait --for=condition=Ready` fails
        ready = cond("Ready", False, "RolloutFailed", progressing.message)
    else:
        ready = cond("Ready", True, "Reconciled", "profile reconciled")
    return ServiceProfileStatus(
        observed_generation=generation,
        conditions=[ready, compliant, conflicted_cond, degraded_cond, progressing],
        summary=summary,
        targets=(listed := _listed(ordered)),
        targets_omitted=len(ordered) - len(listed),
    )
