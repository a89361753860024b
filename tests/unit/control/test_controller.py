"""The controller: which events queue which work, bounded concurrent applies, throttled status."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from tests.support.control import NS, PROFILE, deployment
from tests.support.twin import Twin

from readiness.control.board import Board
from readiness.control.controller import DEPLOYMENT, Controller, WorkKey
from readiness.control.events import EventSink
from readiness.control.peering import PeeringGate
from readiness.control.reconciler import Reconciler
from readiness.control.statuswriter import StatusWriter
from readiness.control.workqueue import RetryAfter, Workers, WorkQueue
from readiness.k8s import ApiError
from readiness.observe.metrics import Metrics


class SlowTwin(Twin):
    """Applies take a while, so that concurrency shows; records what was in flight."""

    in_flight: set[str]
    most_in_flight: int
    overlapping: int

    async def apply_deployment(self, body: Any, *, force: bool) -> dict[str, Any]:
        name = body["metadata"]["name"]
        if name in self.in_flight:
            self.overlapping += 1
        self.in_flight.add(name)
        self.most_in_flight = max(self.most_in_flight, len(self.in_flight))
        await asyncio.sleep(0.01)
        try:
            return await super().apply_deployment(body, force=force)
        finally:
            self.in_flight.discard(name)


class RecordingQueue(WorkQueue[WorkKey]):
    """A work queue that remembers every key it was asked to queue."""

    def __init__(self, metrics: Metrics) -> None:
        super().__init__(metrics)
        self.added: list[WorkKey] = []

    def add(self, key: WorkKey) -> None:
        self.added.append(key)
        super().add(key)

    def queued(self, key: WorkKey) -> bool:
        """Asked for since the last look (and forgotten by this one)."""
        found = key in self.added
        self.added.clear()
        return found


def build(
    twin: Twin, workers: int = 8, snapshot: Twin | None = None, status_every: float = 0.2
) -> tuple[Controller, RecordingQueue, Workers[WorkKey], Metrics]:
    metrics = Metrics()
    board = Board()
    events = EventSink(twin, metrics)
    queue = RecordingQueue(metrics)
    controller = Controller(
        twin.world,
        board,
        Reconciler(twin, twin.world, board, metrics, events),
        StatusWriter(twin, twin.world, board, metrics, events, patience=30),
        queue,
        PeeringGate(None, me="me", priority=1, clusterwide=True),
        settle=0.05,
        status_every=status_every,
        snapshot=snapshot,
    )
    return controller, queue, Workers(queue, controller.work, workers), metrics


def slow_twin() -> SlowTwin:
    twin = SlowTwin()
    twin.in_flight, twin.most_in_flight, twin.overlapping = set(), 0, 0
    return twin


async def settle(queue: WorkQueue[WorkKey], seconds: float = 1.0) -> None:
    """Let the workers, timers and throttles run for ``seconds``."""
    await asyncio.sleep(seconds)


async def test_a_profile_fans_out_and_applies_run_concurrently_but_never_twice_for_one() -> None:
    twin = slow_twin()
    for i in range(40):
        twin.add_deployment(deployment(f"api-{i:02}"))
    controller, queue, workers, _ = build(twin, workers=8)
    workers.start()
    twin.add_profile(NS, "p", PROFILE)
    controller.profile_event("ADDED", NS, "p")
    await settle(queue, 1.5)
    await workers.stop(1)
    assert len(twin.applies) == 40, "one apply per Deployment"
    assert twin.overlapping == 0
    assert 1 < twin.most_in_flight <= 8
    status = twin.profiles[(NS, "p")].status
    assert status["summary"] == {"matched": 40, "compliant": 40, "score": 100, "rollingOut": 40}
    assert len(twin.status_patches) <= 3, "throttled, not one write per Deployment"


async def test_status_only_events_queue_nothing_and_a_spec_change_queues_one() -> None:
    twin = Twin()
    for name in ("a", "b"):
        twin.add_deployment(deployment(name))
    controller, queue, workers, _ = build(twin)
    twin.add_profile(NS, "p", PROFILE)
    controller.profile_event(None, NS, "p")  # listed at start-up: no settling
    assert {(DEPLOYMENT, NS, "a"), (DEPLOYMENT, NS, "b")} <= set(queue.added)
    queue.added.clear()
    workers.start()
    await settle(queue, 0.6)
    applies = len(twin.applies)
    queue.added.clear()
    body = twin.deployments[(NS, "a")]
    body["status"]["availableReplicas"] = 0  # the controller-manager's status update
    twin.touch(NS, "a")
    controller.deployment_event("MODIFIED", twin.deployments[(NS, "a")])
    assert not queue.queued((DEPLOYMENT, NS, "a")), "no decision for a status-only update"
    await settle(queue, 0.5)
    target = next(t for t in twin.profiles[(NS, "p")].status["targets"] if t["name"] == "a")
    assert target["rollout"] == "Progressing", "the rollout column still follows"
    body["spec"]["template"]["spec"]["containers"][0].pop("readinessProbe")
    body["metadata"]["generation"] += 1
    twin.touch(NS, "a")
    controller.deployment_event("MODIFIED", twin.deployments[(NS, "a")])
    assert queue.queued((DEPLOYMENT, NS, "a"))
    await settle(queue, 0.5)
    await workers.stop(1)
    assert len(twin.applies) == applies + 1, "the drift is corrected once"


async def test_profiles_applied_together_never_apply_alone() -> None:
    twin = Twin()
    twin.add_deployment(deployment())
    controller, queue, workers, _ = build(twin)
    workers.start()
    twin.add_profile(NS, "p", PROFILE)
    controller.profile_event("ADDED", NS, "p")
    await asyncio.sleep(0.02)
    controller.deployment_event("MODIFIED", twin.deployments[(NS, "api")])  # an event while p settles
    twin.add_profile(NS, "q", {"selector": {"matchLabels": {"app": "api"}}})
    controller.profile_event("ADDED", NS, "q")
    await settle(queue, 0.8)
    await workers.stop(1)
    assert twin.applies == []
    assert twin.profiles[(NS, "p")].status["targets"][0]["state"] == "Ambiguous"


async def test_deletions_go_through_the_queue() -> None:
    twin = Twin()
    twin.add_deployment(deployment())
    controller, queue, workers, metrics = build(twin)
    twin.add_profile(NS, "p", PROFILE)
    controller.profile_event(None, NS, "p")
    workers.start()
    await settle(queue, 0.5)
    body = twin.deployments[(NS, "api")]
    twin.delete_deployment(NS, "api")
    controller.deployment_event("DELETED", body)
    await settle(queue, 0.5)
    assert twin.profiles[(NS, "p")].status["summary"]["matched"] == 0
    twin.delete_profile(NS, "p")
    controller.profile_event("DELETED", NS, "p")
    await settle(queue, 0.5)
    await workers.stop(1)
    sample = {"profile_namespace": NS, "profile": "p"}
    assert metrics.registry.get_sample_value("readiness_profile_compliance_ratio", sample) is None


async def test_the_status_goes_out_as_soon_as_the_last_deployment_is_decided() -> None:
    """The status waited for undecided Deployments; the last one's verdict sends it at once,
    not at the throttle's next turn (5 s here)."""
    twin = slow_twin()
    for i in range(20):
        twin.add_deployment(deployment(f"api-{i:02}"))
    controller, queue, workers, _ = build(twin, workers=4, status_every=5.0)
    workers.start()
    twin.add_profile(NS, "p", PROFILE)
    controller.profile_event("ADDED", NS, "p")
    await settle(queue, 1.0)
    await workers.stop(1)
    assert len(twin.applies) == 20
    [(_, status)] = twin.status_patches
    assert status["summary"]["compliant"] == 20, "one write, with every Deployment counted"


