"""The real operator, started once per session against the local control plane."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from tests.conftest import ROOT, Kube

T = TypeVar("T")
RESYNC_SECONDS = 5
MAX_CORRECTIONS = 3


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Operator:
    def __init__(
        self, process: subprocess.Popen[bytes], log: Path, metrics_port: int, health_port: int
    ) -> None:
        self.process = process
        self.log = log
        self.metrics_port = metrics_port
        self.health_port = health_port

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def wait_for(check: Callable[[], T | None], timeout: float = 60.0, what: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


@pytest.fixture(scope="session")
def crd(kube: Kube) -> None:
    kube.run("apply", "--server-side", "-k", str(ROOT / "crds"))
    kube.run("wait", "--for=condition=Established", "crd/serviceprofiles.readiness.dev", "--timeout=60s")


@pytest.fixture(scope="session")
def operator(kube: Kube, crd: None, testbed: Any) -> Iterator[Operator]:
    log = Path(testbed.log_dir) / f"operator-{int(time.time())}.log"
    metrics_port, health_port = _free_port(), _free_port()
    env = {
        **os.environ,
        "KUBECONFIG": str(kube.kubeconfig),
        "READINESS_LOG_FORMAT": "json",
        "READINESS_LOG_LEVEL": "info",
        "READINESS_NAMESPACES": "t-*",  # solo operators in other tests own their namespaces
        "READINESS_RESYNC_SECONDS": str(RESYNC_SECONDS),
        "READINESS_MAX_CORRECTIONS": str(MAX_CORRECTIONS),
        "READINESS_METRICS_PORT": str(metrics_port),
        "READINESS_HEALTH_PORT": str(health_port),
    }
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "readiness", "run"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    op = Operator(process, log, metrics_port, health_port)
    try:
        wait_for(lambda: _ready(op), timeout=60, what=f"operator /readyz (log: {log})")
        yield op
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
    sys.stderr.write(f"operator log: {log}\n")


def _ready(op: Operator) -> bool:
    import urllib.request

    if op.process.poll() is not None:
        raise AssertionError(f"operator exited with {op.process.returncode}:\n{op.log_text()[-3000:]}")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{op.health_port}/readyz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False
