"""Assemble the operator at start-up: settings, logging, clients, registry, workers, servers."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import difflib
import logging
import os
import re
import shutil
import socket
import sys
import tempfile
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, cast

import kopf
import structlog
from pydantic import ValidationError

from . import API_GROUP, __version__
from .board import Board
from .certs import self_signed
from .controller import Controller, WorkKey
from .events import EventSink
from .guard import FightGuard
from .handlers import register
from .k8s import ApiError, KubernetesCluster, NoCredentials, load_api_client
from .logconfig import configure
from .memory import Trimmer
from .metrics import Metrics
from .peering import PeeringGate, draw_priority, own_identity
from .periodic import Every
from .reconcile import Reconciler
from .serve import PortUnavailable, Servers
from .settings import Settings
from .statuswriter import StatusWriter
from .tracing import configure_tracing, shutdown_tracing
from .webhook import (
    HANDLER_ID,
    LIST_TIMEOUT,
    REVIEW,
    Admitter,
    ProfileSource,
    Registration,
    namespace_selector,
    webhook_configuration,
)
from .workqueue import Workers, WorkQueue
from .world import World

log = structlog.get_logger("readiness.app")
# API calls beside the workers' applies: status patches, Events, peering and CRD reads.
SPARE_CONNECTIONS = 6


def load_settings(environ: Mapping[str, str] = os.environ) -> Settings:
    """Settings from the environment, or one clear line per bad variable and exit code 2.
    A misspelled READINESS_* variable is an error too: silently ignored, it would leave the
    operator doing something other than what its installer asked for."""
    lines = [
        f"readiness: unknown {name}" + (f" (did you mean {close[0]}?)" if close else "")
        for name in sorted(unknown_variables(environ))
        for close in [difflib.get_close_matches(name, known_variables(), n=1, cutoff=0.6)]
    ]
    try:
        settings = Settings()
    except ValidationError as error:
        for problem in error.errors():
            variable = "READINESS_" + str(problem["loc"][0]).upper() if problem["loc"] else "READINESS_*"
            lines.append(f"readiness: invalid {variable}: {problem['msg']}")
    if lines:
        print("\n".join(lines), file=sys.stderr)
        raise SystemExit(2)
    return settings


def known_variables() -> list[str]:
    return [f"READINESS_{name.upper()}" for name in Settings.model_fields]


# Variables that share the prefix but are not settings: the kubelet's service links for a
# Service whose name starts with "readiness" (READINESS_OPERATOR_SERVICE_HOST, ..._PORT_9090_TCP,
# ..._PORT=tcp://...) and the test control plane's own (READINESS_TESTBED_DIR).
_SERVICE_LINK = re.compile(r"READINESS_.*_(SERVICE_HOST|SERVICE_PORT(_.+)?|PORT_\d+_(TCP|UDP|SCTP)(_.+)?)")
_LINK_URL = re.compile(r"(tcp|udp|sctp)://.*")


def unknown_variables(environ: Mapping[str, str]) -> set[str]:
    known = set(known_variables())
    return {
        name
        for name, value in environ.items()
        if name.startswith("READINESS_")
        and name not in known
        and not name.startswith("READINESS_TESTBED_")
        and not _SERVICE_LINK.fullmatch(name)
        and not (name.endswith("_PORT") and _LINK_URL.fullmatch(value))
    }


class NoDiffBase(kopf.DiffBaseStorage):
    """kopf computes a diff base (three deep copies of the object) on every watch event for its
    change-detecting handlers. The operator has none: it indexes and watches, and decides from
    its own fingerprints. Building nothing halves kopf's cost per event and stores nothing."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return cast(kopf.BodyEssence, {})

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def kopf_settings(settings: Settings, priority: int) -> kopf.OperatorSettings:
    ks = kopf.OperatorSettings()
    # Our own prefix for anything kopf stores on our own objects; never kopf.zalando.org.
    ks.persistence.finalizer = f"{API_GROUP}/finalizer"
    ks.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=API_GROUP)
    ks.persistence.diffbase_storage = NoDiffBase()
    # A per-object worker task lives this long after the object's last event (default 5 s):
    # a listing or a fleet-wide rollout would otherwise keep thousands of idle tasks alive at
    # once (measured at 3,000 Deployments: 152 MiB at 1 s, 137 MiB at 0.1 s).
    ks.queueing.idle_timeout = 0.1
    # kopf posts k8s Events only for warnings; the operator posts its own meaningful ones.
    ks.posting.level = logging.WARNING
    ks.peering.standalone = not settings.peering
    ks.peering.mandatory = bool(settings.peering)
    if settings.peering:
        ks.peering.name = settings.peering
        ks.peering.clusterwide = not settings.namespaces
        ks.peering.priority = priority
        ks.peering.lifetime = settings.peering_lifetime_seconds
    # The initial listing in pages: thousands of Deployments never sit parsed in memory at once.
    ks.watching.chunk_size = 500
    ks.watching.server_timeout = 300
    ks.watching.client_timeout = 330
    ks.networking.request_timeout = 60
    return ks


