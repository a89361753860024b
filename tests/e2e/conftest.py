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


def start_operator(
    kubeconfig: Path,
    log_dir: Path,
    name: str = "operator",
    environ: dict[str, str] | None = None,
    **settings: str,
) -> Operator:
    """``readiness run`` as a user starts it: KUBECONFIG, free ports for /metrics and /readyz,
    JSON logs to a file in ``log_dir``, READINESS_* settings given as keywords
    (``namespaces="t-*"`` becomes READINESS_NAMESPACES=t-*) and any other ``environ``."""
    log = Path(log_dir) / f"{name}-{time.time_ns()}.log"
    metrics_port, health_port = _free_port(), _free_port()
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "READINESS_LOG_FORMAT": "json",
        "READINESS_LOG_LEVEL": "info",
        "READINESS_METRICS_PORT": str(metrics_port),
        "READINESS_HEALTH_PORT": str(health_port),
        **{f"READINESS_{key.upper()}": value for key, value in settings.items()},
        **(environ or {}),
    }
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "readiness", "run"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    return Operator(process, log, metrics_port, health_port)


def stop_operator(op: Operator) -> None:
    op.process.terminate()
    try:
        op.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        op.process.kill()
        op.process.wait(timeout=10)


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


def probe(op: Operator, path: str) -> tuple[int, str]:
    """The status code and body of the operator's ``path`` (/readyz, /healthz); (0, error)
    when nothing answers."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{op.health_port}{path}", timeout=3) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read().decode()
    except OSError as error:
        return 0, str(error)


def readyz(op: Operator) -> tuple[int, str]:
    return probe(op, "/readyz")


def _ready(op: Operator) -> bool:
    import urllib.request

    if op.process.poll() is not None:
        raise AssertionError(f"operator exited with {op.process.returncode}:\n{op.log_text()[-3000:]}")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{op.health_port}/readyz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False
