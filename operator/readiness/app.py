"""Assemble the operator at start-up: settings, logging, clients, registry, workers, servers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from typing import Any

import kopf
import structlog
from pydantic import ValidationError

from . import API_GROUP, __version__
from .guard import FightGuard
from .handlers import IndexedWorld, ProfileKey, register
from .k8s import ApiError, KubernetesCluster, load_api_client
from .logconfig import configure
from .metrics import Metrics
from .peering import PeeringGate, draw_priority, own_identity
from .reconcile import Reconciler
from .serve import Servers
from .settings import Settings
from .tracing import configure_tracing, shutdown_tracing
from .workqueue import Workers, WorkQueue

log = structlog.get_logger("readiness.app")


def load_settings() -> Settings:
    """Settings from the environment, or one clear line per bad variable and exit code 2."""
    try:
        return Settings()
    except ValidationError as error:
        for problem in error.errors():
            variable = "READINESS_" + str(problem["loc"][0]).upper() if problem["loc"] else "READINESS_*"
            print(f"readiness: invalid {variable}: {problem['msg']}", file=sys.stderr)
        raise SystemExit(2) from None


def kopf_settings(settings: Settings, priority: int) -> kopf.OperatorSettings:
    ks = kopf.OperatorSettings()
    # Our own prefix for anything kopf stores on our own objects; never kopf.zalando.org.
    ks.persistence.finalizer = f"{API_GROUP}/finalizer"
    ks.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=API_GROUP)
    ks.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=API_GROUP, key="last-handled-configuration"
    )
    # kopf posts k8s Events only for warnings; the operator posts its own meaningful ones.
    ks.posting.level = logging.WARNING
    ks.peering.standalone = not settings.peering
    ks.peering.mandatory = bool(settings.peering)
    if settings.peering:
        ks.peering.name = settings.peering
        ks.peering.clusterwide = not settings.namespaces
        ks.peering.priority = priority
        ks.peering.lifetime = settings.peering_lifetime_seconds
    ks.watching.server_timeout = 300
    ks.watching.client_timeout = 330
    ks.networking.request_timeout = 60
    return ks


async def operate(settings: Settings) -> None:
    metrics = Metrics()
    metrics.workers.set(settings.workers)
    cluster = KubernetesCluster(load_api_client(), workers=settings.workers)
    world = IndexedWorld()
    reconciler = Reconciler(
        cluster,
        world,
        metrics,
        FightGuard(limit=settings.max_corrections, window=settings.correction_window_seconds),
    )
    queue: WorkQueue[ProfileKey] = WorkQueue(metrics)
    priority = draw_priority(settings.peering_priority)
    gate = PeeringGate(
        (lambda scope: cluster.read_peering(settings.peering, scope)) if settings.peering else None,
        me=own_identity(),
        priority=priority,
        clusterwide=not settings.namespaces,
    )

    async def work(key: ProfileKey) -> bool:
        try:
            if not await gate.active(key[0]):
                return False  # another replica is active; it reconciles this profile

            outcome = await reconciler.reconcile(*key)
        except ApiError as error:
            log.warning("reconcile_failed", namespace=key[0], profile=key[1], error=str(error))
            return True
        return outcome.retry

    workers: Workers[ProfileKey] = Workers(queue, work, settings.workers)
    registry = kopf.OperatorRegistry()
    register(registry, world, queue, reconciler)
    ready = asyncio.Event()

    @kopf.on.startup(registry=registry)
    async def startup(**kwargs: Any) -> None:
        # kopf hands its (still empty, then live) indexes to startup handlers by their ids.
        world.bind(kwargs["deployment_index"], kwargs["profile_index"])
        workers.start()
        resync.start()

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        log.info("shutting_down", grace_seconds=settings.shutdown_seconds, in_flight=queue.busy)
        resync.stop()
        await workers.stop(settings.shutdown_seconds)

    async def readiness() -> str | None:
        if not ready.is_set():
            return "starting: watches not established yet"
        if not await cluster.crd_established():
            return f"CRD serviceprofiles.{API_GROUP} is not installed or not established"
        return None

    resync = Resync(world, queue, settings.resync_seconds)
    servers = Servers(
        metrics, readiness, health_port=settings.health_port, metrics_port=settings.metrics_port
    )
    await servers.start()
    log.info(
        "operator_starting",
        version=__version__,
        namespaces=settings.namespaces or "all",
        workers=settings.workers,
        peering=settings.peering or "standalone",
        priority=priority,
        identity=own_identity(),
    )
    try:
        await kopf.operator(
            registry=registry,
            settings=kopf_settings(settings, priority),
            clusterwide=not settings.namespaces,
            namespaces=[settings.namespaces] if settings.namespaces else [],
            standalone=not settings.peering,
            peering_name=settings.peering or None,
            ready_flag=ready,
        )
    finally:
        await servers.stop()
        cluster.close()
        log.info("operator_stopped")


class Resync:
    """Re-queues every profile periodically: a backstop for anything a watch missed."""

    def __init__(self, world: IndexedWorld, queue: WorkQueue[ProfileKey], period: float) -> None:
        self._world, self._queue, self._period = world, queue, period
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="resync")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _loop(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                await asyncio.sleep(self._period)
                for key in self._world.all_profiles():
                    self._queue.add(key)


def run_operator() -> None:
    settings = load_settings()
    configure(settings.log_level, settings.log_format)
    configure_tracing(settings.tracing_endpoint)
    try:
        asyncio.run(operate(settings))
    finally:
        shutdown_tracing()
