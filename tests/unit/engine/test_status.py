"""The profile's status from its targets' verdicts: conditions, summary, rollout state."""

from __future__ import annotations

from typing import Any

import pytest

from readiness.engine import DeploymentView, build_status, rollout_state, summarize
from readiness.engine.status import MAX_TARGETS
from readiness.models import Condition, ServiceProfileStatus, Target
from readiness.models.status import Rollout, TargetState

T0 = "2025-01-01T00:00:00Z"
T1 = "2025-01-01T00:05:00Z"
ORDER = ["Ready", "Compliant", "Conflicted", "Degraded", "Progressing"]


def target(name: str, state: TargetState = "Compliant", message: str = "") -> Target:
    return Target(
        name=name,
        compliant=state == "Compliant",
        state=state,
        rollout="Complete",
        message=message or (f"{name} is {state.lower()}" if state != "Compliant" else ""),
    )


def conditions(status: ServiceProfileStatus) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in status.conditions}


def status_of(targets: list[Target], **kwargs: Any) -> ServiceProfileStatus:
    return build_status(generation=4, targets=targets, previous=[], now=T0, **kwargs)


@pytest.mark.parametrize(
    ("targets", "degraded", "expected"),
    [
        (
            [],
            None,
            {
                "Ready": ("True", "Reconciled"),
                "Compliant": ("False", "NoTargets"),
                "Conflicted": ("False", "NoConflicts"),
                "Degraded": ("False", "AsExpected"),
            },
        ),
        (
            [target("a"), target("b")],
            None,
            {
                "Ready": ("True", "Reconciled"),
                "Compliant": ("True", "AllCompliant"),
                "Conflicted": ("False", "NoConflicts"),
                "Degraded": ("False", "AsExpected"),
            },
        ),
        (
            [target("a"), target("b", "Violating")],
            None,
            {
                "Ready": ("True", "Reconciled"),
                "Compliant": ("False", "ViolationsFound"),
                "Conflicted": ("False", "NoConflicts"),
                "Degraded": ("False", "AsExpected"),
            },
        ),
        (
            [target("a", "Conflicted"), target("b", "Ambiguous")],
            None,
            {
                "Ready": ("False", "Ambiguous"),
                "Compliant": ("False", "ViolationsFound"),
                "Conflicted": ("True", "FieldConflict"),
                "Degraded": ("True", "Ambiguous"),
            },
        ),
        (
            [target("a", "Ambiguous"), target("b", "Ambiguous"), target("c")],
            None,
            {
                "Ready": ("False", "Ambiguous"),
                "Compliant": ("False", "ViolationsFound"),
                "Conflicted": ("True", "Ambiguous"),
                "Degraded": ("True", "Ambiguous"),
            },
        ),
        (
            [target("a", "Invalid"), target("b", "Error")],
            None,
            {
                "Ready": ("False", "InvalidReference"),
                "Compliant": ("False", "ViolationsFound"),
                "Conflicted": ("False", "NoConflicts"),
                "Degraded": ("True", "InvalidReference"),
            },
        ),
        (
            [target("a", "Error")],
            None,
            {
                "Ready": ("False", "ApiError"),
                "Compliant": ("False", "ViolationsFound"),
                "Conflicted": ("False", "NoConflicts"),
                "Degraded": ("True", "ApiError"),
            },
        ),
        (
            [target("a")],
            ("Forbidden", "cannot patch deployments in shop"),
            {
                "Ready": ("False", "Forbidden"),
                "Compliant": ("True", "AllCompliant"),
                "Conflicted": ("False", "NoConflicts"),
                "Degraded": ("True", "Forbidden"),
            },
        ),
        (
            [target("a", "Invalid")],
            ("Forbidden", "cannot patch deployments in shop"),
            {
                "Ready": ("False", "Forbidden"),
                "Compliant": ("False", "ViolationsFound"),
                "Conflicted": ("False", "NoConflicts"),
                "Degraded": ("True", "Forbidden"),
            },
        ),
    ],
)
def test_conditions(
    targets: list[Target], degraded: tuple[str, str] | None, expected: dict[str, tuple[str, str]]
) -> None:
    status = status_of(targets, degraded=degraded)
    assert [c.type for c in status.conditions] == ORDER
    assert {t: c for t, c in conditions(status).items() if t != "Progressing"} == expected
    assert conditions(status)["Progressing"] == ("True", "RolledOut"), "no waves, no halt"
    assert {c.observed_generation for c in status.conditions} == {4}
    assert status.observed_generation == 4


