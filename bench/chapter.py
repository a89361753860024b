"""How many real Deployments already do what the production chapter's last sections ask.

``python -m bench.chapter`` audits every Deployment of the real-manifest corpus
(tests/data/real/, see its README for provenance) under tests/data/chapter-profile.yaml (the
security section in mode Audit, images with a digest required, secrets) and prints per check how
many Deployments pass it: a kube-score/Polaris-style table, from the operator's own engine.
Nothing here touches a cluster.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from readiness.engine import DeploymentView
from readiness.engine.evaluate import evaluate
from readiness.models import ServiceProfileSpec

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "data" / "real"
CHAPTER = ServiceProfileSpec.model_validate(
    yaml.safe_load((CORPUS.parent / "chapter-profile.yaml").read_text())["spec"]
)
CHECKS = (
    "security.runAsNonRoot",
    "security.allowPrivilegeEscalation",
    "security.capabilities",
    "security.readOnlyRootFilesystem",
    "security.seccompProfile",
    "security.automountServiceAccountToken",
    "images.latest",
    "images.digest",
    "secrets.literal",
)


def deployments() -> list[dict[str, Any]]:
    found = []
    for path in sorted(CORPUS.glob("*.yaml")):
        if path.name == "corpus.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "Deployment":
                found.append(doc)
    return found


def main() -> int:
    items = deployments()
    failing: Counter[str] = Counter()
    for body in items:
        ev = evaluate(CHAPTER, DeploymentView.from_body(body))
        failed = {c for c in CHECKS for v in ev.violations if v.check == c or v.check.startswith(f"{c}.")}
        failing.update(failed)
    print(
        f"{len(items)} real Deployments (tests/data/real), one profile: security (Audit), images, secrets\n"
    )
    print("| check | pass | fail |\n| --- | ---: | ---: |")
    for check in CHECKS:
        print(f"| `{check}` | {len(items) - failing[check]} | {failing[check]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