async def operate(settings: Settings) -> None:
    metrics = Metrics(version=__version__)
    metrics.workers.set(settings.workers)
    try:
        api = load_api_client(settings.workers + SPARE_CONNECTIONS)
    except NoCredentials as error:
        raise StartupFailure(str(error)) from None
    cluster = KubernetesCluster(api, workers=settings.workers + SPARE_CONNECTIONS)
    world, board = World(), Board()
    events = EventSink(cluster, metrics)
    guard = FightGuard(limit=settings.max_corrections, window=settings.correction_window_seconds)
    queue: WorkQueue[WorkKey] = WorkQueue(metrics)
    priority = draw_priority(settings.peering_priority)
    identity = own_identity()
    gate = PeeringGate(
        (lambda scope: cluster.read_peering(settings.peering, scope)) if settings.peering else None,
        me=identity,
        priority=priority,
        clusterwide=not settings.namespaces,
    )
    controller = Controller(
        world,
        board,
        Reconciler(cluster, world, board, metrics, events, guard),
        StatusWriter(cluster, world, board, metrics, events),
        queue,
        gate,
        metrics=metrics,
        snapshot=cluster,
    )
    workers: Workers[WorkKey] = Workers(queue, controller.work, settings.workers)
    peerings = Peerings(cluster, settings)
    stand = Every(5.0, lambda: controller.stand(peerings.watched), "standing")
    keep_peerings = Every(60.0, peerings.ensure, "peering-objects")
    resync = Every(settings.resync_seconds, controller.resync, "resync")
    trimmer = Trimmer(busy=lambda: bool(queue.busy or queue.depth), worked=lambda: queue.taken)
    trim = Every(15.0, trimmer.tick, "malloc-trim")
    registry = kopf.OperatorRegistry()
    ready = asyncio.Event()
    admission = AdmissionServer(settings, cluster) if settings.webhook != "off" else None
    admitter = None
    if admission is not None:

        async def trusted(namespace: str) -> bool:
            return controller.delivered and await gate.active(namespace)

        profiles = ProfileSource(world, trusted, lambda ns: cluster.list_profiles(ns, LIST_TIMEOUT))
        admitter = Admitter(profiles, metrics, settings.watches)
    register(registry, controller, admitter)
    keep_registered = Every(
        30.0, admission.ensure if admission is not None else _nothing, "webhook-registration"
    )

    @kopf.on.startup(registry=registry)
    async def startup(**_: Any) -> None:
        workers.start()
        resync.start()
        trim.start()
        stand.start()
        if settings.peering and settings.namespaces:
            keep_peerings.start()  # namespaces come and go: each new one needs its own
        if admission is not None:
            keep_registered.start()

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        log.info(
            "shutting_down",
            grace_seconds=settings.shutdown_seconds,
            in_flight=queue.busy,
            working_on=sorted("/".join(key) for key in queue.in_flight),  # kind/namespace/name
        )
        resync.stop()
        trim.stop()
        stand.stop()
        keep_peerings.stop()
        keep_registered.stop()
        if admission is not None:
            await admission.unregister()  # kopf stopped serving: the apiserver must stop asking
        controller.close()
        await workers.stop(settings.shutdown_seconds)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await events.drain()
        events.close()

    crd = CrdWatch()

    async def readiness() -> str | None:
        if not ready.is_set():
            return "starting: watches not established yet"
        try:
            established = await cluster.crd_established()
        except ApiError as error:
            metrics.apiserver_up.set(0)
            metrics.api_errors.labels(str(error.status)).inc()
            return f"the apiserver cannot be reached or refused: {error}"
        metrics.apiserver_up.set(1)
        return (
            crd.observe(established)
            or peerings.missing()
            or (admission.missing() if admission is not None else None)
        )

    servers = Servers(
        metrics,
        readiness,
        health_port=settings.health_port,
        metrics_port=settings.metrics_port,
        liveness=crd.liveness,
    )
    try:
        await servers.start()
    except PortUnavailable as error:
        cluster.close()
        named = [
            f"READINESS_{n.upper()}"
            for n in ("health_port", "metrics_port")
            if getattr(settings, n) == error.port
        ]
        raise StartupFailure(
            f"cannot listen on port {error.port} ({', '.join(named)}): {error.reason}"
        ) from None
    await peerings.ensure()
    await controller.stand(peerings.watched)
    log.info(
        "operator_starting",
        version=__version__,
        namespaces=settings.namespaces or "all",
        workers=settings.workers,
        peering=settings.peering or "standalone",
        priority=priority,
        identity=identity,
    )
    ks = kopf_settings(settings, priority)
    if admission is not None:
        ks.admission.server = admission.serve
        ks.admission.managed = None  # kopf's own would set a 30 s timeout and no selectors
    try:
        await kopf.operator(
            registry=registry,
            settings=ks,
            clusterwide=not settings.namespaces,
            namespaces=settings.kopf_namespaces(),
            standalone=not settings.peering,
            peering_name=settings.peering or None,
            identity=cast(Any, identity),  # kopf.Identity: a NewType of str that kopf does not export
            ready_flag=ready,
        )
    finally:
        await servers.stop()
        if admission is not None:
            await admission.unregister()  # also when kopf ended without its cleanup (a crash)
            admission.close()
        cluster.close()
        log.info("operator_stopped")


