"""Build the testbed's binaries from the Go module proxy and cache them per version.

Each Go consumer module under ``testbed/`` pins one component (``go.mod`` + ``go.sum`` are
committed). A build lands in ``<cache>/<component>-<version>-<hash of go.mod/go.sum>/``,
so a second build on the same machine is a cache hit, and a changed pin builds afresh.
The real node's programs (kubelet, containerd, runc, CNI plugins, the image programs under
``testbed/images/``) are built the same way by ``ensure_node_binaries``; the in-tree image
programs also hash their ``.go`` sources into the cache name.
"""

from __future__ import annotations

import dataclasses
import fcntl
import getpass
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

TESTBED_DIR = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Component:
    """One Go consumer module and the programs built from it."""

    name: str
    module_dir: str
    module: str  # the dependency whose pinned version names the cache entry
    packages: tuple[str, ...]
    programs: tuple[str, ...]
    ldflags: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    cgo: bool = False  # runc: libcontainer/nsenter is C
    # C headers the build needs, each with the Debian package that ships it (installed when missing).
    c_headers: tuple[tuple[str, str], ...] = ()
    fixed_version: str | None = None  # programs of this repository (testbed/images/*): "dev"

    def version(self) -> str:
        if self.fixed_version is not None:
            return self.fixed_version
        text = (TESTBED_DIR / self.module_dir / "go.mod").read_text()
        match = re.search(rf"^\s*(?:require\s+)?{re.escape(self.module)}\s+(v\S+)", text, re.M)
        if match is None:
            raise RuntimeError(f"{self.module} is not required in testbed/{self.module_dir}/go.mod")
        return match.group(1)

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        root = TESTBED_DIR / self.module_dir
        for name in ("go.mod", "go.sum"):
            if (root / name).is_file() or name == "go.mod":  # a module without dependencies has no go.sum
                digest.update((root / name).read_bytes())
        # Programs written here: their sources name the build too (consumer modules have none).
        for source in sorted(root.rglob("*.go")):
            digest.update(str(source.relative_to(root)).encode() + b"\0" + source.read_bytes())
        return digest.hexdigest()[:10]


def _kubernetes() -> Component:
    programs = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
    base = Component(
        name="kubernetes",
        module_dir="k8s",
        module="k8s.io/kubernetes",
        packages=tuple(f"k8s.io/kubernetes/cmd/{p}" for p in programs),
        programs=programs,
        # Upstream's release flags (hack/lib/golang.sh).
        tags=("selinux", "notest"),
    )
    version = base.version()
    major, minor = version.lstrip("v").split(".")[:2]
    pkg = "k8s.io/component-base/version"
    ldflags = (
        f"-X {pkg}.gitVersion={version}",
        f"-X {pkg}.gitMajor={major}",
        f"-X {pkg}.gitMinor={minor}",
        f"-X {pkg}.gitTreeState=clean",
    )
    return dataclasses.replace(base, ldflags=ldflags)


def _helm() -> Component:
    base = Component(
        name="helm",
        module_dir="helm",
        module="helm.sh/helm/v3",
        packages=("helm.sh/helm/v3/cmd/helm",),
        programs=("helm",),
    )
    version = base.version()
    # Upstream's release flags (its Makefile): the version, and the Kubernetes version that
    # `helm template` and `helm lint` assume, from the client-go it is built with (v0.X -> 1.X).
    client_go = dataclasses.replace(base, module="k8s.io/client-go").version()
    minor = client_go.lstrip("v").split(".")[1]
    ldflags = (
        f"-X helm.sh/helm/v3/internal/version.version={version}",
        "-X helm.sh/helm/v3/internal/version.gitTreeState=clean",
        *(f"-X helm.sh/helm/v3/pkg/{p}.k8sVersionMajor=1" for p in ("lint/rules", "chartutil")),
        *(f"-X helm.sh/helm/v3/pkg/{p}.k8sVersionMinor={minor}" for p in ("lint/rules", "chartutil")),
    )
    return dataclasses.replace(base, ldflags=ldflags)


