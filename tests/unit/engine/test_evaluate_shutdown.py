"""Shutdown, table-driven: the grace period and the preStop sleep, written once and then left
alone; which grace violation is which; a sleep must fit the grace period the pod keeps."""

from __future__ import annotations

from typing import Any

import pytest
from tests.support.engine_table import (
    app,
    converge,
    ctr,
    deployment,
    pod,
    profile,
    row_tests,
    run,
)

from readiness.engine import DeploymentView, target

# The section's rows: the profile's sections, the Deployment's container, the checks, the apply's spec.
ROWS: list[Any] = [
    pytest.param(
        # kubectl holds the defaulted grace period: only Force takes it (see the Report tests).
        {"shutdown": {"terminationGracePeriodSeconds": 60}, "conflictPolicy": "Force"},
        ctr(),
        ["shutdown.grace.too-short"],
        pod(grace=60),
        id="shutdown-grace",
    ),
    pytest.param(
        {"shutdown": {"preStopSleepSeconds": 5}},
        ctr(),
        ["shutdown.prestop.missing"],
        pod(app(lifecycle={"preStop": {"sleep": {"seconds": 5}}})),
        id="shutdown-prestop-sleep",
    ),
    pytest.param(
        {
            "shutdown": {"terminationGracePeriodSeconds": 45, "preStopSleepSeconds": 10},
            "conflictPolicy": "Force",
        },
        ctr(),
        ["shutdown.prestop.missing", "shutdown.grace.too-short"],
        pod(app(lifecycle={"preStop": {"sleep": {"seconds": 10}}}), grace=45),
        id="shutdown-both",
    ),
]


test_each_section, test_each_section_is_idempotent = row_tests(ROWS)


@pytest.mark.parametrize(
    ("live", "wanted", "check"),
    [
        (30, 60, "shutdown.grace.too-short"),
        (0, 30, "shutdown.grace.too-short"),
        (90, 60, "shutdown.grace.mismatch"),
    ],
)
def test_grace_period_violation(live: int, wanted: int, check: str) -> None:
    ev = run(
        profile(conflictPolicy="Force", shutdown={"terminationGracePeriodSeconds": wanted}),
        deployment(grace=live),
    )
    assert [(v.check, v.message) for v in ev.violations] == [
        (check, f"terminationGracePeriodSeconds is {live}; the profile wants {wanted}")
    ]


@pytest.mark.parametrize(
    ("grace", "shutdown"),
    [
        pytest.param(30, {"preStopSleepSeconds": 40}, id="sleep-longer-than-the-live-grace"),
        pytest.param(
            0, {"terminationGracePeriodSeconds": 30, "preStopSleepSeconds": 5}, id="grace-conflicted"
        ),
    ],
)
def test_a_prestop_sleep_must_fit_the_grace_period_the_pod_keeps(
    grace: int, shutdown: dict[str, Any]
) -> None:
    """The apiserver refuses a sleep past the grace period: a problem naming the fix, no write."""
    ev = run(profile(conflictPolicy="Report", shutdown=shutdown), deployment(grace=grace))
    assert ev.apply is None
    assert [(p.check, p.field) for p in ev.problems] == [
        ("shutdown.prestop.exceeds-grace", "spec.template.spec.terminationGracePeriodSeconds")
    ]
    (problem,) = ev.problems
    assert f"terminationGracePeriodSeconds {grace}" in problem.message
    assert "declare shutdown.terminationGracePeriodSeconds above" in problem.message
    assert target(DeploymentView.from_body(deployment(grace=grace)), ev).state == "Invalid"


def test_a_prestop_sleep_that_fits_the_grace_the_profile_sets_is_applied() -> None:
    spec = profile(
        conflictPolicy="Force", shutdown={"terminationGracePeriodSeconds": 60, "preStopSleepSeconds": 40}
    )
    ev, after = converge(spec, deployment(grace=30))
    assert ev.problems == ()
    assert after["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 60
    assert run(spec, after).apply is None
