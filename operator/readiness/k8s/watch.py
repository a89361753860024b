"""List, then watch, every Deployment of a scope: the one stream of Deployment events.

kopf is not used for Deployments: per event it spawns or wakes a per-object worker, builds
its handler context and keeps a memory per object, about a millisecond of CPU for an event the
operator then finds changes nothing (the controller-manager's status updates after a fleet
rollout, a dozen a second for minutes). Here an event costs a JSON parse.

One thread per scope (the cluster, or one namespace) holds the blocking stream of the official
client and hands events to the event loop in batches. The list is read in pages; the watch
resumes from the last resourceVersion (bookmarks keep it fresh) and lists again when the
apiserver answers 410 Gone. A list reports the Deployments that went while no watch was open
as deletions, so nothing is remembered that no longer exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

import kubernetes.client as k8s
import orjson
import structlog
from kubernetes.client.exceptions import ApiException

log = structlog.get_logger("readiness.watch")

# (type, object): type None for an object a list returned, else ADDED, MODIFIED or DELETED.
Event = tuple[str | None, dict[str, Any]]
Deliver = Callable[[Sequence[Event]], None]

PAGE = 500
WATCH_SECONDS = (240, 360)  # the server ends each watch within this (random, as client-go)
BACKOFF = (0.5, 30.0)


class Gone(Exception):
    """The resourceVersion is too old (410): list again."""


class DeploymentStream:
    """List + watch of one scope (``namespace`` None: the whole cluster) in a thread of its own.
    ``deliver`` is called on ``loop`` with each batch of events; ``listed`` is set once the first
    list has been delivered."""

    def __init__(
        self,
        api_client: k8s.ApiClient,
        namespace: str | None,
        deliver: Deliver,
        loop: asyncio.AbstractEventLoop,
        keep: Callable[[str], bool] = lambda _: True,
    ) -> None:
        self._apps = k8s.AppsV1Api(api_client)
        self._namespace = namespace
        self._deliver = deliver
        self._loop = loop
        self._keep = keep
        self._stopped = threading.Event()
        self._response: Any = None
        self._known: set[tuple[str, str]] = set()
        # Events wait here for the loop; while it is busy they pile up and go over as one batch.
        self._lock = threading.Lock()
        self._pending: list[Event] = []
        self._scheduled = False
        self.listed = asyncio.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"watch-deployments-{namespace or 'cluster'}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ends the stream: the open watch is closed under the thread's feet."""
        self._stopped.set()
        response = self._response
        if response is not None:
            with contextlib.suppress(ValueError, RuntimeError, OSError):  # closed already
                response.shutdown()

    def join(self, seconds: float) -> None:
        self._thread.join(seconds)

    # ---- the thread ----
    def _run(self) -> None:
        version: str | None = None
        delay = BACKOFF[0]
        while not self._stopped.is_set():
            try:
                if version is None:
                    version = self._list()
                version = self._watch(version)
                delay = BACKOFF[0]
            except Gone:
                version = None
            except ApiException as error:
                if error.status == 410:
                    version = None
                    continue
                if not self._wait(delay, error):
                    return
                delay = min(BACKOFF[1], delay * 2)
            except Exception as error:  # any failure: wait, then go on
                if not self._wait(delay, error):
                    return
                delay = min(BACKOFF[1], delay * 2)

    def _wait(self, delay: float, error: Exception) -> bool:
        """Say why the stream broke and wait before the next try; False once stopped."""
        if self._stopped.is_set():
            return False
        reason = f"{error.status} {error.reason}" if isinstance(error, ApiException) else str(error)
        log.warning(
            "deployment_watch_failed",
            scope=self._namespace or "cluster",
            error=f"{type(error).__name__}: {reason}",
            retry_seconds=round(delay, 1),
        )
        return not self._stopped.wait(delay)

    def _hand(self, events: list[Event]) -> None:
        if not events or self._stopped.is_set():
            return
        with self._lock:
            self._pending.extend(events)
            if self._scheduled:
                return
            self._scheduled = True
        self._loop.call_soon_threadsafe(self._flush)

    def _flush(self) -> None:
        """On the loop: every event that arrived since the last flush, in order."""
        with self._lock:
            events, self._pending = self._pending, []
            self._scheduled = False
        self._deliver(events)

    def _list(self) -> str:
        """Every Deployment of the scope, page by page, then the deletions missed."""
        seen: set[tuple[str, str]] = set()
        token: str | None = None
        version = ""
        while True:
            kwargs: dict[str, Any] = {"limit": PAGE, "_preload_content": False, "_request_timeout": 60}
            if token:
                kwargs["_continue"] = token
            if self._namespace is None:
                response = self._apps.list_deployment_for_all_namespaces(**kwargs)
            else:
                response = self._apps.list_namespaced_deployment(self._namespace, **kwargs)
            page = orjson.loads(cast(Any, response).data)
            meta = page.get("metadata") or {}
            events: list[Event] = []
            for item in page.get("items") or ():
                item.setdefault("apiVersion", "apps/v1")
                item.setdefault("kind", "Deployment")
                key = _key(item)
                if self._keep(key[0]):
                    seen.add(key)
                    events.append((None, item))
            self._hand(events)
            token, version = meta.get("continue"), str(meta.get("resourceVersion", ""))
            if not token:
                break
        gone = self._known - seen
        self._hand([("DELETED", {"metadata": {"namespace": ns, "name": name}}) for ns, name in sorted(gone)])
        self._known = seen
        self._loop.call_soon_threadsafe(self.listed.set)
        return version

    def _watch(self, version: str) -> str:
        """One watch from ``version`` until the server ends it; the version to resume from."""
        kwargs: dict[str, Any] = {
            "watch": True,
            "resource_version": version,
            "allow_watch_bookmarks": True,
            "timeout_seconds": random.randint(*WATCH_SECONDS),  # noqa: S311 - spreads reconnects
            "_preload_content": False,
            "_request_timeout": (10, WATCH_SECONDS[1] + 30),
        }
        if self._namespace is None:
            self._response = self._apps.list_deployment_for_all_namespaces(**kwargs)
        else:
            self._response = self._apps.list_namespaced_deployment(self._namespace, **kwargs)
        try:
            for lines in _lines(self._response):
                batch: list[Event] = []
                for line in lines:
                    event = orjson.loads(line)
                    kind, obj = event.get("type"), event.get("object") or {}
                    if kind == "ERROR":
                        if obj.get("code") == 410:
                            raise Gone()
                        raise RuntimeError(obj.get("message") or "watch error")
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
                self._hand(batch)
        finally:
            self._response.release_conn()
            self._response = None
        return version


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace", "")), str(meta.get("name", ""))


def _lines(response: Any) -> Iterator[list[bytes]]:
    """The complete lines of each chunk the server sent (one watch event per line)."""
    buffer = b""
    for chunk in response.stream(amt=None, decode_content=False):
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        if lines:
            yield [line for line in lines if line.strip()]
