"""kopf's peering objects, created by the operator itself."""

from __future__ import annotations

import structlog

from readiness.k8s import ApiError, KubernetesCluster
from readiness.runtime.settings import Settings

log = structlog.get_logger("readiness.app")


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
