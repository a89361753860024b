"""The real-manifest corpus (tests/data/real/) through ``readiness audit``: every Deployment
of it is judged, none is an input error, and the index says where each file came from."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest
import yaml
from tests.support.paths import ROOT

from readiness.audit.findings import EXIT_ERRORS, audit
from readiness.audit.manifests import parse

CORPUS = ROOT / "tests" / "data" / "real"
TOOLS = {"kubectl-apply", "kubectl-create", "helm", "argocd", "gitops-ssa"}


def test_the_corpus_is_real_and_recorded() -> None:
    entries = yaml.safe_load((CORPUS / "corpus.yaml").read_text())
    files = {p.name for p in CORPUS.glob("*.yaml")} - {"corpus.yaml"}
    assert files == {e["file"] for e in entries}, "every file is in the index, and only those"
    assert len({e["project"] for e in entries}) >= 8
    assert {e["tool"] for e in entries} == TOOLS
    total = 0
    for entry in entries:
        docs = [d for d in yaml.safe_load_all((CORPUS / entry["file"]).read_text()) if d]
        assert all(d["kind"] == "Deployment" and "namespace" not in d["metadata"] for d in docs), entry
        assert len(docs) == entry["deployments"], entry["file"]
        assert entry["licence"], entry
        assert entry["source"].startswith("https://github.com/"), entry
        total += len(docs)
    assert total >= 40
    readme = (CORPUS / "README.md").read_text()
    assert all(e["file"] in readme for e in entries)


@pytest.mark.parametrize("variant", ["every-section", "portless"])
def test_every_real_deployment_is_judged_by_the_audit(variant: str) -> None:
    """As a manifest (no managedFields: nobody holds a field yet), under each profile."""
    profiles = [
        p
        for p in parse((CORPUS.parent / "real-profiles.yaml").read_text())[0]
        if p.metadata["name"] == variant
    ]
    states: collections.Counter[str] = collections.Counter()
    for entry in yaml.safe_load((CORPUS / "corpus.yaml").read_text()):
        documents, problems = parse((CORPUS / entry["file"]).read_text(), entry["file"])
        result = audit([*documents, *profiles], namespace=Path(entry["file"]).stem, input_errors=problems)
        assert result.input_errors == (), entry["file"]
        assert result.profile_errors == ()
        assert result.exit_code != EXIT_ERRORS
        judged = [f for f in result.findings if f.profile == variant]
        assert len(judged) == entry["deployments"], f"{entry['file']}: every Deployment judged"
        states.update(f.state for f in judged)
    assert set(states) <= {"Compliant", "Violating", "Conflicted", "Invalid"}
    assert states["Violating"] > 0, states


def test_the_audit_reports_the_production_chapters_checks_on_real_deployments() -> None:
    """Under the chapter profile (security in Audit, images, secrets), real manifests show
    every new finding, and no report carries a literal env value."""
    (chapter,) = parse((CORPUS.parent / "chapter-profile.yaml").read_text())[0]
    checks: collections.Counter[str] = collections.Counter()
    for entry in yaml.safe_load((CORPUS / "corpus.yaml").read_text()):
        documents, problems = parse((CORPUS / entry["file"]).read_text(), entry["file"])
        result = audit([*documents, chapter], namespace=Path(entry["file"]).stem, input_errors=problems)
        assert result.profile_errors == ()
        for finding in result.findings:
            checks.update(
                {v.check.removesuffix(".missing").removesuffix(".mismatch") for v in finding.violations}
            )
            literal = [
                str(e.get("value"))
                for d in documents
                for c in (d.body.get("spec", {}).get("template", {}).get("spec", {}).get("containers") or ())
                for e in c.get("env") or ()
                if "value" in e and len(str(e.get("value"))) > 6
            ]
            for v in finding.violations:
                if v.check == "secrets.literal":
                    assert not any(value in v.message for value in literal)
    assert set(checks) >= {
        "security.runAsNonRoot",
        "security.allowPrivilegeEscalation",
        "security.capabilities",
        "security.readOnlyRootFilesystem",
        "security.seccompProfile",
        "security.automountServiceAccountToken",
        "images.latest",
        "images.digest",
        "secrets.literal",
    }, checks
