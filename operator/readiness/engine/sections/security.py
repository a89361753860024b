"""The profile's security section: Container hardening: securityContext and the service account token."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from readiness.engine.fields import POD_SPEC, FieldPath
from readiness.engine.fragments import (
    Fragment,
    Managed,
    Plan,
    Problem,
    SectionInput,
    SectionResult,
    each,
)
from readiness.models.profile import (
    Security,
)


def security(ctx: SectionInput) -> SectionResult:
    """securityContext settings on each managed container, and the pod's service account token;
    under mode Audit (the section's, else the profile's) reported and never written."""
    declared = ctx.spec.security
    result = each(ctx, declared, _security_of)
    if declared is None:
        return result
    token = declared.automount_service_account_token
    if token is not None:
        result.pod.fragments.append(
            Fragment(
                check="security.automountServiceAccountToken",
                field="spec.template.spec.automountServiceAccountToken",
                leaves=(((*POD_SPEC, "f:automountServiceAccountToken"), token),),
                wants=f"automountServiceAccountToken={str(token).lower()}",
            )
        )
    if (declared.mode or ctx.spec.mode) == "Audit":
        for plan_ in (*result.containers, result.pod):
            plan_.fragments = [replace(f, audit=True) for f in plan_.fragments]
    return result


def _security_of(ctx: SectionInput, c: Managed, declared: Security) -> Plan:
    base = (*c.base, "f:securityContext")
    own = c.live.get("securityContext") or {}
    pod = ctx.view.pod_security_context

    def inherited(name: str, value: Any) -> bool:
        # The pod's own securityContext already gives the container this value (runAsNonRoot
        # and seccompProfile exist at both levels): nothing to set.
        return name not in own and pod.get(name) == value

    wanted: list[tuple[str, str, FieldPath, Any, str]] = []
    out = Plan()
    escalates = bool(own.get("privileged")) or "SYS_ADMIN" in (
        (own.get("capabilities") or {}).get("add") or ()
    )
    for name, value in (
        ("runAsNonRoot", declared.run_as_non_root),
        ("allowPrivilegeEscalation", declared.allow_privilege_escalation),
        ("readOnlyRootFilesystem", declared.read_only_root_filesystem),
    ):
        if name == "allowPrivilegeEscalation" and value is False and escalates:
            # The apiserver refuses false beside privileged or CAP_SYS_ADMIN: the rest still applies.
            out.notes.append(
                Problem(
                    "security.allowPrivilegeEscalation.privileged",
                    f"{c.where}.securityContext.allowPrivilegeEscalation",
                    f"container {c.name} is privileged or adds CAP_SYS_ADMIN, so allowPrivilegeEscalation "
                    "cannot be false; drop those or leave allowPrivilegeEscalation out of the profile",
                )
            )
            continue
        if value is not None and not inherited(name, value):
            wanted.append((name, name, (*base, f"f:{name}"), value, f"{name}={str(value).lower()}"))
    if declared.drop_all_capabilities:
        path = (*base, "f:capabilities", "f:drop")
        wanted.append(("capabilities", "capabilities.drop", path, ["ALL"], "capabilities.drop [ALL]"))
    if declared.seccomp_profile is not None and not inherited(
        "seccompProfile", {"type": declared.seccomp_profile}
    ):
        path = (*base, "f:seccompProfile", "f:type")
        profile = declared.seccomp_profile
        wanted.append(("seccompProfile", "seccompProfile.type", path, profile, f"seccompProfile {profile}"))
    out.fragments = [
        Fragment(
            check=f"security.{check}",
            field=f"{c.where}.securityContext.{where}",
            leaves=((path, value),),
            wants=wants,
        )
        for check, where, path, value, wants in wanted
    ]
    return out