def components() -> tuple[Component, ...]:
    return (
        Component(
            name="etcd",
            module_dir="etcd",
            module="go.etcd.io/etcd/server/v3",
            packages=("go.etcd.io/etcd/server/v3",),
            programs=("etcd",),
        ),
        _kubernetes(),
        Component(
            name="kwok",
            module_dir="kwok",
            module="sigs.k8s.io/kwok",
            packages=("sigs.k8s.io/kwok/cmd/kwok",),
            programs=("kwok",),
        ),
        _helm(),  # not part of the control plane: the chart's lint/template and install tests use it
    )


def _kubelet() -> Component:
    """The kubelet, from the very module (and pins) the control plane is built from."""
    kubernetes = _kubernetes()
    return dataclasses.replace(
        kubernetes,
        name="kubelet",
        packages=("k8s.io/kubernetes/cmd/kubelet",),
        programs=("kubelet",),
    )


def _containerd(shim: bool) -> Component:
    module = "github.com/containerd/containerd/v2"
    base = Component(
        name="containerd-shim" if shim else "containerd",
        module_dir="containerd",
        module=module,
        packages=(f"{module}/cmd/containerd-shim-runc-v2",)
        if shim
        else (f"{module}/cmd/containerd", f"{module}/cmd/ctr"),
        programs=("containerd-shim-runc-v2",) if shim else ("containerd", "ctr"),
        # Upstream's Makefile: urfave_cli_no_docs everywhere, no_grpc for the shim (one per pod).
        # CGO off, as upstream builds the shim; for containerd that only leaves out btrfs.
        tags=("urfave_cli_no_docs", "no_grpc") if shim else ("urfave_cli_no_docs",),
    )
    version = base.version()
    ldflags = (f"-X {module}/version.Version={version}", f"-X {module}/version.Package={module}")
    return dataclasses.replace(base, ldflags=ldflags)


def _cni_plugins() -> Component:
    module = "github.com/containernetworking/plugins"
    base = Component(
        name="cni-plugins",
        module_dir="cni",
        module=module,
        packages=tuple(
            f"{module}/plugins/{p}"
            for p in ("main/bridge", "ipam/host-local", "main/loopback", "meta/portmap")
        ),
        programs=("bridge", "host-local", "loopback", "portmap"),
    )
    return dataclasses.replace(
        base, ldflags=(f"-X {module}/pkg/utils/buildversion.BuildVersion={base.version()}",)
    )


def node_components() -> tuple[Component, ...]:
    """What the real node runs, and the programs of the images it is given."""
    return (
        _kubelet(),
        _containerd(shim=False),
        _containerd(shim=True),
        Component(
            name="runc",
            module_dir="runc",
            module="github.com/opencontainers/runc",
            packages=("github.com/opencontainers/runc",),
            programs=("runc",),
            # Upstream's `make static`: seccomp (containerd gives every pod sandbox the
            # RuntimeDefault profile, which a runc without it refuses), linked statically against
            # libseccomp, so the cached binary needs no library at run time.
            # The version comes from runc's VERSION file (go:embed).
            tags=("seccomp", "urfave_cli_no_docs", "netgo", "osusergo"),
            ldflags=("-extldflags", "-static"),
            cgo=True,
            c_headers=(("seccomp.h", "libseccomp-dev"),),
        ),
        _cni_plugins(),
        Component(
            name="pause",
            module_dir="images/pause",
            module="readiness-operator/testbed/images/pause",
            packages=(".",),
            programs=("pause",),
            fixed_version="dev",
        ),
        Component(
            name="sample-service",
            module_dir="images/sample-service",
            module="readiness-operator/testbed/images/sample-service",
            packages=(".",),
            programs=("sample-service",),
            fixed_version="dev",
        ),
    )


def _prometheus() -> Component:
    """Prometheus and promtool (module testbed/prometheus/), with upstream's release flags
    (.promu.yml): the prometheus/common version ldflags and tag netgo. Left out: the web UI's
    assets (tag builtinassets; the HTTP API, /-/ready and /-/reload work without them) and every
    service discovery but kubernetes (upstream's remove_all_sd + enable_kubernetes_sd; static,
    file and http discovery always stay)."""
    module = "github.com/prometheus/prometheus"
    base = Component(
        name="prometheus",
        module_dir="prometheus",
        module=module,
        packages=(f"{module}/cmd/prometheus", f"{module}/cmd/promtool"),
        programs=("prometheus", "promtool"),
        tags=("netgo", "remove_all_sd", "enable_kubernetes_sd"),
    )
    version = base.version()
    pkg = "github.com/prometheus/common/version"
    ldflags = (
        f"-X {pkg}.Version={_prometheus_release(version)}",
        # The module zip carries no commit: the revision is the module version it was built from.
        f"-X {pkg}.Revision={version}",
        f"-X {pkg}.Branch=HEAD",  # what upstream's tag builds print
        f"-X {pkg}.BuildUser={_build_user()}@{socket.gethostname()}",
        f"-X {pkg}.BuildDate={time.strftime('%Y%m%d-%H:%M:%S', time.gmtime())}",
    )
    return dataclasses.replace(base, ldflags=ldflags)