async def _nothing() -> None:
    return None


class AdmissionServer:
    """The webhook's HTTPS server: kopf's, with the certificate READINESS_WEBHOOK asks for.

    cluster: the platform's certificate (a Secret, e.g. cert-manager's) mounted in
    READINESS_WEBHOOK_CERT_DIR; kopf serves a renewed one without a restart, and deploy/webhook/
    registers the Service. local: a CA and certificate of its own for 127.0.0.1, and a
    MutatingWebhookConfiguration with that URL and CA, removed again on a clean stop.
    """

    def __init__(self, settings: Settings, cluster: KubernetesCluster) -> None:
        self._listening = False
        self._directory: Path | None = None
        self.registration: Registration | None = None
        if settings.webhook == "local":
            port = settings.webhook_port or _free_port()
            _check_port("127.0.0.1", port)
            self._directory = Path(tempfile.mkdtemp(prefix="readiness-webhook-"))
            cert = self_signed(self._directory)
            self._server = kopf.WebhookServer(
                addr="127.0.0.1",
                host="127.0.0.1",
                port=port,
                certfile=str(cert.certfile),
                pkeyfile=str(cert.keyfile),
                cadata=cert.ca,
            )
            client = {
                "url": f"https://127.0.0.1:{port}/{HANDLER_ID}",
                "caBundle": base64.b64encode(cert.ca).decode(),
            }
            body = webhook_configuration(
                f"readiness-operator-local-{port}", client, namespace_selector(settings.namespaces)
            )
            self.registration = Registration(cluster, body)
        else:
            certfile, keyfile = (Path(settings.webhook_cert_dir) / n for n in ("tls.crt", "tls.key"))
            if not (certfile.is_file() and keyfile.is_file()):
                raise StartupFailure(
                    f"READINESS_WEBHOOK=cluster needs tls.crt and tls.key in {settings.webhook_cert_dir} "
                    "(READINESS_WEBHOOK_CERT_DIR): mount the webhook's certificate Secret there"
                )
            _check_port("0.0.0.0", settings.webhook_port)  # noqa: S104 - served behind the Service
            self._server = kopf.WebhookServer(
                addr="0.0.0.0",  # noqa: S104
                port=settings.webhook_port,
                certfile=str(certfile),
                pkeyfile=str(keyfile),
            )

    async def serve(self, fn: Any) -> AsyncIterator[Any]:
        """kopf's admission server, handing each request to the handler whole (``REVIEW``)."""

        async def whole(request: Any, **kwargs: Any) -> Any:
            token = REVIEW.set(request.get("request"))
            try:
                return await fn(request, **kwargs)
            finally:
                REVIEW.reset(token)

        async with self._server as server:
            async for client_config in server(whole):
                self._listening = True
                await self.ensure()
                yield client_config

    async def ensure(self) -> None:
        if self.registration is not None and self._listening:
            await self.registration.ensure()

    async def unregister(self) -> None:
        if self.registration is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self.registration.remove()

    def missing(self) -> str | None:
        if not self._listening:
            return "the admission webhook is not serving yet"
        return self.registration.missing() if self.registration is not None else None

    def close(self) -> None:
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _check_port(addr: str, port: int) -> None:
    """kopf listens with SO_REUSEPORT, which would share a busy port with another process."""
    with socket.socket() as sock:
        try:
            sock.bind((addr, port))
        except OSError as error:
            raise StartupFailure(
                f"cannot listen on port {port} (READINESS_WEBHOOK_PORT): {error.strerror}"
            ) from None


