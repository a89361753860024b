"""The install: `kubectl apply -k deploy/` is accepted, its pods pass the restricted Pod Security
level, and its RBAC grants what the operator needs and nothing more. On a control plane of its
own, one `kubectl apply --server-side -k` installs on a fresh cluster and one `kubectl delete -k`
removes it all."""

from __future__ import annotations

import copy
import os
import subprocess
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.e2e.support import (
    CRDS,
    IMAGE,
    events,
    own_control_plane,
    start_operator,
    stop_operator,
    wait_for,
    web_and_profile,
    without_the_crds,
)
from tests.support.kube import Kube
from tests.support.paths import ROOT

from readiness_testbed import Testbed as ControlPlane

pytestmark = pytest.mark.e2e
DEPLOY = ROOT / "deploy"
NAMESPACE = "readiness-system"
ACCOUNT = "readiness-operator"
SA = f"system:serviceaccount:{NAMESPACE}:{ACCOUNT}"


def can(kube: Kube, verb: str, resource: str, *extra: str) -> bool:
    result = kube.run("auth", "can-i", verb, resource, f"--as={SA}", *extra, check=False)
    return result.stdout.strip() == "yes"


@pytest.fixture(scope="module")
def rendered(kube: Kube, crd: None) -> list[dict[str, Any]]:
    """The install as kustomize renders it, with what must exist before the rest of it can even
    be dry-run already applied for real: the namespace (namespaced objects cannot be dry-run into
    a namespace that does not exist), the peering CRDs and the RBAC. Server-side apply makes this
    idempotent. The ServiceProfile CRD stays as the session installed it (the `crd` fixture); the
    real first install is test_one_apply_installs_on_a_fresh_cluster_and_one_delete_removes_it."""
    for manifest in ("namespace.yaml", "peering-crds.yaml", "rbac.yaml"):
        kube.run("apply", "--server-side", "-f", str(DEPLOY / manifest))
    kube.established("clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev")
    # The apiserver's RBAC cache follows a new binding within moments, not instantly.
    wait_for(partial(can, kube, "patch", "deployments.apps", "-A"), timeout=20, what=f"RBAC for {SA}")
    return [d for d in yaml.safe_load_all(kube.run("kustomize", str(DEPLOY)).stdout) if d]


def test_the_whole_install_is_accepted_by_the_apiserver(kube: Kube, rendered: list[dict[str, Any]]) -> None:
    dry = kube.run("apply", "--server-side", "--dry-run=server", "-k", str(DEPLOY))
    suffix = " serverside-applied (server dry run)"
    accepted = {line.removesuffix(suffix) for line in dry.stdout.splitlines() if line.endswith(suffix)}
    expected: set[str] = set()
    for doc in rendered:
        group = doc["apiVersion"].rpartition("/")[0]
        expected.add(f"{doc['kind'].lower()}{'.' + group if group else ''}/{doc['metadata']['name']}")
    assert accepted == expected


def test_operator_pods_pass_the_restricted_pod_security_level(
    kube: Kube, rendered: list[dict[str, Any]]
) -> None:
    (deployment,) = [d for d in rendered if d["kind"] == "Deployment"]
    template = deployment["spec"]["template"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "admission-check", "namespace": NAMESPACE, **template["metadata"]},
        "spec": template["spec"],
    }
    kube.run("create", "-f", "-", "--dry-run=server", input_text=yaml.safe_dump(pod))
    # The same pod without its security contexts is refused: the namespace enforces the level.
    loose = copy.deepcopy(pod)
    del loose["spec"]["securityContext"]
    for container in loose["spec"]["containers"]:
        del container["securityContext"]
    refused = kube.run("create", "-f", "-", "--dry-run=server", input_text=yaml.safe_dump(loose), check=False)
    assert refused.returncode != 0
    assert 'violates PodSecurity "restricted' in refused.stderr