async def test_throttled_keys_coalesce_and_wait() -> None:
    queue: WorkQueue[str] = WorkQueue()
    runs: list[float] = []
    loop = asyncio.get_running_loop()

    async def work(key: str) -> bool:
        runs.append(loop.time())
        return False

    workers: Workers[str] = Workers(queue, work, count=2)
    workers.start()
    for _ in range(50):
        queue.add_throttled("p", 0.3)
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.5)
    await workers.stop(1)
    assert 2 <= len(runs) <= 3, runs
    assert all(b - a >= 0.29 for a, b in itertools.pairwise(runs))


async def test_a_key_deferred_again_and_again_runs_once() -> None:
    queue: WorkQueue[str] = WorkQueue()
    runs: list[str] = []

    async def work(key: str) -> bool:
        runs.append(key)
        return False

    workers: Workers[str] = Workers(queue, work, count=2)
    workers.start()
    queue.add_throttled("p", 10.0)  # its first run, now
    await asyncio.sleep(0.05)
    queue.add_throttled("p", 10.0)  # a throttled run in 10 s: the deferral takes its place
    for _ in range(20):
        queue.defer("p", 0.2)
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.4)
    await workers.stop(1)
    assert runs == ["p", "p"], "one timer per key"


async def test_no_status_is_written_while_deployments_are_being_listed() -> None:
    twin = Twin()
    for i in range(3):
        twin.add_deployment(deployment(f"api-{i}"))
    controller, queue, workers, _ = build(twin)
    twin.add_profile(NS, "p", PROFILE)
    controller.profile_event(None, NS, "p")
    workers.start()
    for _ in range(8):  # a listing that goes on for a while (a watch re-listed after expiry)
        controller.deployment_event(None, twin.deployments[(NS, "api-0")])
        await asyncio.sleep(0.1)
    assert twin.status_patches == [], "a status during a listing could count half a namespace"
    await settle(queue, 1.2)
    await workers.stop(1)
    assert twin.status_patches, "written once the listing is over"
    assert [patch["summary"]["matched"] for _, patch in twin.status_patches] == [3] * len(twin.status_patches)


