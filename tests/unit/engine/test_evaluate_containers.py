"""Env and containers: env is sorted, containers are merged by name and kept in their order, the
profile's containers only; the team's values win where the profile is silent, and a variable
the team sets otherwise (valueFrom, twice) is not overwritten behind its back."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from tests.support.apiserver import server_side_apply
from tests.support.engine_table import (
    APP,
    ENDPOINT,
    KUBECTL,
    LIMITED,
    checks,
    containers,
    converge,
    ctr,
    deployment,
    env,
    env_list,
    make,
    profile,
    run,
)

# ---- Env is sorted; containers are merged by name ----


def test_env_is_sorted_and_the_pod_name_comes_before_its_use() -> None:
    spec = profile(
        tracing={"endpoint": ENDPOINT, "samplerArg": "0.1", "propagators": ["tracecontext"]},
        runtime={"go": {}},
        logging={"format": "json", "level": "info"},
    )
    ev = run(spec, deployment(LIMITED))
    names = [e["name"] for e in containers(ev)["app"]["env"]]
    assert names == sorted(names)
    assert set(names) == {
        "GOMAXPROCS",
        "GOMEMLIMIT",
        "LOG_FORMAT",
        "LOG_LEVEL",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_K8S_POD_NAME",
        "OTEL_PROPAGATORS",
        "OTEL_RESOURCE_ATTRIBUTES",
        "OTEL_SERVICE_NAME",
        "OTEL_TRACES_SAMPLER",
        "OTEL_TRACES_SAMPLER_ARG",
    }
    assert names.index("OTEL_K8S_POD_NAME") < names.index("OTEL_RESOURCE_ATTRIBUTES"), (
        "$(...) expands only earlier vars"
    )


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 1, 0), (1, 2, 0)])
def test_the_apply_does_not_depend_on_the_live_env_order(order: tuple[int, int, int]) -> None:
    user = [
        {"name": "ZONE", "value": "a"},
        {"name": "LOG_FORMAT", "value": "text"},
        {"name": "APP_MODE", "value": "x"},
    ]
    spec = profile(
        conflictPolicy="Force", logging={"format": "json", "level": "info"}, tracing={"endpoint": ENDPOINT}
    )
    reference = run(spec, deployment(ctr(env=user)))
    assert run(spec, deployment(ctr(env=[user[i] for i in order]))) == reference
    assert reference.apply is not None


def test_every_container_by_default_never_init_containers() -> None:
    body = deployment(
        ctr("app"),
        ctr("worker", ports=(("http", 8081),)),
        init_containers=[ctr("migrate", ports=())],
    )
    ev = run(profile(logging={"format": "json"}), body)
    assert set(containers(ev)) == {"app", "worker"}
    assert "initContainers" not in ev.apply["spec"]["template"]["spec"]  # type: ignore[index]
    assert checks(ev) == ["logging.env.missing", "logging.env.missing"]
    assert {v.field for v in ev.violations} == {f"{APP}.env", "spec.template.spec.containers[worker].env"}


def test_only_the_named_containers() -> None:
    body = deployment(ctr("app"), ctr("envoy", ports=(("admin", 9901),)))
    ev = run(
        profile(
            containers=["app"],
            probes={"port": "http", "readiness": {"path": "/ready"}},
            logging={"format": "json"},
        ),
        body,
    )
    assert set(containers(ev)) == {"app"}, "the sidecar is left alone (and needs no http port)"
    _, after = converge(profile(containers=["app"], logging={"format": "json"}), body)
    envoy = after["spec"]["template"]["spec"]["containers"][1]
    assert envoy == body["spec"]["template"]["spec"]["containers"][1]


def test_the_apply_keeps_the_live_container_order() -> None:
    body = deployment(ctr("web"), ctr("envoy", ports=(("admin", 9901),)))
    ev = run(profile(logging={"format": "json"}), body)
    assert list(containers(ev)) == ["web", "envoy"]


# ---- User values win where the profile is silent ----


@pytest.mark.parametrize("policy", ["Report", "Force"])
@pytest.mark.parametrize(
    ("user_env", "resources", "sections", "kept", "applied"),
    [
        pytest.param(
            [("OTEL_SERVICE_NAME", "mine")],
            {},
            {"tracing": {"endpoint": ENDPOINT}},
            "OTEL_SERVICE_NAME",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            id="service-name",
        ),
        pytest.param(
            [("GOMEMLIMIT", "100MiB")],
            {"limits": {"memory": "1Gi", "cpu": "2"}},
            {"runtime": {"go": {}}},
            "GOMEMLIMIT",
            "GOMAXPROCS",
            id="gomemlimit",
        ),
        pytest.param(
            [("GOMAXPROCS", "8")],
            {"limits": {"memory": "1Gi", "cpu": "2"}},
            {"runtime": {"go": {}}},
            "GOMAXPROCS",
            "GOMEMLIMIT",
            id="gomaxprocs",
        ),
        pytest.param(
            [("LOG_LEVEL", "debug")],
            {},
            {"logging": {"format": "json"}},
            "LOG_LEVEL",
            "LOG_FORMAT",
            id="log-level",
        ),
    ],
)
def test_user_values_win_where_the_profile_is_silent(
    policy: str,
    user_env: list[tuple[str, str]],
    resources: dict[str, Any],
    sections: dict[str, Any],
    kept: str,
    applied: str,
) -> None:
    body = deployment(ctr(env=env_list(*user_env), resources=resources))
    spec = profile(conflictPolicy=policy, **sections)
    ev = run(spec, body)
    values = env(containers(ev)["app"])
    assert kept not in values
    assert applied in values
    assert ev.conflicts == ()
    _, after = converge(spec, body)
    (live,) = after["spec"]["template"]["spec"]["containers"]
    assert env(live)[kept] == dict(user_env)[kept], "the user's value is untouched"
    again = run(spec, after)
    assert again.apply is None
    assert again.compliant


@pytest.mark.parametrize(
    ("change", "variable", "value"),
    [
        pytest.param(
            {"labels": {"app": "api", "app.kubernetes.io/name": "shop-api"}},
            "OTEL_SERVICE_NAME",
            "shop-api",
            id="label",
        ),
        pytest.param(
            {"container": ctr(resources={"limits": {"memory": "2Gi", "cpu": "3"}})},
            "GOMEMLIMIT",
            "1932735283",
            id="memory",
        ),
        pytest.param(
            {"container": ctr(resources={"limits": {"memory": "1Gi", "cpu": "3"}})},
            "GOMAXPROCS",
            "3",
            id="cpu",
        ),
    ],
)
def test_derived_values_we_own_follow_the_deployment(
    change: dict[str, Any], variable: str, value: str
) -> None:
    spec = profile(tracing={"endpoint": ENDPOINT}, runtime={"go": {}})
    base = {"container": ctr(resources={"limits": {"memory": "1Gi", "cpu": "1"}})}
    _, after = converge(spec, make(base))
    assert run(spec, after).apply is None
    # The team changes its own fields (labels, limits: its kubectl owns them); ours stay ours.
    changed = make({**base, **change})
    live = copy.deepcopy(after)
    live["metadata"]["labels"] = changed["metadata"]["labels"]
    (container,) = live["spec"]["template"]["spec"]["containers"]
    container["resources"] = changed["spec"]["template"]["spec"]["containers"][0]["resources"]
    ev = run(spec, live)
    assert env(containers(ev)["app"])[variable] == value
    assert ev.conflicts == ()


# ---- A variable the team defines otherwise ----


@pytest.mark.parametrize("policy", ["Report", "Force"])
@pytest.mark.parametrize(
    ("variable", "value_from", "sections"),
    [
        pytest.param(
            "OTEL_SERVICE_NAME",
            {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.labels['app']"}},
            {"tracing": {"endpoint": ENDPOINT, "serviceName": "checkout"}},
            id="service-name",
        ),
        pytest.param(
            "LOG_LEVEL",
            {"configMapKeyRef": {"name": "logging", "key": "level"}},
            {"logging": {"format": "json", "level": "info"}},
            id="log-level",
        ),
        pytest.param(
            "OTEL_RESOURCE_ATTRIBUTES",
            {"configMapKeyRef": {"name": "otel", "key": "attributes"}},
            {"tracing": {"endpoint": ENDPOINT}},
            id="resource-attributes",
        ),
    ],
)
def test_a_declared_variable_set_with_value_from_is_a_conflict(
    variable: str, value_from: dict[str, Any], sections: dict[str, Any], policy: str
) -> None:
    """A value beside the user's valueFrom is invalid, and an apply cannot remove theirs: even
    Force reports it rather than writing what the apiserver refuses."""
    body = deployment(ctr(env=[{"name": variable, "valueFrom": value_from}]))
    ev = run(profile(conflictPolicy=policy, **sections), body)
    assert any(c.manager == KUBECTL and c.field.startswith(f"{APP}.env[{variable}]") for c in ev.conflicts)
    applied = containers(ev)["app"].get("env", []) if ev.apply is not None and "spec" in ev.apply else []
    assert not [e for e in applied if e["name"] == variable and "value" in e]


@pytest.mark.parametrize("policy", ["Report", "Force"])
def test_a_variable_defined_twice_is_replaced_only_under_force(policy: str) -> None:
    """The apiserver replaces every definition of an applied name with ours (seen on the
    testbed): the team's definitions go, so Report leaves them and names the holder."""
    twice = [{"name": "LOG_FORMAT", "value": "debug"}, {"name": "LOG_FORMAT", "value": "text"}]
    body = deployment(ctr(env=twice))
    ev = run(profile(conflictPolicy=policy, logging={"format": "json"}), body)
    if policy == "Report":
        fields = [(c.manager, c.field) for c in ev.conflicts]
        assert (KUBECTL, f"{APP}.env[LOG_FORMAT] (defined more than once)") in fields
        assert ev.apply is None
        return
    assert ev.force
    after = server_side_apply(body, ev.apply or {}, force=True)
    assert env(after["spec"]["template"]["spec"]["containers"][0]) == {"LOG_FORMAT": "json"}
    assert run(profile(conflictPolicy=policy, logging={"format": "json"}), after).apply is None
