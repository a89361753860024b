"""Tracing, table-driven: the OpenTelemetry variables, written once and then left alone; the
service name's default; the resource attributes appended to the team's own; a pod name the
team sets from elsewhere."""

from __future__ import annotations

from typing import Any

import pytest
from tests.support.engine_table import (
    APP,
    ENDPOINT,
    KUBECTL,
    OURS,
    POD_NAME,
    app,
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

TRACING_ENV = env_list(
    ("OTEL_EXPORTER_OTLP_ENDPOINT", ENDPOINT),
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
    POD_NAME,
    ("OTEL_RESOURCE_ATTRIBUTES", OURS),
    ("OTEL_SERVICE_NAME", "api"),
    ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
)

# The section's rows: the profile's sections, the Deployment's container, the checks, the apply's spec.
ROWS: list[Any] = [
    pytest.param(
        {"tracing": {"endpoint": ENDPOINT}},
        ctr(),
        ["tracing.env.missing"],
        pod(app(env=TRACING_ENV)),
        id="tracing-defaults",
    ),
    pytest.param(
        {
            "tracing": {
                "endpoint": "https://collector:4318",
                "protocol": "http/protobuf",
                "sampler": "traceidratio",
                "samplerArg": "0.25",
                "serviceName": "checkout",
                "propagators": ["tracecontext", "baggage", "b3"],
            }
        },
        ctr(),
        ["tracing.env.missing"],
        pod(
            app(
                env=env_list(
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318"),
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                    POD_NAME,
                    ("OTEL_PROPAGATORS", "tracecontext,baggage,b3"),
                    ("OTEL_RESOURCE_ATTRIBUTES", OURS),
                    ("OTEL_SERVICE_NAME", "checkout"),
                    ("OTEL_TRACES_SAMPLER", "traceidratio"),
                    ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
                )
            )
        ),
        id="tracing-everything",
    ),
]


test_each_section, test_each_section_is_idempotent = row_tests(ROWS)


@pytest.mark.parametrize(
    ("labels", "service_name", "expected"),
    [
        ({"app": "api", "app.kubernetes.io/name": "checkout"}, None, "checkout"),
        ({"app": "api"}, None, "api"),
        ({"app": "api", "app.kubernetes.io/name": "checkout"}, "storefront", "storefront"),
        ({"app": "api"}, "storefront", "storefront"),
    ],
)
def test_default_service_name(labels: dict[str, str], service_name: str | None, expected: str) -> None:
    tracing: dict[str, Any] = {"endpoint": ENDPOINT}
    if service_name:
        tracing["serviceName"] = service_name
    ev = run(profile(tracing=tracing), deployment(labels=labels))
    assert env(containers(ev)["app"])["OTEL_SERVICE_NAME"] == expected


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        (None, OURS),
        ("team=checkout", f"team=checkout,{OURS}"),
        ("team=checkout,tier=api", f"team=checkout,tier=api,{OURS}"),
        ("team=checkout,k8s.deployment.name=old,k8s.pod.name=x", f"team=checkout,{OURS}"),
        (f"team=checkout,{OURS}", f"team=checkout,{OURS}"),
    ],
    ids=["unset", "user-value", "two-user-values", "stale-k8s-attributes-replaced", "already-appended"],
)
def test_resource_attributes_are_appended_to_the_users_value(user: str | None, expected: str) -> None:
    user_env = [{"name": "OTEL_RESOURCE_ATTRIBUTES", "value": user}] if user is not None else []
    ev = run(profile(conflictPolicy="Force", tracing={"endpoint": ENDPOINT}), deployment(ctr(env=user_env)))
    values = env(containers(ev)["app"])
    assert values["OTEL_RESOURCE_ATTRIBUTES"] == expected
    assert values["OTEL_K8S_POD_NAME"] == {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}
    assert ev.force is True


@pytest.mark.parametrize("user", ["team=checkout", "team=checkout,k8s.pod.name=x"])
def test_appending_to_a_variable_another_manager_holds_is_a_conflict_under_report(user: str) -> None:
    """Appending changes the holder's value: Report names the holder and takes nothing."""
    body = deployment(ctr(env=[{"name": "OTEL_RESOURCE_ATTRIBUTES", "value": user}]))
    ev = run(profile(conflictPolicy="Report", tracing={"endpoint": ENDPOINT}), body)
    assert [(c.manager, c.field) for c in ev.conflicts] == [
        (KUBECTL, f"{APP}.env[OTEL_RESOURCE_ATTRIBUTES].value")
    ]
    assert ev.force is False
    assert ev.apply is None


def test_appending_is_stable_once_applied() -> None:
    spec = profile(conflictPolicy="Force", tracing={"endpoint": ENDPOINT})
    _, after = converge(
        spec, deployment(ctr(env=[{"name": "OTEL_RESOURCE_ATTRIBUTES", "value": "team=checkout"}]))
    )
    (live,) = after["spec"]["template"]["spec"]["containers"]
    assert env(live)["OTEL_RESOURCE_ATTRIBUTES"] == f"team=checkout,{OURS}"
    assert run(spec, after).apply is None


def test_another_managers_value_from_source_is_a_conflict_even_under_force() -> None:
    """valueFrom merges field by field: forcing ours would leave two sources in one variable."""
    source = {"configMapKeyRef": {"name": "settings", "key": "pod"}}
    body = deployment(ctr(env=[{"name": "OTEL_K8S_POD_NAME", "valueFrom": source}]))
    ev = run(profile(conflictPolicy="Force", tracing={"endpoint": ENDPOINT}), body)
    assert (KUBECTL, f"{APP}.env[OTEL_K8S_POD_NAME].valueFrom.configMapKeyRef") in [
        (c.manager, c.field) for c in ev.conflicts
    ]
    assert ev.apply is None
