"""What a profile wants of one Deployment: every section's fragments and problems, in order.

Fragments are computed from the profile and the live Deployment only (level-triggered), then
merged into one apply configuration by ``evaluate``. Each section is a module of
``engine.sections`` with the same signature (a ``SectionInput`` in, a ``SectionResult`` out);
``SECTIONS`` holds them in order and ``plan`` runs them.
"""

from __future__ import annotations

from readiness.engine.fragments import Managed, Plan, Problem, SectionInput
from readiness.engine.sections import SECTIONS
from readiness.engine.view import DeploymentView
from readiness.models.profile import ServiceProfileSpec


def plan(spec: ServiceProfileSpec, view: DeploymentView) -> Plan:
    """Every fragment the profile asks of this Deployment, and what blocks it: for each managed
    container what each section asks of it, then what each section asks of the pod."""
    names = [str(c.get("name")) for c in view.containers]
    wanted = list(spec.containers) or names
    missing = [n for n in wanted if n not in names]
    if missing:
        return Plan(
            problems=[
                Problem(
                    "containers.unknown",
                    "spec.template.spec.containers",
                    f"container(s) {', '.join(missing)} named by the profile do not exist (have: {', '.join(names)})",
                )
            ]
        )
    live = {str(c.get("name")): c for c in view.containers}
    managed = tuple(Managed.of(n, live[n]) for n in names if n in wanted)  # the Deployment's order
    ctx = SectionInput(spec, view, managed)
    results = [section(ctx) for section in SECTIONS]
    out = Plan()
    for index in range(len(managed)):
        for result in results:
            out.extend(result.containers[index])
    for result in results:
        out.extend(result.pod)
    return out
