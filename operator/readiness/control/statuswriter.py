"""A profile's status, rebuilt from the board's per-Deployment verdicts and written only when
it changed; the profile's own Events and per-profile metrics go with it.

The controller calls ``flush`` at most about once a second per profile while its Deployments
move, and once more as soon as the last of them is decided.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping
from typing import Any

import structlog
from pydantic import ValidationError

from readiness.cache.world import Key, ProfileRecord, World
from readiness.control.board import Board
from readiness.control.events import EventSink
from readiness.control.reconciler import profile_ref
from readiness.engine import build_status, matches
from readiness.engine.sections import FINDINGS
from readiness.k8s import ApiError, Cluster, ObjectRef
from readiness.models import ServiceProfileStatus, Target, Violation
from readiness.observe.metrics import Metrics

log = structlog.get_logger("readiness.status")
# How many Deployments the profile's Applied event names before it counts the rest.
NAMED_IN_EVENT = 20
# Target states a person must act on: each is announced with a Warning event.
WARNINGS = ("Conflicted", "Ambiguous", "Invalid", "RolloutFailed", "RolledBack")
# Of those, the ones the statuswriter tells the Deployment too (a rollout failure tells it itself).
DEPLOYMENT_WARNINGS = ("Conflicted", "Ambiguous", "Invalid")


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class StatusWriter:
    def __init__(
        self,
        cluster: Cluster,
        world: World,
        board: Board,
        metrics: Metrics,
        events: EventSink,
        clock: Callable[[], str] = _now,
        monotonic: Callable[[], float] = time.monotonic,
        patience: float = 10.0,
    ) -> None:
        self._cluster = cluster
        self._world = world
        self._board = board
        self._metrics = metrics
        self._events = events
        self._clock = clock
        self._monotonic = monotonic
        # How long a status may wait for Deployments not yet decided before it is written anyway.
        self._patience = patience
        # The status we last wrote per profile, keyed with its uid: a re-created profile starts afresh.
        self._written: dict[Key, tuple[str, dict[str, Any]]] = {}
        # The state of each target as last announced, so an Event marks a change, once.
        self._announced: dict[Key, dict[str, tuple[str, str, tuple[str, ...]]]] = {}
        self._waiting_since: dict[Key, float] = {}
        # Per profile whose last flush waited: the Deployments it waited for, not yet decided.
        self._undecided: dict[Key, set[str]] = {}

    def forget(self, namespace: str, name: str) -> None:
        """The profile is gone: drop its memory and metrics; Deployments stay as they are."""
        key = (namespace, name)
        self._written.pop(key, None)
        self._announced.pop(key, None)
        self._waiting_since.pop(key, None)
        self._undecided.pop(key, None)
        self._board.forget_profile(namespace, name)
        self._metrics.forget_profile(namespace, name)

    async def flush(self, namespace: str, name: str) -> bool:
        """Write the profile's status if it changed. True when some matched Deployment is not
        decided yet under this generation: call again shortly."""
        key = (namespace, name)
        record = self._world.profile(namespace, name)
        if record is None or record.deleting:
            return False  # forgotten by the controller
        bound = log.bind(namespace=namespace, profile=name, generation=record.generation)
        previous = self._previous(record)
        spec = record.parsed
        if isinstance(spec, str):
            status = build_status(
                generation=record.generation,
                targets=[],
                previous=previous.conditions,
                now=self._clock(),
                degraded=("InvalidSpec", spec),
            )
            await self._write(record, status, bound)
            self._metrics.reconciles.labels("invalid").inc()
            return False

        selected = {d.name for d in self._world.deployments(namespace) if matches(spec.selector, d.labels)}
        known = {
            deployment: entry.target
            for deployment, entry in self._board.targets(namespace, name).items()
            if entry.generation == record.generation and deployment in selected
        }
        waiting = len(known) < len(selected)
        if waiting:
            self._undecided[key] = selected - known.keys()
            since = self._waiting_since.setdefault(key, self._monotonic())
            if self._monotonic() - since < self._patience:
                return True
        else:
            self._waiting_since.pop(key, None)
            self._undecided.pop(key, None)
        targets = list(known.values())
        status = build_status(
            generation=record.generation, targets=targets, previous=previous.conditions, now=self._clock()
        )
        self._announce_applied(record)
        reported = "Audit" in (spec.mode, spec.security.mode if spec.security else None)
        self._announce(record, previous, targets, audit=spec.mode == "Audit", reported=reported)
        await self._write(record, status, bound)
        self._metrics.observe_profile(
            namespace,
            name,
            [t.state for t in targets],
            [v.check for t in targets for v in t.violations],
            status.summary.score,
        )
        return waiting

    def decided(self, namespace: str, name: str, deployment: str) -> bool:
        """``deployment`` has a verdict under the profile now. True once, when it was the last
        one the profile's status waited for: that status need not wait for its next turn."""
        undecided = self._undecided.get((namespace, name))
        if not undecided:
            return False
        undecided.discard(deployment)
        return not undecided

    def _previous(self, record: ProfileRecord) -> ServiceProfileStatus:
        """The status last written: ours if the watch has not shown it yet (no duplicate events,
        no moved lastTransitionTime), else what the cluster holds."""
        uid, written = self._written.get((record.namespace, record.name), ("", {}))
        raw = (written if uid == record.uid else None) or record.status or {}
        try:
            return ServiceProfileStatus.model_validate(raw)
        except ValidationError:
            return ServiceProfileStatus()

    def _announce_applied(self, record: ProfileRecord) -> None:
        names = self._board.take_applied(record.namespace, record.name)
        if not names:
            return
        shown = ", ".join(sorted(names)[:NAMED_IN_EVENT])
        more = f" and {len(names) - NAMED_IN_EVENT} more" if len(names) > NAMED_IN_EVENT else ""
        self._events.post(profile_ref(record), "Normal", "Applied", f"applied to {shown}{more}")

    def _announce(
        self,
        record: ProfileRecord,
        previous: ServiceProfileStatus,
        targets: list[Target],
        audit: bool,
        reported: bool = False,
    ) -> None:
        """Events for what a person must act on: a warning when a target enters Conflicted,
        Ambiguous or Invalid, and again when its reason changes (a new failure is news); a
        Normal event when it becomes Compliant again. The Deployment gets its own, so that
        `kubectl describe deployment` says which profile it misses and why (an Audit profile's
        findings included); a rollout failure has said so there already."""
        key = (record.namespace, record.name)
        before = self._announced.get(key)
        if before is None:  # first look since start-up: what the cluster shows was announced
            before = {t.name: _said(t) for t in previous.targets}
        ref = profile_ref(record)
        for target in sorted(targets, key=lambda t: t.name):
            was, now = before.get(target.name), _said(target)
            if target.state in WARNINGS:
                if was is not None and was[:2] == now[:2]:
                    continue
                if target.state == "Conflicted" and (was is None or was[0] != "Conflicted"):
                    self._metrics.conflicts.inc()
                self._events.post(ref, "Warning", target.state, f"{target.name}: {target.message}")
                if target.state in DEPLOYMENT_WARNINGS:
                    self._tell_deployment(record, target, "Warning", target.state, target.message)
            elif target.state == "Violating" and was != now and (told := _told(target, audit, reported)):
                # What no apply will fix: an Audit profile's findings, the findings-only
                # sections' (images, secrets) and a section the profile only reports.
                found = "; ".join(v.message for v in told[:NAMED_IN_EVENT])
                self._tell_deployment(
                    record, target, "Warning", "NotCompliant", f"(Audit) {found}" if audit else found
                )
            elif target.state == "Compliant" and was is not None and was[0] != "Compliant":
                self._events.post(ref, "Normal", "Compliant", f"{target.name} is compliant")
                if was[0] in DEPLOYMENT_WARNINGS or was[0] == "Violating":
                    self._tell_deployment(record, target, "Normal", "Compliant", "compliant")
        self._announced[key] = {t.name: _said(t) for t in targets}

    def _tell_deployment(
        self, record: ProfileRecord, target: Target, type_: str, reason: str, what: str
    ) -> None:
        stored = self._world.stored(record.namespace, target.name)
        if stored is not None:
            ref = ObjectRef("apps/v1", "Deployment", record.namespace, target.name, stored.view().uid)
            self._events.post(ref, type_, reason, f"ServiceProfile {record.name}: {what}")

    async def _write(self, record: ProfileRecord, status: ServiceProfileStatus, bound: Any) -> bool:
        wanted = status.model_dump(mode="json", by_alias=True, exclude_none=True)
        key = (record.namespace, record.name)
        if self._written.get(key) == (record.uid, wanted) or _same_status(record.status, wanted):
            return False
        # A merge patch keeps keys it does not name: counts that dropped to none are sent as null.
        summary = dict.fromkeys(("pending", "rollingOut", "failed", "rolledBack"))
        body = {**wanted, "summary": {**summary, **wanted.get("summary", {})}}
        try:
            await self._cluster.patch_profile_status(record.namespace, record.name, body)
        except ApiError as error:
            self._metrics.api_errors.labels(str(error.status)).inc()
            if error.status == 404:
                return False  # deleted meanwhile
            raise
        self._written[key] = (record.uid, wanted)
        self._metrics.status_writes.inc()
        bound.info("status_written", matched=status.summary.matched, compliant=status.summary.compliant)
        return True


def _said(target: Target) -> tuple[str, str, tuple[str, ...]]:
    """What an Event about the target said: a new state, reason or finding is news."""
    return (target.state, target.message, tuple(sorted(v.check for v in target.violations)))


def _same_status(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    try:
        parsed = ServiceProfileStatus.model_validate(current or {})
    except ValidationError:
        return False
    return parsed.model_dump(mode="json", by_alias=True, exclude_none=True) == wanted


def _told(target: Target, audit: bool, reported: bool) -> list[Violation]:
    """The target's violations no apply will fix: all of an Audit profile's; else the
    findings-only checks, and a security section's when the profile only reports it."""
    return [
        v
        for v in target.violations
        if audit
        or v.check in FINDINGS
        or (v.check.startswith("security.") and (reported or v.check.endswith(".privileged")))
    ]