def test_condition_messages_name_the_targets() -> None:
    status = status_of(
        [
            target("c", "Conflicted", "another manager owns readinessProbe"),
            target("a"),
            target("b", "Invalid", "probe port 'web' is not a port of container app"),
        ]
    )
    by_type = {c.type: c.message for c in status.conditions}
    assert by_type["Compliant"] == "2 of 3 Deployments not compliant: b, c"
    assert by_type["Conflicted"] == "c: another manager owns readinessProbe"
    assert by_type["Degraded"] == "b: probe port 'web' is not a port of container app"
    assert by_type["Ready"] == by_type["Degraded"]


def test_long_messages_are_cut_after_five_targets() -> None:
    status = status_of([target(f"d{i}", "Conflicted") for i in range(7)])
    by_type = {c.type: c.message for c in status.conditions}
    assert by_type["Compliant"] == "7 of 7 Deployments not compliant: d0, d1, d2, d3, d4, ..."
    assert by_type["Conflicted"].count(";") == 4


@pytest.mark.parametrize(
    ("matched", "compliant", "score"),
    [(0, 0, 0), (1, 1, 100), (3, 3, 100), (1, 0, 0), (3, 0, 0), (4, 1, 25), (4, 3, 75), (10, 9, 90)],
)
def test_summary(matched: int, compliant: int, score: int) -> None:
    targets = [target(f"d{i}", "Compliant" if i < compliant else "Violating") for i in range(matched)]
    assert summarize(targets).model_dump(exclude_none=True) == {
        "matched": matched,
        "compliant": compliant,
        "score": score,
    }
    assert status_of(targets).summary == summarize(targets)


def test_score_two_of_three_is_67_as_in_the_contract() -> None:
    assert summarize([target("a"), target("b"), target("c", "Violating")]).score == 67


@pytest.mark.parametrize(("matched", "compliant"), [(200, 199), (1000, 999), (3, 2), (7, 6)])
def test_score_is_100_only_when_everything_is_compliant(matched: int, compliant: int) -> None:
    targets = [target(f"d{i}", "Compliant" if i < compliant else "Violating") for i in range(matched)]
    assert summarize(targets).score < 100


def test_targets_are_sorted_by_name() -> None:
    status = status_of([target("zeta"), target("alpha", "Violating"), target("mid")])
    assert [t.name for t in status.targets] == ["alpha", "mid", "zeta"]
    assert status.targets_omitted == 0


def test_past_the_limit_the_compliant_targets_are_left_out_first() -> None:
    bad = {f"d{i:04d}" for i in range(0, MAX_TARGETS + 50, 25)}
    targets = [
        target(f"d{i:04d}", "Violating" if f"d{i:04d}" in bad else "Compliant")
        for i in range(MAX_TARGETS + 50)
    ]
    status = status_of(targets)
    names = [t.name for t in status.targets]
    assert len(names) == MAX_TARGETS
    assert names == sorted(names)
    assert bad <= set(names)
    assert status.targets_omitted == 50
    assert status.summary.matched == MAX_TARGETS + 50
    assert status.summary.compliant == MAX_TARGETS + 50 - len(bad)


def previous(**statuses: str) -> list[Condition]:
    return [
        Condition.model_validate(
            {
                "type": t,
                "status": s,
                "reason": "Before",
                "message": "before",
                "observedGeneration": 3,
                "lastTransitionTime": T0,
            }
        )
        for t, s in statuses.items()
    ]


@pytest.mark.parametrize(
    ("before", "targets", "moved"),
    [
        # Nothing flips: every lastTransitionTime stays, even though reasons/messages change.
        (
            {
                "Ready": "True",
                "Compliant": "True",
                "Conflicted": "False",
                "Degraded": "False",
                "Progressing": "True",
            },
            [target("a")],
            set(),
        ),
        (
            {
                "Ready": "True",
                "Compliant": "False",
                "Conflicted": "False",
                "Degraded": "False",
                "Progressing": "True",
            },
            [target("a", "Violating"), target("b", "Violating")],
            set(),
        ),
        # Compliant flips False -> True.
        (
            {
                "Ready": "True",
                "Compliant": "False",
                "Conflicted": "False",
                "Degraded": "False",
                "Progressing": "True",
            },
            [target("a")],
            {"Compliant"},
        ),
        # A conflict appears: Compliant and Conflicted flip.
        (
            {
                "Ready": "True",
                "Compliant": "True",
                "Conflicted": "False",
                "Degraded": "False",
                "Progressing": "True",
            },
            [target("a", "Conflicted")],
            {"Compliant", "Conflicted"},
        ),
        # An invalid reference: Ready and Degraded flip too.
        (
            {
                "Ready": "True",
                "Compliant": "True",
                "Conflicted": "False",
                "Degraded": "False",
                "Progressing": "True",
            },
            [target("a", "Invalid")],
            {"Ready", "Compliant", "Degraded"},
        ),
        # No previous status at all: every condition starts now.
        ({}, [target("a")], {"Ready", "Compliant", "Conflicted", "Degraded", "Progressing"}),
        # Unknown -> True is a flip.
        (
            {
                "Ready": "Unknown",
                "Compliant": "True",
                "Conflicted": "False",
                "Degraded": "False",
                "Progressing": "True",
            },
            [target("a")],
            {"Ready"},
        ),
    ],
)
def test_last_transition_time_moves_only_on_a_flip(
    before: dict[str, str], targets: list[Target], moved: set[str]
) -> None:
    status = build_status(generation=5, targets=targets, previous=previous(**before), now=T1)
    times = {c.type: c.last_transition_time for c in status.conditions}
    assert {t for t, time in times.items() if time == T1} == moved
    assert {t for t, time in times.items() if time == T0} == set(ORDER) - moved
    assert {c.observed_generation for c in status.conditions} == {5}


