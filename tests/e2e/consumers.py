"""What the testbed's Prometheus and OpenTelemetry Collector saw: Prometheus' HTTP API, read as a
dashboard or an SRE reads it, and the collector's span file."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from readiness_testbed.collector import Span, read_spans


class Prometheus:
    """The testbed's Prometheus (``Testbed.urls()["prometheus"]``)."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")

    def get(self, path: str, **params: str) -> Any:
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's series, each with ``metric`` (labels) and ``value`` ([time, text])."""
        data = self.get("/api/v1/query", query=expr)
        result = data["result"]
        return [result] if data["resultType"] == "scalar" else list(result)

    def targets(self) -> dict[str, list[dict[str, Any]]]:
        data: dict[str, list[dict[str, Any]]] = self.get("/api/v1/targets", state="any")
        return data


def spans_of(traces_file: Path, **resource: str) -> list[Span]:
    """The collector's spans whose resource attributes include every ``resource`` item
    (keys with dots written as ``k8s_namespace_name``)."""
    wanted = {k.replace("_", "."): v for k, v in resource.items()}
    return [
        span
        for span in read_spans(traces_file)
        if all(span["resource"].get(k) == v for k, v in wanted.items())
    ]
