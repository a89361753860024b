"""The Helm chart on a real control plane: one `helm install` on a fresh cluster (CRDs absent),
`helm upgrade` changing a setting changes the Deployment, `helm uninstall` removes everything the
chart created and leaves the CRDs, as Helm does. A namespaced release grants just enough: the
real operator, running with nothing but that release's service account, does its work.

The testbed's pods run on kwok's fake nodes: the image never runs, so these check objects; the
operator's behaviour under the chart's RBAC is checked with a local process using its token.
They run on control planes of their own, fresh ones: on the session's, the CRDs exist and the
session's operator serves them."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.e2e.support import (
    CRDS,
    IMAGE,
    own_control_plane,
    start_operator,
    stop_operator,
    wait_for,
    web_and_profile,
    without_the_crds,
)
from tests.e2e.tools import Helm
from tests.support.kube import Kube
from tests.support.paths import ROOT

from readiness_testbed import Testbed as ControlPlane

pytestmark = pytest.mark.e2e
CHART = ROOT / "charts" / "readiness-operator"


@pytest.fixture
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A control plane per test (up in seconds): a fresh cluster each time, so no test has to
    delete CRDs another one made (the apiserver may take minutes to finish that; see test_deploy)."""
    yield from own_control_plane(tmp_path_factory, "helm")


@pytest.fixture
def fresh_kube(bed: ControlPlane) -> Kube:
    return without_the_crds(bed)


@pytest.fixture
def helm(bed: ControlPlane, tmp_path: Path) -> Helm:
    return Helm(bed, tmp_path / "helm-home")


def get_args(doc: dict[str, Any]) -> list[str]:
    ns = doc["metadata"].get("namespace")
    return [doc["kind"].lower(), doc["metadata"]["name"], *(["-n", ns] if ns else [])]


def container(kube: Kube, name: str, namespace: str) -> dict[str, Any]:
    deployment = kube.json("get", "deployment", name, "-n", namespace)
    (found,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(found)


def env_of(kube: Kube, name: str, namespace: str) -> dict[str, str | None]:
    return {e["name"]: e.get("value") for e in container(kube, name, namespace)["env"]}


def test_install_upgrade_and_uninstall_one_command_each(fresh_kube: Kube, helm: Helm) -> None:
    kube, release, ns = fresh_kube, "ro-cluster", "readiness-helm"
    name = f"{release}-readiness-operator"
    installed = helm.run(
        "install", release, str(CHART), "-n", ns, "--create-namespace",
        "--set", f"image.repository={IMAGE}", "--set", "image.tag=9.9.9",
        "--wait", "--timeout=120s",
    )  # fmt: skip
    # NOTES.txt says how to check it works.
    assert f"kubectl -n {ns} rollout status deployment/{name}" in installed.stdout
    assert "/readyz" in installed.stdout

    # The CRDs came from the chart's crds/, established; every object of the release exists.
    kube.established(*CRDS)
    manifest = helm.manifest(release, ns)
    assert {d["kind"] for d in manifest} == {
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Service",
        "Deployment",
        "PodDisruptionBudget",
    }
    for doc in manifest:
        kube.run("get", *get_args(doc))
    assert container(kube, name, ns)["image"] == f"{IMAGE}:9.9.9"
    assert env_of(kube, name, ns)["READINESS_PEERING"] == name  # two replicas peer
    # The pods would pass the restricted Pod Security level (kwok runs them; --wait saw them ready).
    check = kube.run(
        "label",
        "namespace",
        ns,
        "pod-security.kubernetes.io/enforce=restricted",
        "--dry-run=server",
        "--overwrite",
    )
    assert "violate" not in check.stderr, check.stderr

    # helm upgrade changing a setting changes the Deployment's environment, and nothing else.
    before = kube.json("get", "deployment", name, "-n", ns)["metadata"]["generation"]
    helm.run(
        "upgrade", release, str(CHART), "-n", ns, "--reuse-values",
        "--set", "settings.logLevel=debug", "--set", "settings.workers=8", "--wait", "--timeout=120s",
    )  # fmt: skip
    env = env_of(kube, name, ns)
    assert env["READINESS_LOG_LEVEL"] == "debug"
    assert env["READINESS_WORKERS"] == "8"
    assert container(kube, name, ns)["image"] == f"{IMAGE}:9.9.9"
    assert kube.json("get", "deployment", name, "-n", ns)["metadata"]["generation"] == before + 1

    # helm uninstall removes every object the chart created; the CRDs stay, as Helm does.
    helm.run("uninstall", release, "-n", ns, "--wait", "--timeout=120s")
    for doc in manifest:
        gone = kube.run("get", *get_args(doc), check=False)
        assert "NotFound" in gone.stderr, f"{doc['kind']}/{doc['metadata']['name']} stayed"
    wait_for(lambda: not kube.json("get", "pods", "-n", ns)["items"], timeout=60, what="the pods gone")
    kube.run("get", "crd", *CRDS)
    assert not helm.run("list", "-n", ns, "-q").stdout.strip()
    kube.run("delete", "namespace", ns, "--wait=false")


def _token_kubeconfig(kube: Kube, account: str, namespace: str, path: Path) -> Path:
    admin = kube.json("config", "view", "--raw", "--minify")
    token = kube.run("create", "token", account, "-n", namespace, "--duration=10m").stdout.strip()
    cluster = admin["clusters"][0]["name"]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": admin["clusters"],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": account, "context": {"cluster": cluster, "user": account}}],
        "current-context": account,
    }
    path.write_text(yaml.safe_dump(config))
    return path


