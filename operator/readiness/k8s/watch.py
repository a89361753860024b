"""List, then watch, every Deployment of a scope: the one stream of Deployment events.

kopf is not used for Deployments: per event it spawns or wakes a per-object worker, builds
its handler context and keeps a memory per object, about a millisecond of CPU for an event the
operator then finds changes nothing (the controller-manager's status updates after a fleet
rollout, a dozen a second for minutes). Here an event costs a JSON parse.

One task per scope (the cluster, or one namespace) reads the stream on the event loop and hands
over what arrived at once as one batch: while the loop is busy, events pile up in the
connection's buffer, not in tasks. The list is read in pages; the watch resumes from the last
resourceVersion (bookmarks keep it fresh) and lists again when the apiserver answers 410 Gone.
A list reports the Deployments that went while no watch was open as deletions, so nothing is
remembered that no longer exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote

import orjson
import structlog

from .errors import ApiError
from .transport import Transport

log = structlog.get_logger("readiness.watch")

# (type, object): type None for an object a list returned, else ADDED, MODIFIED or DELETED.
Event = tuple[str | None, dict[str, Any]]
Deliver = Callable[[Sequence[Event]], None]

PAGE = 500
WATCH_SECONDS = (240, 360)  # the server ends each watch within this (random, as client-go)
BACKOFF = (0.5, 30.0)
LIST_SECONDS = 60.0


class Gone(Exception):
    """The resourceVersion is too old (410): list again."""


class DeploymentStream:
    """List + watch of one scope (``namespace`` None: the whole cluster) in a task of its own.
    ``deliver`` is called with each batch of events; ``listed`` is set once the first list has
    been delivered."""

    def __init__(
        self,
        transport: Transport,
        namespace: str | None,
        deliver: Deliver,
        keep: Callable[[str], bool] = lambda _: True,
    ) -> None:
        self._http = transport
        self._namespace = namespace
        self._path = (
            f"/apis/apps/v1/namespaces/{quote(namespace, safe='')}/deployments"
            if namespace is not None
            else "/apis/apps/v1/deployments"
        )
        self._deliver = deliver
        self._keep = keep
        self._known: set[tuple[str, str]] = set()
        self._task: asyncio.Task[None] | None = None
        self.listed = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(
            self._run(), name=f"watch-deployments-{self._namespace or 'cluster'}"
        )

    async def stop(self) -> None:
        """Ends the stream: the open watch is closed."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        version: str | None = None
        delay = BACKOFF[0]
        while True:
            try:
                if version is None:
                    version = await self._list()
                version = await self._watch(version)
                delay = BACKOFF[0]
            except Gone:
                version = None
            except ApiError as error:
                if error.status == 410:
                    version = None
                    continue
                await self._wait(delay, error)
                delay = min(BACKOFF[1], delay * 2)
            except Exception as error:  # any failure: wait, then go on (the stream must not end)
                await self._wait(delay, error)
                delay = min(BACKOFF[1], delay * 2)

    async def _wait(self, delay: float, error: Exception) -> None:
        """Say why the stream broke and wait before the next try."""
        log.warning(
            "deployment_watch_failed",
            scope=self._namespace or "cluster",
            error=f"{type(error).__name__}: {error}",
            retry_seconds=round(delay, 1),
        )
        await asyncio.sleep(delay)

    async def _list(self) -> str:
        """Every Deployment of the scope, page by page, then the deletions missed."""
        seen: set[tuple[str, str]] = set()
        token: str | None = None
        version = ""
        while True:
            params = {"limit": str(PAGE)}
            if token:
                params["continue"] = token
            page = await self._http.request(
                "GET", self._path, params=params, seconds=LIST_SECONDS, name="list_deployments"
            )
            meta = page.get("metadata") or {}
            events: list[Event] = []
            for item in page.get("items") or ():
                item.setdefault("apiVersion", "apps/v1")
                item.setdefault("kind", "Deployment")
                key = _key(item)
                if self._keep(key[0]):
                    seen.add(key)
                    events.append((None, item))
            if events:
                self._deliver(events)
            token, version = meta.get("continue"), str(meta.get("resourceVersion", ""))
            if not token:
                break
        if gone := self._known - seen:
            self._deliver(
                [("DELETED", {"metadata": {"namespace": ns, "name": name}}) for ns, name in sorted(gone)]
            )
        self._known = seen
        self.listed.set()
        return version

    async def _watch(self, version: str) -> str:
        """One watch from ``version`` until the server ends it; the version to resume from."""
        params = {
            "watch": "true",
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(random.randint(*WATCH_SECONDS)),  # noqa: S311 - spreads reconnects
        }
        stream = self._http.lines(self._path, params=params, connect=10, read=WATCH_SECONDS[1] + 30)
        async with contextlib.aclosing(stream):  # the connection goes back also when an event raises
            async for lines in stream:
                batch: list[Event] = []
                for line in lines:
                    event = orjson.loads(line)
                    kind, obj = event.get("type"), event.get("object") or {}
                    if kind == "ERROR":
                        if obj.get("code") == 410:
                            raise Gone()
                        raise ApiError(
                            int(obj.get("code") or 0),
                            str(obj.get("reason") or ""),
                            str(obj.get("message") or "watch error"),
                        )
                    version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                    if kind not in ("ADDED", "MODIFIED", "DELETED"):
                        continue  # BOOKMARK: only its resourceVersion matters
                    key = _key(obj)
                    if self._keep(key[0]):
                        if kind == "DELETED":
                            self._known.discard(key)
                        else:
                            self._known.add(key)
                        batch.append((kind, obj))
                if batch:
                    self._deliver(batch)
        return version


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace", "")), str(meta.get("name", ""))
