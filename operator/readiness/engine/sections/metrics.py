"""The profile's metrics section: Prometheus scrape annotations."""

from __future__ import annotations

from readiness.engine.fragments import (
    SectionInput,
    SectionResult,
    annotations_fragment,
    pod_port,
)


def metrics(ctx: SectionInput) -> SectionResult:
    """Prometheus scrape annotations on the pod template, for a port of the first managed
    container that declares it; no such port is a problem."""
    result = SectionResult.empty(ctx)
    declared = ctx.spec.metrics
    if declared is None:
        return result
    number = pod_port(ctx, declared.port, "metrics", result)
    if number is None:
        return result
    values = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(number),
        "prometheus.io/path": declared.path,
        "prometheus.io/scheme": declared.scheme,
    }
    result.pod.fragments.append(
        annotations_fragment(
            "metrics.annotations",
            values,
            f"prometheus.io/* scrape annotations for port {number}{declared.path}",
        )
    )
    return result
