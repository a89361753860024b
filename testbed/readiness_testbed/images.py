"""Container images made here, without a registry or an image builder.

``write_oci_archive`` turns a few files (a static program, the directories a container needs)
into an OCI image layout archive: ``oci-layout``, ``index.json`` and, under ``blobs/sha256/``,
the manifest, the config and one gzip tar layer, with their digests and the layer's diff_id.
Everything in it is deterministic (sorted entries, zero times), so the same program gives the
same image ID. It also carries a Docker-style ``manifest.json`` naming the image, as
``docker save`` writes beside an OCI layout.

``import_archive`` loads it into a containerd with ``ctr images import``. containerd takes the
name of an OCI layout's image as written, while the CRI plugin looks images up by the
normalised reference (a short name like ``readiness-testbed/pause:dev`` gains the default
registry's domain): so the archive is streamed to ``ctr`` without ``oci-layout`` and
``index.json``, and containerd's importer reads ``manifest.json`` and normalises the name
itself. Pods then find the image under the short name with ``imagePullPolicy: Never``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import platform
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"

# The user of distroless "nonroot": pods that ask for runAsNonRoot run without a runAsUser.
NONROOT = "65532:65532"


@dataclass(frozen=True)
class ImageSpec:
    """One image: its reference, the program it runs and how it runs it."""

    reference: str  # e.g. readiness-testbed/sample-service:dev (short: no registry)
    program: Path  # a static executable, placed at /<name>
    user: str = NONROOT
    ports: tuple[int, ...] = ()
    env: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def entrypoint(self) -> str:
        return "/" + self.program.name


def _go_arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)


def _tar_info(name: str, kind: bytes, mode: int, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.size = size
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def layer_tar(spec: ImageSpec) -> bytes:
    """The root filesystem: the program and the empty directories a container expects."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        # /tmp for programs that want a scratch file; the runtime creates the mount points
        # (/proc, /sys, /dev, /etc/hosts, /etc/resolv.conf ...) it needs.
        for name, mode in (("etc", 0o755), ("tmp", 0o1777)):
            tar.addfile(_tar_info(name + "/", tarfile.DIRTYPE, mode))
        data = spec.program.read_bytes()
        tar.addfile(_tar_info(spec.program.name, tarfile.REGTYPE, 0o755, len(data)), io.BytesIO(data))
    return out.getvalue()


def _gzip(data: bytes) -> bytes:
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, filename="", compresslevel=6) as gz:
        gz.write(data)
    return out.getvalue()


def _json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Archive:
    path: Path
    image_id: str  # the config's digest: what containerd and the kubelet call the image ID
    manifest_digest: str


