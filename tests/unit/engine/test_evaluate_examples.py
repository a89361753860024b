"""The examples: apply what the engine asks, and there is nothing left to write."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from tests.support.apiserver import api_defaults, server_side_apply
from tests.support.engine_table import KUBECTL, checks, env, run, with_creator
from tests.support.paths import ROOT

from readiness.engine import matches
from readiness.models import ServiceProfileSpec

# ---- The examples, created by kubectl, converge in one write ----


def example_pairs() -> list[Any]:
    profiles = [d for d in yaml.safe_load_all((ROOT / "examples" / "20-profiles.yaml").read_text()) if d]
    manifests = [d for d in yaml.safe_load_all((ROOT / "examples" / "10-deployments.yaml").read_text()) if d]
    pairs = [
        pytest.param(p, d, id=f"{p['metadata']['name']}/{d['metadata']['name']}")
        for p in profiles
        for d in manifests
        if matches(ServiceProfileSpec.model_validate(p["spec"]).selector, d["metadata"]["labels"])
    ]
    assert len(pairs) == 3
    return pairs


def created(manifest: dict[str, Any]) -> dict[str, Any]:
    """A manifest as `kubectl apply` creates it: defaulted, owned by kubectl-client-side-apply."""
    body = api_defaults(copy.deepcopy(manifest))
    body["metadata"] |= {"uid": "uid", "generation": 1, "resourceVersion": "1"}
    return with_creator(body, KUBECTL)


@pytest.mark.parametrize(("profile_doc", "manifest"), example_pairs())
def test_examples_converge_in_one_write(profile_doc: dict[str, Any], manifest: dict[str, Any]) -> None:
    spec = ServiceProfileSpec.model_validate(profile_doc["spec"])
    body = created(manifest)
    first = run(spec, body)
    assert first.violations
    assert not first.problems
    assert first.apply is not None
    assert first.conflicts == (), "the examples are written to converge"
    after = server_side_apply(body, first.apply, force=first.force)
    assert after["metadata"]["generation"] == 2
    second = run(spec, after)
    assert second.apply is None, "zero needless writes"
    assert (second.violations, second.conflicts, second.problems) == ((), (), ())
    assert second.compliant
    assert run(spec, after) == second


def test_the_checkout_example_in_detail() -> None:
    profiles = {
        d["metadata"]["name"]: d
        for d in yaml.safe_load_all((ROOT / "examples" / "20-profiles.yaml").read_text())
        if d
    }
    manifests = {
        d["metadata"]["name"]: d
        for d in yaml.safe_load_all((ROOT / "examples" / "10-deployments.yaml").read_text())
        if d
    }
    spec = ServiceProfileSpec.model_validate(profiles["checkout"]["spec"])
    body = created(manifests["checkout-api"])
    ev = run(spec, body)
    assert ev.force, "conflictPolicy Force takes kubectl's terminationGracePeriodSeconds: 0"
    assert set(checks(ev)) == {
        "probes.liveness.missing",
        "probes.readiness.missing",
        "probes.startup.missing",
        "resources.requests.cpu.missing",
        "resources.requests.memory.missing",
        "resources.limits.memory.missing",
        "shutdown.prestop.missing",
        "shutdown.grace.too-short",
        "metrics.annotations.missing",
        "tracing.env.mismatch",
        "runtime.go.env.missing",
        "logging.env.missing",
    }
    assert ev.apply is not None
    template = ev.apply["spec"]["template"]
    assert template["spec"]["terminationGracePeriodSeconds"] == 30
    assert template["metadata"]["annotations"]["prometheus.io/port"] == "9090"
    (c,) = template["spec"]["containers"]
    values = env(c)
    assert values["OTEL_SERVICE_NAME"] == "checkout", "from the app.kubernetes.io/name label"
    assert values["OTEL_RESOURCE_ATTRIBUTES"] == (
        "team=checkout,k8s.namespace.name=shop,k8s.deployment.name=checkout-api,k8s.pod.name=$(OTEL_K8S_POD_NAME)"
    )
    assert values["GOMEMLIMIT"] == str(int(256 * 2**20 * 0.9))
    assert values["GOMAXPROCS"] == "1", "no CPU limit: the 100m request, rounded up"
    assert (values["LOG_FORMAT"], values["LOG_LEVEL"]) == ("json", "info")
    assert set(c) == {
        "name",
        "env",
        "livenessProbe",
        "readinessProbe",
        "startupProbe",
        "resources",
        "lifecycle",
    }
