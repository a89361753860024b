"""The profile's profiling section: Grafana Alloy / Pyroscope profiling annotations."""

from __future__ import annotations

from readiness.engine.fields import TEMPLATE
from readiness.engine.fragments import (
    Fragment,
    SectionInput,
    SectionResult,
    pod_port,
)

# Each profile's pprof endpoint below profiling.path, as Go's net/http/pprof (and fgprof) serve them.
PROFILE_ENDPOINTS = {
    "cpu": "profile",
    "memory": "allocs",
    "goroutine": "goroutine",
    "block": "block",
    "mutex": "mutex",
    "fgprof": "fgprof",
}


def profiling(ctx: SectionInput) -> SectionResult:
    """Grafana Alloy / Pyroscope annotations on the pod template (profiles.grafana.com/<profile>.*)
    for a port of a managed container; no such port is a problem."""
    result = SectionResult.empty(ctx)
    declared = ctx.spec.profiling
    if declared is None:
        return result
    number = pod_port(ctx, declared.port, "profiling", result)
    if number is None:
        return result
    annotations = (*TEMPLATE, "f:metadata", "f:annotations")
    port = ("port_name", declared.port) if isinstance(declared.port, str) else ("port", str(number))
    values: dict[str, str] = {}
    for kind in declared.profiles:
        prefix = f"profiles.grafana.com/{kind}"
        values[f"{prefix}.scrape"] = "true"
        values[f"{prefix}.{port[0]}"] = port[1]
        values[f"{prefix}.path"] = f"{declared.path.rstrip('/')}/{PROFILE_ENDPOINTS[kind]}"
    result.pod.fragments.append(
        Fragment(
            check="profiling.annotations",
            field="spec.template.metadata.annotations",
            leaves=tuple(((*annotations, f"f:{k}"), v) for k, v in values.items()),
            wants=f"profiles.grafana.com/* annotations for {', '.join(declared.profiles)} on port {declared.port}",
        )
    )
    return result
