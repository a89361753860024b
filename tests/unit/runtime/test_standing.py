"""Which replica acts, and what each one says about it: the active gauge, no frozen per-profile
series on a standby, a fresh look at everything on taking over; the peering objects the
operator makes for itself; the watched-namespace globs."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest
from tests.support.control import NS, PROFILE, deployment
from tests.support.twin import Twin

from readiness.cache.world import World
from readiness.control.board import Board
from readiness.control.controller import Controller, WorkKey
from readiness.control.events import EventSink
from readiness.control.peering import PeeringGate
from readiness.control.reconciler import Reconciler
from readiness.control.statuswriter import StatusWriter
from readiness.control.workqueue import WorkQueue
from readiness.k8s import ApiError
from readiness.observe.metrics import Metrics
from readiness.runtime.peerings import Peerings
from readiness.runtime.settings import Settings


class Peering:
    """A peering object whose status the test sets: who else is alive, with what priority."""

    def __init__(self) -> None:
        self.rival: int | None = None

    async def read(self, scope: str | None) -> dict[str, Any]:
        if self.rival is None:
            return {"status": {}}
        now = dt.datetime.now(dt.UTC).isoformat()
        return {"status": {"rival": {"priority": self.rival, "lastseen": now, "lifetime": 60}}}


def peered(
    twin: Twin, peering: Peering, metrics: Metrics, queue: WorkQueue[WorkKey], clusterwide: bool
) -> Controller:
    """A controller whose replica has priority 100 in ``peering``."""
    board = Board()
    events = EventSink(twin, metrics)
    return Controller(
        twin.world,
        board,
        Reconciler(twin, twin.world, board, metrics, events),
        StatusWriter(twin, twin.world, board, metrics, events),
        queue,
        PeeringGate(peering.read, me="me", priority=100, clusterwide=clusterwide, ttl=0),
        metrics=metrics,
    )


async def test_a_standby_exports_no_profile_series_and_a_take_over_decides_nothing_stale() -> None:
    twin = Twin()
    twin.add_deployment(deployment())
    twin.add_profile(NS, "p", PROFILE)
    peering = Peering()
    metrics = Metrics(version="1.2.3")
    queue: WorkQueue[WorkKey] = WorkQueue(metrics)
    controller = peered(twin, peering, metrics, queue, clusterwide=True)
    ratio = {"profile_namespace": NS, "profile": "p"}
    metrics.observe_profile(NS, "p", ["Compliant"], [], 100)

    assert await controller.refresh_acting()
    assert metrics.registry.get_sample_value("readiness_active") == 1
    assert metrics.registry.get_sample_value("readiness_profile_compliance_ratio", ratio) == 1

    peering.rival = 200  # a replica with a higher priority is alive: this one stands by
    assert not await controller.refresh_acting()
    assert metrics.registry.get_sample_value("readiness_active") == 0
    assert metrics.profiles() == []
    assert metrics.registry.get_sample_value("readiness_profile_compliance_ratio", ratio) is None

    peering.rival = None  # the other one went: this one takes over, from what its watches deliver
    queued = queue.depth
    assert await controller.refresh_acting()
    assert queue.depth == queued, "nothing decided from what it saw before it stood by"
    assert metrics.registry.get_sample_value("readiness_active") == 1
    controller.close()


async def test_a_take_over_decides_from_the_cluster_as_it_is_now() -> None:
    """The replica saw the Deployment before the profile's first apply, then stood by while
    another replica applied it. Taking over, it lists the namespace before deciding: the
    Deployment is compliant, and nothing is applied a second time."""
    twin = Twin()
    twin.add_deployment(deployment())
    twin.add_profile(NS, "p", PROFILE)
    seen = World()  # what this replica's watches delivered before it stood by
    seen.put_deployment(copy.deepcopy(twin.deployments[(NS, "api")]))
    seen.put_profile(twin.profiles[(NS, "p")])
    peering = Peering()
    metrics = Metrics()
    queue: WorkQueue[WorkKey] = WorkQueue(metrics)
    board = Board()
    events = EventSink(twin, metrics)
    controller = Controller(
        seen,
        board,
        Reconciler(twin, seen, board, metrics, events),
        StatusWriter(twin, seen, board, metrics, events),
        queue,
        PeeringGate(peering.read, me="me", priority=100, clusterwide=False, ttl=0),
        metrics=metrics,
        snapshot=twin,
    )
    peering.rival = 200
    assert not await controller.refresh_acting([NS])
    other = Board()  # the active replica, deciding from the cluster's own world
    await Reconciler(twin, twin.world, other, metrics, EventSink(twin, metrics)).reconcile(NS, "api")
    assert [name for name, _ in twin.applies] == ["api"]
    assert twin.deployments[(NS, "api")]["metadata"]["generation"] == 2

    peering.rival = None  # it died: this replica takes over
    assert await controller.work(("Deployment", NS, "api")) is False
    assert [name for name, _ in twin.applies] == ["api"], "nothing applied twice"
    stored = seen.stored(NS, "api")
    assert stored is not None
    assert stored.generation == 2, "decided from the cluster as it is"
    assert await controller.work(("Deployment", NS, "api")) is False
    assert [name for name, _ in twin.applies] == ["api"]
    controller.close()


def test_build_info_and_process_metrics() -> None:
    metrics = Metrics(version="1.2.3")
    samples = {s.name: s for m in metrics.registry.collect() for s in m.samples}
    assert samples["readiness_build_info"].labels["version"] == "1.2.3"
    assert samples["readiness_build_info"].value == 1
    assert "process_resident_memory_bytes" in samples
    assert "python_info" in samples


class FakePeeringApi:
    def __init__(self, clusterwide: bool, forbidden: bool = False) -> None:
        self.cluster_object: dict[str, Any] | None = None
        self.held = {"shop-a"}
        self.created: list[str | None] = []
        self.forbidden = forbidden

    async def read_peering(self, name: str, namespace: str | None) -> dict[str, Any] | None:
        return self.cluster_object

    async def peering_namespaces(self, name: str) -> set[str]:
        return self.held

    async def list_namespaces(self) -> list[str]:
        return ["shop-a", "shop-b", "shop-dev", "kube-system"]

    async def create_peering(self, name: str, namespace: str | None) -> bool:
        if self.forbidden:
            raise ApiError(status=403, reason="Forbidden", message="cannot create")
        self.created.append(namespace)
        return True


@pytest.mark.parametrize(
    ("namespaces", "created"),
    [("", [None]), ("shop-*,!shop-dev", ["shop-b"])],
)
async def test_the_operator_creates_the_peering_objects_it_needs(
    namespaces: str, created: list[str | None]
) -> None:
    api = FakePeeringApi(clusterwide=not namespaces)
    peerings = Peerings(api, Settings(peering="readiness-operator", namespaces=namespaces))  # type: ignore[arg-type]
    await peerings.ensure()
    assert api.created == created
    assert peerings.missing() is None


async def test_a_peering_object_it_may_not_create_keeps_it_unready() -> None:
    api = FakePeeringApi(clusterwide=True, forbidden=True)
    peerings = Peerings(api, Settings(peering="readiness-operator"))  # type: ignore[arg-type]
    await peerings.ensure()
    reason = peerings.missing()
    assert reason is not None
    assert "ClusterKopfPeering readiness-operator" in reason
    assert "RBAC" in reason


async def test_standalone_needs_no_peering_object() -> None:
    api = FakePeeringApi(clusterwide=True)
    await Peerings(api, Settings()).ensure()  # type: ignore[arg-type]
    assert api.created == []


@pytest.mark.parametrize(
    ("pattern", "namespace", "watched"),
    [
        ("", "anything", True),
        ("shop", "shop", True),
        ("shop", "shop-a", False),
        ("shop-*", "shop-a", True),
        ("shop-*,!shop-dev", "shop-dev", False),
        ("!kube-*", "default", True),
        ("!kube-*", "kube-system", False),
        ("shop,payments", "payments", True),  # a list: any name admits
        ("shop,payments-*,!payments-dev", "payments-eu", True),
        ("shop,payments-*,!payments-dev", "payments-dev", False),
        ("shop,payments-*,!payments-dev", "billing", False),
    ],
)
def test_watched_namespaces_are_any_glob_less_the_excluded(
    pattern: str, namespace: str, watched: bool
) -> None:
    from kopf._cogs.structs.references import NamespaceName, match_namespace

    settings = Settings(namespaces=pattern)
    assert settings.watches(namespace) is watched
    patterns = settings.kopf_namespaces()
    kopf_serves = not patterns or any(match_namespace(NamespaceName(namespace), p) for p in patterns)
    assert kopf_serves is watched, patterns


async def test_a_standby_that_has_seen_nothing_still_knows_it_stands_by() -> None:
    """Peering per namespace: kopf pauses a standby's watches, so it knows no profile; the
    namespaces it serves are asked about all the same."""
    twin = Twin()
    peering = Peering()
    peering.rival = 200
    metrics = Metrics()
    controller = peered(twin, peering, metrics, WorkQueue(metrics), clusterwide=False)
    assert not await controller.refresh_acting(["shop-a"])
    assert metrics.registry.get_sample_value("readiness_active") == 0
    controller.close()
