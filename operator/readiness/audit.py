"""``readiness audit``: the engine on manifests, before they reach a cluster (CI, reviews)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from . import API_GROUP, KIND
from .engine import DeploymentView, Evaluation, judge
from .models import ServiceProfileSpec, Target


@dataclass(frozen=True)
class Finding:
    """A Deployment under one profile that selects it: the same verdict the operator reaches."""

    profile: str
    deployment: str
    target: Target
    evaluation: Evaluation | None  # None when the Deployment is Ambiguous

    @property
    def compliant(self) -> bool:
        return self.target.compliant


def audit(documents: Iterable[Mapping[str, Any]]) -> tuple[list[Finding], list[str]]:
    """Evaluate every Deployment against the profiles of its namespace; also return spec errors."""
    docs = [d for d in documents if isinstance(d, Mapping)]
    profiles: list[tuple[str, str, ServiceProfileSpec]] = []
    errors: list[str] = []
    for doc in docs:
        if doc.get("kind") == KIND and str(doc.get("apiVersion", "")).startswith(f"{API_GROUP}/"):
            meta = doc.get("metadata") or {}
            name = f"{meta.get('namespace', 'default')}/{meta.get('name', '?')}"
            try:
                spec = ServiceProfileSpec.model_validate(doc.get("spec") or {})
            except ValidationError as error:
                errors.append(
                    f"ServiceProfile {name}: {error.errors()[0]['loc']}: {error.errors()[0]['msg']}"
                )
                continue
            profiles.append((str(meta.get("namespace", "default")), str(meta.get("name")), spec))
    findings: list[Finding] = []
    for doc in docs:
        if doc.get("kind") != "Deployment":
            continue
        view = DeploymentView.from_body(
            {**doc, "metadata": {"namespace": "default", **(doc.get("metadata") or {})}}
        )
        judgement = judge(
            view, {name: spec for namespace, name, spec in profiles if namespace == view.namespace}
        )
        for name, target in sorted(judgement.targets.items()):
            evaluation = judgement.evaluation if name == judgement.owner else None
            findings.append(Finding(f"{view.namespace}/{name}", view.name, target, evaluation))
    return findings, errors


def render(findings: list[Finding], errors: list[str]) -> str:
    lines = [f"error: {e}" for e in errors]
    for f in findings:
        ev = f.evaluation
        if ev is None:
            lines.append(
                f"{f.deployment} (profile {f.profile}): {f.target.state.lower()}: {f.target.message}"
            )
            continue
        state = (
            "compliant"
            if ev.compliant
            else f"{len(ev.problems) + len(ev.violations) + len(ev.conflicts)} finding(s)"
        )
        lines.append(f"{f.deployment} (profile {f.profile}): {state}")
        lines += [f"  {v.check:<36} {v.field}: {v.message}" for v in (*ev.problems, *ev.violations)]
        lines += [f"  {'conflict':<36} {c.field}: owned by {c.manager}" for c in ev.conflicts]
    if not findings and not errors:
        lines.append("no Deployment is selected by a ServiceProfile in these manifests")
    return "\n".join(lines)
