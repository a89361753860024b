"""The install: `kubectl apply -k deploy/` is accepted, and RBAC grants what is needed and no more."""

from __future__ import annotations

from functools import partial

import pytest
from tests.conftest import ROOT, Kube
from tests.e2e.conftest import wait_for

pytestmark = pytest.mark.e2e
SA = "system:serviceaccount:readiness-system:readiness-operator"


def test_install_is_accepted_and_least_privilege(kube: Kube, crd: None) -> None:
    # Objects whose kind a CRD in the same bundle defines cannot be dry-run before the CRD
    # exists, so the namespace and the CRDs go in for real first, as an install would.
    kube.run("apply", "--server-side", "-f", str(ROOT / "deploy" / "namespace.yaml"))
    kube.run(
        "apply",
        "--server-side",
        "-f",
        str(ROOT / "deploy" / "peering-crds.yaml"),
        "--force-conflicts",
        check=False,
    )
    kube.run("wait", "--for=condition=Established", "crd/clusterkopfpeerings.kopf.dev", "--timeout=60s")
    dry = kube.run("apply", "--server-side", "--dry-run=server", "-k", str(ROOT / "deploy"))
    assert "deployment.apps/readiness-operator serverside-applied (server dry run)" in dry.stdout
    kube.run("apply", "--server-side", "-f", str(ROOT / "deploy" / "rbac.yaml"))

    def can(verb: str, resource: str, *extra: str) -> bool:
        result = kube.run("auth", "can-i", verb, resource, f"--as={SA}", *extra, check=False)
        return result.stdout.strip() == "yes"

    for verb, resource in (
        ("patch", "deployments.apps"),
        ("watch", "deployments.apps"),
        ("list", "serviceprofiles.readiness.dev"),
        ("create", "events"),
        ("patch", "kopfpeerings.kopf.dev"),
    ):
        # The apiserver's RBAC cache follows a new binding within moments, not instantly.
        wait_for(partial(can, verb, resource, "-n", "shop"), timeout=20, what=f"{SA} may {verb} {resource}")
    assert can("patch", "serviceprofiles.readiness.dev", "--subresource=status", "-n", "shop")
    for verb, resource in (
        ("get", "secrets"),
        ("list", "secrets"),
        ("create", "pods/exec"),
        ("delete", "deployments.apps"),
        ("create", "deployments.apps"),
        ("patch", "serviceprofiles.readiness.dev"),
        ("delete", "namespaces"),
        ("get", "configmaps"),
    ):
        assert not can(verb, resource, "-n", "shop"), f"must not {verb} {resource}"
