"""Start-up: settings that are wrong or misspelled, and failures before the first reconcile,
each one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from tests.support.paths import ROOT

from readiness.runtime.settings import unknown_variables


def run(env: dict[str, str], *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """``readiness`` (``run`` unless told otherwise) with nothing of this environment but ``env``."""
    return subprocess.run(
        [sys.executable, "-m", "readiness", *(args or ("run",))],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        env={k: v for k, v in os.environ.items() if k in ("PATH", "PYTHONPATH")} | env,
    )


def test_a_misspelled_setting_names_the_nearest_one() -> None:
    result = run({"READINESS_NAMESPACE": "shop", "READINESS_WORKRES": "8"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "readiness: unknown READINESS_NAMESPACE (did you mean READINESS_NAMESPACES?)",
        "readiness: unknown READINESS_WORKRES (did you mean READINESS_WORKERS?)",
    ]


@pytest.mark.parametrize(
    ("name", "value", "setting"),
    [
        ("READINESS_OPERATOR_SERVICE_HOST", "10.0.0.7", False),  # a Service named readiness-operator
        ("READINESS_OPERATOR_SERVICE_PORT_METRICS", "9090", False),
        ("READINESS_OPERATOR_PORT_9090_TCP_ADDR", "10.0.0.7", False),
        ("READINESS_OPERATOR_PORT", "tcp://10.0.0.7:9090", False),
        ("READINESS_TESTBED_DIR", "/tmp/x", False),
        ("READINESS_METRIC_PORT", "9090", True),  # a typo, not a service link
        ("READINESS_LOGLEVEL", "debug", True),
        ("READINESS_METRICS_PORT", "9090", False),  # the setting itself
    ],
)
def test_service_links_are_not_mistaken_for_settings(name: str, value: str, setting: bool) -> None:
    assert (name in unknown_variables({name: value})) is setting


def test_no_cluster_credentials_is_one_line(tmp_path: Path) -> None:
    result = run({"KUBECONFIG": str(tmp_path / "missing"), "HOME": str(tmp_path)})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "readiness: no cluster credentials: not running in a pod and no kubeconfig "
        f"({tmp_path / 'missing'}); set KUBECONFIG"
    ]


def test_a_busy_port_is_one_line(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run({"KUBECONFIG": str(kubeconfig), "READINESS_HEALTH_PORT": str(port)})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"readiness: cannot listen on port {port} (READINESS_HEALTH_PORT): address already in use"
    )
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_shell_completion_as_the_readme_shows_it(shell: str) -> None:
    result = run({"_READINESS_COMPLETE": f"{shell}_source"}, "--help")
    assert result.returncode == 0, result.stderr
    assert "_READINESS_COMPLETE" in result.stdout
    assert f"{shell}_source" in (ROOT / "docs" / "operations.md").read_text(), "documented"
