"""The testbed collector's config and its span file read back (readiness_testbed.collector).

tests/data/otlp-spans.jsonl was written by the testbed's collector (testbed/otelcol, v0.161.0)
from the config below: line 1 is a batch of two export requests over OTLP/HTTP from the Python
SDK (a "reconcile" server span and its "apply" client child, with an error status), line 2 one
request over OTLP/gRPC from the Go SDK.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from tests.support.paths import ROOT

from readiness_testbed.collector import any_value, collector_config, read_spans

RECORDED = ROOT / "tests" / "data" / "otlp-spans.jsonl"


def test_recorded_spans_are_flattened_with_their_resource() -> None:
    spans = {s["name"]: s for s in read_spans(RECORDED)}
    assert sorted(spans) == ["apply", "grpc-span", "reconcile"]

    reconcile, apply = spans["reconcile"], spans["apply"]
    assert reconcile["trace_id"] == apply["trace_id"]
    assert len(reconcile["trace_id"]) == 32
    assert apply["parent_span_id"] == reconcile["span_id"]
    assert len(reconcile["span_id"]) == 16
    assert reconcile["parent_span_id"] == ""
    assert (reconcile["kind"], apply["kind"]) == (2, 3)  # server, client
    assert (reconcile["status_code"], apply["status_code"]) == (0, 2)  # unset, error
    assert reconcile["attributes"] == {
        "k8s.deployment.name": "web",
        "readiness.attempt": 2,  # intValue is a JSON string
        "readiness.ready": False,
        "readiness.ratio": 0.75,
    }
    assert apply["attributes"] == {
        "http.response.status_code": 409,
        "readiness.fields": ["spec.replicas", "spec.template"],
    }
    assert reconcile["resource"]["service.name"] == "readiness-operator"
    assert reconcile["resource"]["host.ip.list"] == ["10.88.0.1", "127.0.0.1"]
    assert reconcile["scope"] == "readiness.control"
    assert reconcile["end_time_unix_nano"] > reconcile["start_time_unix_nano"] > 0

    grpc = spans["grpc-span"]
    assert grpc["resource"] == {"k8s.namespace.name": "demo", "replica": 3, "service.name": "go-grpc-client"}
    assert grpc["attributes"] == {"grpc": True, "pi": 3.25, "list": ["x", "y"], "nums": [1, 2]}


def test_a_line_still_being_written_is_left_for_the_next_read(tmp_path: Path) -> None:
    recorded = RECORDED.read_text()
    first, second = recorded.splitlines()
    traces = tmp_path / "traces.jsonl"
    assert read_spans(traces) == [], "no file yet: no spans"

    traces.write_text(recorded + second[: len(second) // 2])
    assert [s["name"] for s in read_spans(traces)] == ["apply", "reconcile", "grpc-span"]

    # The request is written before its newline: whole JSON without it is not yet a line.
    traces.write_text(first + "\n" + second)
    assert [s["name"] for s in read_spans(traces)] == ["apply", "reconcile"]


def test_any_value_decodes_every_otlp_json_kind() -> None:
    assert any_value({"kvlistValue": {"values": [{"key": "a", "value": {"intValue": "-7"}}]}}) == {"a": -7}
    assert any_value({"bytesValue": "AAE="}) == b"\x00\x01"
    assert any_value({"doubleValue": "NaN"}) != any_value({"doubleValue": "NaN"})
    assert any_value({"arrayValue": {}}) == []
    assert any_value({}) is None


def test_the_config_listens_on_both_protocols_and_writes_every_span_to_the_file(tmp_path: Path) -> None:
    traces = tmp_path / "traces.jsonl"
    config = yaml.safe_load(collector_config(4317, 4318, traces))
    protocols = config["receivers"]["otlp"]["protocols"]
    assert protocols == {"grpc": {"endpoint": "0.0.0.0:4317"}, "http": {"endpoint": "0.0.0.0:4318"}}
    assert config["exporters"]["file"]["path"] == str(traces)
    assert "rotation" not in config["exporters"]["file"], "rotation off: one plain file"
    assert config["service"]["telemetry"]["metrics"] == {"level": "none"}, "no server on :8888"
    assert config["service"]["pipelines"] == {
        "traces": {"receivers": ["otlp"], "processors": ["batch"], "exporters": ["file"]}
    }

    loopback6 = yaml.safe_load(collector_config(1, 2, Path("/t/$HOME/x"), host="::1"))
    assert loopback6["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"] == "[::1]:1"
    assert loopback6["exporters"]["file"]["path"] == "/t/$$HOME/x", "no ${...} expansion of the path"
