"""Start and stop a real Kubernetes control plane on 127.0.0.1, with kwok faking the nodes
and one real node (``real-0``, see ``node.py``) where the machine can run one.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok run as background
processes whose pids, ports and logs live in one state directory. ``up()`` is idempotent:
a healthy testbed is reused; ``down()`` stops every process it started.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from .binaries import ensure_binaries
from .node import DISABLE_ENV, NODE_IP, NODE_NAME, NodeUnavailable, RealNode
from .observers import Observers
from .operator_image import IMAGE as OPERATOR_IMAGE
from .operator_image import ensure_operator_image
from .pki import KeyPair, Pki

# The order matters: each component needs the ones before it.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.244.0.0/16"


class TestbedError(RuntimeError):
    """The control plane could not be started; the message carries the failing log's tail."""


@dataclass(frozen=True)
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    kwok: int


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _gone(pid: int) -> bool:
    """True when ``pid`` has exited (a zombie waiting for its parent counts as exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class Testbed:
    """A local control plane rooted at ``state_dir`` (kubeconfig, pki, logs, data, bin)."""

    def __init__(self, state_dir: Path, nodes: int = 3, real_node: bool = True) -> None:
        self.state_dir = state_dir.resolve()
        self.nodes = nodes
        self.kubeconfig = self.state_dir / "kubeconfig"
        self.bin_dir = self.state_dir / "bin"
        self.kubectl = self.bin_dir / "kubectl"
        self.log_dir = self.state_dir / "logs"
        self._state_file = self.state_dir / "state.json"
        self._pki = Pki(self.state_dir / "pki")
        self.want_real_node = real_node
        self.node = RealNode(self.state_dir, self._pki, self.log_dir, self.run_kubectl)
        self._node_unavailable_file = self.state_dir / "real-node-unavailable"
        self.observers = Observers(self.state_dir, self.kubeconfig, self.log_dir, self._spawn)

    @property
    def real_node_unavailable(self) -> str | None:
        """Why ``real-0`` is not running (one line), as the last ``up()`` found; None when it runs.
        Tests that need the real node fail with this line."""
        if self.node.is_running():
            return None
        try:
            return self._node_unavailable_file.read_text().strip() or "the real node is not running"
        except OSError:
            return "the real node is not running (the testbed was not started by up())"

    def real_node_leftovers(self) -> list[str]:
        """What the real node left on this machine (processes, mounts, interfaces...); [] when clean."""
        return self.node.leftovers()

    # ---- public API -----------------------------------------------------------------------

    def up(self, timeout: float = 180.0) -> bool:
        """Ensure the control plane runs; return True when this call started it."""
        if self.is_healthy() or self._restart_stopped(timeout):
            # A run stopped half-way through up() leaves a healthy apiserver without nodes.
            self._create_nodes()
            state = self._load_state() or {}
            self._wait_cluster(
                time.monotonic() + timeout, {c: int(p) for c, p in state.get("pids", {}).items()}
            )
            self._ensure_real_node(int(state["ports"]["apiserver"]))
            self.observers.start()
            return False
        self.down()  # clear the leftovers of a crashed or half-started testbed
        binaries = ensure_binaries()
        self.bin_dir.mkdir(parents=True, exist_ok=True)
        for name, path in binaries.items():
            link = self.bin_dir / name
            link.unlink(missing_ok=True)
            link.symlink_to(path)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._pki.ensure()
        ports = Ports(*(_free_port() for _ in range(6)))
        self._write_kubeconfigs(ports)
        pids: dict[str, int] = {}
        started = time.monotonic()
        try:
            for component in COMPONENTS:
                pids[component] = self._spawn(component, self._command(component, ports))
                self._save_state(ports, pids)
                self._wait_ready(component, ports, pids[component], started + timeout)
            self._create_nodes()
            self._wait_cluster(started + timeout, pids)
            self._ensure_real_node(ports.apiserver)
            self.observers.start()
        except BaseException:
            self.down()
            raise
        print(
            f"testbed: up in {time.monotonic() - started:.1f}s; KUBECONFIG={self.kubeconfig}",
            file=sys.stderr,
        )
        return True

    def _ensure_real_node(self, apiserver_port: int) -> None:
        """Start ``real-0`` unless it runs; where it cannot run, say why in one line and go on."""
        if self.node.is_running():
            return
        self._node_unavailable_file.unlink(missing_ok=True)
        started = time.monotonic()
        try:
            if not self.want_real_node:
                raise NodeUnavailable(
                    f"not asked for (Testbed(real_node=False) or --no-real-node; {DISABLE_ENV})"
                )
            self.node.start(apiserver_port, self._spawn)
        except NodeUnavailable as why:
            reason = f"real node {NODE_NAME} not started: {why}"
        except Exception as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            reason = f"real node {NODE_NAME} failed to start: {first} (logs in {self.log_dir})"
            print(f"testbed: {error}", file=sys.stderr)
        else:
            print(
                f"testbed: real node {NODE_NAME} Ready in {time.monotonic() - started:.1f}s", file=sys.stderr
            )
            return
        self._node_unavailable_file.write_text(reason + "\n")
        print(f"testbed: {reason}; carrying on with kwok nodes only", file=sys.stderr)

    def load_operator_image(self) -> str:
        """The operator's image built from the Dockerfile (minutes when the cache lacks it),
        imported into real-0's containerd; returns the name pods use for it."""
        self.node.load_image(ensure_operator_image())
        return OPERATOR_IMAGE

    def urls(self) -> dict[str, str]:
        """Where the observers and the node's containerd are (``urls`` on the command line): OTLP
        at the node's address, which pods and the host both reach, while real-0 runs."""
        host = NODE_IP if self.node.is_running() else "127.0.0.1"
        return {**self.observers.urls(host), "containerd": str(self.node.socket)}

    # ---- faults: one component at a time, data and addresses kept --------------------------

    def stop(self, component: str, kill: bool = False) -> None:
        """Stop one component (SIGTERM, or SIGKILL with ``kill``); its data and port stay."""
        pid = self._pid(component)
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL if kill else signal.SIGTERM)
        deadline = time.monotonic() + 15
        while not _gone(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not _gone(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            while not _gone(pid) and time.monotonic() < deadline + 5:
                time.sleep(0.05)

    def start(self, component: str, timeout: float = 120.0) -> None:
        """Start one stopped component again, on the same port and with the same data."""
        state = self._load_state()
        if state is None:
            raise TestbedError("the testbed is not up")
        pid = self._pid(component)
        if pid is not None:
            return
        ports = Ports(**state["ports"])
        pids = dict(state["pids"])
        pids[component] = self._spawn(component, self._command(component, ports))
        self._save_state(ports, pids)
        self._wait_ready(component, ports, pids[component], time.monotonic() + timeout)

    def pause(self, component: str) -> None:
        """Freeze one component (SIGSTOP): it holds its connections and answers nothing."""
        self._signal(component, signal.SIGSTOP)

    def resume(self, component: str) -> None:
        self._signal(component, signal.SIGCONT)

    def _signal(self, component: str, sig: signal.Signals) -> None:
        pid = self._pid(component)
        if pid is None:
            raise TestbedError(f"{component} is not running")
        os.killpg(pid, sig)

    def _pid(self, component: str) -> int | None:
        """The running process of ``component``, or None."""
        if component not in COMPONENTS:
            raise TestbedError(f"unknown component {component!r}; one of {', '.join(COMPONENTS)}")
        state = self._load_state() or {}
        pid = int(state.get("pids", {}).get(component, 0))
        return pid if pid and self._owned(pid) else None

    def down(self) -> None:
        """Stop every process this testbed started (TERM, then KILL) and forget them; the real
        node first, with its containers, mounts, network and cgroups."""
        self.observers.stop()
        self.node.stop()
        self._node_unavailable_file.unlink(missing_ok=True)
        state = self._load_state()
        # Only processes still running our binaries; then wait for those very pids to be gone
        # (a process on its way out loses /proc/PID/exe before it stops running).
        pids = [int(p) for p in (state or {}).get("pids", {}).values() if self._owned(int(p))]
        for pid in reversed(pids):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for pid in pids:
            while not _gone(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if not _gone(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
        for pid in pids:
            while not _gone(pid) and time.monotonic() < deadline + 5:
                time.sleep(0.05)
        self._state_file.unlink(missing_ok=True)
        # etcd's data is throwaway: a fresh testbed starts empty.
        data = self.state_dir / "etcd-data"
        if data.exists():
            subprocess.run(["rm", "-rf", str(data)], check=False)

    def _restart_stopped(self, timeout: float) -> bool:
        """Start again the components that died while etcd (the data) still runs: the cluster
        keeps its objects and addresses. False when there is nothing to resume."""
        state = self._load_state()
        if not state or self._pid("etcd") is None:
            return False
        try:
            for component in COMPONENTS:
                self.start(component, timeout)
        except TestbedError:
            return False
        return self.is_healthy()

    def is_healthy(self) -> bool:
        state = self._load_state()
        if not state:
            return False
        pids = state.get("pids", {})
        if set(pids) != set(COMPONENTS) or not all(self._owned(int(p)) for p in pids.values()):
            return False
        return self._readyz(int(state["ports"]["apiserver"]))

    def kubectl_cmd(self, *args: str) -> list[str]:
        return [str(self.kubectl), f"--kubeconfig={self.kubeconfig}", *args]

    def run_kubectl(self, *args: str, input_text: str | None = None) -> str:
        result = subprocess.run(
            self.kubectl_cmd(*args), input=input_text, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise TestbedError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def peak_rss_bytes(self) -> dict[str, int]:
        """Peak resident memory (VmHWM) of each running component."""
        out: dict[str, int] = {}
        state = self._load_state() or {}
        for name, pid in state.get("pids", {}).items():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        out[name] = int(line.split()[1]) * 1024
            except OSError:
                continue
        return out

    # ---- processes ------------------------------------------------------------------------

    def _command(self, component: str, ports: Ports) -> list[str]:
        b = self.bin_dir
        pki = self._pki
        if component == "etcd":
            client = f"http://127.0.0.1:{ports.etcd_client}"
            peer = f"http://127.0.0.1:{ports.etcd_peer}"
            return [
                str(b / "etcd"),
                "--name=testbed",
                f"--data-dir={self.state_dir / 'etcd-data'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=testbed={peer}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ]
        if component == "kube-apiserver":
            serving = self._serving_cert()
            kubelet_client = pki.issue(
                "apiserver-kubelet-client", "kube-apiserver-kubelet-client", organization="system:masters"
            )
            return [
                str(b / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{ports.etcd_client}",
                # Every address, so that pods on real-0 reach it at the node's address (there is
                # no kube-proxy to route the kubernetes Service's IP): the operator's own pod.
                "--bind-address=0.0.0.0",
                "--advertise-address=127.0.0.1",
                f"--secure-port={ports.apiserver}",
                f"--tls-cert-file={serving.cert}",
                f"--tls-private-key-file={serving.key}",
                f"--client-ca-file={pki.ca.cert}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=Node,RBAC",
                "--allow-privileged=true",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki.service_account_pub}",
                f"--service-account-signing-key-file={pki.service_account_key}",
                "--endpoint-reconciler-type=none",
                "--profiling=false",
                # logs, exec and port-forward on real-0: the apiserver's client identity at the
                # kubelet, which it reaches by the node's InternalIP (kwok nodes have no kubelet).
                f"--kubelet-client-certificate={kubelet_client.cert}",
                f"--kubelet-client-key={kubelet_client.key}",
                "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
                # Admission webhooks behind a Service are called at an endpoint's pod IP, which
                # the host routes to real-0's bridge; a Service IP would lead nowhere here.
                "--enable-aggregator-routing=true",
            ]
        if component == "kube-controller-manager":
            return [
                *self._client_component(
                    "kube-controller-manager", "controller-manager", ports.controller_manager
                ),
                f"--root-ca-file={pki.ca.cert}",
                f"--service-account-private-key-file={pki.service_account_key}",
                "--use-service-account-credentials=true",
                f"--cluster-cidr={POD_CIDR}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--cluster-name=readiness-testbed",
                "--profiling=false",
            ]
        if component == "kube-scheduler":
            return [
                *self._client_component("kube-scheduler", "scheduler", ports.scheduler),
                "--profiling=false",
            ]
        if component == "kwok":
            return [
                str(b / "kwok"),
                f"--kubeconfig={self.kubeconfig}",
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                "--cidr=10.244.0.0/24",
                "--node-ip=10.240.0.1",
                "--node-lease-duration-seconds=40",
                f"--server-address=127.0.0.1:{ports.kwok}",
                f"--config={b / 'kwok-stages'}",
            ]
        raise ValueError(component)

    def _client_component(self, binary: str, identity: str, port: int) -> list[str]:
        """Flags shared by the components that talk to the apiserver with their own identity."""
        kubeconfig = self.state_dir / f"{identity}.kubeconfig"
        return [
            str(self.bin_dir / binary),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
        ]

    def _spawn(self, component: str, command: Sequence[str], env: dict[str, str] | None = None) -> int:
        log = self.log_dir / f"{component}.log"
        with open(log, "ab") as out:
            out.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(command)}\n".encode())
            out.flush()
            process = subprocess.Popen(
                list(command),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: down() signals the group
                cwd=self.state_dir,
                env=env,
            )
        return process.pid

    def _owned(self, pid: int) -> bool:
        """True when ``pid`` is a live process running one of our binaries."""
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            return False
        return _alive(pid) and Path(exe).name in {*COMPONENTS, "kubectl"}

    def _wait_ready(self, component: str, ports: Ports, pid: int, deadline: float) -> None:
        checks: dict[str, Callable[[], bool]] = {
            "etcd": lambda: self._http_ok(f"http://127.0.0.1:{ports.etcd_client}/health"),
            "kube-apiserver": lambda: self._readyz(ports.apiserver),
        }
        check = checks.get(component)
        settle = time.monotonic() + 1.0
        while True:
            if not _alive(pid):
                raise TestbedError(
                    f"{component} exited during start-up; tail of {self.log_dir / (component + '.log')}:\n"
                    + _tail(self.log_dir / f"{component}.log")
                )
            if (check is not None and check()) or (check is None and time.monotonic() > settle):
                return
            if time.monotonic() > deadline:
                raise TestbedError(
                    f"{component} was not ready in time; tail of its log:\n"
                    + _tail(self.log_dir / f"{component}.log")
                )
            time.sleep(0.2)

    def _wait_cluster(self, deadline: float, pids: dict[str, int]) -> None:
        """Nodes Ready (kwok) and the default ServiceAccount present (controller-manager)."""
        while time.monotonic() < deadline:
            for component, pid in pids.items():
                if not _alive(pid):
                    raise TestbedError(
                        f"{component} exited; tail of its log:\n" + _tail(self.log_dir / f"{component}.log")
                    )
            nodes = subprocess.run(
                self.kubectl_cmd("get", "nodes", "-o", "json"), capture_output=True, text=True, check=False
            )
            sa = subprocess.run(
                self.kubectl_cmd("get", "serviceaccount", "default", "-n", "default"),
                capture_output=True,
                text=True,
                check=False,
            )
            if nodes.returncode == 0 and sa.returncode == 0:
                items = json.loads(nodes.stdout)["items"]
                ready = [
                    n
                    for n in items
                    if any(
                        c["type"] == "Ready" and c["status"] == "True"
                        for c in n["status"].get("conditions", [])
                    )
                ]
                if len(ready) >= self.nodes:
                    return
            time.sleep(0.5)
        raise TestbedError(
            "nodes did not become Ready or the default ServiceAccount did not appear; kwok log tail:\n"
            + _tail(self.log_dir / "kwok.log")
            + "\ncontroller-manager log tail:\n"
            + _tail(self.log_dir / "kube-controller-manager.log")
        )

    def _create_nodes(self) -> None:
        docs = []
        for i in range(self.nodes):
            name = f"kwok-node-{i}"
            # kwok pods cost nothing: room for the paced fleet benchmark (1,000 one-replica Deployments
            # requesting 100m CPU each, with surge); memory stays below 512Gi, which tests use as
            # a request no node can hold.
            resources = {"cpu": "1000", "memory": "256Gi", "pods": "1000", "ephemeral-storage": "1Ti"}
            docs.append(
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": name,
                        "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                        "labels": {
                            "kubernetes.io/arch": "amd64",
                            "kubernetes.io/os": "linux",
                            "kubernetes.io/hostname": name,
                            "type": "kwok",
                        },
                    },
                    "status": {
                        "allocatable": resources,
                        "capacity": resources,
                        "nodeInfo": {
                            "architecture": "amd64",
                            "operatingSystem": "linux",
                            "kubeletVersion": "fake",
                            "kubeProxyVersion": "fake",
                            "containerRuntimeVersion": "kwok",
                            "osImage": "kwok",
                            "kernelVersion": "kwok",
                            "bootID": "",
                            "machineID": "",
                            "systemUUID": "",
                        },
                    },
                }
            )
        self.run_kubectl("apply", "-f", "-", input_text=yaml.safe_dump_all(docs))

    # ---- health ---------------------------------------------------------------------------

    def _ssl_context(self) -> ssl.SSLContext:
        admin = self._pki.issue("admin", "testbed-admin", organization="system:masters")
        ctx = ssl.create_default_context(cafile=str(self._pki.ca.cert))
        ctx.load_cert_chain(str(admin.cert), str(admin.key))
        return ctx

    def _readyz(self, port: int) -> bool:
        return self._http_ok(f"https://127.0.0.1:{port}/readyz", self._ssl_context())

    @staticmethod
    def _http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as response:  # noqa: S310
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError, ssl.SSLError):
            return False

    # ---- files ----------------------------------------------------------------------------

    def _serving_cert(self) -> KeyPair:
        return self._pki.issue(
            "apiserver",
            "kube-apiserver",
            server_names=(
                "127.0.0.1",
                "localhost",
                NODE_IP,  # pods on real-0 (the operator's own) reach the apiserver here
                "10.96.0.1",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
        )

    def _write_kubeconfigs(self, ports: Ports) -> None:
        identities = {
            self.kubeconfig: self._pki.issue("admin", "testbed-admin", organization="system:masters"),
            self.state_dir / "controller-manager.kubeconfig": self._pki.issue(
                "controller-manager", "system:kube-controller-manager"
            ),
            self.state_dir / "scheduler.kubeconfig": self._pki.issue("scheduler", "system:kube-scheduler"),
        }
        for path, pair in identities.items():
            config = {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "readiness-testbed",
                        "cluster": {
                            "server": f"https://127.0.0.1:{ports.apiserver}",
                            "certificate-authority": str(self._pki.ca.cert),
                        },
                    }
                ],
                "users": [
                    {
                        "name": "user",
                        "user": {"client-certificate": str(pair.cert), "client-key": str(pair.key)},
                    }
                ],
                "contexts": [
                    {
                        "name": "readiness-testbed",
                        "context": {"cluster": "readiness-testbed", "user": "user", "namespace": "default"},
                    }
                ],
                "current-context": "readiness-testbed",
            }
            path.write_text(yaml.safe_dump(config, sort_keys=False))
            path.chmod(0o600)

    def _save_state(self, ports: Ports, pids: dict[str, int]) -> None:
        self._state_file.write_text(json.dumps({"ports": ports.__dict__, "pids": pids}, indent=2))

    def _load_state(self) -> dict[str, dict[str, int]] | None:
        try:
            data: dict[str, dict[str, int]] = json.loads(self._state_file.read_text())
        except (OSError, ValueError):
            return None
        return data
