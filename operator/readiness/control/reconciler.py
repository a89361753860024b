"""gather -> compute -> apply for one Deployment: the one entry point for per-Deployment work.

Everything is recomputed from the profiles of the Deployment's namespace and the Deployment as
observed (level-triggered); nothing read from our own status feeds the decision. The verdicts
go to the board, from which the status writer rebuilds each profile's status.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from readiness import API_GROUP, API_VERSION, KIND
from readiness.cache.world import Context, Key, ProfileRecord, StoredDeployment, World
from readiness.control.board import Board, Entry
from readiness.control.events import EventSink
from readiness.control.guard import LEFT_ALONE, FightGuard
from readiness.control.recall import Recall
from readiness.control.rollouts import Rollouts
from readiness.engine import (
    DeploymentView,
    Evaluation,
    judge,
    last_writers,
    last_written,
    next_change,
    rollout_state,
    taken_text,
    target,
)
from readiness.k8s import ApiError, Cluster, ObjectRef, PodLister
from readiness.models import Conflict, ServiceProfileSpec, Target
from readiness.models.status import TargetState
from readiness.observe.metrics import Metrics
from readiness.observe.tracing import tracer

log = structlog.get_logger("readiness.reconcile")


@dataclass
class Outcome:
    applied: bool = False
    skipped: bool = False  # nothing the decision reads changed since the last one
    retry: bool = False
    retry_after: float | None = None
    pending: bool = False  # waits for a rollout slot: decided again when one frees
    count: bool = False  # the namespace's rollouts in flight must be counted first: decided again then
    changed: set[Key] = field(default_factory=set)  # profiles whose status this moved


KEPT_UNDER_NEXT_CHANGE = (
    "fields the profile no longer sets stay in place (rollout.trigger NextChange starts no rollout "
    "to take them away; switch to Immediate to release them)"
)


class Reconciler:
    """Reconciles one Deployment at a time; the work queue guarantees no two run for one key."""

    def __init__(
        self,
        cluster: Cluster,
        world: World,
        board: Board,
        metrics: Metrics,
        events: EventSink,
        guard: FightGuard | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        clock: Callable[[], float] = time.time,
        pods: PodLister | None = None,
    ) -> None:
        self._cluster = cluster
        self._world = world
        self._board = board
        self._metrics = metrics
        self._events = events
        self._guard = guard or FightGuard()
        self._recall = Recall(world, board)
        self.rollouts = Rollouts(world, cluster, events, metrics, self._recall, pods)
        self._monotonic = monotonic
        self._clock = clock
        # The generation our last apply produced, until the watch shows it.
        self._wrote: dict[Key, int] = {}
        # What each Deployment's last final decision was made from.
        self._decided: dict[Key, tuple[int, Context]] = {}

    def stale(self, namespace: str, stored: StoredDeployment) -> bool:
        """True while the watch still shows a version older than our own last write (the
        controller-manager's status updates of the previous generation arrive after our apply
        returned): deciding on it would apply again. A Deployment's generation only grows."""
        key = (namespace, stored.name)
        wrote = self._wrote.get(key)
        if wrote is None:
            return False
        if stored.generation < wrote:
            return True
        del self._wrote[key]
        return False

    def unchanged(self, namespace: str, stored: StoredDeployment) -> bool:
        """True when nothing the decision reads has changed since the last one."""
        key = (namespace, stored.name)
        if self.rollouts.start_failed(namespace, stored.name, stored.generation):
            return False  # its new pods cannot start: only the pods said so
        if stored.rollout == "Failed" and self.rollouts.failed_ours(namespace, stored.name):
            return False  # a rollout we started failed: only the rollout column says so
        return self._decided.get(key) == (stored.fingerprint, self._world.context(namespace))

    def forget_profile(self, namespace: str, name: str) -> None:
        """The profile is gone, or a new one took its name: nothing of its waves carries over."""
        self.rollouts.forget_profile(namespace, name)
        self._recall.forget(namespace, name)

    def forget_decisions(self) -> None:
        """The next pass decides every Deployment afresh (the periodic resync)."""
        self._decided.clear()

    async def reconcile(self, namespace: str, name: str, counted: bool = True) -> Outcome:
        """``counted``: this process has seen every Deployment of the namespace (listed it
        whole); until then no rollout slot is given, since a rollout in flight it has not seen
        yet would not be counted (the answer is ``Outcome.count``)."""
        key = (namespace, name)
        stored = self._world.stored(namespace, name)
        if stored is None:
            self._wrote.pop(key, None)
            self._decided.pop(key, None)
            self._guard.forget(key)
            self.rollouts.forget_deployment(namespace, name)
            return Outcome(changed=self._board.record(namespace, name, {}))
        if self.stale(namespace, stored) or self.unchanged(namespace, stored):
            return Outcome(skipped=True)
        with tracer().start_as_current_span(
            "reconcile", attributes={"k8s.namespace.name": namespace, "k8s.deployment.name": name}
        ):
            started = self._monotonic()
            outcome = await self._reconcile(stored.view(), counted)
            self._metrics.reconciles.labels("retry" if outcome.retry else "ok").inc()
            self._metrics.reconcile_seconds.observe(self._monotonic() - started)
            return outcome

    async def _reconcile(self, view: DeploymentView, counted: bool) -> Outcome:
        context = self._world.context(view.namespace)
        specs = self._world.specs(view.namespace)
        judgement = judge(view, {name: spec for name, (_, spec) in specs.items()})
        targets: dict[str, Target] = dict(judgement.targets)
        outcome = Outcome()
        decided = view
        owner, ev = judgement.owner, judgement.evaluation
        if owner is not None and ev is not None:
            record, spec = specs[owner]
            rollout = rollout_state(view)
            if self.rollouts.start_failed(view.namespace, view.name, view.generation):
                rollout = "Failed"
            self.rollouts.recover(record, view, rollout)
            halted = self.rollouts.halted(record)
            if halted is not None and view.name in halted:
                failure = halted[view.name]
                targets[owner] = target(view, ev, state=failure.state, message=failure.message)
            elif rollout == "Failed" and self.rollouts.flying(record, view.name):
                targets[owner], decided = await self._failed(record, view, ev, outcome, spec)
            elif halted is not None and spec.mode == "Enforce" and ev.apply is not None and not ev.problems:
                outcome.pending = True  # decided again when the halt ends
                message = (
                    f"halted: the rollout of {', '.join(sorted(halted))} failed; fix the profile to go on"
                )
                targets[owner] = target(view, ev, state="Pending", message=message, reason="Halted")
            elif spec.mode == "Enforce" and ev.apply is not None and not ev.problems:
                if spec.rollout.trigger == "NextChange" and set(ev.changes) == {"released"}:
                    # Nothing the profile asks for is missing; what it stopped setting stays, since
                    # taking it away would be a rollout of its own (and admission sets, never takes).
                    targets[owner] = target(view, ev, message=KEPT_UNDER_NEXT_CHANGE)
                elif spec.rollout.trigger == "NextChange":
                    # Decided, not waiting for a slot: the Deployment's own next change decides again.
                    targets[owner] = target(
                        view, ev, state="Pending", message=next_change(ev.changes), reason="NextChange"
                    )
                else:
                    targets[owner], decided = await self._enforce(record, view, ev, outcome, spec, counted)
        entries = {name: Entry(specs[name][0].generation, t) for name, t in targets.items()}
        outcome.changed = self._board.record(view.namespace, view.name, entries)
        if not (outcome.retry or outcome.pending or outcome.count):
            self._decided[(view.namespace, view.name)] = (decided.fingerprint, context)
        return outcome

    async def _enforce(
        self,
        record: ProfileRecord,
        view: DeploymentView,
        ev: Evaluation,
        outcome: Outcome,
        spec: ServiceProfileSpec,
        counted: bool,
    ) -> tuple[Target, DeploymentView]:
        """The one server-side apply, unless a fight or the API says otherwise."""
        key = (view.namespace, view.name)
        bound = log.bind(namespace=view.namespace, deployment=view.name, profile=record.name)
        now = self._monotonic()
        before = self._recall.reported(record, view.name)
        left_alone = before is not None and before.reason == "FightLeftAlone"
        if left_alone:
            self._guard.recall(key, record.generation)  # a restart does not restart a fight
        written = last_written(view)
        quiet = None if written is None else self._clock() - written
        if self._guard.blocked(key, record.generation, now, quiet):
            fighters = last_writers(view)
            message = (
                f"another field manager ({', '.join(fighters) or 'unknown'}) {LEFT_ALONE} after "
                f"{self._guard.limit} corrections; corrected again once it has been quiet for "
                f"{self._guard.window:g}s or the profile changes"
            )
            extra = [Conflict(manager=m, field="spec.template") for m in fighters]
            return target(
                view, ev, state="Conflicted", message=message, extra=extra, reason="FightLeftAlone"
            ), view
        if view.replicas > 0:  # a Deployment scaled to 0 takes no slot
            if not counted and not self.rollouts.flying(record, view.name):
                outcome.count = True
                message = "waiting for a rollout slot: counting the rollouts in flight"
                return target(view, ev, state="Pending", message=message, reason="WaitingForSlot"), view
            budget = self.rollouts.take(record, spec, view.name)
            if budget is not None:
                log.debug(
                    "waiting_for_slot", namespace=view.namespace, deployment=view.name, profile=record.name
                )
                outcome.pending = True
                message = (
                    f"waiting for a rollout slot: {budget} of this profile's Deployments roll out at once"
                )
                return target(view, ev, state="Pending", message=message, reason="WaitingForSlot"), view
        apply = ev.apply or {}
        try:
            body = await self._cluster.apply_deployment(apply, force=ev.force)
        except ApiError as error:
            self.rollouts.started(record, view.name, None)
            return self._apply_failed(view, ev, outcome, error, bound), view
        self._metrics.applies.labels("applied").inc()
        # A correction: a second apply under this generation, or the first one after a restart
        # to a Deployment this generation had already reported compliant (or left alone).
        repeated = self._guard.record(key, record.generation, now) > 1
        if repeated or left_alone or (before is not None and before.state == "Compliant"):
            self._metrics.drift_corrections.inc()
        after = DeploymentView.from_body(body)
        if after.generation != view.generation:
            self._wrote[key] = after.generation
        rolled = after.generation != view.generation and view.replicas > 0
        self.rollouts.started(record, view.name, after.generation if rolled else None)
        outcome.applied = True
        self._board.note_applied(view.namespace, record.name, view.name)
        changed = after.generation != view.generation
        self._tell_applied(record, view, ev, changed, bound)
        return judge(after, {record.name: spec}).targets[record.name], after

    def _apply_failed(
        self, view: DeploymentView, ev: Evaluation, outcome: Outcome, error: ApiError, bound: Any
    ) -> Target:
        """The apply was refused: a conflict is reported (never retried: the next change
        decides again), an error is retried when the API says it may pass."""
        self._metrics.api_errors.labels(str(error.status)).inc()
        if error.conflict:
            self._metrics.applies.labels("conflict").inc()
            conflicts = [Conflict(manager=c.manager or "unknown", field=c.field) for c in error.causes]
            return target(view, ev, state="Conflicted", message=error.message, extra=conflicts)
        self._metrics.applies.labels("error").inc()
        bound.warning("apply_failed", code=error.status, error=error.message)
        outcome.retry = error.retryable
        outcome.retry_after = error.retry_after
        state: TargetState = "Error" if error.retryable else "Invalid"
        return target(view, ev, state=state, message=f"apply failed: {error}")

    def _tell_applied(
        self, record: ProfileRecord, view: DeploymentView, ev: Evaluation, changed: bool, bound: Any
    ) -> None:
        """The log line for every apply, and the Deployment's Event when its template changed."""
        took = taken_text(ev.taken, "took")
        bound.info(
            "deployment_applied", checks=list(ev.changes), rollout=changed, force=ev.force, took=took or None
        )
        if changed:
            self._events.post(
                ObjectRef("apps/v1", "Deployment", view.namespace, view.name, view.uid),
                "Normal",
                "ProfileApplied",
                "; ".join(
                    part
                    for part in (f"ServiceProfile {record.name} set {', '.join(ev.changes)}", took)
                    if part
                ),
            )

    async def _failed(
        self,
        record: ProfileRecord,
        view: DeploymentView,
        ev: Evaluation,
        outcome: Outcome,
        spec: ServiceProfileSpec,
    ) -> tuple[Target, DeploymentView]:
        """A rollout this profile started failed: halted, put back or left as it is."""
        try:
            failure, reverted = await self.rollouts.fail(
                record, view, revert=spec.rollout.on_failure == "Revert"
            )
        except ApiError as error:
            self._metrics.api_errors.labels(str(error.status)).inc()
            outcome.retry, outcome.retry_after = True, error.retry_after
            return target(
                view, ev, state="Error", message=f"the rollout failed and putting it back failed: {error}"
            ), view
        if reverted is None:
            return target(view, ev, state=failure.state, message=failure.message), view
        self._wrote[(view.namespace, view.name)] = reverted.generation
        return target(view, ev, state=failure.state, message=failure.message), reverted


def profile_ref(record: ProfileRecord) -> ObjectRef:
    return ObjectRef(f"{API_GROUP}/{API_VERSION}", KIND, record.namespace, record.name, record.uid)
