"""The profile's runtime section: Go runtime tuning from the container's limits."""

from __future__ import annotations

from decimal import Decimal

from readiness.engine.fragments import (
    Fragment,
    Managed,
    Plan,
    Problem,
    SectionInput,
    SectionResult,
    derived,
    each,
    kept_quantity,
)
from readiness.engine.quantity import QuantityError, ceil_cores, parse_quantity
from readiness.models.profile import (
    GoRuntime,
)


def runtime(ctx: SectionInput) -> SectionResult:
    """GOMEMLIMIT and GOMAXPROCS on each managed container, derived from the limits it will
    have (the user's own values win); no memory limit is a note, a violation no write fixes."""
    go = ctx.spec.runtime.go if ctx.spec.runtime is not None else None
    return each(ctx, go, _go_of)


def _go_of(ctx: SectionInput, c: Managed, go: GoRuntime) -> Plan:
    out = Plan()
    memory = kept_quantity(ctx, c, "limits", "memory")
    cpu = kept_quantity(ctx, c, "limits", "cpu") or kept_quantity(ctx, c, "requests", "cpu")
    if memory is None:
        out.notes.append(
            Problem(
                "runtime.go.memory-limit.missing",
                f"{c.where}.resources.limits.memory",
                f"GOMEMLIMIT needs a memory limit on container {c.name}; declare resources.limits.memory",
            )
        )
    values = (
        ("GOMEMLIMIT", _go_memory_limit(memory, go.memory_limit_ratio)),
        ("GOMAXPROCS", _go_max_procs(cpu)),
    )
    leaves = [
        leaf for var, value in values if value is not None and (leaf := derived(ctx, c, var, value, out))
    ]
    if leaves:
        out.fragments.append(
            Fragment(
                check="runtime.go.env",
                field=f"{c.where}.env",
                leaves=tuple(leaves),
                wants="GOMEMLIMIT/GOMAXPROCS derived from the container's limits",
            )
        )
    return out


def _go_memory_limit(memory: str | int | None, ratio: float) -> str | None:
    if memory is None:
        return None
    try:
        return str(int(parse_quantity(memory) * Decimal(str(ratio))))
    except QuantityError:
        return None


def _go_max_procs(cpu: str | int | None) -> str | None:
    if cpu is None:
        return None
    try:
        return str(ceil_cores(cpu))
    except QuantityError:
        return None
