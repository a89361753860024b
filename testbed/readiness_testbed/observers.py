"""What consumes the operator's output, run on the host beside the control plane: a Prometheus
that discovers and scrapes pods the way most clusters do (``prometheus.io/*`` annotations, through
``kubernetes_sd_configs``) and evaluates the project's alert rules, and an OpenTelemetry Collector
that receives OTLP (gRPC and HTTP) and writes every span to a file.

Both are built from their Go modules (``binaries.observer_components``). Prometheus talks to the
apiserver with the testbed's admin kubeconfig and reaches pods on their IPs (real-0's bridge is
on the host); the collector listens on every address, so pods reach it at the node's address.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from .binaries import TESTBED_DIR, ensure_observer_binaries
from .collector import collector_config
from .node import NODE_NAME, _alive

PROGRAMS = ("prometheus", "otelcol")
SCRAPE_INTERVAL_SECONDS = 5  # short, so that tests see a target come up in seconds
RULES = TESTBED_DIR.parent / "deploy" / "monitoring" / "prometheusrule.yaml"


def pod_scrape_config(job: str = "kubernetes-pods") -> dict[str, Any]:
    """The scrape job a platform team uses for annotated pods (the README shows it as YAML):
    ``prometheus.io/scrape: "true"`` keeps a pod, ``prometheus.io/scheme``, ``/path`` and
    ``/port`` say where its metrics are; the pod's labels, namespace and name become labels."""
    meta = "__meta_kubernetes_pod_"
    return {
        "job_name": job,
        "kubernetes_sd_configs": [{"role": "pod"}],
        "relabel_configs": [
            {"source_labels": [f"{meta}annotation_prometheus_io_scrape"], "action": "keep", "regex": "true"},
            {
                "source_labels": [f"{meta}annotation_prometheus_io_scheme"],
                "action": "replace",
                "regex": "(https?)",
                "target_label": "__scheme__",
            },
            {
                "source_labels": [f"{meta}annotation_prometheus_io_path"],
                "action": "replace",
                "regex": "(.+)",
                "target_label": "__metrics_path__",
            },
            {
                "source_labels": ["__address__", f"{meta}annotation_prometheus_io_port"],
                "action": "replace",
                "regex": r"([^:]+)(?::\d+)?;(\d+)",
                "replacement": "$1:$2",
                "target_label": "__address__",
            },
            # Pods that have not started or have finished serve nothing.
            {"source_labels": [f"{meta}phase"], "action": "drop", "regex": "Pending|Succeeded|Failed"},
            {"action": "labelmap", "regex": f"{meta}label_(.+)"},
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": [f"{meta}name"], "target_label": "pod"},
        ],
    }


def prometheus_config(kubeconfig: Path, rule_file: Path) -> dict[str, Any]:
    """The testbed's Prometheus: the pod job above, told to use the testbed's kubeconfig and to
    look at real-0's pods only (kwok's fake pods have addresses nothing answers on)."""
    job = pod_scrape_config()
    job["kubernetes_sd_configs"] = [
        {
            "role": "pod",
            "kubeconfig_file": str(kubeconfig),
            "selectors": [{"role": "pod", "field": f"spec.nodeName={NODE_NAME}"}],
        }
    ]
    interval = f"{SCRAPE_INTERVAL_SECONDS}s"
    return {
        "global": {
            "scrape_interval": interval,
            "scrape_timeout": f"{SCRAPE_INTERVAL_SECONDS - 1}s",
            "evaluation_interval": interval,
        },
        "rule_files": [str(rule_file)],
        "scrape_configs": [job],
    }


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("0.0.0.0", 0))  # noqa: S104 - the collector listens on every address
        return int(sock.getsockname()[1])


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