def write_oci_archive(spec: ImageSpec, out: Path) -> Archive:
    """Write ``spec`` as an OCI image layout tar at ``out`` (atomically)."""
    raw = layer_tar(spec)
    layer = _gzip(raw)
    arch = _go_arch()
    config = _json(
        {
            "architecture": arch,
            "os": "linux",
            "created": "1970-01-01T00:00:00Z",
            "config": {
                "Entrypoint": [spec.entrypoint],
                "User": spec.user,
                "WorkingDir": "/",
                "Env": ["PATH=/", *spec.env],
                "ExposedPorts": {f"{port}/tcp": {} for port in spec.ports},
                "StopSignal": "SIGTERM",
                "Labels": dict(spec.labels),
            },
            "rootfs": {"type": "layers", "diff_ids": [_sha256(raw)]},
            "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "readiness_testbed.images"}],
        }
    )
    manifest = _json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": _sha256(config), "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": _sha256(layer), "size": len(layer)}],
        }
    )
    index = _json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": _sha256(manifest),
                    "size": len(manifest),
                    "platform": {"architecture": arch, "os": "linux"},
                    "annotations": {"org.opencontainers.image.ref.name": spec.reference},
                }
            ],
        }
    )

    def blob(data: bytes) -> str:
        return "blobs/sha256/" + hashlib.sha256(data).hexdigest()

    docker_manifest = _json([{"Config": blob(config), "RepoTags": [spec.reference], "Layers": [blob(layer)]}])
    members: list[tuple[str, bytes | None]] = [
        ("oci-layout", _json({"imageLayoutVersion": "1.0.0"})),
        ("index.json", index),
        ("manifest.json", docker_manifest),
        ("blobs/", None),
        ("blobs/sha256/", None),
        (blob(layer), layer),
        (blob(config), config),
        (blob(manifest), manifest),
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.{os.getpid()}")
    with tarfile.open(partial, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            if data is None:
                tar.addfile(_tar_info(name, tarfile.DIRTYPE, 0o755))
            else:
                tar.addfile(_tar_info(name, tarfile.REGTYPE, 0o644, len(data)), io.BytesIO(data))
    partial.rename(out)
    return Archive(out, _sha256(config), _sha256(manifest))


def read_archive(path: Path) -> dict[str, bytes]:
    """Every file of an archive by name (for checks; the archives are a few MB)."""
    with tarfile.open(path) as tar:
        return {
            m.name: extracted.read()
            for m in tar.getmembers()
            if m.isfile() and (extracted := tar.extractfile(m)) is not None
        }


def _docker_view(path: Path) -> bytes:
    """The archive without ``oci-layout`` and ``index.json``: containerd then imports it by
    ``manifest.json`` and normalises the image name the way the CRI plugin looks it up."""
    out = io.BytesIO()
    with tarfile.open(path) as src, tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as dst:
        for member in src.getmembers():
            if member.name in ("oci-layout", "index.json"):
                continue
            dst.addfile(member, src.extractfile(member) if member.isfile() else None)
    return out.getvalue()


def import_archive(
    ctr: Path, address: str, archive: Path, snapshotter: str, namespace: str = "k8s.io"
) -> None:
    """Import (and unpack for ``snapshotter``) an archive into the containerd at ``address``."""
    result = subprocess.run(
        [
            str(ctr),
            f"--address={address}",
            f"--namespace={namespace}",
            "images",
            "import",
            f"--snapshotter={snapshotter}",
            "-",
        ],
        input=_docker_view(archive),
        capture_output=True,
        check=False,
        timeout=300,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"ctr images import {archive.name}: {result.stderr.decode(errors='replace').strip()}"
        )


def image_specs(programs: dict[str, Path]) -> list[ImageSpec]:
    """The testbed's images, from the programs ``ensure_node_binaries`` built."""
    return [
        ImageSpec(
            reference="readiness-testbed/pause:dev",
            program=programs["pause"],
            user="65535:65535",  # as the upstream pause image
        ),
        ImageSpec(
            reference="readiness-testbed/sample-service:dev",
            program=programs["sample-service"],
            ports=(8080, 9090),
            labels={"org.opencontainers.image.title": "sample-service"},
        ),
        # The same service as an image that runs as root: what a profile's runAsNonRoot refuses.
        ImageSpec(
            reference="readiness-testbed/sample-service:root",
            program=programs["sample-service"],
            ports=(8080, 9090),
            labels={"org.opencontainers.image.title": "sample-service"},
            user="0:0",
        ),
    ]


def ensure_archives(programs: dict[str, Path]) -> dict[str, Archive]:
    """One archive per image, kept beside its program in the build cache (named after the
    image's tag and this file's hash, so that a change to how images are made here makes them
    afresh)."""
    version = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:10]
    archives: dict[str, Archive] = {}
    for spec in image_specs(programs):
        stem = f"{spec.program.name}-{spec.reference.rsplit(':', 1)[-1]}"
        out = spec.program.with_name(f"{stem}-{version}.oci.tar")
        if out.is_file():
            archives[spec.reference] = _describe(out)
        else:
            archives[spec.reference] = write_oci_archive(spec, out)
            for stale in out.parent.glob(f"{stem}-*.oci.tar"):
                if stale != out:
                    stale.unlink(missing_ok=True)
    return archives


def _describe(path: Path) -> Archive:
    files = read_archive(path)
    index = json.loads(files["index.json"])
    manifest_digest = index["manifests"][0]["digest"]
    manifest = json.loads(files["blobs/sha256/" + manifest_digest.split(":", 1)[1]])
    return Archive(path, manifest["config"]["digest"], manifest_digest)
