"""The profile's profiling section: Grafana Alloy / Pyroscope profiling annotations."""

from __future__ import annotations

import posixpath

from readiness.engine.fragments import (
    SectionInput,
    SectionResult,
    annotations_fragment,
    pod_port,
)

# Each profile's endpoint below profiling.path, as Go's net/http/pprof serves them (fgprof: beside it).
PROFILE_ENDPOINTS = {
    "cpu": "profile",
    "memory": "allocs",
    "goroutine": "goroutine",
    "block": "block",
    "mutex": "mutex",
}


def _endpoint(path: str, kind: str) -> str:
    """The profile's endpoint: below ``path``, except fgprof, which Go services mount beside
    pprof (/debug/fgprof next to /debug/pprof), where Alloy also looks for it."""
    base = path.rstrip("/")
    if kind == "fgprof":
        return f"{posixpath.dirname(base).rstrip('/')}/fgprof"
    return f"{base}/{PROFILE_ENDPOINTS[kind]}"


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
    port = ("port_name", declared.port) if isinstance(declared.port, str) else ("port", str(number))
    values: dict[str, str] = {}
    for kind in declared.profiles:
        prefix = f"profiles.grafana.com/{kind}"
        values[f"{prefix}.scrape"] = "true"
        values[f"{prefix}.{port[0]}"] = port[1]
        values[f"{prefix}.path"] = _endpoint(declared.path, kind)
    result.pod.fragments.append(
        annotations_fragment(
            "profiling.annotations",
            values,
            f"profiles.grafana.com/* annotations for {', '.join(declared.profiles)} on port {declared.port}",
        )
    )
    return result
