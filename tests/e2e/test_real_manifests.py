"""Real Deployments (tests/data/real/), put in the cluster the way their tools put them, each
file twice: under one profile with every section, and under one without the sections that name
a port. Each Deployment ends Compliant, or Invalid/Conflicted with a reason a person can act on,
after at most one template change, with no write in the minute after, and ``readiness audit``
on the live objects reaches the same state for each."""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.e2e.support import Operator, wait_for
from tests.e2e.tools import Helm, put
from tests.support.kube import Kube
from tests.support.paths import ROOT

pytestmark = pytest.mark.e2e
CORPUS = ROOT / "tests" / "data" / "real"
PROFILES = {
    p["metadata"]["name"]: p for p in yaml.safe_load_all((CORPUS.parent / "real-profiles.yaml").read_text())
}
SETTLED = ("Compliant", "Invalid", "Conflicted")
QUIET_SECONDS = 60


def corpus() -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = yaml.safe_load((CORPUS / "corpus.yaml").read_text())
    return entries


def deployments(entry: dict[str, Any]) -> list[dict[str, Any]]:
    text = (CORPUS / entry["file"]).read_text()
    return [d for d in yaml.safe_load_all(text) if d and d.get("kind") == "Deployment"]


def service_accounts(docs: list[dict[str, Any]]) -> set[str]:
    pods = [d["spec"]["template"]["spec"] for d in docs]
    return {str(p.get("serviceAccountName") or p.get("serviceAccount")) for p in pods} - {"None", "default"}


@pytest.fixture
def helm(testbed: Any, tmp_path: Path) -> Helm:
    return Helm(testbed, tmp_path / "helm-home")


def live(kube: Kube, namespace: str) -> dict[str, dict[str, Any]]:
    items = kube.json("get", "deployments", "-n", namespace, "--show-managed-fields")["items"]
    return {d["metadata"]["name"]: d for d in items}


def targets(kube: Kube, namespace: str) -> dict[str, dict[str, Any]]:
    (sp,) = kube.json("get", "serviceprofiles", "-n", namespace)["items"]
    return {t["name"]: t for t in sp.get("status", {}).get("targets", [])}


def applied_in(op: Operator, namespace: str) -> int:
    return sum(
        1
        for line in op.log_text().splitlines()
        if '"event": "deployment_applied"' in line and f'"namespace": "{namespace}"' in line
    )


def audited(kube: Kube, namespace: str) -> dict[str, str]:
    """``kubectl get deploy,sp -o yaml | readiness audit -o json``: the state of each."""
    listed = kube.run(
        "get", "deployments,serviceprofiles", "-n", namespace, "-o", "yaml", "--show-managed-fields"
    )
    result = subprocess.run(
        [sys.executable, "-m", "readiness", "audit", "-o", "json", "-n", namespace],
        input=listed.stdout,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode in (0, 1), result.stderr
    report = json.loads(result.stdout)
    return {f["deployment"]: f["state"] for f in report["findings"]}


def test_real_manifests_applied_as_their_tools_apply_them(kube: Kube, operator: Operator, helm: Helm) -> None:
    spaces: dict[str, dict[str, Any]] = {}
    try:
        for entry in corpus():
            for variant in PROFILES:
                stem = Path(entry["file"]).stem
                ns = f"t-real-{stem[:24]}-{variant[:5]}-{uuid.uuid4().hex[:5]}"
                docs = deployments(entry)
                kube.run("create", "namespace", ns)
                for account in sorted(service_accounts(docs)):
                    kube.run("create", "serviceaccount", account, "-n", ns)
                put(entry["tool"], kube, helm, ns, (CORPUS / entry["file"]).read_text(), release=stem)
                spaces[ns] = {
                    "entry": entry,
                    "variant": variant,
                    "names": {d["metadata"]["name"] for d in docs},
                }
        for ns, space in spaces.items():
            found = live(kube, ns)
            assert set(found) == space["names"], f"{space['entry']['file']}: every Deployment created"
            space["before"] = {n: d["metadata"]["generation"] for n, d in found.items()}
            profile = PROFILES[space["variant"]]
            kube.apply(yaml.safe_dump({**profile, "metadata": {**profile["metadata"], "namespace": ns}}))

        def settled() -> bool:
            for ns, space in spaces.items():
                found = targets(kube, ns)
                if set(found) != space["names"] or any(t["state"] not in SETTLED for t in found.values()):
                    return False
            return True

        wait_for(settled, timeout=240, what="every real Deployment settled")
        after = {ns: {n: d["metadata"]["generation"] for n, d in live(kube, ns).items()} for ns in spaces}
        writes = {ns: applied_in(operator, ns) for ns in spaces}
        time.sleep(QUIET_SECONDS)

        table: dict[tuple[str, str, str], int] = collections.Counter()
        for ns, space in spaces.items():
            entry, found, now = space["entry"], targets(kube, ns), live(kube, ns)
            audit = audited(kube, ns)
            for name in sorted(space["names"]):
                t, where = found[name], f"{entry['file']}: {name}"
                table[(space["variant"], entry["tool"], t["state"])] += 1
                assert t["state"] in SETTLED, where
                assert after[ns][name] <= space["before"][name] + 1, f"{where}: at most one template change"
                assert now[name]["metadata"]["generation"] == after[ns][name], f"{where}: written again"
                if t["state"] == "Conflicted":
                    assert t["conflicts"], where
                    assert all(c["manager"] and c["field"] for c in t["conflicts"]), where
                if t["state"] == "Invalid":
                    assert t["violations"], where
                    assert t["message"], where
                if t["state"] == "Compliant":
                    assert t["compliant"], where
                assert audit.get(name) == t["state"], f"{where}: the audit says {audit.get(name)}"
            assert applied_in(operator, ns) == writes[ns], f"{entry['file']}: no write in the quiet minute"
        rows = sorted({(variant, tool) for variant, tool, _ in table})
        lines = [f"{'profile':15}{'tool':16}" + "".join(f"{s:>12}" for s in SETTLED)]
        lines += [
            f"{variant:15}{tool:16}" + "".join(f"{table[(variant, tool, s)]:>12}" for s in SETTLED)
            for variant, tool in rows
        ]
        sys.stderr.write("real manifests, final state per tool:\n" + "\n".join(lines) + "\n")
    finally:
        for ns in spaces:
            kube.run("delete", "namespace", ns, "--wait=false", check=False)
