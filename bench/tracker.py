"""Convergence as a watch shows it: the moment the last of N objects turned compliant.

A poll that LISTs 10,000 Deployments every quarter second would load the two cores the
contenders are measured on, and stamp the moment only to within a LIST; one watch from the
listing's resourceVersion costs the apiserver one small event per write (the same for every
contender) and stamps it to within an event. Deployments are watched as metadata only
(generation and managedFields tell whether the operator's field manager applied).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

METADATA_LIST = {"Accept": "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"}
METADATA_WATCH = {"Accept": "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"}

Predicate = Callable[[Mapping[str, Any]], bool]


def watch_lines(response: Any) -> Iterator[dict[str, Any]]:
    """The events of a raw watch response (``_preload_content=False``), one per line."""
    buffer = b""
    for chunk in response.stream(amt=None, decode_content=False):
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                yield json.loads(line)


class Tracker:
    """Counts the objects a predicate holds for, from a LIST and then its watch, in a thread.

    ``lister(**kwargs)`` is a kubernetes-client list call (namespaced or for all namespaces);
    ``keep`` picks the objects that belong to the run (by namespace), ``done`` says whether one
    is compliant. ``reached`` is the monotonic time at which ``count`` were compliant at once.
    """

    def __init__(
        self,
        lister: Callable[..., Any],
        *,
        count: int,
        keep: Predicate,
        done: Predicate,
        metadata: bool = True,
        label_selector: str = "",
    ) -> None:
        self._lister = lister
        self._count = count
        self._keep = keep
        self._done = done
        self._metadata = metadata
        self._selector = label_selector
        self._state: dict[tuple[str, str], bool] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._response: Any = None
        self.reached: float | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Tracker:
        listed = self._lister(
            label_selector=self._selector,
            _preload_content=False,
            _headers=METADATA_LIST if self._metadata else {},
            _request_timeout=300,
        )
        body = json.loads(listed.data)
        for item in body["items"]:
            self._see(item)
        self._version = body["metadata"]["resourceVersion"]
        self._thread.start()
        return self

    def _see(self, item: Mapping[str, Any]) -> None:
        meta = item.get("metadata") or {}
        if not self._keep(meta):
            return
        with self._lock:
            self._state[(meta.get("namespace", ""), meta.get("name", ""))] = self._done(item)
            if self.reached is None and len(self._state) >= self._count and all(self._state.values()):
                self.reached = time.monotonic()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._response = self._lister(
                    label_selector=self._selector,
                    watch=True,
                    resource_version=self._version,
                    allow_watch_bookmarks=True,
                    timeout_seconds=600,
                    _preload_content=False,
                    _headers=METADATA_WATCH if self._metadata else {},
                    _request_timeout=700,
                )
                for event in watch_lines(self._response):
                    obj = event.get("object") or {}
                    version = (obj.get("metadata") or {}).get("resourceVersion")
                    if version:
                        self._version = version
                    if event.get("type") in ("ADDED", "MODIFIED"):
                        self._see(obj)
                    elif event.get("type") == "ERROR":
                        raise RuntimeError(f"watch failed: {obj}")
        except BaseException as exc:  # reported to the harness, which decides
            if not self._stop.is_set():
                self.error = exc

    def compliant(self) -> int:
        with self._lock:
            return sum(self._state.values())

    def wait(self, started: float, timeout: float, alive: Callable[[], None]) -> float | None:
        """Seconds from ``started`` until the count was reached; None past ``timeout``."""
        while time.monotonic() - started < timeout:
            alive()
            if self.error is not None:
                raise RuntimeError(f"tracker: {self.error}") from self.error
            if self.reached is not None:
                return self.reached - started
            time.sleep(0.1)
        return None

    def stop(self) -> None:
        self._stop.set()
        if self._response is not None:
            try:
                self._response.shutdown()
            except Exception:  # already closed
                self._response.release_conn()