async def test_a_status_held_by_a_listing_goes_out_when_the_listing_is_over() -> None:
    """Not at the throttle's next turn (5 s here): half a second after the last listed one."""
    twin = Twin()
    for i in range(3):
        twin.add_deployment(deployment(f"api-{i}"))
    controller, queue, workers, _ = build(twin, status_every=5.0)
    twin.add_profile(NS, "p", PROFILE)
    controller.profile_event(None, NS, "p")
    workers.start()
    for i in range(3):
        controller.deployment_event(None, twin.deployments[(NS, f"api-{i}")])
    await settle(queue, 1.2)
    await workers.stop(1)
    assert [patch["summary"]["matched"] for _, patch in twin.status_patches] == [3]


async def test_the_first_rollout_slot_of_a_namespace_waits_for_the_namespace_listed_whole() -> None:
    """A restarted operator whose watch has not delivered every Deployment yet (kopf lists them
    one event at a time, in pages): a rollout its last run started must hold its slot before
    a new one is given."""
    twin = Twin()
    for i in range(2):
        twin.add_deployment(deployment(f"api-{i}"))
    twin.add_profile(NS, "p", {**PROFILE, "rollout": {"maxConcurrent": 1}})
    metrics = Metrics()
    earlier = Reconciler(twin, twin.world, Board(), metrics, EventSink(twin, metrics))
    await earlier.reconcile(NS, "api-0")  # the last run's rollout, still in flight
    assert [n for n, _ in twin.applies] == ["api-0"]
    twin.world.remove_deployment(NS, "api-0")  # not delivered to the new process yet

    controller, queue, workers, _ = build(twin, snapshot=twin)
    controller.profile_event(None, NS, "p")
    workers.start()
    await settle(queue, 1.0)
    await workers.stop(1)
    assert [n for n, _ in twin.applies] == ["api-0"], "api-1 waits for the slot api-0 holds"
    targets = {t["name"]: t for t in twin.profiles[(NS, "p")].status["targets"]}
    assert targets["api-1"]["state"] == "Pending"
    assert targets["api-1"]["reason"] == "WaitingForSlot"


async def test_a_profile_re_created_under_its_name_forgets_the_old_ones_waves() -> None:
    twin = Twin()
    twin.add_deployment(deployment())
    forgotten: list[tuple[str, str]] = []

    class Spy(Reconciler):
        def forget_profile(self, namespace: str, name: str) -> None:
            forgotten.append((namespace, name))

    metrics, board = Metrics(), Board()
    events = EventSink(twin, metrics)
    controller = Controller(
        twin.world,
        board,
        Spy(twin, twin.world, board, metrics, events),
        StatusWriter(twin, twin.world, board, metrics, events),
        WorkQueue(metrics),
        PeeringGate(None, me="me", priority=1, clusterwide=True),
    )
    twin.add_profile(NS, "p", PROFILE)
    controller.profile_event("ADDED", NS, "p")
    twin.add_profile(NS, "p", PROFILE, generation=2)
    controller.profile_event("MODIFIED", NS, "p")
    assert forgotten == [], "a new generation keeps its waves (the halt ends by itself)"
    twin.add_profile(NS, "p", PROFILE, uid="uid-p-again")
    controller.profile_event("MODIFIED", NS, "p")  # a missed DELETED: the uid tells
    twin.delete_profile(NS, "p")
    controller.profile_event("DELETED", NS, "p")
    assert forgotten == [(NS, "p"), (NS, "p")]
    controller.close()


async def test_a_throttled_apply_is_retried_when_the_server_says() -> None:
    twin = Twin()
    twin.add_deployment(deployment())
    twin.add_profile(NS, "p", PROFILE)
    controller, _, _, _ = build(twin)
    twin.fail_next = ApiError(429, "TooManyRequests", "slow down", retry_after=3.0)
    assert await controller.work((DEPLOYMENT, NS, "api")) == RetryAfter(3.0)
    assert await controller.work((DEPLOYMENT, NS, "api")) is False, "applied on the retry"
    controller.close()


async def test_a_deleted_profile_is_forgotten_with_its_metrics_and_its_deployments_stay() -> None:
    twin = Twin()
    twin.add_deployment(deployment())
    controller, queue, workers, metrics = build(twin)
    workers.start()
    twin.add_profile(NS, "p", PROFILE)
    controller.profile_event("ADDED", NS, "p")
    await settle(queue, 1.0)
    sample = {"profile_namespace": NS, "profile": "p"}
    assert metrics.registry.get_sample_value("readiness_profile_compliance_ratio", sample) == 1.0
    twin.delete_profile(NS, "p")
    controller.profile_event("DELETED", NS, "p")
    await settle(queue, 0.6)
    await workers.stop(1)
    assert metrics.registry.get_sample_value("readiness_profile_compliance_ratio", sample) is None
    assert len(twin.applies) == 1