@pytest.mark.usefixtures("rendered")
def test_the_service_account_may_do_what_the_operator_does_and_nothing_more(kube: Kube) -> None:
    for verb, resource, *extra in (
        ("patch", "deployments.apps", "-n", "shop"),
        ("watch", "deployments.apps", "-A"),
        ("list", "replicasets.apps", "-n", "shop"),
        ("watch", "serviceprofiles.readiness.dev", "-A"),
        ("patch", "serviceprofiles.readiness.dev", "--subresource=status", "-n", "shop"),
        ("create", "events", "-n", "shop"),
        ("create", "events.events.k8s.io", "-n", "shop"),
        ("patch", "clusterkopfpeerings.kopf.dev"),
        ("patch", "kopfpeerings.kopf.dev", "-n", "shop"),
        # The operator creates its peering object when it is missing.
        ("create", "clusterkopfpeerings.kopf.dev"),
        ("create", "kopfpeerings.kopf.dev", "-n", "shop"),
        ("watch", "customresourcedefinitions.apiextensions.k8s.io"),
        ("watch", "namespaces"),
    ):
        assert can(kube, verb, resource, *extra), f"{SA} must be allowed to {verb} {resource}"
    for verb, resource, *extra in (
        ("get", "secrets", "-n", "shop"),
        ("list", "secrets", "-A"),
        ("create", "pods", "--subresource=exec", "-n", "shop"),
        ("get", "pods", "-n", "shop"),
        ("delete", "deployments.apps", "-n", "shop"),
        ("create", "deployments.apps", "-n", "shop"),
        ("update", "deployments.apps", "-n", "shop"),
        ("patch", "replicasets.apps", "-n", "shop"),
        ("delete", "replicasets.apps", "-n", "shop"),
        ("patch", "serviceprofiles.readiness.dev", "-n", "shop"),
        ("delete", "serviceprofiles.readiness.dev", "-n", "shop"),
        ("delete", "namespaces"),
        ("get", "configmaps", "-n", "shop"),
        ("delete", "clusterkopfpeerings.kopf.dev"),
        ("patch", "customresourcedefinitions.apiextensions.k8s.io"),
        ("bind", "clusterroles.rbac.authorization.k8s.io"),
        ("impersonate", "serviceaccounts", "-n", NAMESPACE),
    ):
        assert not can(kube, verb, resource, *extra), f"{SA} must not {verb} {resource}"


@pytest.fixture
def solo_namespace(kube: Kube) -> Iterator[str]:
    # Not t-*: the session's operator must not act here.
    name = f"solo-rbac-{uuid.uuid4().hex[:6]}"
    kube.run("create", "namespace", name)
    yield name
    kube.run("delete", "namespace", name, "--wait=false", check=False)


def _service_account_kubeconfig(kube: Kube, path: Path) -> Path:
    admin = kube.json("config", "view", "--raw", "--minify")
    token = kube.run("create", "token", ACCOUNT, "-n", NAMESPACE, "--duration=10m").stdout.strip()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": admin["clusters"],
        "users": [{"name": ACCOUNT, "user": {"token": token}}],
        "contexts": [
            {"name": ACCOUNT, "context": {"cluster": admin["clusters"][0]["name"], "user": ACCOUNT}}
        ],
        "current-context": ACCOUNT,
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.usefixtures("rendered")
def test_the_operator_works_with_nothing_but_its_granted_rights(
    kube: Kube, solo_namespace: str, tmp_path: Path
) -> None:
    """can-i shows what is granted; only the real operator shows that it is enough."""
    ns = solo_namespace
    kube.apply(web_and_profile(ns))  # no KopfPeering: the operator makes its own with its rights
    op = start_operator(
        _service_account_kubeconfig(kube, tmp_path / "kubeconfig"),
        tmp_path,
        "rbac",
        environ={"POD_ID": f"rbac-{ns}"},
        namespaces=f"{ns}*",  # a glob, so that kopf also lists and watches namespaces, as a sharded install would
        peering=ACCOUNT,
        resync_seconds="5",
    )
    log = op.log
    try:
        wait_for(
            lambda: _compliant(kube, ns, op.process, log),
            timeout=60,
            what=f"profile web Compliant (log: {log})",
        )
        resources = kube.json("get", "deployment", "web", "-n", ns)["spec"]["template"]["spec"]["containers"][
            0
        ]
        assert resources["resources"]["limits"] == {"memory": "128Mi"}
        wait_for(  # Events go out after the work
            lambda: events(kube, ns, "reason=ProfileApplied"),
            what="the operator posted its event",
        )
        peering = kube.json("get", "kopfpeering", ACCOUNT, "-n", ns)
        assert f"rbac-{ns}" in peering.get("status", {})
    finally:
        stop_operator(op)
    text = log.read_text(errors="replace")
    assert "forbidden" not in text.lower(), f"a call was denied ({log}):\n{text[-3000:]}"


def _compliant(kube: Kube, ns: str, process: subprocess.Popen[bytes], log: Path) -> bool:
    text = log.read_text(errors="replace")
    if process.poll() is not None:
        raise AssertionError(f"operator exited with {process.returncode}:\n{text[-3000:]}")
    if "forbidden" in text.lower():
        raise AssertionError(f"a call was denied ({log}):\n{text[-3000:]}")
    profile = kube.json("get", "serviceprofile", "web", "-n", ns)
    conditions = profile.get("status", {}).get("conditions", [])
    return any(c["type"] == "Compliant" and c["status"] == "True" for c in conditions)