def test_recomputing_with_the_same_input_is_the_same_status() -> None:
    targets = [target("a"), target("b", "Conflicted"), target("c", "Invalid")]
    first = build_status(generation=2, targets=targets, previous=[], now=T0)
    again = build_status(generation=2, targets=list(reversed(targets)), previous=first.conditions, now=T1)
    assert again == first


def deployment(
    *, generation: int = 2, replicas: int | None = 2, status: dict[str, Any] | None = None
) -> DeploymentView:
    spec: dict[str, Any] = {} if replicas is None else {"replicas": replicas}
    return DeploymentView.from_body(
        {
            "metadata": {"name": "api", "namespace": "shop", "generation": generation},
            "spec": spec,
            "status": status or {},
        }
    )


def progressing(reason: str, status: str = "True") -> dict[str, Any]:
    return {"type": "Progressing", "status": status, "reason": reason}


DONE = {
    "observedGeneration": 2,
    "replicas": 2,
    "updatedReplicas": 2,
    "readyReplicas": 2,
    "availableReplicas": 2,
}


@pytest.mark.parametrize(
    ("kwargs", "state"),
    [
        ({"status": DONE}, "Complete"),
        ({"status": {**DONE, "conditions": [progressing("NewReplicaSetAvailable")]}}, "Complete"),
        ({"replicas": 0, "status": {"observedGeneration": 2}}, "Complete"),
        (
            {
                "replicas": None,
                "status": {**DONE, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1},
            },
            "Complete",
        ),
        ({"generation": 3, "status": DONE}, "Progressing"),  # the new spec is not observed yet
        ({"status": {**DONE, "updatedReplicas": 1}}, "Progressing"),
        ({"status": {**DONE, "replicas": 3}}, "Progressing"),  # old pods still terminating
        ({"status": {**DONE, "availableReplicas": 1}}, "Progressing"),
        (
            {"status": {**DONE, "updatedReplicas": 1, "conditions": [progressing("ReplicaSetUpdated")]}},
            "Progressing",
        ),
        (
            {
                "status": {
                    **DONE,
                    "updatedReplicas": 1,
                    "conditions": [progressing("ProgressDeadlineExceeded", "False")],
                }
            },
            "Failed",
        ),
        ({"generation": 0, "status": {}}, "Unknown"),
    ],
)
def test_rollout_state(kwargs: dict[str, Any], state: Rollout) -> None:
    assert rollout_state(deployment(**kwargs)) == state


@pytest.mark.parametrize(
    ("states", "expected", "summary"),
    [
        (["Compliant", "Pending", "Pending"], ("True", "RollingOut"), {"pending": 2}),
        (["Compliant", "RolledBack", "Pending"], ("False", "RolloutFailed"), {"pending": 1, "rolledBack": 1}),
        (["RolloutFailed"], ("False", "RolloutFailed"), {"failed": 1}),
    ],
)
def test_waves_and_halts_show_as_progressing(
    states: list[TargetState], expected: tuple[str, str], summary: dict[str, int]
) -> None:
    status = status_of([target(f"d{i}", state) for i, state in enumerate(states)])
    assert conditions(status)["Progressing"] == expected
    dumped = status.summary.model_dump(by_alias=True, exclude_none=True)
    assert {k: v for k, v in dumped.items() if k not in ("matched", "compliant", "score")} == summary
    if expected[1] == "RolloutFailed":
        message = next(c.message for c in status.conditions if c.type == "Progressing")
        assert message.startswith("halted: d")