def _can(kube: Kube, sa: str, verb: str, resource: str, *extra: str) -> bool:
    result = kube.run("auth", "can-i", verb, resource, f"--as={sa}", *extra, check=False)
    return result.stdout.strip() == "yes"


def _compliant(kube: Kube, namespace: str, op: Any) -> bool:
    text = op.log_text()
    if op.process.poll() is not None:
        raise AssertionError(f"operator exited with {op.process.returncode}:\n{text[-3000:]}")
    if "forbidden" in text.lower():
        raise AssertionError(f"a call was denied ({op.log}):\n{text[-3000:]}")
    status = kube.json("get", "serviceprofile", "web", "-n", namespace).get("status", {})
    return any(c["type"] == "Compliant" and c["status"] == "True" for c in status.get("conditions", []))


def test_a_namespaced_release_grants_just_enough_in_its_namespaces(
    fresh_kube: Kube, helm: Helm, bed: ControlPlane, tmp_path: Path
) -> None:
    kube, release, ns = fresh_kube, "ro-shard", "readiness-shard"
    name = f"{release}-readiness-operator"
    sa = f"system:serviceaccount:{ns}:{name}"
    for namespace in ("team-a", "team-b", "team-c"):
        kube.run("create", "namespace", namespace)
    helm.run(
        "install", release, str(CHART), "-n", ns, "--create-namespace",
        "--set", f"image.repository={IMAGE}", "--set", "watchNamespaces={team-a,team-b}",
        "--wait", "--timeout=120s",
    )  # fmt: skip
    env = env_of(kube, name, ns)
    assert env["READINESS_NAMESPACES"] == "team-a,team-b"
    assert env["READINESS_PEERING"] == name  # two replicas peer, through a KopfPeering per namespace
    assert {d["metadata"].get("namespace") for d in helm.manifest(release, ns) if d["kind"] == "Role"} == {
        "team-a",
        "team-b",
    }
    wait_for(lambda: _can(kube, sa, "patch", "deployments.apps", "-n", "team-a"), timeout=20, what="RBAC")
    for verb, resource, *extra in (
        ("patch", "deployments.apps", "-n", "team-b"),
        ("patch", "serviceprofiles.readiness.dev", "--subresource=status", "-n", "team-a"),
        ("create", "kopfpeerings.kopf.dev", "-n", "team-a"),
        ("patch", "kopfpeerings.kopf.dev", "-n", "team-b"),
        ("list", "kopfpeerings.kopf.dev", "-A"),
        ("watch", "namespaces"),
        ("watch", "customresourcedefinitions.apiextensions.k8s.io"),
    ):
        assert _can(kube, sa, verb, resource, *extra), f"{sa} must be allowed to {verb} {resource} {extra}"
    for verb, resource, *extra in (
        ("patch", "deployments.apps", "-n", "team-c"),
        ("list", "deployments.apps", "-A"),
        ("create", "clusterkopfpeerings.kopf.dev"),
        ("create", "kopfpeerings.kopf.dev", "-n", "team-c"),
        ("get", "secrets", "-n", "team-a"),
    ):
        assert not _can(kube, sa, verb, resource, *extra), f"{sa} must not {verb} {resource} {extra}"

    # The operator, as the Deployment configures it, with nothing but the release's rights: it
    # creates its KopfPeering in each namespace it serves (none elsewhere) and does its work.
    for namespace in ("team-a", "team-b", "team-c"):
        kube.apply(web_and_profile(namespace))
    op = start_operator(
        _token_kubeconfig(kube, name, ns, tmp_path / "kubeconfig"),
        bed.log_dir,
        "helm-shard",
        environ={"POD_ID": "helm-shard"},
        namespaces=env["READINESS_NAMESPACES"] or "",
        peering=name,
        resync_seconds="5",
    )
    try:
        for namespace in ("team-a", "team-b"):
            wait_for(
                partial(_compliant, kube, namespace, op),
                timeout=60,
                what=f"profile in {namespace} Compliant (log: {op.log})",
            )
        # team-c is not this release's: its profile has no status from this operator.
        assert not kube.json("get", "serviceprofile", "web", "-n", "team-c").get("status")
        peerings = kube.json("get", "kopfpeerings", "-A")["items"]
        assert {(p["metadata"]["namespace"], p["metadata"]["name"]) for p in peerings} == {
            ("team-a", name),
            ("team-b", name),
        }
    finally:
        stop_operator(op)
    assert "forbidden" not in op.log_text().lower()

    helm.run("uninstall", release, "-n", ns, "--wait", "--timeout=120s")
    for namespace in ("team-a", "team-b"):
        assert not kube.json("get", "roles,rolebindings", "-n", namespace)["items"]
    for namespace in ("team-a", "team-b", "team-c", ns):
        kube.run("delete", "namespace", namespace, "--wait=false")
