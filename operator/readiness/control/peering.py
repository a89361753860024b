"""Which of several operator replicas acts: kopf peering, plus a gate for our own work.

kopf pauses its watch handlers in every replica but the one with the highest priority; the
operator's own resync loop and retry timers run outside kopf, so the workers ask the same
peering object before they reconcile. Each replica draws a random priority unless one is
configured, so two replicas never tie (a tie freezes them all, by kopf's design).
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

Reader = Callable[[str | None], Awaitable[Mapping[str, Any] | None]]


def own_identity(environ: Mapping[str, str] = os.environ) -> str:
    """This replica's peer id: POD_ID (the downward API's pod name in deploy/), else one made
    up once; it is handed to kopf, so kopf and the gate agree on who we are."""
    return environ.get("POD_ID") or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def draw_priority(configured: int) -> int:
    return configured if configured else secrets.randbelow(2**30) + 1


def outranked(peers: Mapping[str, Any], me: str, priority: int, now: dt.datetime) -> bool:
    """True when a live peer other than us has a higher or equal priority (kopf pauses then)."""
    for peer_id, info in peers.items():
        if peer_id == me or not isinstance(info, Mapping):
            continue
        try:
            seen = dt.datetime.fromisoformat(str(info.get("lastseen")))
            lifetime = dt.timedelta(seconds=int(info.get("lifetime", 60)))
            other = int(info.get("priority", 0))
        except (TypeError, ValueError):
            continue
        if seen.tzinfo is None:
            seen = seen.replace(tzinfo=dt.UTC)
        if seen + lifetime > now and other >= priority:
            return True
    return False


class PeeringGate:
    """Answers "may this replica work on namespace X now?", reading the peering object at most
    every ``ttl`` seconds per scope."""

    def __init__(
        self, read: Reader | None, me: str, priority: int, clusterwide: bool, ttl: float = 5.0
    ) -> None:
        self._read = read
        self._me = me
        self._priority = priority
        self._clusterwide = clusterwide
        self._ttl = ttl
        self._cache: dict[str | None, tuple[float, bool]] = {}
        self._takeovers: dict[str | None, int] = {}

    @property
    def clusterwide(self) -> bool:
        return self._clusterwide

    async def active(self, namespace: str) -> bool:
        if self._read is None:
            return True  # standalone
        scope = None if self._clusterwide else namespace
        cached = self._cache.get(scope)
        if cached is not None and time.monotonic() - cached[0] < self._ttl:
            return cached[1]
        body = await self._read(scope)
        status = (body or {}).get("status") or {}
        ok = not outranked(status, self._me, self._priority, dt.datetime.now(dt.UTC))
        if ok and cached is not None and not cached[1]:
            self._takeovers[scope] = self._takeovers.get(scope, 0) + 1
        self._cache[scope] = (time.monotonic(), ok)
        return ok

    def takeovers(self, namespace: str) -> int:
        """How often this replica began to act for ``namespace`` (its scope) after standing by.
        What it knew of that scope from before the last one is stale: kopf's resumed watches
        deliver the cluster as it is, but not before other work has been queued."""
        return self._takeovers.get(None if self._clusterwide else namespace, 0)
