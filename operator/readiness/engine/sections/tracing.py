"""The profile's tracing section: The OpenTelemetry SDK environment."""

from __future__ import annotations

from typing import Any

from readiness.engine.fields import FieldPath, key
from readiness.engine.fragments import (
    Fragment,
    Managed,
    Plan,
    SectionInput,
    SectionResult,
    derived,
    each,
    env_leaf,
)
from readiness.engine.view import DeploymentView
from readiness.models.profile import (
    Tracing,
)

POD_NAME_ENV = "OTEL_K8S_POD_NAME"  # sorts before OTEL_RESOURCE_ATTRIBUTES, so $(...) expands
_OUR_ATTRIBUTES = ("k8s.namespace.name=", "k8s.deployment.name=", "k8s.pod.name=")


def tracing(ctx: SectionInput) -> SectionResult:
    """The OpenTelemetry SDK environment on each managed container. OTEL_SERVICE_NAME, unless
    declared, is derived (the user's own value wins); OTEL_RESOURCE_ATTRIBUTES is appended to."""
    return each(ctx, ctx.spec.tracing, _tracing_of)


def _tracing_of(ctx: SectionInput, c: Managed, t: Tracing) -> Plan:
    out = Plan()
    leaves: list[tuple[FieldPath, Any]] = [
        env_leaf(c.base, "OTEL_EXPORTER_OTLP_ENDPOINT", t.endpoint),
        env_leaf(c.base, "OTEL_EXPORTER_OTLP_PROTOCOL", t.protocol),
        env_leaf(c.base, "OTEL_TRACES_SAMPLER", t.sampler),
    ]
    if t.service_name is not None:
        leaves.append(env_leaf(c.base, "OTEL_SERVICE_NAME", t.service_name))
    elif leaf := derived(ctx, c, "OTEL_SERVICE_NAME", _default_service_name(ctx.view), out):
        leaves.append(leaf)
    if t.sampler_arg is not None:
        leaves.append(env_leaf(c.base, "OTEL_TRACES_SAMPLER_ARG", t.sampler_arg))
    if t.propagators:
        leaves.append(env_leaf(c.base, "OTEL_PROPAGATORS", ",".join(t.propagators)))
    pod_name = {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}
    leaves.append(env_leaf(c.base, POD_NAME_ENV, value_from=pod_name))
    leaves.append(_resource_attributes(ctx.view, c))
    out.fragments.append(
        Fragment(
            check="tracing.env",
            field=f"{c.where}.env",
            leaves=tuple(leaves),
            wants=f"OpenTelemetry env exporting to {t.endpoint}",
        )
    )
    return out


def _default_service_name(view: DeploymentView) -> str:
    return (
        view.labels.get("app.kubernetes.io/name")
        or view.template_labels.get("app.kubernetes.io/name")
        or view.name
    )


def _resource_attributes(view: DeploymentView, c: Managed) -> tuple[FieldPath, Any]:
    """OTEL_RESOURCE_ATTRIBUTES, appended to, never replaced: whatever else the variable holds
    is kept as it is."""
    ours = (
        f"k8s.namespace.name={view.namespace},k8s.deployment.name={view.name},k8s.pod.name=$({POD_NAME_ENV})"
    )
    existing = str(c.env.get("OTEL_RESOURCE_ATTRIBUTES", {}).get("value") or "")
    kept = [item for item in existing.split(",") if item and not item.startswith(_OUR_ATTRIBUTES)]
    return (*c.base, "f:env", key(name="OTEL_RESOURCE_ATTRIBUTES"), "f:value"), ",".join([*kept, ours])
