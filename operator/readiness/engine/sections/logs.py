"""The profile's logging section: LOG_FORMAT and LOG_LEVEL."""

from __future__ import annotations

from readiness.engine.fragments import (
    Fragment,
    Managed,
    Plan,
    SectionInput,
    SectionResult,
    each,
    env_leaf,
)
from readiness.models.profile import (
    Logging,
)


def logging(ctx: SectionInput) -> SectionResult:
    """LOG_FORMAT and LOG_LEVEL on each managed container, as declared."""
    return each(ctx, ctx.spec.logging, _logging_of)


def _logging_of(ctx: SectionInput, c: Managed, declared: Logging) -> Plan:
    pairs = [(k, v) for k, v in (("LOG_FORMAT", declared.format), ("LOG_LEVEL", declared.level)) if v]
    if not pairs:
        return Plan()
    fragment = Fragment(
        check="logging.env",
        field=f"{c.where}.env",
        leaves=tuple(env_leaf(c.base, k, v) for k, v in pairs),
        wants=" ".join(f"{k}={v}" for k, v in pairs),
    )
    return Plan(fragments=[fragment])


# The chain, one function per optional section of ServiceProfileSpec, named after it. The order is
# visible output: ``plan`` lists, for each managed container, what each section asks of it in this
# order, then what each asks of the pod (shutdown's grace period, then metrics), and violations
# follow that order. It is the order the profile declares its sections in; keep it when adding one.
