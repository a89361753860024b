"""The profile's sections, one module each, in the order their violations are reported."""

from __future__ import annotations

from readiness.engine.fragments import Section
from readiness.engine.sections.findings import FINDINGS, images, secrets
from readiness.engine.sections.logs import logging
from readiness.engine.sections.metrics import metrics
from readiness.engine.sections.probes import probes
from readiness.engine.sections.profiling import profiling
from readiness.engine.sections.resources import resources
from readiness.engine.sections.runtime import runtime
from readiness.engine.sections.security import security
from readiness.engine.sections.shutdown import shutdown
from readiness.engine.sections.tracing import tracing

SECTIONS: tuple[Section, ...] = (
    probes,
    resources,
    shutdown,
    metrics,
    tracing,
    runtime,
    logging,
    security,
    images,
    secrets,
    profiling,
)

__all__ = ["FINDINGS", "SECTIONS"]
