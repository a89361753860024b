"""The testbed's OpenTelemetry Collector: its config, and the spans it wrote, read back.

The collector (``testbed/otelcol/``, built by ``binaries._otel_collector``) receives OTLP over gRPC
and HTTP and its file exporter writes every export request it passes on as one line of OTLP JSON
(an ``ExportTraceServiceRequest``: ``{"resourceSpans": [...]}``), so the tests can see which spans
the operator and the sample service sent, with their resource attributes.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, TypedDict

# How often the file exporter flushes its write buffer: the bound on how long a span that reached
# the exporter waits before a reader of the file sees it (the exporter's default is 1 s).
FLUSH_INTERVAL = "100ms"
# How long the batch processor holds spans before it passes them on (its default is 200 ms).
BATCH_TIMEOUT = "100ms"


def _endpoint(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _quoted(value: str) -> str:
    # A JSON string is a YAML double-quoted scalar; "$$" keeps the collector from expanding
    # ${...} in a path (its config resolver expands environment references in every value).
    return json.dumps(value.replace("$", "$$"))


def collector_config(grpc_port: int, http_port: int, traces_file: Path, host: str = "0.0.0.0") -> str:  # noqa: S104
    """The collector's config (YAML): OTLP in on ``host`` (gRPC on ``grpc_port``, HTTP on
    ``http_port``: the OTLP HTTP exporters post to ``/v1/traces`` there), every span out to
    ``traces_file``, one JSON line per export, readable with ``read_spans``.

    ``host`` is 0.0.0.0 by default so that pods on the node's bridge reach the collector at the
    node's address as well as the host at 127.0.0.1.
    """
    grpc = _quoted(_endpoint(host, grpc_port))
    http = _quoted(_endpoint(host, http_port))
    return f"""\
# The testbed's OpenTelemetry Collector (readiness_testbed.collector.collector_config).
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: {grpc}
      http:
        endpoint: {http}
processors:
  batch:
    # Spans are written at most this long after they arrive (the default is 200ms); the
    # testbed's traffic is small, so batches stay far below send_batch_size (8192).
    timeout: {BATCH_TIMEOUT}
exporters:
  file:
    path: {_quoted(str(traces_file))}
    # One OTLP JSON ExportTraceServiceRequest per line (the exporter's default, named for the reader).
    format: json
    # Without `rotation` the file is one plain file, written through a buffer flushed this
    # often (default 1s): a test polling the file sees its spans about this much sooner.
    flush_interval: {FLUSH_INTERVAL}
    # Keep what a previous run of the collector wrote (the default truncates the file when
    # the collector starts): a restarted collector must not lose the spans already written.
    append: true
service:
  telemetry:
    # The collector's own metrics are off: otherwise it serves them on :8888, which may be taken
    # (several testbeds, Prometheus' neighbours) and which nothing here scrapes.
    metrics:
      level: none
    logs:
      level: info
  pipelines:
    traces:
      receivers: [otlp]
      # No memory_limiter (it is built in): it would refuse spans under memory pressure, and a
      # test that lost spans that way would fail for the wrong reason; the traffic is small.
      processors: [batch]
      exporters: [file]
"""


class Span(TypedDict):
    """One span the collector wrote, flattened: its resource's attributes beside its own."""

    name: str
    trace_id: str  # 32 hex digits, as W3C traceparent spells it
    span_id: str  # 16 hex digits
    parent_span_id: str  # "" for a root span
    kind: int  # OTLP SpanKind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer
    start_time_unix_nano: int
    end_time_unix_nano: int
    status_code: int  # 0 unset, 1 ok, 2 error
    attributes: dict[str, Any]
    resource: dict[str, Any]
    scope: str  # the instrumentation scope's name


def any_value(value: dict[str, Any]) -> Any:
    """An OTLP JSON AnyValue as the plain value it holds (intValue comes as a string; bytes are
    base64; an empty AnyValue is None)."""
    if "stringValue" in value:
        return str(value["stringValue"])
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "intValue" in value:
        return int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])  # also "NaN", "Infinity"
    if "arrayValue" in value:
        return [any_value(v) for v in value["arrayValue"].get("values", [])]
    if "kvlistValue" in value:
        return attributes(value["kvlistValue"].get("values", []))
    if "bytesValue" in value:
        return base64.b64decode(value["bytesValue"])
    return None


def attributes(key_values: list[dict[str, Any]]) -> dict[str, Any]:
    """OTLP JSON KeyValues (``[{"key": ..., "value": AnyValue}]``) as a plain dict."""
    return {kv["key"]: any_value(kv.get("value", {})) for kv in key_values}


def spans_of_request(request: dict[str, Any]) -> list[Span]:
    """The spans of one ExportTraceServiceRequest in OTLP JSON, flattened."""
    spans: list[Span] = []
    for resource_spans in request.get("resourceSpans", []):
        resource = attributes(resource_spans.get("resource", {}).get("attributes", []))
        for scope_spans in resource_spans.get("scopeSpans", []):
            scope = str(scope_spans.get("scope", {}).get("name", ""))
            for span in scope_spans.get("spans", []):
                spans.append(
                    Span(
                        name=str(span.get("name", "")),
                        trace_id=str(span.get("traceId", "")),
                        span_id=str(span.get("spanId", "")),
                        parent_span_id=str(span.get("parentSpanId", "")),
                        kind=int(span.get("kind", 0)),
                        start_time_unix_nano=int(span.get("startTimeUnixNano", 0)),
                        end_time_unix_nano=int(span.get("endTimeUnixNano", 0)),
                        status_code=int(span.get("status", {}).get("code", 0)),
                        attributes=attributes(span.get("attributes", [])),
                        resource=dict(resource),
                        scope=scope,
                    )
                )
    return spans


def read_spans(traces_file: Path) -> list[Span]:
    """Every span in the collector's file, in the order written; [] while there is no file.

    Only whole lines are read: the exporter writes each request and then its newline, through a
    buffer that may be flushed in between, so text after the last newline is a line still being
    written and is left for the next read.
    """
    try:
        text = traces_file.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    spans: list[Span] = []
    for line in text.split("\n")[:-1]:
        if line.strip():
            spans.extend(spans_of_request(json.loads(line)))
    return spans
