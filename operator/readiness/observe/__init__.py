"""The operator's own telemetry: Prometheus metrics, OpenTelemetry traces and structured logs."""
