"""The profile's resources section: Resource requests and limits."""

from __future__ import annotations

from readiness.engine.fragments import (
    Fragment,
    Managed,
    Plan,
    SectionInput,
    SectionResult,
    each,
)
from readiness.models.profile import (
    Resources,
)


def resources(ctx: SectionInput) -> SectionResult:
    """Requests and limits on each managed container, one fragment per quantity."""
    return each(ctx, ctx.spec.resources, _resources_of)


def _resources_of(ctx: SectionInput, c: Managed, declared: Resources) -> Plan:
    out = Plan()
    for group in ("requests", "limits"):
        values = getattr(declared, group)
        if values is None:
            continue
        for resource in ("cpu", "memory"):
            value = getattr(values, resource)
            if value is None:
                continue
            path = (*c.base, "f:resources", f"f:{group}", f"f:{resource}")
            out.fragments.append(
                Fragment(
                    check=f"resources.{group}.{resource}",
                    field=f"{c.where}.resources.{group}.{resource}",
                    leaves=((path, str(value)),),  # `cpu: 1` is applied as the quantity "1"
                    wants=f"{group}.{resource}={value}",
                )
            )
    return out
