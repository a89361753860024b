"""The profile's shutdown section: Graceful termination: the grace period and a preStop sleep."""

from __future__ import annotations

from readiness.engine.fields import POD_SPEC
from readiness.engine.fragments import (
    Fragment,
    Managed,
    Plan,
    SectionInput,
    SectionResult,
    each,
)


def shutdown(ctx: SectionInput) -> SectionResult:
    """A preStop sleep on each managed container; terminationGracePeriodSeconds on the pod."""
    declared = ctx.spec.shutdown
    sleep = declared.pre_stop_sleep_seconds if declared is not None else None
    result = each(ctx, sleep, _pre_stop_of)
    grace = declared.termination_grace_period_seconds if declared is not None else None
    if grace is not None:
        result.pod.fragments.append(
            Fragment(
                check="shutdown.grace",
                field="spec.template.spec.terminationGracePeriodSeconds",
                leaves=(((*POD_SPEC, "f:terminationGracePeriodSeconds"), grace),),
                wants=f"terminationGracePeriodSeconds={grace}",
            )
        )
    return result


def _pre_stop_of(ctx: SectionInput, c: Managed, seconds: int) -> Plan:
    parent = (*c.base, "f:lifecycle", "f:preStop")
    fragment = Fragment(
        check="shutdown.prestop",
        field=f"{c.where}.lifecycle.preStop",
        leaves=(((*parent, "f:sleep", "f:seconds"), seconds),),
        wants=f"preStop sleep {seconds}s",
        handler_parent=parent,
        handler="sleep",
    )
    return Plan(fragments=[fragment])
