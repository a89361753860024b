"""What the profile writes, consumed by the tools it is for, on the real node: the testbed's
Prometheus scrapes the sample service because of the profile's ``metrics`` annotations (and not
before), and reads the GOMEMLIMIT the profile derived off the Go runtime itself; the testbed's
OpenTelemetry Collector receives the service's spans because of the profile's ``tracing`` env,
with the resource attributes and the sampler the profile set."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.e2e.consumers import Prometheus, spans_of
from tests.e2e.realnode import app, get, one_pod, own_namespace, own_operator, rolled_out, service, started_at
from tests.e2e.support import (
    Operator,
    simple_profile,
    target_in,
    wait_for,
)
from tests.support.kube import Kube

from readiness_testbed.observers import SCRAPE_INTERVAL_SECONDS

pytestmark = pytest.mark.e2e
RESOURCES = {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "256Mi"}}
# Prometheus' discovery manager passes new targets on at most every 5 s, and a new target's first
# scrape comes within one interval: a pod is up within these two, counted from its start.
DISCOVERY_SECONDS = 5


@pytest.fixture
def ns(kube: Kube, crd: None, real: None) -> Iterator[str]:
    with own_namespace(kube, "solo-seen") as name:
        yield name


@pytest.fixture
def op(kube: Kube, ns: str, testbed: Any) -> Iterator[Operator]:
    with own_operator(kube, testbed.log_dir, ns, f"seen-{ns}") as started:
        yield started


@pytest.fixture
def urls(testbed: Any) -> dict[str, str]:
    found: dict[str, str] = testbed.urls()
    assert {"prometheus", "otlp_grpc", "otlp_http", "traces_file", "containerd"} <= set(found), found
    return found


def profiled(kube: Kube, ns: str, **spec: Any) -> dict[str, Any]:
    """Apply the profile, wait for Compliant and the rollout; the Deployment's one new pod."""
    kube.apply(yaml.safe_dump(simple_profile(ns, "sample", "sample", **spec)))
    wait_for(lambda: target_in(kube, ns, "sample", "sample", "Compliant"), timeout=90, what="Compliant")
    rolled_out(kube, ns, "sample")
    return one_pod(kube, ns, "sample")


def test_prometheus_scrapes_the_service_once_the_profile_annotates_it(
    kube: Kube, ns: str, op: Operator, urls: dict[str, str]
) -> None:
    prometheus = Prometheus(urls["prometheus"])
    kube.apply(json.dumps(service(ns)))
    rolled_out(kube, ns, "sample")
    bare = one_pod(kube, ns, "sample")

    def dropped() -> bool:
        return any(
            t["discoveredLabels"].get("__meta_kubernetes_pod_name") == bare["metadata"]["name"]
            for t in prometheus.targets()["droppedTargets"]
        )

    wait_for(dropped, timeout=30, what="Prometheus discovered the unannotated pod")
    time.sleep(2 * SCRAPE_INTERVAL_SECONDS)
    assert not [t for t in prometheus.targets()["activeTargets"] if t["labels"].get("namespace") == ns]
    assert prometheus.query(f'up{{namespace="{ns}"}}') == [], "no annotation, no scrape"

    pod = profiled(kube, ns, metrics={"port": "metrics"}, resources=RESOURCES, runtime={"go": {}})
    name = pod["metadata"]["name"]
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "9090"
    started = started_at(pod)
    up = f'up{{namespace="{ns}", pod="{name}"}}'
    # Polled faster than it scrapes: the first sample seen is the first sample taken.
    (sample,) = wait_for(
        lambda: prometheus.query(f"timestamp({up} == 1)"), timeout=60, what=f"{name} up in Prometheus"
    )
    took = float(sample["value"][1]) - started
    sys.stderr.write(f"\nscrape-to-up: first up == 1 sample {took:.1f}s after the container started\n")
    # Timestamps of two clocks on one machine, at a 0.5 s grid: a second of slack.
    assert took <= DISCOVERY_SECONDS + 2 * SCRAPE_INTERVAL_SECONDS + 1, f"up {took:.1f}s after start"

    env = {e["name"]: e.get("value") for e in app(pod)["env"]}
    (series,) = prometheus.query(f'go_gc_gomemlimit_bytes{{namespace="{ns}", pod="{name}"}}')
    assert float(series["value"][1]) == int(env["GOMEMLIMIT"]) == int(0.9 * 256 * 2**20)
    assert series["metric"]["app_kubernetes_io_name"] == "sample", "the pod's labels became labels"


def ratio_sampled(trace_id: str, ratio: float) -> bool:
    """The OpenTelemetry ratio sampler's rule (the Go SDK's TraceIDRatioBased): a trace is
    sampled when the low 63 bits of its ID's last 8 bytes fall below ratio * 2^63."""
    return (int(trace_id[16:], 16) >> 1) < int(ratio * (1 << 63))


def test_the_services_spans_reach_the_collector_with_the_profiles_resource_and_sampler(
    kube: Kube, ns: str, op: Operator, urls: dict[str, str]
) -> None:
    traces = Path(urls["traces_file"])
    ratio = 0.25
    kube.apply(json.dumps(service(ns)))
    tracing = {
        "endpoint": urls["otlp_grpc"],
        "protocol": "grpc",
        "sampler": "traceidratio",
        "samplerArg": str(ratio),
    }
    pod = profiled(kube, ns, tracing=tracing)
    name, ip = pod["metadata"]["name"], pod["status"]["podIP"]

    # Enough for the ratio's check below, and no more: the collector's file is read whole.
    requests, began = 0, time.monotonic()
    while requests < 2000 and time.monotonic() - began < 10:
        assert get(f"http://{ip}:8080/")[0] == 200
        requests += 1
    sent_for = time.monotonic() - began
    # The SDK's batch processor exports every 5 s.
    spans = wait_for(
        lambda: (
            found if len(found := spans_of(traces, k8s_namespace_name=ns)) >= 0.5 * ratio * requests else None
        ),
        timeout=30,
        what="the service's spans in the collector's file",
    )
    time.sleep(6)  # the last batch
    spans = spans_of(traces, k8s_namespace_name=ns)
    for span in spans:
        assert span["resource"]["service.name"] == "sample", span["resource"]
        assert span["resource"]["k8s.deployment.name"] == "sample"
        assert span["resource"]["k8s.pod.name"] == name, "the pod's own name, from the downward API"
        assert ratio_sampled(span["trace_id"], ratio), f"{span['trace_id']} is outside the ratio"
    served = [s for s in spans if s["name"] == "GET /"]
    # Binomial: mean ratio * n, at n >= 200 five standard deviations stay inside 0.5x..1.5x.
    assert requests >= 200, f"only {requests} requests in {sent_for:.0f}s"
    assert 0.5 * ratio * requests <= len(served) <= 1.5 * ratio * requests, (len(served), requests)
    sys.stderr.write(
        f"\nspans: {requests} requests in {sent_for:.1f}s, {len(served)} spans received "
        f"({len(served) / sent_for:.0f}/s at ratio {ratio})\n"
    )