# --- the first install and the uninstall, on a control plane of their own ---------------------
# Both delete the CRDs, which would stop the session's operator (see test_faults.py); a control
# plane of their own is also the fresh cluster the first install must work on.


@pytest.fixture(scope="module")
def fresh_bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    yield from own_control_plane(tmp_path_factory, "install")


@pytest.fixture
def fresh_kube(fresh_bed: ControlPlane) -> Kube:
    return without_the_crds(fresh_bed)


def _overlay(tmp_path: Path, tag: str) -> Path:
    """What a user writes to set the image: an overlay of deploy/ with its own `images:` entry."""
    overlay = tmp_path / "overlay"
    overlay.mkdir(parents=True)
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(DEPLOY, overlay)],  # kustomize refuses absolute paths
        "images": [{"name": "readiness-operator", "newName": IMAGE, "newTag": tag}],
    }
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return overlay


def test_one_apply_installs_on_a_fresh_cluster_and_one_delete_removes_it(
    fresh_kube: Kube, tmp_path: Path
) -> None:
    kube = fresh_kube
    overlay = _overlay(tmp_path, "9.9.9")
    rendered = [d for d in yaml.safe_load_all(kube.run("kustomize", str(overlay)).stdout) if d]
    applied = kube.run("apply", "--server-side", "-k", str(overlay), check=False)
    assert applied.returncode == 0, f"the first apply failed:\n{applied.stdout}\n{applied.stderr}"
    assert "error" not in applied.stderr.lower(), applied.stderr
    for doc in rendered:
        kind, name = doc["kind"].lower(), doc["metadata"]["name"]
        ns = doc["metadata"].get("namespace")
        kube.run("get", kind, name, *(["-n", ns] if ns else []))
    kube.established(*CRDS)
    deployment = kube.json("get", "deployment", ACCOUNT, "-n", NAMESPACE)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"{IMAGE}:9.9.9"
    # The pods are admitted under the restricted level the namespace enforces (kwok runs them).
    kube.run("rollout", "status", f"deployment/{ACCOUNT}", "-n", NAMESPACE, "--timeout=90s")
    assert kube.json("get", "namespace", NAMESPACE)["metadata"]["labels"][
        "pod-security.kubernetes.io/enforce"
    ] == ("restricted")
    # The CRDs serve: a profile is accepted (and the install made no custom resource of its own).
    kube.run("create", "namespace", "shop")
    profile = {
        "apiVersion": "readiness.dev/v1alpha1",
        "kind": "ServiceProfile",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}},
    }
    kube.apply(yaml.safe_dump(profile), "--server-side")
    assert not kube.json("get", "clusterkopfpeerings")["items"]

    # Upgrade: the same command with a new tag changes the image, and only that.
    upgraded = kube.run("apply", "--server-side", "-k", str(_overlay(tmp_path / "v2", "9.9.10")), check=False)
    assert upgraded.returncode == 0, upgraded.stderr
    (container,) = kube.json("get", "deployment", ACCOUNT, "-n", NAMESPACE)["spec"]["template"]["spec"][
        "containers"
    ]
    assert container["image"] == f"{IMAGE}:9.9.10"

    # --wait=false: kubectl would wait for the CRDs to go, and the apiserver's CRD cleanup can
    # fail once with "could not list instances: storage is (re)initializing" (the CRD's storage is
    # rebuilt as it turns Terminating) and back off for minutes before it finishes.
    deleted = kube.run("delete", "-k", str(overlay), "--wait=false", check=False)
    assert deleted.returncode == 0, f"the uninstall failed:\n{deleted.stdout}\n{deleted.stderr}"
    for doc in rendered:
        kind, name = doc["kind"].lower(), doc["metadata"]["name"]
        ns = doc["metadata"].get("namespace")
        wait_for(
            partial(_gone, kube, kind, name, ns),
            timeout=360 if kind == "customresourcedefinition" else 120,
            what=f"{kind}/{name} gone",
        )
    # The CRDs went, and every ServiceProfile with them.
    assert not kube.run("get", "crd", "-o", "name").stdout.strip()


def _gone(kube: Kube, kind: str, name: str, namespace: str | None) -> bool:
    result = kube.run("get", kind, name, *(["-n", namespace] if namespace else []), check=False)
    return "NotFound" in result.stderr
