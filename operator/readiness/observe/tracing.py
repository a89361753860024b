"""Optional OpenTelemetry tracing of the operator itself: one span per reconcile, a child per API call.

Without READINESS_TRACING_ENDPOINT the OpenTelemetry API's no-op tracer is used, so the spans
cost next to nothing and no SDK is needed.
"""

from __future__ import annotations

from opentelemetry import trace

from readiness import __version__

INSTRUMENTATION = "readiness-operator"


def tracer() -> trace.Tracer:
    return trace.get_tracer(INSTRUMENTATION, __version__)


def configure_tracing(endpoint: str) -> None:
    """Export spans over OTLP/HTTP to ``endpoint`` (e.g. http://otel-collector:4318)."""
    if not endpoint:
        return
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(
        resource=Resource.create({"service.name": INSTRUMENTATION, "service.version": __version__})
    )
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces"))
    )
    trace.set_tracer_provider(provider)


def shutdown_tracing() -> None:
    provider = trace.get_tracer_provider()
    shutdown = getattr(provider, "shutdown", None)
    if callable(shutdown):
        shutdown()
