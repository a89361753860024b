"""Shared fixtures: the local control plane (once per session) and a namespace per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# The helpers' own asserts report their values as a test's do.
pytest.register_assert_rewrite(
    "tests.support", "tests.e2e.support", "tests.e2e.realnode", "tests.e2e.consumers"
)

from tests.support.kube import Kube  # noqa: E402 - after the rewrite hook
from tests.support.paths import ROOT  # noqa: E402


@pytest.fixture(scope="session")
def testbed() -> Iterator[Any]:
    from readiness_testbed import Testbed

    bed = Testbed(Path(os.environ.get("READINESS_TESTBED_DIR", ROOT / ".testbed")))
    started = bed.up()
    yield bed
    if started:
        bed.down()


@pytest.fixture(scope="session")
def kube(testbed: Any) -> Kube:
    return Kube(kubectl=testbed.kubectl, kubeconfig=testbed.kubeconfig)


@pytest.fixture
def namespace(kube: Kube, request: pytest.FixtureRequest) -> Iterator[str]:
    name = f"t-{request.node.name[:40].lower().replace('_', '-').strip('-')}-{uuid.uuid4().hex[:5]}"
    name = "".join(ch for ch in name if ch.isalnum() or ch == "-")
    kube.run("create", "namespace", name)
    yield name
    kube.run("delete", "namespace", name, "--wait=false", check=False)
