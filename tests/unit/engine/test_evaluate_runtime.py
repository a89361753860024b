"""Runtime tuning, table-driven: GOMEMLIMIT and GOMAXPROCS derived from the limits the container
keeps or the profile declares, written once and then left alone, and released with the limit."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests.support.apiserver import server_side_apply
from tests.support.engine_table import (
    APP,
    LIMITED,
    app,
    checks,
    containers,
    converge,
    ctr,
    deployment,
    env,
    env_list,
    pod,
    profile,
    row_tests,
    run,
)

# The section's rows: the profile's sections, the Deployment's container, the checks, the apply's spec.
ROWS: list[Any] = [
    pytest.param(
        {"runtime": {"go": {"memoryLimitRatio": 0.5}}},
        LIMITED,
        ["runtime.go.env.missing"],
        pod(app(env=env_list(("GOMAXPROCS", "2"), ("GOMEMLIMIT", "536870912")))),
        id="runtime-go",
    ),
]


test_each_section, test_each_section_is_idempotent = row_tests(ROWS)


@pytest.mark.parametrize(
    ("resources", "sections", "gomemlimit", "gomaxprocs"),
    [
        ({"limits": {"memory": "256Mi", "cpu": "1500m"}}, {}, "241591910", "2"),
        ({"limits": {"memory": "1Gi"}}, {"memoryLimitRatio": 0.5}, "536870912", None),
        ({"limits": {"memory": "1G"}, "requests": {"cpu": "250m"}}, {}, "900000000", "1"),
        (
            {"limits": {"memory": "512Mi", "cpu": "2"}, "requests": {"cpu": "500m"}},
            {"memoryLimitRatio": 0.75},
            "402653184",
            "2",
        ),
        ({"limits": {"memory": "100Mi", "cpu": "4"}}, {"memoryLimitRatio": 1}, "104857600", "4"),
        ({"limits": {"memory": "1Gi", "cpu": "2001m"}}, {"memoryLimitRatio": 0.95}, "1020054732", "3"),
    ],
)
def test_go_runtime_from_the_live_limits(
    resources: dict[str, Any], sections: dict[str, Any], gomemlimit: str, gomaxprocs: str | None
) -> None:
    ev = run(profile(runtime={"go": sections}), deployment(ctr(resources=resources)))
    values = env(containers(ev)["app"])
    assert values.get("GOMEMLIMIT") == gomemlimit
    assert values["GOMEMLIMIT"].isdigit(), "a plain byte count is a valid GOMEMLIMIT literal"
    assert values.get("GOMAXPROCS") == gomaxprocs
    assert set(values) <= {"GOMEMLIMIT", "GOMAXPROCS"}


@pytest.mark.parametrize(
    ("live", "declared", "gomemlimit", "gomaxprocs"),
    [
        ({}, {"limits": {"memory": "512Mi"}}, "483183820", None),
        ({"requests": {"cpu": "3"}}, {"limits": {"memory": "512Mi"}}, "483183820", "3"),
        (
            {"limits": {"memory": "1Gi", "cpu": "1"}},
            {"limits": {"memory": "512Mi", "cpu": "1500m"}},
            "483183820",
            "2",
        ),
        ({"limits": {"memory": "1Gi"}}, {"requests": {"cpu": "2500m"}}, "966367641", "3"),
        (
            {"limits": {"memory": "1Gi"}, "requests": {"cpu": "100m"}},
            {"requests": {"cpu": "2"}},
            "966367641",
            "2",
        ),
    ],
)
def test_go_runtime_follows_the_limits_the_profile_declares(
    live: dict[str, Any], declared: dict[str, Any], gomemlimit: str, gomaxprocs: str | None
) -> None:
    """GOMAXPROCS from the CPU limit, else the request; the profile's own values first (they are applied too)."""
    ev = run(profile(resources=declared, runtime={"go": {}}), deployment(ctr(resources=live), creator=None))
    values = env(containers(ev)["app"])
    assert (values.get("GOMEMLIMIT"), values.get("GOMAXPROCS")) == (gomemlimit, gomaxprocs)


@pytest.mark.parametrize(("resources", "gomaxprocs"), [({}, None), ({"requests": {"cpu": "1200m"}}, "2")])
def test_go_runtime_without_a_memory_limit(resources: dict[str, Any], gomaxprocs: str | None) -> None:
    ev = run(profile(runtime={"go": {}}), deployment(ctr(resources=resources)))
    assert [(v.check, v.field) for v in ev.violations][:1] == [
        ("runtime.go.memory-limit.missing", f"{APP}.resources.limits.memory")
    ]
    assert not ev.compliant, "no write can fix it: the team must declare a memory limit"
    if gomaxprocs is None:
        assert ev.apply is None
    else:
        assert env(containers(ev)["app"]) == {"GOMAXPROCS": gomaxprocs}


def test_gomemlimit_follows_the_limit_the_container_keeps() -> None:
    body = deployment(ctr(resources={"limits": {"memory": "256Mi"}}))
    ev = run(profile(resources={"limits": {"memory": "1Gi"}}, runtime={"go": {}}), body)
    assert [c.field for c in ev.conflicts] == [f"{APP}.resources.limits.memory"]
    values = env(containers(ev)["app"]) if ev.apply is not None else {}
    assert values.get("GOMEMLIMIT") in (None, str(int(256 * 2**20 * 0.9)))


def test_releasing_the_memory_limit_releases_gomemlimit_in_the_same_apply() -> None:
    spec = profile(resources={"limits": {"memory": "256Mi"}}, runtime={"go": {}})
    _, after = converge(spec, deployment())
    smaller = profile(runtime={"go": {}})
    ev = run(smaller, after)
    assert ev.apply is not None
    final = server_side_apply(after, ev.apply, force=ev.force)
    assert "resources" not in json.dumps(ev.apply), "the limit is released..."
    assert "GOMEMLIMIT" not in env(final["spec"]["template"]["spec"]["containers"][0]), "...with it"
    again = run(smaller, final)
    assert again.apply is None
    assert checks(again) == ["runtime.go.memory-limit.missing"]