class Observers:
    """Prometheus and the collector of one testbed: their config, data, ports and pids live in
    ``<state dir>/observers/``."""

    def __init__(
        self,
        state_dir: Path,
        kubeconfig: Path,
        log_dir: Path,
        spawn: Callable[[str, Sequence[str], dict[str, str] | None], int],
    ) -> None:
        self.dir = state_dir / "observers"
        self.kubeconfig = kubeconfig
        self.log_dir = log_dir
        self._spawn = spawn
        self._state_file = self.dir / "state.json"
        self.traces_file = self.dir / "traces.jsonl"

    def _state(self) -> dict[str, dict[str, int]]:
        try:
            data: dict[str, dict[str, int]] = json.loads(self._state_file.read_text())
        except (OSError, ValueError):
            return {}
        return data

    def _owned(self, pid: int) -> bool:
        try:
            return _alive(pid) and Path(os.readlink(f"/proc/{pid}/exe")).name in PROGRAMS
        except OSError:
            return False

    def running(self) -> bool:
        pids = self._state().get("pids", {})
        return set(pids) == set(PROGRAMS) and all(self._owned(int(p)) for p in pids.values())

    def start(self, timeout: float = 60.0) -> None:
        """Start both (building them when the cache lacks them) unless they run."""
        if self.running():
            return
        self.stop()
        programs = ensure_observer_binaries()
        self.dir.mkdir(parents=True, exist_ok=True)
        ports = {"prometheus": _free_port(), "otlp_grpc": _free_port(), "otlp_http": _free_port()}
        rules = self.dir / "rules.yaml"
        rules.write_text(yaml.safe_dump({"groups": yaml.safe_load(RULES.read_text())["spec"]["groups"]}))
        config = self.dir / "prometheus.yaml"
        config.write_text(yaml.safe_dump(prometheus_config(self.kubeconfig, rules), sort_keys=False))
        collector = self.dir / "otelcol.yaml"
        collector.write_text(collector_config(ports["otlp_grpc"], ports["otlp_http"], self.traces_file))
        self.traces_file.touch()
        pids: dict[str, int] = {}
        state = {"ports": ports, "pids": pids}
        pids["prometheus"] = self._spawn(
            "prometheus",
            [
                str(programs["prometheus"]),
                f"--config.file={config}",
                f"--storage.tsdb.path={self.dir / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
                "--web.enable-lifecycle",  # POST /-/reload after a config change
                "--log.level=warn",
            ],
            None,
        )
        self._state_file.write_text(json.dumps(state))
        pids["otelcol"] = self._spawn("otelcol", [str(programs["otelcol"]), f"--config={collector}"], None)
        self._state_file.write_text(json.dumps(state))
        deadline = time.monotonic() + timeout
        checks: dict[str, Callable[[], bool]] = {
            "prometheus": lambda: _http_ok(f"http://127.0.0.1:{ports['prometheus']}/-/ready"),
            "otelcol": lambda: _listening(ports["otlp_http"]) and _listening(ports["otlp_grpc"]),
        }
        for name, check in checks.items():
            while not check():
                if not _alive(pids[name]) or time.monotonic() > deadline:
                    log = self.log_dir / f"{name}.log"
                    raise RuntimeError(f"{name} did not start; its log: {log}")
                time.sleep(0.2)

    def stop(self) -> None:
        pids = [int(p) for p in self._state().get("pids", {}).values() if self._owned(int(p))]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for pid in pids:
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        self._state_file.unlink(missing_ok=True)
        if self.dir.exists():
            # Throwaway, like etcd's data: a fresh testbed starts with no series and no spans.
            shutil.rmtree(self.dir / "prometheus-data", ignore_errors=True)
            self.traces_file.unlink(missing_ok=True)

    def urls(self, host: str) -> dict[str, str]:
        """Where they are: Prometheus for the host, OTLP at ``host`` (the node's address, which
        pods and the host both reach), and the collector's output file."""
        ports = self._state().get("ports", {})
        if not ports:
            return {}
        return {
            "prometheus": f"http://127.0.0.1:{ports['prometheus']}",
            "otlp_grpc": f"http://{host}:{ports['otlp_grpc']}",
            "otlp_http": f"http://{host}:{ports['otlp_http']}",
            "traces_file": str(self.traces_file),
        }


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0
