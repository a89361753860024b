"""Shared fixtures: the local control plane (once per session) and a namespace per test."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Kube:
    """kubectl against the testbed, as a user would run it."""

    kubectl: Path
    kubeconfig: Path

    def run(
        self, *args: str, input_text: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.kubectl), f"--kubeconfig={self.kubeconfig}", *args],
            input=input_text,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json").stdout)

    def apply(self, manifest: str, *extra: str) -> str:
        return self.run("apply", "-f", "-", *extra, input_text=manifest).stdout


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
