"""The testbed's one real node, ``real-0``: containerd, runc, the CNI plugins and a kubelet on
this machine, beside the kwok nodes.

Everything it makes lives under ``<state dir>/node/`` (containerd's root and state, runc's state,
the kubelet's root, the CNI configuration and IPAM state, pod logs), except what the kernel
only offers machine-wide: the pod bridge ``rdy0`` (10.88.0.0/16, the host is 10.88.0.1 and
reaches pod IPs directly; no kube-proxy, no iptables), the cgroup parent ``/readiness-testbed``
and the few sysctls the kubelet sets at start (restored by ``stop()``). So one real node runs per
machine: the testbed that starts it claims it in ``/run/readiness-testbed/real-node``; another
testbed started meanwhile carries on with kwok nodes only and says why.

``stop()`` takes it all down again, and ``leftovers()`` lists whatever is still there
(processes, mounts, network namespaces, interfaces, cgroups, iptables rules, files outside the
state directory): empty after a clean stop.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import yaml

from .binaries import ensure_node_binaries
from .images import Archive, ensure_archives, import_archive
from .pki import Pki

NODE_NAME = "real-0"
NODE_LABEL = "readiness.dev/testbed-node"
NODE_TAINT = {"key": NODE_LABEL, "value": "real", "effect": "NoSchedule"}
BRIDGE = "rdy0"
POD_SUBNET = "10.88.0.0/16"
NODE_IP = "10.88.0.1"  # the bridge's address: the node's InternalIP and the pods' gateway
# The bridge's own MAC, locally administered, ending in NODE_IP. A bridge given none takes its
# lowest port's, so it changed as pods came and went; a pod that had resolved its gateway before
# then sent to a MAC no longer there and lost every packet to the host until its ARP entry expired
# (a response held 30 s in FIN-WAIT-1, spans never exported).
BRIDGE_MAC = "02:00:0a:58:00:01"
CLUSTER_DNS = "10.96.0.10"  # in the service range; nothing answers there (no DNS on the testbed)
CGROUP_PARENT = "readiness-testbed"
CLAIM = Path("/run/readiness-testbed/real-node")
CLAIM_FRESH_SECONDS = 120  # a claim this young belongs to a node still starting (no process yet)
CLAIM_LOCK = Path("/run/lock/readiness-testbed-real-node.lock")  # /run/lock: the place for lock files
SHIM_SOCKETS = Path("/run/containerd/s")  # where every runc shim puts its socket (hard-coded upstream)
POD_LOG_LINKS = Path("/var/log/containers")  # the kubelet's symlinks to pod logs (hard-coded)
CGROUP_ROOT = Path("/sys/fs/cgroup")
NEEDED_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "pids")
# The kubelet sets these at start (container_manager_linux.go setupKernelTunables); the bridge
# plugin turns on forwarding. stop() puts back what was there before.
SYSCTLS = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
    "net/ipv4/ip_forward",
)
DISABLE_ENV = "READINESS_TESTBED_REAL_NODE"  # "0" starts no real node


class NodeUnavailable(RuntimeError):
    """This machine (or this moment) cannot run the real node; the message says why, in one line."""


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _exe(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def _pids() -> Iterator[int]:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            yield int(entry)


def _mountpoints() -> list[str]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        field = line.split()[4]
        # mountinfo escapes space, tab, newline and backslash as octal
        points.append(field.encode().decode("unicode_escape"))
    return points


_libc = ctypes.CDLL(None, use_errno=True)
_MNT_DETACH = 2


def _umount(path: str) -> bool:
    result: int = _libc.umount2(path.encode(), _MNT_DETACH)
    return result == 0


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def _link_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def _bridge_ports(name: str) -> list[str]:
    try:
        return sorted(os.listdir(f"/sys/class/net/{name}/brif"))
    except OSError:
        return []


class RealNode:
    """``real-0`` for the testbed in ``state_dir`` (see the module's docstring)."""

    def __init__(self, state_dir: Path, pki: Pki, log_dir: Path, kubectl: Callable[..., str]) -> None:
        self.state_dir = state_dir
        self.dir = state_dir / "node"
        self.pki = pki
        self.log_dir = log_dir
        self._kubectl = kubectl
        self.state_file = self.dir / "node.json"
        self.containerd_dir = self.dir / "containerd"
        self.kubelet_dir = self.dir / "kubelet"
        self.cni_dir = self.dir / "cni"
        self.pod_logs = self.dir / "pod-logs"
        self.bin_dir = self.dir / "bin"
        socket = self.containerd_dir / "containerd.sock"
        if len(str(socket)) + len(".ttrpc") >= 100:  # sun_path holds 108 bytes
            digest = hashlib.sha256(str(state_dir).encode()).hexdigest()[:10]
            socket = Path("/run/readiness-testbed") / f"containerd-{digest}.sock"
        self.socket = socket

    # ---- can it run here? -------------------------------------------------------------------

    def unavailable_reason(self) -> str | None:
        """Why this machine cannot run the real node, in one line; None when it can."""
        setting = os.environ.get(DISABLE_ENV, "1")
        if setting.strip().lower() in ("0", "false", "no", "off"):
            return f"disabled by {DISABLE_ENV}={setting}"
        if sys.platform != "linux":
            return f"needs Linux (this is {sys.platform})"
        if os.geteuid() != 0:
            return "needs root (kubelet, containerd and runc manage cgroups, mounts and network namespaces)"
        missing = [c for c in NEEDED_CONTROLLERS if not self._controller_ok(c)]
        if missing:
            return f"needs the cgroup controllers {', '.join(missing)} (not mounted under {CGROUP_ROOT})"
        for tool in ("ip", "mount", "umount"):
            if shutil.which(tool) is None:
                return f"needs the {tool} command (iproute2 / util-linux)"
        clash = self._subnet_clash()
        if clash:
            return f"the pod subnet {POD_SUBNET} is already routed on this machine ({clash})"
        return None

    @staticmethod
    def _cgroup_v2() -> bool:
        return (CGROUP_ROOT / "cgroup.controllers").is_file()

    def _controller_ok(self, controller: str) -> bool:
        if self._cgroup_v2():
            return (
                controller in (CGROUP_ROOT / "cgroup.controllers").read_text().split()
                or controller == "cpuacct"
            )
        return (CGROUP_ROOT / controller / "tasks").is_file()

    @staticmethod
    def _subnet_clash() -> str | None:
        result = _ip("-j", "route", "show", "table", "all", check=False)
        if result.returncode != 0:
            return None
        ours = ipaddress.ip_network(POD_SUBNET)
        for route in json.loads(result.stdout or "[]"):
            dst, dev = route.get("dst", ""), route.get("dev", "")
            if dev == BRIDGE or dst in ("", "default") or ":" in dst:
                continue
            try:
                network = ipaddress.ip_network(dst if "/" in dst else dst + "/32", strict=False)
            except ValueError:
                continue
            if network.overlaps(ours) and route.get("type", "unicast") in ("unicast", "local"):
                return f"{dst} dev {dev}"
        return None

    # ---- the machine-wide claim ---------------------------------------------------------------

    @contextlib.contextmanager
    def _claim_lock(self) -> Iterator[None]:
        CLAIM.parent.mkdir(parents=True, exist_ok=True)
        CLAIM_LOCK.parent.mkdir(parents=True, exist_ok=True)
        with open(CLAIM_LOCK, "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @staticmethod
    def claim_owner() -> Path | None:
        try:
            return Path(CLAIM.read_text().strip())
        except OSError:
            return None

    def _take_claim(self) -> None:
        """Claim the machine's real node, or raise NodeUnavailable naming the testbed that has it.
        A claim whose node is gone (a testbed that crashed or was deleted) is cleared first."""
        owner = self.claim_owner()
        if owner is not None and owner != self.state_dir:
            other = RealNode(owner, self.pki, self.log_dir, self._kubectl)
            if other._alive_or_starting():
                raise NodeUnavailable(f"this machine's real node already runs for the testbed in {owner}")
            other.stop(release_claim=False)
        CLAIM.parent.mkdir(parents=True, exist_ok=True)
        CLAIM.write_text(f"{self.state_dir}\n")

    def owns_claim(self) -> bool:
        return self.claim_owner() == self.state_dir

    def _others_node(self) -> bool:
        """True while another testbed's real node runs (its machine-wide pieces are not ours)."""
        owner = self.claim_owner()
        if owner is None or owner == self.state_dir:
            return False
        return RealNode(owner, self.pki, self.log_dir, self._kubectl)._alive_or_starting()

    def _alive_or_starting(self) -> bool:
        """This node's processes run, or it claimed the machine moments ago and is starting."""
        if self.processes():
            return True
        try:
            return self.owns_claim() and time.time() - CLAIM.stat().st_mtime < CLAIM_FRESH_SECONDS
        except OSError:
            return False

    # ---- start ------------------------------------------------------------------------------

    def start(
        self,
        apiserver_port: int,
        spawn: Callable[[str, Sequence[str], dict[str, str] | None], int],
        timeout: float = 240.0,
    ) -> None:
        """Start containerd and the kubelet; return once ``real-0`` is Ready.
        Raises NodeUnavailable (nothing started) or RuntimeError (started, then failed)."""
        reason = self.unavailable_reason()
        if reason:
            raise NodeUnavailable(reason)
        # Builds (minutes when cold) come before the claim, which is then held only while starting.
        programs = ensure_node_binaries()
        archives = ensure_archives(programs)
        deadline = time.monotonic() + timeout
        with self._claim_lock():
            self._take_claim()
            self.stop(release_claim=False)  # what a crashed run of this testbed left
        try:
            self._start(programs, archives, apiserver_port, spawn, deadline)
        except BaseException:
            self.stop()
            raise

    def _start(
        self,
        programs: dict[str, Path],
        archives: dict[str, Archive],
        apiserver_port: int,
        spawn: Callable[[str, Sequence[str], dict[str, str] | None], int],
        deadline: float,
    ) -> None:
        for sub in (
            self.containerd_dir,
            self.kubelet_dir,
            self.cni_dir / "net.d",
            self.pod_logs,
            self.bin_dir,
        ):
            sub.mkdir(parents=True, exist_ok=True)
        self.socket.parent.mkdir(parents=True, exist_ok=True)
        for name, path in programs.items():
            link = self.bin_dir / name
            link.unlink(missing_ok=True)
            link.symlink_to(path)
        state: dict[str, object] = {
            "sysctls": {key: Path("/proc/sys", key).read_text().strip() for key in SYSCTLS},
            "socket": str(self.socket),
            "pids": {},
        }
        self._save(state)
        self._make_cgroup_parent()
        self._make_bridge()
        snapshotter = self._snapshotter()
        state["snapshotter"] = snapshotter
        self._write_containerd_config(snapshotter)
        self._write_cni_config()
        kubelet_port, healthz_port = _free_port(NODE_IP), _free_port("127.0.0.1")
        self._write_kubelet_files(apiserver_port, kubelet_port, healthz_port)
        env = {
            **os.environ,
            "PATH": f"{self.bin_dir}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}",
        }

        pids: dict[str, int] = {}
        state["pids"] = pids
        pids["containerd"] = spawn(
            "containerd",
            [str(self.bin_dir / "containerd"), f"--config={self.containerd_dir / 'config.toml'}"],
            env,
        )
        self._save(state)
        self._wait(self._ctr_ok, "containerd", pids["containerd"], deadline)
        for archive in archives.values():
            import_archive(self.bin_dir / "ctr", str(self.socket), archive.path, snapshotter)
        pids["kubelet"] = spawn(
            "kubelet",
            [
                str(self.bin_dir / "kubelet"),
                f"--config={self.dir / 'kubelet.yaml'}",
                f"--kubeconfig={self.dir / 'kubelet.kubeconfig'}",
                f"--root-dir={self.kubelet_dir}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={NODE_IP}",
                f"--node-labels={NODE_LABEL}=real",
                "--v=2",
            ],
            env,
        )
        self._save(state)
        self._wait(
            lambda: _http_ok(f"http://127.0.0.1:{healthz_port}/healthz"), "kubelet", pids["kubelet"], deadline
        )
        self._wait(
            lambda: self._node_ready(kubelet_port),
            "kubelet",
            pids["kubelet"],
            deadline,
            what="node real-0 Ready",
        )

    def _wait(
        self, check: Callable[[], bool], component: str, pid: int, deadline: float, what: str | None = None
    ) -> None:
        while True:
            if not _alive(pid):
                raise RuntimeError(
                    f"{component} exited during start-up; tail of {self.log_dir / (component + '.log')}:\n"
                    + _tail(self.log_dir / f"{component}.log")
                )
            if check():
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{what or component} not ready in time; tail of {component}.log:\n"
                    + _tail(self.log_dir / f"{component}.log")
                )
            time.sleep(0.3)

    def _ctr_ok(self) -> bool:
        if not self.socket.exists():
            return False
        result = subprocess.run(
            [str(self.bin_dir / "ctr"), f"--address={self.socket}", "version"],
            capture_output=True,
            check=False,
            timeout=10,
        )
        return result.returncode == 0

    def _node_ready(self, kubelet_port: int) -> bool:
        """Ready, as posted by this kubelet (a Node left by a kubelet that died still says Ready
        for a while; the kubelet's port, new at every start, tells them apart)."""
        try:
            node = json.loads(self._kubectl("get", "node", NODE_NAME, "-o", "json"))
        except Exception:
            return False
        status = node.get("status", {})
        if status.get("daemonEndpoints", {}).get("kubeletEndpoint", {}).get("Port") != kubelet_port:
            return False
        return any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))

    # ---- machine pieces -----------------------------------------------------------------------

    def _cgroup_dirs(self) -> list[Path]:
        """The cgroup parent in every hierarchy (v1: one per mounted controller, v2: one)."""
        if self._cgroup_v2():
            return [CGROUP_ROOT / CGROUP_PARENT]
        dirs = []
        for hierarchy in sorted(CGROUP_ROOT.iterdir()):
            if (hierarchy / "cgroup.procs").is_file():
                dirs.append(hierarchy / CGROUP_PARENT)
        return dirs

    def _make_cgroup_parent(self) -> None:
        for path in self._cgroup_dirs():
            path.mkdir(exist_ok=True)
            if path.parent.name == "cpuset":  # v1 cpuset cgroups start empty
                for name in ("cpuset.cpus", "cpuset.mems"):
                    if not (path / name).read_text().strip():
                        (path / name).write_text((path.parent / name).read_text())

    def _make_bridge(self) -> None:
        """The pods' bridge, with the node's address on it before the kubelet validates --node-ip.
        The CNI bridge plugin finds it and attaches the pods' veths."""
        if not _link_exists(BRIDGE):
            _ip("link", "add", BRIDGE, "type", "bridge")
        _ip("link", "set", BRIDGE, "address", BRIDGE_MAC)
        prefix = POD_SUBNET.split("/")[1]
        _ip("addr", "replace", f"{NODE_IP}/{prefix}", "dev", BRIDGE)
        _ip("link", "set", BRIDGE, "up")

    def _snapshotter(self) -> str:
        """overlayfs when this filesystem can carry it, else native (copies, slower)."""
        probe = self.dir / ".overlay-probe"
        shutil.rmtree(probe, ignore_errors=True)
        for sub in ("lower", "upper", "work", "merged"):
            (probe / sub).mkdir(parents=True)
        merged = probe / "merged"
        result = subprocess.run(
            [
                "mount",
                "-t",
                "overlay",
                "overlay",
                "-o",
                f"lowerdir={probe / 'lower'},upperdir={probe / 'upper'},workdir={probe / 'work'}",
                str(merged),
            ],
            capture_output=True,
            check=False,
        )
        if result.returncode == 0:
            _umount(str(merged))
        shutil.rmtree(probe, ignore_errors=True)
        return "overlayfs" if result.returncode == 0 else "native"

    # ---- configuration files ------------------------------------------------------------------

    def _write_containerd_config(self, snapshotter: str) -> None:
        c = self.containerd_dir
        q = json.dumps  # TOML basic strings are JSON strings
        config = f"""\
# containerd for the testbed's real node (written by readiness_testbed/node.py)
version = 3
root = {q(str(c / "root"))}
state = {q(str(c / "state"))}
# NRI would listen on /var/run/nri; the other snapshotters need their own filesystems.
disabled_plugins = [
  "io.containerd.nri.v1.nri",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.blockfile",
  "io.containerd.snapshotter.v1.erofs",
]

[grpc]
  address = {q(str(self.socket))}

[ttrpc]
  address = {q(str(self.socket) + ".ttrpc")}

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = {q(str(c / "opt"))}

  [plugins."io.containerd.cri.v1.images"]
    snapshotter = {q(snapshotter)}
    [plugins."io.containerd.cri.v1.images".pinned_images]
      sandbox = "readiness-testbed/pause:dev"

  [plugins."io.containerd.cri.v1.runtime"]
    # This VM refuses to lower oom_score_adj: never ask for less than containerd's own.
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    enable_cdi = false
    cdi_spec_dirs = []
    [plugins."io.containerd.cri.v1.runtime".containerd]
      default_runtime_name = "runc"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        runtime_path = {q(str(self.bin_dir / "containerd-shim-runc-v2"))}
        [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
          BinaryName = {q(str(self.bin_dir / "runc"))}
          Root = {q(str(c / "runc"))}
          SystemdCgroup = false
    [plugins."io.containerd.cri.v1.runtime".cni]
      bin_dirs = [{q(str(self.cni_dir / "bin"))}]
      conf_dir = {q(str(self.cni_dir / "net.d"))}
      max_conf_num = 1

  [plugins."io.containerd.grpc.v1.cri"]
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
"""
        (c / "config.toml").write_text(config)

    def _write_cni_config(self) -> None:
        bin_dir = self.cni_dir / "bin"
        bin_dir.mkdir(parents=True, exist_ok=True)
        for plugin in ("bridge", "host-local", "loopback", "portmap"):
            link = bin_dir / plugin
            link.unlink(missing_ok=True)
            link.symlink_to((self.bin_dir / plugin).resolve())
        conflist = {
            "cniVersion": "1.0.0",
            "name": "readiness-testbed",
            # portmap (hostPort) is built but left out: it needs iptables or nft.
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": False,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_SUBNET, "gateway": NODE_IP}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(self.cni_dir / "ipam"),
                    },
                }
            ],
        }
        (self.cni_dir / "net.d" / "10-readiness-testbed.conflist").write_text(json.dumps(conflist, indent=2))

    def _write_kubelet_files(self, apiserver_port: int, port: int, healthz_port: int) -> None:
        client = self.pki.issue(
            f"kubelet-{NODE_NAME}-client", f"system:node:{NODE_NAME}", organization="system:nodes"
        )
        serving = self.pki.issue(
            f"kubelet-{NODE_NAME}", f"system:node:{NODE_NAME}", server_names=(NODE_IP, NODE_NAME)
        )
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "readiness-testbed",
                    "cluster": {
                        "server": f"https://127.0.0.1:{apiserver_port}",
                        "certificate-authority": str(self.pki.ca.cert),
                    },
                }
            ],
            "users": [
                {
                    "name": "kubelet",
                    "user": {"client-certificate": str(client.cert), "client-key": str(client.key)},
                }
            ],
            "contexts": [{"name": "kubelet", "context": {"cluster": "readiness-testbed", "user": "kubelet"}}],
            "current-context": "kubelet",
        }
        path = self.dir / "kubelet.kubeconfig"
        path.write_text(yaml.safe_dump(kubeconfig, sort_keys=False))
        path.chmod(0o600)
        # Pods with dnsPolicy Default read this instead of the VM's own resolver settings.
        (self.dir / "resolv.conf").write_text(
            "# readiness testbed real node: no DNS\nnameserver 127.0.0.1\noptions timeout:1 attempts:1\n"
        )
        endpoint = f"unix://{self.socket}"
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": NODE_IP,
            "port": port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": healthz_port,
            "tlsCertFile": str(serving.cert),
            "tlsPrivateKeyFile": str(serving.key),
            "rotateCertificates": False,
            "serverTLSBootstrap": False,
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(self.pki.ca.cert)},
            },
            "authorization": {"mode": "Webhook"},
            "containerRuntimeEndpoint": endpoint,
            "imageServiceEndpoint": endpoint,
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": f"/{CGROUP_PARENT}",
            "cgroupsPerQOS": True,
            "enforceNodeAllocatable": ["pods"],
            "failCgroupV1": False,
            "failSwapOn": False,
            "registerNode": True,
            "registerWithTaints": [NODE_TAINT],
            "resolvConf": str(self.dir / "resolv.conf"),
            "clusterDNS": [CLUSTER_DNS],
            "clusterDomain": "cluster.local",
            "serializeImagePulls": False,
            # No KUBE-FIREWALL / KUBE-IPTABLES-HINT chains, even where iptables is installed.
            "makeIPTablesUtilChains": False,
            # Nothing can be pulled again here: images are never collected.
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "nodefs.inodesFree": "1%",
                "imagefs.available": "1%",
                "imagefs.inodesFree": "1%",
            },
            "evictionPressureTransitionPeriod": "30s",
            "podLogsDir": str(self.pod_logs),
            "volumePluginDir": str(self.kubelet_dir / "volume-plugins"),
            "staticPodPath": "",
            "maxPods": 50,
            "syncFrequency": "10s",
            "nodeStatusUpdateFrequency": "10s",
            "runtimeRequestTimeout": "2m",
            "shutdownGracePeriod": "0s",
            "containerLogMaxSize": "10Mi",
            "containerLogMaxFiles": 2,
        }
        (self.dir / "kubelet.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    # ---- stop -------------------------------------------------------------------------------

    def processes(self) -> list[int]:
        """This node's kubelet, containerd, shims and runc processes (not the containers')."""
        marks = (str(self.dir) + "/", str(self.socket))
        found = []
        for pid in _pids():
            if pid == os.getpid():
                continue
            args = _cmdline(pid)
            if not args or not _alive(pid):
                continue
            name = Path(args[0]).name
            if name not in ("kubelet", "containerd", "containerd-shim-runc-v2", "runc", "ctr"):
                continue
            if any(mark in arg for arg in args for mark in marks):
                found.append(pid)
        return found

    def _container_pids(self) -> list[int]:
        """Every process in the node's cgroups: the containers (pause included)."""
        pids: set[int] = set()
        for top in self._cgroup_dirs():
            if not top.is_dir():
                continue
            for procs in top.rglob("cgroup.procs"):
                with contextlib.suppress(OSError, ValueError):
                    pids.update(int(p) for p in procs.read_text().split())
        return sorted(p for p in pids if _alive(p))

    def stop(self, release_claim: bool = True) -> None:
        """Take the node down and leave nothing behind (see ``leftovers()``)."""
        state = self._load()
        machine_wide = not self._others_node()
        pids = {k: int(v) for k, v in state.get("pids", {}).items()}
        # 1. The kubelet first, so that it restarts nothing.
        self._terminate([p for p in self.processes() if "kubelet" in Path(_cmdline(p)[0]).name])
        # 2. The containers: killed outright (the node goes away with them).
        if machine_wide:
            for _ in range(3):
                victims = self._container_pids()
                if not victims:
                    break
                for pid in victims:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                time.sleep(0.3)
        # 3. Their tasks, through containerd while it runs: the shims then exit on their own and
        #    remove their sockets.
        if pids.get("containerd") and _alive(pids["containerd"]) and self._ctr_ok():
            self._delete_tasks()
        # 4. containerd, then any shim or runc still there.
        self._terminate([p for p in self.processes() if Path(_cmdline(p)[0]).name == "containerd"])
        self._terminate(self.processes(), grace=2.0)
        # 5. Mounts (rootfs, shm, network namespaces, the kubelet's volumes and its root bind).
        self._unmount_all()
        # 6. Machine-wide pieces, unless another testbed's node owns them now.
        if machine_wide:
            self._remove_cgroups()
            if _link_exists(BRIDGE):
                for port in _bridge_ports(BRIDGE):
                    _ip("link", "del", port, check=False)
                _ip("link", "del", BRIDGE, check=False)
            self._remove_stale_shim_sockets()
        for key, value in state.get("sysctls", {}).items():
            with contextlib.suppress(OSError):
                if Path("/proc/sys", key).read_text().strip() != value:
                    Path("/proc/sys", key).write_text(value)
        self._remove_log_links()
        # 7. The files: never across a mount point that could not be removed.
        if self.dir.exists() and not self._mounts_below(self.dir):
            subprocess.run(["rm", "-rf", "--one-file-system", str(self.dir)], check=False)
        if self.socket.parent != self.containerd_dir:
            for path in (self.socket, Path(str(self.socket) + ".ttrpc")):
                path.unlink(missing_ok=True)
        if release_claim and self.owns_claim():
            with self._claim_lock():
                if self.owns_claim():
                    CLAIM.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            CLAIM.parent.rmdir()  # only when empty

    @staticmethod
    def _terminate(pids: list[int], grace: float = 15.0) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in pids:
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)

    def _ctr(self, *args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin_dir / "ctr"), f"--address={self.socket}", "--namespace=k8s.io", *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )

    def _delete_tasks(self) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            listed = self._ctr("tasks", "ls", "-q")
            for task in listed.stdout.split():
                self._ctr("tasks", "delete", "--force", task)

    def _mounts_below(self, root: Path) -> list[str]:
        prefix = str(root).rstrip("/") + "/"
        return [m for m in _mountpoints() if m == str(root) or m.startswith(prefix)]

    def _unmount_all(self) -> None:
        roots = [self.dir]
        for _ in range(10):
            points = [m for root in roots for m in self._mounts_below(root)]
            if not points:
                return
            for point in sorted(set(points), key=lambda p: p.count("/"), reverse=True):
                _umount(point)

    def _remove_cgroups(self) -> None:
        for top in self._cgroup_dirs():
            if not top.is_dir():
                continue
            for _ in range(20):
                children = sorted(
                    (p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
                )
                for path in [*children, top]:
                    with contextlib.suppress(OSError):
                        path.rmdir()
                if not top.exists():
                    break
                time.sleep(0.1)

    @staticmethod
    def _bound_unix_sockets() -> set[str]:
        try:
            lines = Path("/proc/net/unix").read_text().splitlines()[1:]
        except OSError:
            return set()
        return {line.split()[-1] for line in lines if len(line.split()) >= 8}

    def _stale_shim_sockets(self) -> list[Path]:
        if not SHIM_SOCKETS.is_dir():
            return []
        bound = self._bound_unix_sockets()
        return [p for p in sorted(SHIM_SOCKETS.iterdir()) if str(p) not in bound]

    def _remove_stale_shim_sockets(self) -> None:
        """Sockets of shims that did not exit cleanly (upstream puts them in /run/containerd/s)."""
        for path in self._stale_shim_sockets():
            path.unlink(missing_ok=True)
        for directory in (SHIM_SOCKETS, SHIM_SOCKETS.parent):
            with contextlib.suppress(OSError):
                directory.rmdir()  # only when empty: another containerd may use them

    @staticmethod
    def _iptables_rules() -> list[str]:
        """Rules or chains a kubelet or CNI plugin makes (KUBE-*, CNI-*, or naming the pod subnet),
        when iptables is installed at all; the node's configuration makes none (no ipMasq, no
        portmap, makeIPTablesUtilChains false), so any is a leftover."""
        rules = []
        for tool in ("iptables-save", "ip6tables-save"):
            if shutil.which(tool) is None:
                continue
            result = subprocess.run([tool], capture_output=True, text=True, check=False)
            for line in result.stdout.splitlines():
                if any(mark in line for mark in ("KUBE-", "CNI-", POD_SUBNET)):
                    rules.append(f"{tool}: {line}")
        return rules

    def _remove_log_links(self) -> None:
        if not POD_LOG_LINKS.is_dir():
            return
        for link in POD_LOG_LINKS.iterdir():
            with contextlib.suppress(OSError):
                if link.is_symlink() and os.readlink(link).startswith(str(self.pod_logs)):
                    link.unlink()
        with contextlib.suppress(OSError):
            POD_LOG_LINKS.rmdir()  # only when empty

    def load_image(self, archive: Path) -> None:
        """Import an image archive into the running node's containerd, once per archive (an
        archive's name carries its content's key, so a rebuilt image is imported again)."""
        if not self.is_running():
            raise RuntimeError(f"the real node {NODE_NAME} is not running")
        state = self._load()
        loaded = self.dir / "loaded-images"
        done = set(loaded.read_text().split()) if loaded.exists() else set()
        if str(archive) in done:
            return
        snapshotter = str(state.get("snapshotter", "overlayfs"))
        import_archive(self.bin_dir / "ctr", str(self.socket), archive, snapshotter)
        loaded.write_text("\n".join(sorted({*done, str(archive)})) + "\n")

    # ---- what is left -----------------------------------------------------------------------

    def is_running(self) -> bool:
        state = self._load()
        pids = state.get("pids", {})
        return (
            bool(pids)
            and all(_alive(int(p)) for p in pids.values())
            and {"containerd", "kubelet"} <= set(pids)
        )

    def leftovers(self) -> list[str]:
        """Everything the node made that is still there, one line each; [] after a clean stop.
        Machine-wide pieces are not counted while another testbed's real node runs."""
        found = [f"process {p}: {' '.join(_cmdline(p))[:160]}" for p in self.processes()]
        found += [f"mount {m}" for m in self._mounts_below(self.dir)]
        netns = self.containerd_dir / "state" / "netns"
        if netns.is_dir():
            found += [f"network namespace file {p}" for p in sorted(netns.iterdir())]
        if self.socket.exists():
            found += [f"socket {self.socket}"]
        if self._others_node():
            return found
        found += [f"container process {p}: {' '.join(_cmdline(p))[:120]}" for p in self._container_pids()]
        found += [f"cgroup {d}" for d in self._cgroup_dirs() if d.exists()]
        if _link_exists(BRIDGE):
            found.append(f"interface {BRIDGE}")
        for name in os.listdir("/sys/class/net"):
            master = Path(f"/sys/class/net/{name}/master")
            if name.startswith("veth") and (not master.exists() or master.resolve().name == BRIDGE):
                found.append(f"interface {name}")
        found += [f"iptables {r}" for r in self._iptables_rules()]
        found += [f"shim socket {p}" for p in self._stale_shim_sockets()]
        if POD_LOG_LINKS.is_dir():
            for link in POD_LOG_LINKS.iterdir():
                with contextlib.suppress(OSError):
                    if link.is_symlink() and os.readlink(link).startswith(str(self.pod_logs)):
                        found.append(f"log link {link}")
        if self.owns_claim():
            found.append(f"claim {CLAIM}")
        return found

    # ---- state --------------------------------------------------------------------------------

    def _save(self, state: dict[str, object]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps(state, indent=2))

    def _load(self) -> dict[str, dict[str, str]]:
        try:
            data: dict[str, dict[str, str]] = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}
        return data


def _free_port(host: str) -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _http_ok(url: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False