class Peerings:
    """kopf's peering objects: kopf patches them but never creates them, and with peering on it
    keeps every watch paused until one exists, so an operator installed without it would look
    up and reconcile nothing. The operator creates its own (one ClusterKopfPeering, or a
    KopfPeering in each watched namespace), and /readyz names any it could not create."""

    def __init__(self, cluster: KubernetesCluster, settings: Settings) -> None:
        self._cluster = cluster
        self._settings = settings
        self._missing: list[str] = []
        self.watched: list[str] = []  # with peering per namespace: the namespaces it serves

    async def ensure(self) -> None:
        name = self._settings.peering
        if not name:
            return
        missing: list[str] = []
        scopes: list[str | None]
        if not self._settings.namespaces:
            scopes = [None] if await self._cluster.read_peering(name, None) is None else []
        else:
            held = await self._cluster.peering_namespaces(name)
            listed = await self._cluster.list_namespaces()
            self.watched = [ns for ns in listed if self._settings.watches(ns)]
            scopes = [ns for ns in self.watched if ns not in held]
        for scope in scopes:
            where = f"KopfPeering {scope}/{name}" if scope else f"ClusterKopfPeering {name}"
            try:
                if await self._cluster.create_peering(name, scope):
                    log.info("peering_created", peering=where)
            except ApiError as error:
                log.warning("peering_not_created", peering=where, error=str(error))
                missing.append(where)
        self._missing = missing

    def missing(self) -> str | None:
        if not self._missing:
            return None
        return (
            f"peering object {', '.join(self._missing)} is missing and could not be created "
            "(kopf keeps the watches paused until it exists): check the operator's RBAC for kopf.dev"
        )


class CrdWatch:
    """What the ServiceProfile CRD's comings and goings mean for the probes.

    kopf starts serving a CRD created after it started only if the apiserver's discovery already
    lists it when the CRD's own events arrive; it often does not yet, and kopf does not look
    again (seen on Kubernetes 1.34 with kopf 1.45). So once the CRD has been missing and is back,
    /readyz and /healthz say so and the liveness probe restarts the operator, which then serves
    it: a few seconds, instead of an operator that looks ready and serves nothing.
    """

    def __init__(self) -> None:
        self._missing = False  # seen missing since start-up
        self._returned = False  # and established again since

    def observe(self, established: bool) -> str | None:
        """The readiness verdict for one look at the CRD."""
        if not established:
            self._missing = True
            return f"CRD serviceprofiles.{API_GROUP} is not installed or not established"
        self._returned = self._returned or self._missing
        return self.liveness()

    def liveness(self) -> str | None:
        return RECREATED if self._returned else None


RECREATED = (
    f"CRD serviceprofiles.{API_GROUP} appeared after the operator started: restart to serve it "
    "(the liveness probe does)"
)


class StartupFailure(Exception):
    """Something outside the operator stops it before it can start (credentials, a port)."""


def run_operator() -> None:
    settings = load_settings()
    configure(settings.log_level, settings.log_format)
    configure_tracing(settings.tracing_endpoint)
    try:
        asyncio.run(operate(settings))
    except StartupFailure as failure:
        print(f"readiness: {failure}", file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        shutdown_tracing()
