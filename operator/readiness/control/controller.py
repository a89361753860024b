"""The controller loop: watch events become keys; workers turn keys into reconciles.

One door: every event, deletions included, only updates the world and queues keys.
- A Deployment key reconciles that one Deployment against the profiles of its namespace.
  An event that changes nothing the decision reads (the controller-manager's status updates,
  resourceVersion bumps) queues nothing: at most the rollout column of its targets moves.
- A profile change fans out to every Deployment of its namespace (those it selects now, and
  those it selected before); a decision that does not change costs one comparison.
- A ServiceProfile key rebuilds that profile's status from the per-Deployment verdicts; it is
  queued at most about once a second per profile, so a thousand Deployments settling cost a
  handful of status writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import structlog

from readiness.cache.world import Key, ProfileRecord, World
from readiness.control.board import Board
from readiness.control.peering import PeeringGate
from readiness.control.reconciler import Reconciler
from readiness.control.statuswriter import StatusWriter
from readiness.control.workqueue import RetryAfter, WorkQueue
from readiness.k8s import ApiError
from readiness.observe.metrics import Metrics

log = structlog.get_logger("readiness.controller")

DEPLOYMENT = "Deployment"
PROFILE = "ServiceProfile"
WorkKey = tuple[str, str, str]  # (kind, namespace, name)
# A new profile waits this long before it applies, so that profiles applied together
# (one `kubectl apply -f dir/`) are all known before any of them decides it is alone.
SETTLE_SECONDS = 0.5
# A profile's status is rebuilt at most this often while its Deployments move.
STATUS_EVERY = 1.0
# Deployments arrive by the thousand per second while they are listed (at start-up, or after a
# watch expired): no status is written until the listing has been quiet this long, so a status
# never counts half a namespace.
LISTING_QUIET = 0.5
LIST_SECONDS = 30.0


class Snapshot(Protocol):
    """The cluster as it is now, one namespace at a time: what a replica that takes over
    decides from."""

    async def list_deployments(self, namespace: str, seconds: float) -> list[dict[str, Any]]: ...

    async def list_profiles(self, namespace: str, seconds: float) -> list[dict[str, Any]]: ...


class Controller:
    def __init__(
        self,
        world: World,
        board: Board,
        reconciler: Reconciler,
        writer: StatusWriter,
        queue: WorkQueue[WorkKey],
        gate: PeeringGate,
        settle: float = SETTLE_SECONDS,
        status_every: float = STATUS_EVERY,
        metrics: Metrics | None = None,
        snapshot: Snapshot | None = None,
    ) -> None:
        self._world = world
        self._board = board
        self._reconciler = reconciler
        self._writer = writer
        self._queue = queue
        self._gate = gate
        self._settle = settle
        self._status_every = status_every
        # What each profile asked for when its namespace last fanned out.
        self._identities: dict[Key, tuple[str, int, bool]] = {}
        self._settle_timers: dict[str, asyncio.TimerHandle] = {}
        self._listed_at = float("-inf")
        self._metrics = metrics or Metrics()
        self._acting: set[str] | None = None  # namespaces this replica acted for at the last look
        self._known: set[str] = set()  # and the namespaces it looked at
        self._delivered = False  # a watch event arrived: kopf fills its indexes first
        self._snapshot = snapshot
        self._looked: dict[str, int] = {}  # namespace -> the gate's take-overs when last listed
        self._counted: set[str] = set()  # namespaces listed whole by this process
        self._looking: dict[str, asyncio.Lock] = {}  # one list per namespace at a time

    @property
    def delivered(self) -> bool:
        """True once a Deployment or profile watch event arrived. kopf calls those handlers only
        after the profile index holds every profile, so the World knows them all from then on."""
        return self._delivered

    # ---- from the watches (kopf handlers) ----
    def index_profile(self, body: Mapping[str, Any]) -> None:
        self._world.put_profile(ProfileRecord.from_body(body))

    def deployment_event(self, type_: str | None, body: Mapping[str, Any]) -> None:
        self._delivered = True
        meta = body.get("metadata") or {}
        namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
        if type_ == "DELETED":
            self._world.remove_deployment(namespace, name)
            self._queue.add((DEPLOYMENT, namespace, name))
            self._wake(namespace, name)
            return
        if type_ is None:  # a (re-)listing: statuses wait until it is over
            self._listed_at = asyncio.get_running_loop().time()
        stored = self._world.put_deployment(body)
        self._wake(namespace, name)
        if self._reconciler.stale(namespace, stored):
            return  # our own write is on its way; its event decides
        if self._reconciler.unchanged(namespace, stored):
            for key in self._board.rollout(namespace, name, stored.rollout):
                self.status(key)
            return
        self._queue.add((DEPLOYMENT, namespace, name))

    def _wake(self, namespace: str, name: str) -> None:
        """A rollout slot it held may have freed: the Deployments waiting for it go."""
        for woken in self._reconciler.rollouts.woken_by(namespace, name):
            self._queue.add((DEPLOYMENT, namespace, woken))

    def profile_event(self, type_: str | None, namespace: str, name: str) -> None:
        self._delivered = True
        key = (namespace, name)
        if type_ == "DELETED":
            self._world.remove_profile(namespace, name)
        record = self._world.profile(namespace, name)
        if record is None or record.deleting:
            self._forget(namespace, name)
        identity = record.identity if record is not None else None
        if identity != self._identities.get(key):
            known = self._identities.get(key)
            if known is not None and identity is not None and identity[0] != known[0]:
                self._reconciler.forget_profile(namespace, name)  # re-created under its name
            if identity is None:
                self._identities.pop(key, None)
            else:
                self._identities[key] = identity
            if type_ == "ADDED" and record is not None and not record.deleting:
                self._hold(namespace, name)
            else:
                self.fan_out(namespace)
        self.status(key)

    def _forget(self, namespace: str, name: str) -> None:
        """The one place a profile that went (or is going) is forgotten: its waves, halts and
        fights, its verdicts on the board, its status memory and its metrics. The Deployments
        it set stay as they are."""
        self._reconciler.forget_profile(namespace, name)
        self._writer.forget(namespace, name)

    # ---- scheduling ----
    def status(self, key: Key) -> None:
        self._queue.add_throttled((PROFILE, *key), self._status_every)

    def fan_out(self, namespace: str) -> None:
        """Every Deployment and every profile status of the namespace, once more."""
        for deployment in self._world.deployments(namespace):
            self._queue.add((DEPLOYMENT, namespace, deployment.name))
        for record in self._world.profiles(namespace):
            self.status((namespace, record.name))

    def _hold(self, namespace: str, name: str) -> None:
        """Keep a new profile out of every decision until its namespace has had no new profile
        for ``settle`` seconds; then release them all at once."""
        self._world.hold(namespace, name)
        timer = self._settle_timers.pop(namespace, None)
        if timer is not None:
            timer.cancel()

        def release() -> None:
            self._settle_timers.pop(namespace, None)
            self._world.release(namespace)
            self.fan_out(namespace)

        self._settle_timers[namespace] = asyncio.get_running_loop().call_later(self._settle, release)

    async def look_at_starts(self) -> None:
        """Rollouts of ours whose new pods cannot start are decided again now (and fail)."""
        for namespace, name in await self._reconciler.rollouts.look_at_starts():
            self._queue.add((DEPLOYMENT, namespace, name))

    def resync(self) -> None:
        """Decide everything afresh: a backstop for whatever a watch or a timer missed."""
        self._reconciler.forget_decisions()
        for namespace, name in self._world.all_deployments():
            self._queue.add((DEPLOYMENT, namespace, name))
        for key in self._world.all_profiles():
            self.status(key)

    async def refresh_acting(self, watched: Iterable[str] = ()) -> bool:
        """Whether this replica acts, for the cluster or for any namespace it knows or
        ``watched`` names (a standby's paused watches may have shown it none). A standby
        replica exports no per-profile series (frozen, they would disagree with the active
        one's). A replica that takes over decides from what kopf's resumed watches deliver,
        not from what it saw before it stood by: that is stale, and deciding from it applied
        again what the replica before had applied."""
        namespaces = (
            {ns for ns, _ in self._world.all_profiles()}
            | {ns for ns, _ in self._metrics.profiles()}
            | set(watched)
        )
        try:
            if namespaces:
                acting = {ns for ns in sorted(namespaces) if await self._gate.active(ns)}
            else:
                acting = {""} if not self._gate.clusterwide or await self._gate.active("") else set()
        except ApiError as error:
            log.warning("peering_unreadable", error=str(error))
            return bool(self._acting)
        for namespace, profile in self._metrics.profiles():
            if namespace not in acting:
                self._metrics.forget_profile(namespace, profile)
        # Taking over: acting now where this replica knew it stood by (a namespace seen for the
        # first time is not one).
        if self._acting is not None and (took := acting & (self._known - self._acting)):
            log.info("taking_over", namespaces=sorted(took - {""}))
        self._acting, self._known = acting, namespaces | {""}
        self._metrics.active.set(1 if acting else 0)
        return bool(acting)

    async def _look_again(self, namespace: str) -> None:
        """After a take-over, the namespace as the cluster holds it now, before any decision.

        What this replica saw before it stood by is stale (the replica before it has written
        since), and kopf's resumed watches list Deployments and profiles separately: a profile
        listed first fans out to Deployments still stale here, and deciding them applies again
        what was applied. One list of each settles it.
        """
        takeovers = self._gate.takeovers(namespace)
        if self._snapshot is None or self._looked.get(namespace, 0) == takeovers:
            return
        async with self._looking.setdefault(namespace, asyncio.Lock()):
            if self._looked.get(namespace, 0) == takeovers:
                return
            await self._relist(namespace)
            self._looked[namespace] = takeovers

    async def _count(self, namespace: str) -> None:
        """Before the first rollout slot of a namespace: the namespace listed whole, so that
        every rollout in flight there is counted (kopf's own listing arrives one event at a
        time, in pages, and a slot given halfway through it would miss some)."""
        if self._snapshot is None or namespace in self._counted:
            return
        async with self._looking.setdefault(namespace, asyncio.Lock()):
            if namespace not in self._counted:
                await self._relist(namespace)

    async def _relist(self, namespace: str) -> None:
        """The namespace's Deployments and profiles as the API has them now; an entry a watch
        event replaced while the list was under way is newer than the list and stays."""
        assert self._snapshot is not None
        deployments = {d.name: d for d in self._world.deployments(namespace)}
        profiles = {p.name: p for p in self._world.profiles(namespace)}
        listed_profiles = await self._snapshot.list_profiles(namespace, LIST_SECONDS)
        listed = await self._snapshot.list_deployments(namespace, LIST_SECONDS)
        log.info("looking_again", namespace=namespace, deployments=len(listed), profiles=len(listed_profiles))
        names = set()
        for body in listed_profiles:
            name = str(body["metadata"]["name"])
            names.add(name)
            if self._world.profile(namespace, name) is profiles.get(name):
                self.index_profile(body)
                self.profile_event(None, namespace, name)
        for name, record in profiles.items():
            if name not in names and self._world.profile(namespace, name) is record:
                self.profile_event("DELETED", namespace, name)
        names = set()
        for body in listed:
            name = str(body["metadata"]["name"])
            names.add(name)
            if self._world.stored(namespace, name) is deployments.get(name):
                self.deployment_event(None, body)
        for name, stored in deployments.items():
            if name not in names and self._world.stored(namespace, name) is stored:
                self.deployment_event("DELETED", {"metadata": {"namespace": namespace, "name": name}})
        self._counted.add(namespace)

    def close(self) -> None:
        for timer in self._settle_timers.values():
            timer.cancel()
        self._settle_timers.clear()

    # ---- the workers' side ----
    async def work(self, key: WorkKey) -> bool | RetryAfter:
        """One key; True asks for a retry with backoff, a RetryAfter for one no sooner than the
        server asked."""
        kind, namespace, name = key
        try:
            if not await self._gate.active(namespace):
                return False  # another replica is active; it does the work
            await self._look_again(namespace)
            if kind == DEPLOYMENT:
                counted = self._snapshot is None or namespace in self._counted
                outcome = await self._reconciler.reconcile(namespace, name, counted)
                for profile in outcome.changed:
                    if self._writer.decided(*profile, name):
                        self._queue.hurry((PROFILE, *profile))  # the last one its status waited for
                    else:
                        self.status(profile)
                if self._world.stored(namespace, name) is None:
                    self._queue.forget(key)
                if outcome.count:
                    await self._count(namespace)
                    self._queue.add(key)  # decided again, now that every rollout in flight is known
                if outcome.retry and outcome.retry_after:
                    return RetryAfter(outcome.retry_after)
                return outcome.retry
            if (quiet_in := self._listed_at + LISTING_QUIET - asyncio.get_running_loop().time()) > 0:
                # Deployments are still being listed: count them all first, as soon as it is over.
                self._queue.defer(key, quiet_in)
                return False
            if await self._writer.flush(namespace, name):
                self.status((namespace, name))  # some Deployments are not decided yet
            if self._world.profile(namespace, name) is None:
                self._queue.forget(key)
        except ApiError as error:
            log.warning("work_failed", kind=kind, namespace=namespace, name=name, error=str(error))
            return RetryAfter(error.retry_after) if error.retry_after else True
        return False
