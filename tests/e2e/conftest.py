"""The end-to-end fixtures: the ServiceProfile CRD and the real operator, each once per session
against the local control plane; a namespace with the peering CRDs and no peering object."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from tests.e2e.support import (
    MAX_CORRECTIONS,
    RESYNC_SECONDS,
    Operator,
    _ready,
    start_operator,
    stop_operator,
    wait_for,
)
from tests.support.kube import Kube
from tests.support.paths import ROOT


@pytest.fixture(scope="session")
def crd(kube: Kube) -> None:
    kube.run("apply", "--server-side", "-k", str(ROOT / "crds"))
    kube.established("serviceprofiles.readiness.dev")


@pytest.fixture(scope="session")
def operator(kube: Kube, crd: None, testbed: Any) -> Iterator[Operator]:
    op = start_operator(
        kube.kubeconfig,
        testbed.log_dir,
        namespaces="t-*",  # solo operators in other tests own their namespaces
        resync_seconds=str(RESYNC_SECONDS),
        max_corrections=str(MAX_CORRECTIONS),
    )
    try:
        wait_for(lambda: _ready(op), timeout=60, what=f"operator /readyz (log: {op.log})")
        yield op
    finally:
        stop_operator(op)
    sys.stderr.write(f"operator log: {op.log}\n")


@pytest.fixture
def peering_namespace(kube: Kube, crd: None) -> Iterator[str]:
    rendered = kube.run("kustomize", str(ROOT / "deploy")).stdout
    crds = [
        d
        for d in yaml.safe_load_all(rendered)
        if d and d["kind"] == "CustomResourceDefinition" and d["spec"]["group"] == "kopf.dev"
    ]
    assert {c["spec"]["names"]["kind"] for c in crds} == {"KopfPeering", "ClusterKopfPeering"}
    kube.apply(yaml.safe_dump_all(crds), "--server-side")
    kube.established("kopfpeerings.kopf.dev")
    name = f"solo-ha-{uuid.uuid4().hex[:6]}"
    kube.run("create", "namespace", name)  # no KopfPeering: the operator creates its own
    yield name
    kube.run("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def real(testbed: Any) -> None:
    """The test needs real-0: it fails with the testbed's one line saying why the node is missing."""
    reason = testbed.real_node_unavailable
    if reason:
        pytest.fail(reason)
