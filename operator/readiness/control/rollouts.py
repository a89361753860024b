"""Rollouts a profile starts: how many Deployments may be mid-rollout at once (waves), which ones
wait, what a restart finds still in flight, and what a failed rollout does (halt, put back).

``Waves`` is the bookkeeping; ``Rollouts`` is what the reconciler asks of it, with the cache, the
API and the previous run's status at hand.

A Deployment is in flight because of a profile from the apply that changed its template until
its rollout completes (the rule of `kubectl rollout status`). Slots are taken before the apply
is sent (one event loop: no two workers can take the last slot), and given back when the
rollout completes, when the apply changed nothing, or when the Deployment goes. Deployments
waiting for a slot are remembered so that a freed slot wakes exactly as many as it frees.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import structlog

from readiness.cache.world import Key, ProfileRecord, World
from readiness.control.events import EventSink
from readiness.control.recall import Recall
from readiness.engine import DeploymentView, applied_at, matches, written_last_by_us
from readiness.k8s import ApiError, Cluster, ObjectRef, PodLister
from readiness.models import ServiceProfileSpec
from readiness.models.status import Rollout
from readiness.observe.metrics import Metrics

log = structlog.get_logger("readiness.reconcile")

# A new pod's container waiting for one of these does not start until the pod template changes
# (runAsNonRoot over an image that runs as root, a missing ConfigMap key, a bad image name):
# the rollout has failed, whatever progressDeadlineSeconds still allows.
CANNOT_START = frozenset({"CreateContainerConfigError", "InvalidImageName"})
# These can pass (a name still reserved, a runtime deadline): failed when one look after another
# finds the same pod waiting for the same reason.
MAY_PASS = frozenset({"CreateContainerError", "RunContainerError"})
PODS_SECONDS = 10.0
DEADLINE = "its new pods did not become available within progressDeadlineSeconds (ProgressDeadlineExceeded)"


def sightings(pods: list[dict[str, Any]], since: float) -> dict[tuple[str, str], str]:
    """(pod, reason) -> what to tell, for each container of a pod created at or after ``since``
    that waits for a reason in CANNOT_START or MAY_PASS."""
    found: dict[tuple[str, str], str] = {}
    for pod in pods:
        meta = pod.get("metadata") or {}
        created = str(meta.get("creationTimestamp") or "")
        try:
            born = datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
        except ValueError:
            continue
        if born < since or meta.get("deletionTimestamp"):
            continue
        status = pod.get("status") or {}
        for container in [
            *(status.get("initContainerStatuses") or ()),
            *(status.get("containerStatuses") or ()),
        ]:
            waiting = (container.get("state") or {}).get("waiting") or {}
            reason = str(waiting.get("reason") or "")
            if reason in CANNOT_START or reason in MAY_PASS:
                found[(str(meta.get("name")), reason)] = (
                    f"its new pod {meta.get('name')} cannot start: container {container.get('name')} {reason}"
                )
    return found


def cannot_start(
    pods: list[dict[str, Any]], since: float, before: dict[tuple[str, str], str] | None = None
) -> str | None:
    """Why a new pod cannot start: a reason that never passes by itself, or one that may pass
    seen again on the same pod (``before``: the previous look), else None."""
    return _verdict(sightings(pods, since), before or {})


def _verdict(now: dict[tuple[str, str], str], before: dict[tuple[str, str], str]) -> str | None:
    for (pod, reason), text in sorted(now.items()):
        if reason in CANNOT_START or (pod, reason) in before:
            return text
    return None


# What a profile's rollout budget is spelled as: a number of Deployments or a percentage.
Budget = int | str
# A Deployment's generation and rollout state as the watch last showed it (None: gone).
Observe = Callable[[str], tuple[int, Rollout] | None]


def slots(budget: Budget, matched: int) -> int:
    """The number of Deployments that may be in flight at once (percentages round up; at least 1)."""
    if isinstance(budget, str) and budget.endswith("%"):
        return max(1, math.ceil(matched * int(budget[:-1]) / 100))
    return max(1, int(budget))


@dataclass(frozen=True)
class Failure:
    """How a failed rollout ended: the Deployment's generation after it (a later one means its
    own template changed since), its target state and what to tell people."""

    generation: int
    state: Literal["RolloutFailed", "RolledBack"]
    message: str


class Waves:
    def __init__(self) -> None:
        # Profile -> Deployment -> the generation our apply produced (0 while the apply is on its way).
        self._flying: dict[Key, dict[str, int]] = {}
        self._waiting: dict[Key, set[str]] = {}
        # Profile -> (its generation, failed Deployment -> how it ended).
        self._halted: dict[Key, tuple[int, dict[str, Failure]]] = {}

    def halt(self, profile: Key, generation: int, deployment: str, failure: Failure) -> None:
        """A rollout this profile generation started failed: no further Deployment changes."""
        held, failed = self._halted.get(profile, (generation, {}))
        if held != generation:
            failed = {}
        failed[deployment] = failure
        self._halted[profile] = (generation, failed)
        self._flying.get(profile, {}).pop(deployment, None)

    def halted(self, profile: Key, generation: int, observe: Observe) -> dict[str, Failure] | None:
        """The failed Deployments when the profile is halted at ``generation``, else None. The
        halt ends with a new profile generation, or when a failed Deployment's own template
        changed since (someone fixed it): then the waves start again."""
        held = self._halted.get(profile)
        if held is None:
            return None
        if held[0] != generation or any(
            (seen := observe(name)) is not None and seen[0] > failure.generation
            for name, failure in held[1].items()
        ):
            del self._halted[profile]
            return None
        return dict(held[1])

    def in_flight(self, profile: Key, observe: Observe) -> dict[str, int]:
        """The profile's Deployments in flight; those whose rollout of our generation completed
        (or that are gone) are dropped first."""
        flying = self._flying.get(profile, {})
        for name, generation in list(flying.items()):
            seen = observe(name)
            if seen is None or (generation and seen[0] >= generation and seen[1] == "Complete"):
                del flying[name]
        return dict(flying)

    def take(self, profile: Key, deployment: str, budget: int, observe: Observe) -> bool:
        """Take a slot for ``deployment``'s apply; False (and remembered as waiting) when the
        profile has ``budget`` Deployments in flight already."""
        # Completed rollouts are dropped first: a Deployment whose last rollout finished holds no
        # slot for its next change, which must count against the budget like any other's.
        flying = self._flying.setdefault(profile, {})
        now = self.in_flight(profile, observe)
        if deployment in now:
            return True
        if len(now) >= budget:
            self._waiting.setdefault(profile, set()).add(deployment)
            return False
        flying[deployment] = 0
        self._waiting.get(profile, set()).discard(deployment)
        return True

    def started(self, profile: Key, deployment: str, generation: int | None) -> None:
        """The apply returned: in flight until that generation's rollout completes, or the slot
        is given back at once when the apply started no rollout (``generation`` None)."""
        flying = self._flying.setdefault(profile, {})
        if generation is None:
            flying.pop(deployment, None)
        else:
            flying[deployment] = generation

    def adopt(self, profile: Key, deployment: str, generation: int) -> None:
        """A rollout an earlier run of the operator started and the cluster shows unfinished."""
        self._flying.setdefault(profile, {}).setdefault(deployment, generation)

    def flying(self, profile: Key, deployment: str) -> bool:
        return deployment in self._flying.get(profile, {})

    def wake(self, profile: Key, free: int) -> list[str]:
        """Up to ``free`` waiting Deployments of the profile, by name, taken off the waiting list."""
        waiting = self._waiting.get(profile, set())
        woken = sorted(waiting)[: max(0, free)]
        waiting.difference_update(woken)
        return woken

    def profiles_flying(self, deployment: str, namespace: str) -> list[Key]:
        return [p for p, flying in self._flying.items() if p[0] == namespace and deployment in flying]

    def flying_generations(self) -> dict[Key, int]:
        """Every Deployment some profile has in flight, with the generation our apply produced
        (0 while the apply is on its way)."""
        return {
            (profile[0], name): g for profile, flying in self._flying.items() for name, g in flying.items()
        }

    def forget_profile(self, profile: Key) -> None:
        """The profile went (or was re-created under its name): its waves and halt go with it."""
        self._flying.pop(profile, None)
        self._waiting.pop(profile, None)
        self._halted.pop(profile, None)

    def forget_deployment(self, namespace: str, deployment: str) -> None:
        for profile, flying in self._flying.items():
            if profile[0] == namespace:
                flying.pop(deployment, None)
                self._waiting.get(profile, set()).discard(deployment)


class Rollouts:
    """The waves of every profile, kept against the cluster as the watches show it."""

    def __init__(
        self,
        world: World,
        cluster: Cluster,
        events: EventSink,
        metrics: Metrics,
        recall: Recall,
        pods: PodLister | None = None,
    ) -> None:
        self._world = world
        self._cluster = cluster
        self._events = events
        self._metrics = metrics
        self._recall = recall
        self.waves = Waves()
        self._recalled: set[tuple[Key, int]] = set()  # profile generations whose halt was looked up
        self._pods = pods
        # Deployment -> (the generation whose new pods cannot start, why), until it is failed.
        self._cannot_start: dict[Key, tuple[int, str]] = {}
        self._seen: dict[Key, dict[tuple[str, str], str]] = {}  # the last look's sightings

    def observer(self, namespace: str) -> Observe:
        def observe(name: str) -> tuple[int, Rollout] | None:
            stored = self._world.stored(namespace, name)
            return None if stored is None else (stored.generation, stored.rollout)

        return observe

    def recover(self, record: ProfileRecord, view: DeploymentView, rollout: Rollout) -> None:
        """A restart finds what our last apply started: in flight, or failed since this profile
        generation last reported it in flight (an older failure is not this generation's); and a
        halt the profile's status shows stays."""
        wave = (view.namespace, record.name)
        unfinished = rollout in ("Progressing", "Unknown")
        if rollout == "Failed" and not unfinished:
            prior = self._recall.reported(record, view.name)
            unfinished = prior is not None and prior.rollout == "Progressing"
        halted = self.waves.halted(wave, record.generation, self.observer(view.namespace)) or {}
        if view.replicas > 0 and unfinished and written_last_by_us(view) and view.name not in halted:
            self.waves.adopt(wave, view.name, view.generation)
        if (wave, record.generation) in self._recalled:
            return
        self._recalled.add((wave, record.generation))
        for item in self._recall.status_targets(record):
            if item.state in ("RolloutFailed", "RolledBack"):
                stored = self._world.stored(record.namespace, item.name)
                if stored is not None:
                    failure = Failure(stored.generation, item.state, item.message)
                    self.waves.halt(wave, record.generation, stored.name, failure)

    def halted(self, record: ProfileRecord) -> dict[str, Failure] | None:
        return self.waves.halted(
            (record.namespace, record.name), record.generation, self.observer(record.namespace)
        )

    def flying(self, record: ProfileRecord, deployment: str) -> bool:
        return self.waves.flying((record.namespace, record.name), deployment)

    def take(self, record: ProfileRecord, spec: ServiceProfileSpec, deployment: str) -> int | None:
        """A slot for the Deployment's apply, or the profile's budget when none is free (the
        Deployment is remembered as waiting). Every unfinished rollout our last apply started
        holds a slot first, whether or not it was decided since a restart."""
        wave = (record.namespace, record.name)
        for stored in self._world.deployments(record.namespace):
            if stored.rollout not in ("Progressing", "Unknown") or self.waves.flying(wave, stored.name):
                continue
            if matches(spec.selector, stored.labels):
                view = stored.view()
                if view.replicas > 0 and written_last_by_us(view):
                    self.waves.adopt(wave, stored.name, view.generation)
        budget = slots(spec.rollout.max_concurrent, self._world.matched(record.namespace, record.name))
        if self.waves.take(wave, deployment, budget, self.observer(record.namespace)):
            return None
        return budget

    def started(self, record: ProfileRecord, deployment: str, generation: int | None) -> None:
        self.waves.started((record.namespace, record.name), deployment, generation)
        if generation is not None:
            self._metrics.rollouts.labels(record.namespace, record.name, "started").inc()

    async def fail(
        self, record: ProfileRecord, view: DeploymentView, revert: bool
    ) -> tuple[Failure, DeploymentView | None]:
        """A rollout this profile started failed: halt the profile, and put the Deployment's
        previous pod template back (``revert``) or leave it. Returns how it ended and the
        Deployment as the put-back left it (None when nothing was written). An ApiError from
        the put-back is the caller's: nothing is halted then, and the failure is decided again."""
        mark = self._cannot_start.get((view.namespace, view.name))
        why = mark[1] if mark is not None and mark[0] == view.generation else DEADLINE
        self._metrics.rollouts.labels(view.namespace, record.name, "failed").inc()
        after: DeploymentView | None = None
        if revert:
            body = await self._cluster.revert_deployment(view.namespace, view.name)
            after = None if body is None else DeploymentView.from_body(body)
            if after is not None:
                self._metrics.rollouts.labels(view.namespace, record.name, "reverted").inc()
            failure = Failure(
                (after or view).generation,
                "RolledBack",
                f"rollout failed: {why}; the previous pod template is back"
                if after is not None
                else f"rollout failed: {why}; there was no earlier revision to put back",
            )
        else:
            failure = Failure(
                view.generation, "RolloutFailed", f"rollout failed: {why}; left as it is (onFailure: Pause)"
            )
        self.waves.halt((view.namespace, record.name), record.generation, view.name, failure)
        self._cannot_start.pop((view.namespace, view.name), None)
        log.warning(
            "rollout_failed",
            namespace=view.namespace,
            deployment=view.name,
            profile=record.name,
            state=failure.state,
        )
        ref = ObjectRef("apps/v1", "Deployment", view.namespace, view.name, view.uid)
        self._events.post(ref, "Warning", failure.state, f"ServiceProfile {record.name}: {failure.message}")
        return failure, after

    def woken_by(self, namespace: str, name: str) -> list[str]:
        """The Deployment's rollout moved (or it went): the waiting Deployments of the profiles
        it held a slot of that may go now."""
        woken: list[str] = []
        specs = self._world.specs(namespace)
        for wave in self.waves.profiles_flying(name, namespace):
            flying = self.waves.in_flight(wave, self.observer(namespace))
            found = specs.get(wave[1])
            if name in flying or found is None:
                continue
            if self._world.stored(namespace, name) is not None:
                self._metrics.rollouts.labels(namespace, wave[1], "completed").inc()
            budget = slots(found[1].rollout.max_concurrent, self._world.matched(namespace, wave[1]))
            woken += self.waves.wake(wave, budget - len(flying))
        return woken

    def failed_ours(self, namespace: str, deployment: str) -> bool:
        """Some profile holds a slot for this Deployment: its failed rollout is ours to handle."""
        return bool(self.waves.profiles_flying(deployment, namespace))

    def forget_profile(self, namespace: str, name: str) -> None:
        wave = (namespace, name)
        self.waves.forget_profile(wave)
        self._recalled = {seen for seen in self._recalled if seen[0] != wave}

    def forget_deployment(self, namespace: str, name: str) -> None:
        self.waves.forget_deployment(namespace, name)
        self._cannot_start.pop((namespace, name), None)
        self._seen.pop((namespace, name), None)

    def start_failed(self, namespace: str, name: str, generation: int) -> bool:
        """The rollout of ours that produced ``generation`` has new pods that cannot start."""
        mark = self._cannot_start.get((namespace, name))
        return mark is not None and mark[0] == generation

    async def look_at_starts(self) -> list[Key]:
        """The Deployments with a rollout of ours under way whose new pods cannot start, newly
        found. The pods of the Deployment's newest ReplicaSet are read only for a rollout whose
        template is still the one our apply made (nothing is read when none is in flight). The
        Deployment itself shows nothing of it until progressDeadlineSeconds passes."""
        found: list[Key] = []
        if self._pods is None:
            return found
        flying = self.waves.flying_generations()
        for key in [k for k in self._cannot_start if k not in flying]:
            del self._cannot_start[key]
        for key in [k for k in self._seen if k not in flying]:
            del self._seen[key]
        for (namespace, name), generation in sorted(flying.items()):
            stored = self._world.stored(namespace, name)
            if (
                stored is None
                or generation == 0
                or stored.generation != generation  # the team changed the template since: theirs
                or stored.rollout == "Complete"
                or (namespace, name) in self._cannot_start
            ):
                continue
            view = stored.view()
            since = applied_at(view)
            if since is None:
                continue
            try:
                pods = await self._pods.new_pods(namespace, name, view.template_labels, PODS_SECONDS)
            except ApiError as error:
                log.warning("pods_unreadable", namespace=namespace, deployment=name, error=str(error))
                continue
            now = sightings(pods, since)
            why = _verdict(now, self._seen.get((namespace, name), {}))
            self._seen[(namespace, name)] = now
            if why is not None:
                self._cannot_start[(namespace, name)] = (generation, why)
                found.append((namespace, name))
        return found
