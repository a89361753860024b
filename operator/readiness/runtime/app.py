"""Assemble the operator at start-up: settings, logging, clients, registry, workers, servers."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import Any, cast

import kopf
import structlog

from readiness import __version__
from readiness.cache.world import World
from readiness.control.board import Board
from readiness.control.controller import Controller, WorkKey
from readiness.control.events import EventSink
from readiness.control.guard import FightGuard
from readiness.control.peering import PeeringGate, draw_priority, own_identity
from readiness.control.reconciler import Reconciler
from readiness.control.statuswriter import StatusWriter
from readiness.control.workqueue import Workers, WorkQueue
from readiness.k8s import ApiError, KubernetesCluster, NoCredentials, Transport, load_configuration
from readiness.observe.logconfig import configure
from readiness.observe.metrics import Metrics
from readiness.observe.tracing import configure_tracing, shutdown_tracing
from readiness.runtime.admission import AdmissionServer
from readiness.runtime.crdwatch import CrdWatch
from readiness.runtime.deployments import DeploymentFeed
from readiness.runtime.errors import StartupFailure
from readiness.runtime.handlers import register
from readiness.runtime.kopfconfig import kopf_settings
from readiness.runtime.memory import Trimmer, settle_collector
from readiness.runtime.peerings import Peerings
from readiness.runtime.periodic import Every
from readiness.runtime.serve import PortUnavailable, Servers
from readiness.runtime.settings import Settings, load_settings
from readiness.webhook.admitter import LIST_TIMEOUT, Admitter, ProfileSource

log = structlog.get_logger("readiness.app")
# API calls beside the workers' applies: status patches, Events, peering and CRD reads.
SPARE_CONNECTIONS = 6


class Operator:
    """The operator process, assembled: one controller, the webhook when it is on, their
    background tasks, endpoints and kopf. Built at once from the settings; ``run`` serves until
    kopf stops."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = metrics = Metrics(version=__version__)
        metrics.workers.set(settings.workers)
        try:
            configuration = load_configuration()
            transport = Transport(configuration, connections=settings.workers + SPARE_CONNECTIONS)
        except NoCredentials as error:
            raise StartupFailure(str(error)) from None
        except (OSError, ValueError) as error:  # its CA or client certificate, its proxy
            raise StartupFailure(f"cannot reach the cluster as configured: {error}") from None
        self.cluster = cluster = KubernetesCluster(transport)
        world, board = World(), Board()
        self.events = events = EventSink(
            cluster, metrics, busy=lambda: bool(self.queue.busy or self.queue.depth)
        )
        guard = FightGuard(limit=settings.max_corrections, window=settings.correction_window_seconds)
        self.queue = queue = WorkQueue[WorkKey](metrics)
        self.priority = draw_priority(settings.peering_priority)
        self.identity = own_identity()
        gate = PeeringGate(
            (lambda scope: cluster.read_peering(settings.peering, scope)) if settings.peering else None,
            me=self.identity,
            priority=self.priority,
            clusterwide=not settings.namespaces,
        )
        self.controller = controller = Controller(
            world,
            board,
            Reconciler(cluster, world, board, metrics, events, guard, pods=cluster),
            StatusWriter(cluster, world, board, metrics, events),
            queue,
            gate,
            metrics=metrics,
            snapshot=cluster,
        )
        self.workers = Workers(queue, controller.work, settings.workers)
        self.feed = DeploymentFeed(cluster, controller, settings)
        self.peerings = peerings = Peerings(cluster, settings)
        # Every background task, started together once kopf is up and stopped together when it stops.
        trimmer = Trimmer(busy=lambda: bool(queue.busy or queue.depth), worked=lambda: queue.taken)
        self.background = [
            Every(5.0, lambda: controller.refresh_acting(peerings.watched), "standing"),
            Every(settings.resync_seconds, controller.resync, "resync"),
            Every(15.0, trimmer.tick, "malloc-trim"),
            Every(5.0, controller.look_at_starts, "rollout-starts"),
        ]
        if settings.peering and settings.namespaces:  # namespaces come and go: each new one needs its own
            self.background.append(Every(60.0, peerings.ensure, "peering-objects"))
        self.admission = AdmissionServer(settings, cluster) if settings.webhook != "off" else None
        admitter = None
        if self.admission is not None:

            async def trusted(namespace: str) -> bool:
                return controller.delivered and await gate.active(namespace)

            profiles = ProfileSource(world, trusted, lambda ns: cluster.list_profiles(ns, LIST_TIMEOUT))
            admitter = Admitter(profiles, metrics, settings.watches)
            self.background.append(Every(30.0, self.admission.ensure, "webhook-registration"))
        self.registry = kopf.OperatorRegistry()
        register(self.registry, controller, admitter)
        kopf.on.startup(registry=self.registry)(self._started)
        kopf.on.cleanup(registry=self.registry)(self._stopping)
        self.ready = asyncio.Event()
        self.crd = CrdWatch()

    async def _started(self, **_: Any) -> None:
        self.workers.start()
        self.feed.start()
        for task in self.background:
            task.start()

    async def _stopping(self, **_: Any) -> None:
        log.info(
            "shutting_down",
            grace_seconds=self.settings.shutdown_seconds,
            in_flight=self.queue.busy,
            working_on=sorted("/".join(key) for key in self.queue.in_flight),  # kind/namespace/name
        )
        for task in self.background:
            task.stop()
        if self.admission is not None:
            await self.admission.unregister()  # kopf stopped serving: the apiserver must stop asking
        self.controller.close()
        await self.workers.stop(self.settings.shutdown_seconds)
        await self.feed.stop()  # after the workers: its join must not hold the queue open
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await self.events.drain()
        self.events.close()

    async def readiness(self) -> str | None:
        """None when ready, else why not (/readyz)."""
        if not self.ready.is_set():
            return "starting: watches not established yet"
        try:
            established = await self.cluster.crd_established()
        except ApiError as error:
            self.metrics.apiserver_up.set(0)
            self.metrics.api_errors.labels(str(error.status)).inc()
            return f"the apiserver cannot be reached or refused: {error}"
        self.metrics.apiserver_up.set(1)
        return (
            self.crd.observe(established)
            or (None if self.feed.listed() else "starting: the Deployments are not listed yet")
            or self.peerings.missing()
            or (self.admission.missing() if self.admission is not None else None)
        )

    async def _serve_endpoints(self) -> Servers:
        settings = self.settings
        servers = Servers(
            self.metrics,
            self.readiness,
            health_port=settings.health_port,
            metrics_port=settings.metrics_port,
            liveness=self.crd.liveness,
        )
        try:
            await servers.start()
        except PortUnavailable as error:
            await self.cluster.close()
            named = [
                f"READINESS_{n.upper()}"
                for n in ("health_port", "metrics_port")
                if getattr(settings, n) == error.port
            ]
            raise StartupFailure(
                f"cannot listen on port {error.port} ({', '.join(named)}): {error.reason}"
            ) from None
        return servers

    async def run(self) -> None:
        settings = self.settings
        servers = await self._serve_endpoints()
        await self.peerings.ensure()
        await self.controller.refresh_acting(self.peerings.watched)
        log.info(
            "operator_starting",
            version=__version__,
            namespaces=settings.namespaces or "all",
            workers=settings.workers,
            peering=settings.peering or "standalone",
            priority=self.priority,
            identity=self.identity,
        )
        ks = kopf_settings(settings, self.priority)
        if self.admission is not None:
            ks.admission.server = self.admission.serve
            ks.admission.managed = None  # kopf's own would set a 30 s timeout and no selectors
        try:
            await kopf.operator(
                registry=self.registry,
                settings=ks,
                clusterwide=not settings.namespaces,
                namespaces=settings.kopf_namespaces(),
                standalone=not settings.peering,
                peering_name=settings.peering or None,
                identity=cast(
                    Any, self.identity
                ),  # kopf.Identity: a NewType of str that kopf does not export
                ready_flag=self.ready,
            )
        finally:
            await servers.stop()
            if self.admission is not None:
                await self.admission.unregister()  # also when kopf ended without its cleanup (a crash)
                self.admission.close()
            await self.cluster.close()
            log.info("operator_stopped")


async def operate(settings: Settings) -> None:
    await Operator(settings).run()


def run_operator() -> None:
    settings = load_settings()
    configure(settings.log_level, settings.log_format)
    configure_tracing(settings.tracing_endpoint)
    settle_collector()
    try:
        asyncio.run(operate(settings))
    except StartupFailure as failure:
        print(f"readiness: {failure}", file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        shutdown_tracing()
