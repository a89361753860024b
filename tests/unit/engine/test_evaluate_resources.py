"""Resources, table-driven: requests and limits as quantity strings, written once and then left
alone; a request above its limit is a problem, not a write the apiserver refuses."""

from __future__ import annotations

from typing import Any

import pytest
from tests.support.engine_table import (
    app,
    ctr,
    deployment,
    pod,
    profile,
    row_tests,
    run,
)

# The section's rows: the profile's sections, the Deployment's container, the checks, the apply's spec.
ROWS: list[Any] = [
    pytest.param(
        {"resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}}},
        ctr(),
        [
            "resources.requests.cpu.missing",
            "resources.requests.memory.missing",
            "resources.limits.memory.missing",
        ],
        pod(app(resources={"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}})),
        id="resources",
    ),
    pytest.param(
        {"resources": {"limits": {"cpu": 1, "memory": 268435456}}},
        ctr(),
        ["resources.limits.cpu.missing", "resources.limits.memory.missing"],
        pod(app(resources={"limits": {"cpu": "1", "memory": "268435456"}})),
        id="resources-integers-as-quantity-strings",
    ),
]


test_each_section, test_each_section_is_idempotent = row_tests(ROWS)


@pytest.mark.parametrize(
    ("live", "sections"),
    [
        pytest.param(
            {"requests": {"memory": "256Mi"}}, {"limits": {"memory": "128Mi"}}, id="limit-below-request"
        ),
        pytest.param({"limits": {"cpu": "500m"}}, {"requests": {"cpu": "1"}}, id="request-above-limit"),
    ],
)
@pytest.mark.parametrize("policy", ["Report", "Force"])
def test_a_request_above_its_limit_is_a_problem_not_a_refused_write(
    live: dict[str, Any], sections: dict[str, Any], policy: str
) -> None:
    ev = run(profile(conflictPolicy=policy, resources=sections), deployment(ctr(resources=live)))
    assert [p.check for p in ev.problems] == ["resources.request-above-limit"]
    assert "declare both in the profile" in ev.problems[0].message
    assert ev.apply is None
