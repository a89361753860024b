"""gather -> compute -> apply -> status: the one entry point for a ServiceProfile.

Everything is recomputed from the profile and the observed Deployments each time
(level-triggered); nothing read from our own status feeds the desired state.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog
from pydantic import ValidationError

from . import API_GROUP, API_VERSION, FIELD_MANAGER, KIND
from .engine import DeploymentView, Evaluation, build_status, evaluate, matches, rollout_state
from .guard import FightGuard
from .k8s import ApiError, Cluster, ObjectRef
from .metrics import Metrics
from .models import Conflict, ServiceProfileSpec, ServiceProfileStatus, Target, Violation
from .tracing import tracer

log = structlog.get_logger("readiness.reconcile")


@dataclass(frozen=True)
class ProfileRecord:
    """What the operator keeps of a ServiceProfile between events."""

    namespace: str
    name: str
    uid: str
    generation: int
    spec: Mapping[str, Any]
    status: Mapping[str, Any]
    deleting: bool = False


class World(Protocol):
    """The observed cluster, as the watches last saw it (kopf indexes in production)."""

    def profile(self, namespace: str, name: str) -> ProfileRecord | None: ...

    def profiles(self, namespace: str) -> Sequence[ProfileRecord]: ...

    def deployments(self, namespace: str) -> Sequence[DeploymentView]: ...


@dataclass
class Outcome:
    applied: list[str] = field(default_factory=list)
    status_written: bool = False
    retry: bool = False


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Reconciler:
    """Reconciles one profile at a time; the work queue guarantees no two run for one key."""

    def __init__(
        self,
        cluster: Cluster,
        world: World,
        metrics: Metrics,
        guard: FightGuard | None = None,
        clock: Callable[[], str] = _now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cluster = cluster
        self._world = world
        self._metrics = metrics
        self._guard = guard or FightGuard()
        self._clock = clock
        self._monotonic = monotonic
        # What our own writes produced, until the watch catches up (avoids re-applying from a stale view).
        self._applied: dict[tuple[str, str], tuple[str, DeploymentView]] = {}
        # The status we last wrote per profile, keyed with its uid: a re-created profile starts afresh.
        self._written: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}

    def forget(self, namespace: str, name: str) -> None:
        """The profile is gone: drop its memory and metrics; Deployments stay as they are."""
        self._written.pop((namespace, name), None)
        self._metrics.forget_profile(namespace, name)

    def _forget_gone(self, namespace: str, names: set[str]) -> None:
        """Drop what we remember of our writes to Deployments that no longer exist."""
        for key in [k for k in self._applied if k[0] == namespace and k[1] not in names]:
            del self._applied[key]

    def _observed(self, view: DeploymentView) -> DeploymentView:
        key = (view.namespace, view.name)
        cached = self._applied.get(key)
        if cached is None:
            return view
        before, after = cached
        if view.resource_version == before:
            return after  # the watch has not delivered our own write yet
        del self._applied[key]
        return view

    async def reconcile(self, namespace: str, name: str) -> Outcome:
        with tracer().start_as_current_span(
            "reconcile", attributes={"k8s.namespace.name": namespace, "readiness.profile": name}
        ):
            return await self._reconcile(namespace, name)

    async def _reconcile(self, namespace: str, name: str) -> Outcome:
        started = self._monotonic()
        bound = log.bind(namespace=namespace, profile=name)
        outcome = Outcome()
        record = self._world.profile(namespace, name)
        if record is None or record.deleting:
            self.forget(namespace, name)
            return outcome
        bound = bound.bind(generation=record.generation)
        try:
            spec = ServiceProfileSpec.model_validate(record.spec)
        except ValidationError as error:
            message = "; ".join(
                f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()[:5]
            )
            status = build_status(
                generation=record.generation,
                targets=[],
                previous=self._previous(record).conditions,
                now=self._clock(),
                degraded=("InvalidSpec", message),
            )
            outcome.status_written = await self._write_status(record, status, bound)
            self._metrics.reconciles.labels("invalid").inc()
            return outcome

        others = self._other_specs(record)
        targets: list[Target] = []
        present = sorted(self._world.deployments(namespace), key=lambda d: d.name)
        self._forget_gone(namespace, {d.name for d in present})
        for raw in present:
            if not matches(spec.selector, raw.labels):
                continue
            await asyncio.sleep(0)  # evaluation is CPU work: let kopf's watches breathe between targets
            view = self._observed(raw)
            rivals = [n for n, s in others if matches(s.selector, view.labels)]
            if rivals:
                targets.append(
                    Target(
                        name=view.name,
                        compliant=False,
                        state="Ambiguous",
                        rollout=rollout_state(view),
                        message=f"also selected by ServiceProfile {', '.join(rivals)}; neither applies",
                    )
                )
                continue
            target = await self._target(record, spec, view, outcome, bound)
            targets.append(target)

        status = build_status(
            generation=record.generation,
            targets=targets,
            previous=self._previous(record).conditions,
            now=self._clock(),
        )
        if outcome.applied:
            await self._event(
                ObjectRef(f"{API_GROUP}/{API_VERSION}", KIND, namespace, name, record.uid),
                "Normal",
                "Applied",
                f"applied to {', '.join(outcome.applied)}",
                bound,
            )
        await self._announce(record, status, bound)
        outcome.status_written = await self._write_status(record, status, bound)
        self._metrics.observe_profile(
            namespace,
            name,
            [t.state for t in status.targets],
            [v.check for t in status.targets for v in t.violations],
            status.summary.score,
        )
        self._metrics.reconciles.labels("retry" if outcome.retry else "ok").inc()
        self._metrics.reconcile_seconds.observe(self._monotonic() - started)
        return outcome

    def _other_specs(self, record: ProfileRecord) -> list[tuple[str, ServiceProfileSpec]]:
        found = []
        for other in self._world.profiles(record.namespace):
            if other.name == record.name or other.deleting:
                continue
            try:
                found.append((other.name, ServiceProfileSpec.model_validate(other.spec)))
            except ValidationError:
                continue  # an invalid profile selects nothing
        return found

    async def _target(
        self,
        record: ProfileRecord,
        spec: ServiceProfileSpec,
        view: DeploymentView,
        outcome: Outcome,
        bound: Any,
    ) -> Target:
        ev = evaluate(spec, view)
        if ev.problems or spec.mode == "Audit" or ev.apply is None:
            return _target(view, ev)
        key = (view.namespace, view.name)
        now = self._monotonic()
        if self._guard.blocked(key, record.generation, now):
            fighters = _last_writers(view)
            return _target(
                view,
                ev,
                state="Conflicted",
                message=(
                    f"another field manager ({', '.join(fighters) or 'unknown'}) keeps reverting this "
                    f"Deployment; left alone after {self._guard.limit} corrections"
                ),
                extra=[Conflict(manager=m, field="spec.template") for m in fighters],
            )
        try:
            body = await self._cluster.apply_deployment(ev.apply, force=ev.force)
        except ApiError as error:
            self._metrics.api_errors.labels(str(error.status)).inc()
            if error.conflict:
                self._metrics.applies.labels("conflict").inc()
                self._metrics.conflicts.inc()
                conflicts = [Conflict(manager=c.manager or "unknown", field=c.field) for c in error.causes]
                return _target(view, ev, state="Conflicted", message=error.message, extra=conflicts)
            self._metrics.applies.labels("error").inc()
            bound.warning("apply_failed", deployment=view.name, code=error.status, error=error.message)
            outcome.retry = outcome.retry or error.retryable
            state = "Error" if error.retryable else "Invalid"
            return _target(view, ev, state=state, message=f"apply failed: {error}")
        self._metrics.applies.labels("applied").inc()
        corrections = self._guard.record(key, record.generation, now)
        if corrections > 1:
            self._metrics.drift_corrections.inc()
        after = DeploymentView.from_body(body)
        self._applied[key] = (view.resource_version, after)
        outcome.applied.append(view.name)
        changed = after.generation != view.generation
        bound.info(
            "deployment_applied",
            deployment=view.name,
            checks=list(ev.changes),
            rollout=changed,
            force=ev.force,
        )
        if changed:
            await self._event(
                ObjectRef("apps/v1", "Deployment", view.namespace, view.name, view.uid),
                "Normal",
                "ProfileApplied",
                f"ServiceProfile {record.name} set {', '.join(ev.changes)}",
                bound,
            )
        return _target(after, evaluate(spec, after))

    def _previous(self, record: ProfileRecord) -> ServiceProfileStatus:
        """The status last written: ours if the watch has not shown it yet (no duplicate events,
        no moved lastTransitionTime), else what the cluster holds."""
        uid, written = self._written.get((record.namespace, record.name), ("", {}))
        raw = (written if uid == record.uid else None) or record.status or {}
        try:
            return ServiceProfileStatus.model_validate(raw)
        except ValidationError:
            return ServiceProfileStatus()

    async def _announce(self, record: ProfileRecord, status: ServiceProfileStatus, bound: Any) -> None:
        """Events for what a person must act on, once per change of a target's state."""
        before = {t.name: t.state for t in self._previous(record).targets}
        ref = ObjectRef(f"{API_GROUP}/{API_VERSION}", KIND, record.namespace, record.name, record.uid)
        for target in status.targets:
            if before.get(target.name) == target.state:
                continue
            if target.state in ("Conflicted", "Ambiguous", "Invalid"):
                if target.state == "Conflicted":
                    self._metrics.conflicts.inc()
                await self._event(ref, "Warning", target.state, f"{target.name}: {target.message}", bound)
            elif target.state == "Compliant" and target.name in before:
                await self._event(ref, "Normal", "Compliant", f"{target.name} is compliant", bound)

    async def _event(self, ref: ObjectRef, type_: str, reason: str, message: str, bound: Any) -> None:
        try:
            await self._cluster.post_event(ref, type_, reason, message)
        except ApiError as error:  # an event is worth a log line, never a failed reconcile
            self._metrics.api_errors.labels(str(error.status)).inc()
            bound.warning("event_failed", reason=reason, error=error.message)

    async def _write_status(self, record: ProfileRecord, status: ServiceProfileStatus, bound: Any) -> bool:
        wanted = status.model_dump(mode="json", by_alias=True, exclude_none=True)
        key = (record.namespace, record.name)
        if _same_status(record.status, wanted) or self._written.get(key) == (record.uid, wanted):
            return False
        try:
            await self._cluster.patch_profile_status(record.namespace, record.name, wanted)
        except ApiError as error:
            self._metrics.api_errors.labels(str(error.status)).inc()
            if error.status == 404:
                return False  # deleted meanwhile
            raise
        self._written[key] = (record.uid, wanted)
        self._metrics.status_writes.inc()
        bound.info("status_written", matched=status.summary.matched, compliant=status.summary.compliant)
        return True