def _prometheus_release(module_version: str) -> str:
    """Prometheus 3's module versions: v0.316.0 is release 3.16.0 (v0.MNN.P is M.NN.P)."""
    match = re.fullmatch(r"v0\.(\d)(\d\d)\.(\d+)", module_version)
    if match is None:
        raise RuntimeError(f"github.com/prometheus/prometheus {module_version} is not a v0.MNN.P version")
    major, minor, patch = match.groups()
    return f"{major}.{int(minor)}.{patch}"


def _build_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a uid without a passwd entry (containers)
        return str(os.getuid())


def ensure_prometheus(log: bool = True) -> dict[str, Path]:
    """Return Prometheus' and promtool's paths (building them alone when the cache lacks them):
    for the alert rules' unit tests, which need no collector."""
    return _ensure((_prometheus(),), log)


def _otel_collector() -> Component:
    """An OpenTelemetry Collector of the core components this project needs (module testbed/otelcol/):
    the OTLP receiver, the batch and memory_limiter processors, contrib's file exporter and the debug
    exporter, assembled by the module's own main.go (every collector module pinned at one release)."""
    base = Component(
        name="otelcol",
        module_dir="otelcol",
        module="go.opentelemetry.io/collector/otelcol",
        packages=(".",),
        programs=("otelcol",),
    )
    # `otelcol --version` prints the pinned release (main.go's BuildInfo; "dev" without the flag).
    return dataclasses.replace(base, ldflags=(f"-X main.version={base.version()}",))


def observer_components() -> tuple[Component, ...]:
    """What consumes the operator's output on the testbed: Prometheus (and promtool), which
    scrapes the annotated pods and evaluates the alert rules, and an OpenTelemetry Collector,
    which receives the traces."""
    return (_prometheus(), _otel_collector())


def cache_root() -> Path:
    override = os.environ.get("READINESS_TESTBED_CACHE")
    if override:
        return Path(override)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "readiness-operator" / "testbed"


def component_dir(component: Component) -> Path:
    return cache_root() / f"{component.name}-{component.version()}-{component.fingerprint()}"


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (made with its directory): one build at a time per
    machine, whichever process or test asks."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build_lock() -> AbstractContextManager[None]:
    return file_lock(cache_root() / ".build.lock")


def _ensure_c_headers(component: Component) -> None:
    """Install (apt-get, as root) the Debian packages of the C headers a cgo build needs."""
    include_dirs = [Path("/usr/include"), Path("/usr/local/include")]
    missing = sorted(
        {
            package
            for header, package in component.c_headers
            if not any((d / header).is_file() for d in include_dirs)
        }
    )
    if not missing:
        return
    command = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise RuntimeError(
            f"{component.name} needs C headers from {', '.join(missing)}: run `{' '.join(command)}`"
        )
    print(f"testbed: {component.name} needs {', '.join(missing)}: {' '.join(command)}", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(command, env=env, check=False, stdout=subprocess.DEVNULL).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, check=False, stdout=subprocess.DEVNULL)
        subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)


