"""An ``Audit`` as ``readiness audit`` prints it: text for people, JSON for scripts, SARIF 2.1.0
for code-scanning services.

The JSON shape (``version`` 1; fields are only ever added)::

    {"version": 1, "exitCode": 1,
     "summary": {"deployments", "compliant", "notCompliant", "unselected", "profileErrors", "inputErrors"},
     "findings": [{"file", "document", "line", "namespace", "deployment", "profile" (null when
                   unselected), "state", "compliant", "fails", "message",
                   "violations": [{"check", "field", "message", "line"}],
                   "conflicts": [{"field", "manager", "line"}]}],
     "profileErrors": [{"file", "document", "line", "namespace", "profile", "field", "message"}],
     "inputErrors": [{"file", "line", "message"}]}

SARIF: one run; ``tool.driver.rules`` are the engine's check ids (``probes.readiness.missing``)
and the audit's own (``profile.invalid``, ``deployment.unselected``, ``deployment.ambiguous``,
``deployment.conflict``); each result points at the file and line of the offending field
(the Deployment's or the profile's own line when the field is absent). Input errors are the
invocation's notifications.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

from readiness.audit.findings import UNSELECTED, Audit, Finding
from readiness.audit.manifests import STDIN_NAME, Document, InputError

SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
SRCROOT = "%SRCROOT%"
JSON_VERSION = 1

# What each engine check fragment concerns; a check id is "<fragment>.missing|mismatch".
_FRAGMENTS = {
    "probes.liveness": "the liveness probe",
    "probes.readiness": "the readiness probe",
    "probes.startup": "the startup probe",
    "resources.requests.cpu": "the CPU request",
    "resources.requests.memory": "the memory request",
    "resources.limits.cpu": "the CPU limit",
    "resources.limits.memory": "the memory limit",
    "shutdown.prestop": "the preStop sleep",
    "metrics.annotations": "the prometheus.io/* scrape annotations",
    "tracing.env": "the OpenTelemetry SDK environment",
    "runtime.go.env": "GOMEMLIMIT/GOMAXPROCS",
    "logging.env": "LOG_FORMAT/LOG_LEVEL",
    "security.runAsNonRoot": "securityContext.runAsNonRoot",
    "security.allowPrivilegeEscalation": "securityContext.allowPrivilegeEscalation",
    "security.capabilities": "securityContext.capabilities.drop [ALL]",
    "security.readOnlyRootFilesystem": "securityContext.readOnlyRootFilesystem",
    "security.seccompProfile": "the RuntimeDefault seccomp profile",
    "security.automountServiceAccountToken": "the pod's automountServiceAccountToken setting",
    "profiling.annotations": "the profiles.grafana.com/* profiling annotations",
}
RULES: dict[str, str] = {
    **{
        f"{check}.missing": f"The Deployment lacks {what} the profile declares"
        for check, what in _FRAGMENTS.items()
    },
    **{
        f"{check}.mismatch": f"{what[0].upper()}{what[1:]} on the Deployment does not match the profile"
        for check, what in _FRAGMENTS.items()
    },
    "shutdown.grace.too-short": "terminationGracePeriodSeconds is shorter than the profile declares",
    "shutdown.grace.mismatch": "terminationGracePeriodSeconds differs from the profile's",
    "shutdown.prestop.exceeds-grace": "The preStop sleep would not end before the grace period does",
    "resources.request-above-limit": "A request would exceed its limit once the profile's values are applied",
    "containers.unknown": "The profile names containers the Deployment does not have",
    "probes.port.unknown": "The probe port is not a port of the container",
    "metrics.port.unknown": "The metrics port is not a port of any managed container",
    "profiling.port.unknown": "The profiling port is not a port of any managed container",
    "images.latest": "A container runs an image tagged latest (or untagged): what runs can change unseen",
    "images.digest": "A container runs an image without a digest, and the profile requires one",
    "secrets.literal": "A literal env value looks like a secret; it belongs in a Secret",
    "security.allowPrivilegeEscalation.privileged": "allowPrivilegeEscalation cannot be false on a privileged container",
    "runtime.go.memory-limit.missing": "GOMEMLIMIT needs a memory limit on the container",
    "deployment.conflict": "Another field manager owns a field the profile sets (conflictPolicy: Report)",
    "deployment.ambiguous": "More than one ServiceProfile selects the Deployment, so none applies",
    "deployment.unselected": "No ServiceProfile in the manifests selects the Deployment",
    "profile.invalid": "The ServiceProfile would be refused by the apiserver",
}


# ---- text ----


def render_text(result: Audit) -> str:
    """The findings for people: one line per Deployment and profile, then its violations."""
    lines: list[str] = []
    for f in result.findings:
        where = f"{f.document.source}:{f.document.line}: "
        if f.profile is None:
            lines.append(f"{where}{f.deployment} (no profile): unselected: {f.message}")
            continue
        head = f"{where}{f.deployment} (profile {f.namespace}/{f.profile})"
        if f.evaluation is None or f.state == "Ambiguous":
            lines.append(f"{head}: {f.state.lower()}: {f.message}")
            continue
        count = len(f.violations) + len(f.conflicts)
        lines.append(f"{head}: {'compliant' if f.compliant else f'{count} finding(s)'}")
        lines += [f"  {v.check:<36} {v.field}: {v.message}" for v in f.violations]
        lines += [f"  {'conflict':<36} {c.field}: owned by {c.manager}" for c in f.conflicts]
    if not result.findings and not result.input_errors:
        lines.append("no Deployment in these manifests")
    lines.append(_summary_line(result))
    return "\n".join(lines)


def render_errors(result: Audit) -> list[str]:
    """One line per error, for stderr: where, what, and how to fix it."""
    return [f"error: {e}" for e in result.input_errors] + [
        f"error: {e.document.source}:{e.line}: ServiceProfile {e.namespace}/{e.name}: {e.field}: {e.message}"
        for e in result.profile_errors
    ]


def _summary_line(result: Audit) -> str:
    s = summary(result)
    text = (
        f"{s['deployments']} Deployment(s): {s['compliant']} compliant, {s['notCompliant']} not compliant, "
        f"{s['unselected']} unselected{' (a profile is required)' if result.require_profile else ''}"
    )
    if s["profileErrors"] or s["inputErrors"]:
        text += f"; {s['profileErrors']} profile error(s), {s['inputErrors']} input error(s)"
    return f"{text}; exit {result.exit_code}"


def summary(result: Audit) -> dict[str, int]:
    deployments = {(f.document.source, f.document.line, f.namespace, f.deployment) for f in result.findings}
    failing = {
        (f.document.source, f.document.line, f.namespace, f.deployment)
        for f in result.findings
        if not f.compliant and f.state != UNSELECTED
    }
    unselected = sum(1 for f in result.findings if f.state == UNSELECTED)
    return {
        "deployments": len(deployments),
        "compliant": len(deployments) - len(failing) - unselected,
        "notCompliant": len(failing),
        "unselected": unselected,
        "profileErrors": len(result.profile_errors),
        "inputErrors": len(result.input_errors),
    }


# ---- JSON ----


def render_json(result: Audit) -> dict[str, Any]:
    """The stable JSON shape of the module docstring."""
    return {
        "version": JSON_VERSION,
        "exitCode": result.exit_code,
        "summary": summary(result),
        "findings": [_finding(result, f) for f in result.findings],
        "profileErrors": [
            {
                **_place(e.document),
                "line": e.line,
                "namespace": e.namespace,
                "profile": e.name,
                "field": e.field,
                "message": e.message,
            }
            for e in result.profile_errors
        ],
        "inputErrors": [
            {"file": e.source, "line": e.line, "message": e.message} for e in result.input_errors
        ],
    }


def _place(doc: Document) -> dict[str, Any]:
    return {"file": doc.source, "document": doc.index, "line": doc.line}


def _finding(result: Audit, f: Finding) -> dict[str, Any]:
    return {
        **_place(f.document),
        "namespace": f.namespace,
        "deployment": f.deployment,
        "profile": f.profile,
        "state": f.state,
        "compliant": f.compliant,
        "fails": result.fails(f),
        "message": f.message,
        "violations": [
            {"check": v.check, "field": v.field, "message": v.message, "line": f.document.line_of(v.field)}
            for v in f.violations
        ],
        "conflicts": [
            {"field": c.field, "manager": c.manager, "line": f.document.line_of(c.field)} for c in f.conflicts
        ],
    }


# ---- SARIF 2.1.0 ----


def render_sarif(result: Audit, version: str, cwd: Path | None = None) -> dict[str, Any]:
    """A SARIF 2.1.0 log of one run; file URIs relative to ``cwd`` (the current directory)."""
    base = (cwd or Path.cwd()).resolve()
    results: list[dict[str, Any]] = []
    for f in result.findings:
        results += _finding_results(result, f, base)
    for e in result.profile_errors:
        results.append(
            _result(
                "profile.invalid",
                "error",
                f"ServiceProfile {e.namespace}/{e.name}: {e.field}: {e.message}",
                _location(e.document, e.line, base, f"{e.namespace}/ServiceProfile/{e.name}"),
                (e.namespace, "ServiceProfile", e.name, e.field, e.message),
            )
        )
    ids = list(RULES) + sorted({r["ruleId"] for r in results} - set(RULES))
    for r in results:
        r["ruleIndex"] = ids.index(r["ruleId"])
    rules = [
        {
            "id": rule,
            "shortDescription": {"text": RULES.get(rule, rule)},
            "defaultConfiguration": {"level": "warning" if rule == "deployment.unselected" else "error"},
        }
        for rule in ids
    ]
    invocation: dict[str, Any] = {
        "executionSuccessful": not result.input_errors,
        "exitCode": result.exit_code,
    }
    if result.input_errors:
        invocation["toolExecutionNotifications"] = [_notification(e, base) for e in result.input_errors]
    run: dict[str, Any] = {
        "tool": {"driver": {"name": "readiness-operator", "version": version, "rules": rules}},
        "invocations": [invocation],
        "originalUriBaseIds": {SRCROOT: {"uri": base.as_uri().rstrip("/") + "/"}},
        "results": results,
    }
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}


def _finding_results(result: Audit, f: Finding, base: Path) -> list[dict[str, Any]]:
    if f.compliant:
        return []
    who = f"{f.namespace}/Deployment/{f.deployment}"
    subject = f"Deployment {f.namespace}/{f.deployment}" + (f" (profile {f.profile})" if f.profile else "")
    key = (f.namespace, f.deployment, f.profile or "")
    if f.state == UNSELECTED:
        level = "error" if result.require_profile else "warning"
        loc = _location(f.document, f.document.line, base, who)
        return [_result("deployment.unselected", level, f"{subject}: {f.message}", loc, key)]
    if f.state == "Ambiguous":
        loc = _location(f.document, f.document.line, base, who)
        return [_result("deployment.ambiguous", "error", f"{subject}: {f.message}", loc, key)]
    found = [
        _result(
            v.check,
            "error",
            f"{subject}: {v.field}: {v.message}",
            _location(f.document, f.document.line_of(v.field), base, who),
            (*key, v.check, v.field),
        )
        for v in f.violations
    ]
    found += [
        _result(
            "deployment.conflict",
            "error",
            f"{subject}: {c.field} is owned by {c.manager}; conflictPolicy: Force would take it",
            _location(f.document, f.document.line_of(c.field), base, who),
            (*key, c.field, c.manager),
        )
        for c in f.conflicts
    ]
    if not found:  # not compliant for a reason of its own (no violation listed)
        loc = _location(f.document, f.document.line, base, who)
        found.append(_result(f"deployment.{f.state.lower()}", "error", f"{subject}: {f.message}", loc, key))
    return found


def _result(
    rule: str, level: str, text: str, location: dict[str, Any], identity: tuple[str, ...]
) -> dict[str, Any]:
    digest = hashlib.sha256("\x1f".join((rule, *identity)).encode()).hexdigest()[:32]
    return {
        "ruleId": rule,
        "level": level,
        "message": {"text": text},
        "locations": [location],
        "partialFingerprints": {"readinessFinding/v1": digest},
    }


def _location(doc: Document, line: int, base: Path, logical: str) -> dict[str, Any]:
    location: dict[str, Any] = {"logicalLocations": [{"fullyQualifiedName": logical, "kind": "resource"}]}
    artifact = _artifact(doc.source, base)
    if artifact is not None:
        location["physicalLocation"] = {"artifactLocation": artifact, "region": {"startLine": max(line, 1)}}
    return location


def _artifact(source: str, base: Path) -> dict[str, Any] | None:
    """The file as a URI relative to ``base`` (the repository, in CI); an absolute file URI
    when it lies outside; None for stdin."""
    if source in (STDIN_NAME, "<input>"):
        return None
    path = Path(source).resolve()
    try:
        relative = path.relative_to(base)
    except ValueError:
        return {"uri": path.as_uri()}
    return {"uri": quote(relative.as_posix()), "uriBaseId": SRCROOT}


def _notification(error: InputError, base: Path) -> dict[str, Any]:
    notification: dict[str, Any] = {"level": "error", "message": {"text": str(error)}}
    artifact = _artifact(error.source, base)
    if artifact is not None:
        physical: dict[str, Any] = {"artifactLocation": artifact}
        if error.line is not None:
            physical["region"] = {"startLine": error.line}
        notification["locations"] = [{"physicalLocation": physical}]
    return notification


def dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False)