def _same_status(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    try:
        parsed = ServiceProfileStatus.model_validate(current or {})
    except ValidationError:
        return False
    return parsed.model_dump(mode="json", by_alias=True, exclude_none=True) == wanted


def _last_writers(view: DeploymentView) -> list[str]:
    spec_writers = [
        e for e in view.managed if e.manager != FIELD_MANAGER and not e.subresource and "f:spec" in e.fields
    ]
    spec_writers.sort(key=lambda e: e.time, reverse=True)
    return [e.manager for e in spec_writers[:2]]


def _target(
    view: DeploymentView,
    ev: Evaluation,
    state: str | None = None,
    message: str = "",
    extra: Sequence[Conflict] = (),
) -> Target:
    conflicts = [*ev.conflicts, *[c for c in extra if c not in ev.conflicts]]
    violations: list[Violation] = [*ev.problems, *ev.violations]
    if state is None:
        if ev.problems:
            state, message = "Invalid", "; ".join(p.message for p in ev.problems)
        elif conflicts:
            state = "Conflicted"
            message = "fields owned by another manager: " + ", ".join(
                f"{c.field} ({c.manager})" for c in conflicts[:5]
            )
        elif violations:
            state, message = "Violating", f"{len(violations)} violation(s)"
        else:
            state = "Compliant"
    return Target(
        name=view.name,
        compliant=state == "Compliant",
        state=state,
        rollout=rollout_state(view),
        message=message,
        violations=violations,
        conflicts=conflicts,
    )
