"""The Deployments of the watched scope, streamed to the controller (not through kopf).

Before the first Deployment is handed over, the scope's ServiceProfiles are read: the first
decision already knows every profile (two that select one Deployment are never seen one at a
time), as when kopf held its handlers until its profile index was filled. kopf's index keeps
them current from then on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import structlog

from readiness.control.controller import Controller
from readiness.k8s import ApiError, DeploymentStream, Event, KubernetesCluster
from readiness.runtime.settings import Settings

log = structlog.get_logger("readiness.deployments")

LIST_SECONDS = 60.0
RETRY = (1.0, 30.0)


class DeploymentFeed:
    def __init__(self, cluster: KubernetesCluster, controller: Controller, settings: Settings) -> None:
        self._cluster = cluster
        self._controller = controller
        self._settings = settings
        exact: list[str | None] = list(settings.exact_namespaces() or [])
        self._scopes = exact or [None]  # None: the whole cluster
        # The watches hold their connections for minutes: a pool of their own.
        self._http = cluster.transport.pool(len(self._scopes) + 1)
        self._streams: list[DeploymentStream] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._start(), name="deployment-feed")

    async def _start(self) -> None:
        delay = RETRY[0]
        while True:
            try:
                for scope in self._scopes:
                    profiles = (
                        await self._cluster.list_profiles(scope, LIST_SECONDS)
                        if scope is not None
                        else await self._cluster.list_all_profiles(LIST_SECONDS)
                    )
                    for body in profiles:
                        namespace = str((body.get("metadata") or {}).get("namespace", ""))
                        if self._settings.watches(namespace):
                            self._controller.index_profile(body)
                break
            except ApiError as error:
                if error.status == 404:
                    break  # the CRD is not installed: no profile exists; /readyz says so
                log.warning("profiles_unreadable", error=str(error), retry_seconds=delay)
                await asyncio.sleep(delay)
                delay = min(RETRY[1], delay * 2)
        for scope in self._scopes:
            stream = DeploymentStream(self._http, scope, self._deliver, keep=self._settings.watches)
            self._streams.append(stream)
            stream.start()

    def _deliver(self, events: Sequence[Event]) -> None:
        for type_, body in events:
            try:
                self._controller.deployment_event(type_, body)
            except Exception:  # one object the controller cannot take must not stop the stream
                meta = body.get("metadata") or {}
                log.exception(
                    "deployment_event_failed", namespace=meta.get("namespace"), name=meta.get("name")
                )

    def listed(self) -> bool:
        """Every scope has been listed once: the controller knows every Deployment."""
        return len(self._streams) == len(self._scopes) and all(s.listed.is_set() for s in self._streams)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await asyncio.gather(*(stream.stop() for stream in self._streams))
        await self._http.close()