def _go_build(component: Component, out_dir: Path) -> None:
    if shutil.which("go") is None:
        raise RuntimeError("the Go toolchain (go) is not on PATH; the testbed builds from Go modules")
    if component.cgo and shutil.which(os.environ.get("CC", "gcc")) is None:
        raise RuntimeError(f"{component.name} needs cgo and a C compiler (gcc), which is not on PATH")
    _ensure_c_headers(component)
    env = {
        **os.environ,
        "CGO_ENABLED": "1" if component.cgo else "0",
        "GOTOOLCHAIN": os.environ.get("GOTOOLCHAIN", "local"),
    }
    # -mod=readonly: the committed go.sum is the whole truth; a missing sum fails the build.
    env["GOFLAGS"] = (env.get("GOFLAGS", "") + " -mod=readonly").strip()
    cmd = ["go", "build", "-trimpath", "-ldflags", " ".join(("-s", "-w", *component.ldflags))]
    if component.tags:
        cmd += ["-tags", ",".join(component.tags)]
    # A single package gets an explicit name: Go would call go.etcd.io/etcd/server/v3 "server".
    output = out_dir / component.programs[0] if len(component.packages) == 1 else f"{out_dir}/"
    cmd += ["-o", str(output), *component.packages]
    subprocess.run(cmd, cwd=TESTBED_DIR / component.module_dir, env=env, check=True)


def ensure_binaries(log: bool = True) -> dict[str, Path]:
    """Return every control-plane program's path, building what the cache lacks."""
    return _ensure(components(), log)


def ensure_node_binaries(log: bool = True) -> dict[str, Path]:
    """Return the real node's programs (and its images' programs), building what the cache lacks."""
    return _ensure(node_components(), log)


def ensure_observer_binaries(log: bool = True) -> dict[str, Path]:
    """Return Prometheus', promtool's and the collector's paths, building what the cache lacks."""
    return _ensure(observer_components(), log)


def _ensure(wanted: tuple[Component, ...], log: bool) -> dict[str, Path]:
    paths: dict[str, Path] = {}
    with _build_lock():
        for component in wanted:
            target = component_dir(component)
            if not all((target / p).is_file() for p in component.programs):
                if log:
                    print(
                        f"testbed: building {component.name} {component.version()} (cold build, minutes)",
                        file=sys.stderr,
                    )
                started = time.monotonic()
                staging = Path(tempfile.mkdtemp(prefix=f".{component.name}-", dir=cache_root()))
                try:
                    _go_build(component, staging)
                    seconds = time.monotonic() - started
                    (staging / "build-seconds").write_text(f"{seconds:.0f}\n")
                    shutil.rmtree(target, ignore_errors=True)
                    staging.rename(target)
                finally:
                    shutil.rmtree(staging, ignore_errors=True)
                if log:
                    print(f"testbed: built {component.name} in {seconds:.0f}s -> {target}", file=sys.stderr)
            for program in component.programs:
                paths[program] = target / program
            if component.name == "kwok":
                paths["kwok-stages"] = _kwok_stages(component, target)
    return paths


# Pods probed on this readiness path never become ready: an app that does not serve what a
# profile asks, so that rollouts can fail for real in the tests (ProgressDeadlineExceeded).
NEVER_READY_PATH = "/not-served"


def _kwok_stages(component: Component, target: Path) -> Path:
    """kwok's own "fast" stages (nodes Ready, pods Running/Ready), read from its pinned module,
    with one change: pods probed on NEVER_READY_PATH are left out of "pod-ready".

    kwok v0.8 run out of cluster refuses to start without stages; they ship as YAML in its
    module, so they are taken from there rather than kept as a copy in this repository.
    """
    out = target / "stages-never-ready.yaml"
    if out.is_file():
        return out
    info = subprocess.run(
        ["go", "mod", "download", "-json", f"{component.module}@{component.version()}"],
        cwd=TESTBED_DIR / component.module_dir,
        capture_output=True,
        text=True,
        check=True,
    )
    root = Path(json.loads(info.stdout)["Dir"]) / "kustomize" / "stage"
    documents = [yaml.safe_load(path.read_text()) for path in _kustomize_resources(root / "fast")]
    for stage in documents:
        if stage["metadata"]["name"] == "pod-ready":
            stage["spec"]["selector"]["matchExpressions"].append(
                {
                    "key": f'.spec.containers.[] | select(.readinessProbe.httpGet.path == "{NEVER_READY_PATH}") | .name',
                    "operator": "DoesNotExist",
                }
            )
    out.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return out


def _kustomize_resources(directory: Path) -> list[Path]:
    """Files a kustomization lists, following nested kustomizations in order."""
    listing = yaml.safe_load((directory / "kustomization.yaml").read_text())
    files: list[Path] = []
    for entry in listing.get("resources", []):
        path = (directory / entry).resolve()
        files.extend(_kustomize_resources(path) if path.is_dir() else [path])
    return files
