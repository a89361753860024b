"""Build the control-plane binaries from the Go module proxy and cache them per version.

Each Go consumer module under ``testbed/`` pins one component (``go.mod`` + ``go.sum`` are
committed). A build lands in ``<cache>/<component>-<version>-<hash of go.mod/go.sum>/``,
so a second build on the same machine is a cache hit, and a changed pin builds afresh.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
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

    def version(self) -> str:
        text = (TESTBED_DIR / self.module_dir / "go.mod").read_text()
        match = re.search(rf"^\s*(?:require\s+)?{re.escape(self.module)}\s+(v\S+)", text, re.M)
        if match is None:
            raise RuntimeError(f"{self.module} is not required in testbed/{self.module_dir}/go.mod")
        return match.group(1)

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for name in ("go.mod", "go.sum"):
            digest.update((TESTBED_DIR / self.module_dir / name).read_bytes())
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


def cache_root() -> Path:
    override = os.environ.get("READINESS_TESTBED_CACHE")
    if override:
        return Path(override)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "readiness-operator" / "testbed"


def component_dir(component: Component) -> Path:
    return cache_root() / f"{component.name}-{component.version()}-{component.fingerprint()}"


@contextmanager
def _build_lock() -> Iterator[None]:
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".build.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _go_build(component: Component, out_dir: Path) -> None:
    if shutil.which("go") is None:
        raise RuntimeError("the Go toolchain (go) is not on PATH; the testbed builds from Go modules")
    env = {**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": os.environ.get("GOTOOLCHAIN", "local")}
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
    paths: dict[str, Path] = {}
    with _build_lock():
        for component in components():
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
