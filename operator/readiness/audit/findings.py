"""``readiness audit``: the engine on manifests, before they reach a cluster (CI, reviews).

``audit(documents)`` is the library face: Kubernetes objects in (``manifests.Document``s, or
plain mappings as ``yaml.safe_load_all`` gives them), an ``Audit`` out. It holds

- a finding per Deployment and profile that selects it: the verdict the operator would reach,
  from the same ``engine.judge`` (Compliant, Violating, Conflicted, Ambiguous, Invalid);
- a finding per Deployment that no profile of its namespace selects (``Unselected``);
- the profiles the apiserver would refuse, each reason naming the field (``admission``);
- what could not be read at all (``manifests.InputError``).

``Audit.exit_code`` is the command's: 2 for input and profile errors, 1 for findings that fail
(an Unselected Deployment only with ``require_profile``), else 0. ``report`` renders it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from readiness import API_GROUP, API_VERSION, KIND
from readiness.audit.manifests import Document, InputError, objects
from readiness.audit.validation import ProfileValidator
from readiness.engine import DeploymentView, Evaluation, judge
from readiness.models import Conflict, ServiceProfileSpec, Violation

PROFILE_API_VERSION = f"{API_GROUP}/{API_VERSION}"
UNSELECTED = "Unselected"
EXIT_OK, EXIT_FINDINGS, EXIT_ERRORS = 0, 1, 2


@dataclass(frozen=True)
class Finding:
    """A Deployment under one profile that selects it, or under none (state ``Unselected``)."""

    document: Document
    namespace: str
    deployment: str
    profile: str | None  # the selecting profile's name (of the same namespace); None when Unselected
    state: str  # Compliant, Violating, Conflicted, Ambiguous, Invalid or Unselected
    message: str = ""
    violations: tuple[Violation, ...] = ()
    conflicts: tuple[Conflict, ...] = ()
    evaluation: Evaluation | None = None  # None when Ambiguous or Unselected: no profile applies

    @property
    def compliant(self) -> bool:
        return self.state == "Compliant"


@dataclass(frozen=True)
class ProfileError:
    """One reason the apiserver would refuse a ServiceProfile of the input."""

    document: Document
    namespace: str
    name: str
    field: str  # spec.probes.port, as the apiserver names it
    message: str

    @property
    def line(self) -> int:
        return self.document.line_of(self.field)


@dataclass(frozen=True)
class Audit:
    findings: tuple[Finding, ...] = ()
    profile_errors: tuple[ProfileError, ...] = ()
    input_errors: tuple[InputError, ...] = ()
    require_profile: bool = False

    def fails(self, finding: Finding) -> bool:
        """True when ``finding`` fails the build: not compliant, and not merely Unselected
        unless a profile is required."""
        return not finding.compliant and (finding.state != UNSELECTED or self.require_profile)

    @property
    def exit_code(self) -> int:
        if self.input_errors or self.profile_errors:
            return EXIT_ERRORS
        return EXIT_FINDINGS if any(self.fails(f) for f in self.findings) else EXIT_OK


def audit(
    documents: Iterable[Document | Mapping[str, Any]],
    *,
    namespace: str = "default",
    require_profile: bool = False,
    input_errors: Sequence[InputError] = (),
) -> Audit:
    """Check the ServiceProfiles among ``documents`` as admission would, then judge every
    Deployment under the valid profiles of its namespace (``namespace`` for objects that name
    none, as ``kubectl apply -n``). ``input_errors`` found while reading are carried along."""
    docs: list[Document] = []
    for doc in documents:
        if isinstance(doc, Document):
            docs.append(doc)
        elif isinstance(doc, Mapping):
            docs += objects(doc)
    profiles, refused, errors = _profiles(docs, namespace)
    findings: list[Finding] = []
    problems = list(input_errors)
    if not docs and not problems:
        # An empty pipe (a `kubectl get` that failed upstream) must not pass as "all compliant".
        problems.append(
            InputError("<input>", None, "holds no Kubernetes object; check what was piped in or named")
        )
    for doc in docs:
        misfiled = _misfiled(doc)
        if misfiled:
            problems.append(InputError(doc.source, doc.line, misfiled))
            continue
        if doc.kind != "Deployment":
            continue
        ns = _namespace(doc, namespace)
        name = str(doc.metadata.get("name", ""))
        problem = _unreadable(doc.body)
        if problem:
            problems.append(
                InputError(
                    doc.source, doc.line, f"Deployment {ns}/{name or '?'}: {problem}; fix the manifest"
                )
            )
            continue
        try:
            view = DeploymentView.from_body({**doc.body, "metadata": {**doc.metadata, "namespace": ns}})
            judgement = judge(view, profiles.get(ns, {}))
        except (TypeError, ValueError, KeyError, AttributeError, ArithmeticError, RecursionError) as error:
            # A shape the apiserver would refuse, deeper than _unreadable looks (a string where
            # resources.limits should be): the engine reads only valid Deployments.
            problems.append(
                InputError(
                    doc.source,
                    doc.line,
                    f"Deployment {ns}/{name}: is not a valid apps/v1 Deployment ({type(error).__name__}: "
                    f"{error}); check it with `kubectl apply --dry-run=server -f`",
                )
            )
            continue
        if not judgement.targets:
            why = f"no ServiceProfile of namespace {ns} in these manifests selects it"
            if refused.get(ns):
                why += f" (refused, so not applied: {', '.join(sorted(refused[ns]))})"
            findings.append(Finding(doc, ns, view.name, None, UNSELECTED, why))
        for owner, target in sorted(judgement.targets.items()):
            findings.append(
                Finding(
                    doc,
                    ns,
                    view.name,
                    owner,
                    target.state,
                    target.message,
                    tuple(target.violations),
                    tuple(target.conflicts),
                    judgement.evaluation if owner == judgement.owner else None,
                )
            )
    return Audit(tuple(findings), tuple(errors), tuple(problems), require_profile)


def _profiles(
    docs: list[Document], default_namespace: str
) -> tuple[dict[str, dict[str, ServiceProfileSpec]], dict[str, set[str]], list[ProfileError]]:
    """The valid profiles by namespace and name, the names of the refused ones, and why."""
    valid: dict[str, dict[str, ServiceProfileSpec]] = {}
    refused: dict[str, set[str]] = {}
    errors: list[ProfileError] = []
    seen: dict[tuple[str, str], Document] = {}
    admission: ProfileValidator | None = None
    for doc in docs:
        if doc.kind != KIND or not doc.api_version.startswith(f"{API_GROUP}/"):
            continue
        ns = _namespace(doc, default_namespace)
        name = doc.metadata.get("name")
        found: list[tuple[str, str]] = []
        if not isinstance(name, str) or not name:
            name = "?"
            found.append(("metadata.name", "Required value: name the ServiceProfile"))
        found += [
            (
                key,
                f'unknown field "{key}": a ServiceProfile has apiVersion, kind, metadata, spec (and status)',
            )
            for key in doc.body
            if key not in ("apiVersion", "kind", "metadata", "spec", "status")
        ]
        if doc.api_version != PROFILE_API_VERSION:
            found.append(
                ("apiVersion", f"{doc.api_version} is not served; use apiVersion: {PROFILE_API_VERSION}")
            )
        if (ns, name) in seen and name != "?":
            first = seen[(ns, name)]
            found.append(
                (
                    "metadata.name",
                    f"ServiceProfile {ns}/{name} is defined twice (also at {first.source}:{first.line}); "
                    "the later one would replace the earlier: keep one",
                )
            )
        seen.setdefault((ns, name), doc)
        admission = admission or ProfileValidator()
        model, refusals = admission.check(doc.body.get("spec"))
        found += [(e.field, e.message) for e in refusals]
        if found or model is None:
            refused.setdefault(ns, set()).add(name)
            valid.get(ns, {}).pop(name, None)
            errors += [ProfileError(doc, ns, name, field, message) for field, message in found]
            continue
        if name not in refused.get(ns, set()):
            valid.setdefault(ns, {})[name] = model
    return valid, refused, errors


def _misfiled(doc: Document) -> str:
    """Why a Deployment or ServiceProfile would be skipped for its apiVersion ("" if it would
    not): a typo there must be an error, not a Deployment the audit silently never saw."""
    if doc.kind == "Deployment" and doc.api_version != "apps/v1":
        return f"a Deployment needs apiVersion apps/v1, not {doc.api_version!r}: fix the manifest"
    if doc.kind == KIND and doc.api_version != PROFILE_API_VERSION:
        return f"a {KIND} needs apiVersion {PROFILE_API_VERSION}, not {doc.api_version!r}: fix the manifest"
    return ""


def _namespace(doc: Document, default: str) -> str:
    namespace = doc.metadata.get("namespace")
    return namespace if isinstance(namespace, str) and namespace else default


def _unreadable(body: Mapping[str, Any]) -> str:
    """What makes ``body`` no apps/v1 Deployment the engine can read ("" when nothing does)."""
    meta = body.get("metadata")
    if not isinstance(meta, Mapping) or not isinstance(meta.get("name"), str) or not meta["name"]:
        return "metadata.name: Required value"
    for where, value in (("metadata.labels", meta.get("labels")),):
        if value is not None and not _string_map(value):
            return f"{where} must map strings to strings"
    spec = body.get("spec")
    if not isinstance(spec, Mapping):
        return "spec: Required value"
    if spec.get("replicas") is not None and (
        not isinstance(spec["replicas"], int) or isinstance(spec["replicas"], bool)
    ):
        return "spec.replicas must be of type integer"
    template = spec.get("template")
    if not isinstance(template, Mapping):
        return "spec.template: Required value"
    tmeta = template.get("metadata") or {}
    if not isinstance(tmeta, Mapping):
        return "spec.template.metadata must be of type object"
    for key in ("labels", "annotations"):
        if tmeta.get(key) is not None and not _string_map(tmeta[key]):
            return f"spec.template.metadata.{key} must map strings to strings"
    pod = template.get("spec")
    containers = pod.get("containers") if isinstance(pod, Mapping) else None
    if not isinstance(containers, list) or not containers:
        return "spec.template.spec.containers: Required value (at least one container)"
    grace = pod.get("terminationGracePeriodSeconds") if isinstance(pod, Mapping) else None
    if grace is not None and (not isinstance(grace, int) or isinstance(grace, bool)):
        return "spec.template.spec.terminationGracePeriodSeconds must be of type integer"
    for index, container in enumerate(containers):
        where = f"spec.template.spec.containers[{index}]"
        if not isinstance(container, Mapping) or not isinstance(container.get("name"), str):
            return f"{where}.name: Required value"
        for key, required in (("ports", "containerPort"), ("env", "name")):
            items = container.get(key)
            if items is None:
                continue
            if not isinstance(items, list) or not all(
                isinstance(i, Mapping) and i.get(required) is not None for i in items
            ):
                return f"{where}.{key} must be a list of objects with {required}"
        for port in container.get("ports") or ():
            if not isinstance(port["containerPort"], int) or isinstance(port["containerPort"], bool):
                return f"{where}.ports[].containerPort must be of type integer"
        for key in ("resources", "lifecycle"):
            if container.get(key) is not None and not isinstance(container[key], Mapping):
                return f"{where}.{key} must be of type object"
        for group in ("requests", "limits"):
            quantities = (container.get("resources") or {}).get(group)
            if quantities is not None and not isinstance(quantities, Mapping):
                return f"{where}.resources.{group} must be of type object"
    return ""


def _string_map(value: Any) -> bool:
    return isinstance(value, Mapping) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )
