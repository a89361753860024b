"""The Deployment stream against a scripted apiserver: pages, watch events, bookmarks, 410 Gone."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

from kubernetes.client.exceptions import ApiException

from readiness.k8s.watch import DeploymentStream, Event


def deployment(name: str, version: str, namespace: str = "shop") -> dict[str, Any]:
    return {"metadata": {"namespace": namespace, "name": name, "resourceVersion": version}}


class Response:
    def __init__(self, body: Any = None, chunks: list[bytes] | None = None) -> None:
        self.data = json.dumps(body).encode() if body is not None else b""
        self._chunks = chunks or []
        self.released = False

    def stream(self, amt: Any = None, decode_content: bool = False) -> Iterator[bytes]:
        yield from self._chunks

    def release_conn(self) -> None:
        self.released = True

    def shutdown(self) -> None:
        pass


def line(kind: str, obj: dict[str, Any]) -> bytes:
    return json.dumps({"type": kind, "object": obj}).encode() + b"\n"


class Apps:
    """Two list pages, a watch with events split across chunks, a 410; the second list has
    lost one Deployment; then a watch that blocks until the test stops the stream."""

    def __init__(self, stream: list[DeploymentStream]) -> None:
        self.calls: list[dict[str, Any]] = []
        self._stream = stream
        self._lists = 0
        self._watches = 0

    def list_namespaced_deployment(self, namespace: str, **kwargs: Any) -> Response:
        self.calls.append(kwargs)
        if kwargs.get("watch"):
            self._watches += 1
            if self._watches == 1:
                assert kwargs["resource_version"] == "10"
                assert kwargs["allow_watch_bookmarks"] is True
                first = line("MODIFIED", deployment("a", "11"))
                return Response(
                    chunks=[
                        first[:20],
                        first[20:] + line("BOOKMARK", {"metadata": {"resourceVersion": "12"}}),
                        line("ADDED", deployment("c", "13"))
                        + line("ADDED", deployment("other", "14", "else")),
                        line("ERROR", {"code": 410, "message": "too old"}),
                    ]
                )
            self._stream[0].stop()
            return Response(chunks=[])
        if kwargs.get("_continue") is None:
            self._lists += 1
        if self._lists == 1:
            if kwargs.get("_continue") is None:
                return Response({"metadata": {"continue": "p2"}, "items": [deployment("a", "1")]})
            return Response({"metadata": {"resourceVersion": "10"}, "items": [deployment("b", "2")]})
        if self._lists == 2:
            raise ApiException(status=410, reason="Gone")
        return Response({"metadata": {"resourceVersion": "20"}, "items": [deployment("a", "11")]})


async def test_lists_in_pages_watches_and_lists_again_after_gone() -> None:
    delivered: list[list[Event]] = []
    loop = asyncio.get_running_loop()
    holder: list[DeploymentStream] = []
    stream = DeploymentStream(
        object(),  # type: ignore[arg-type]
        "shop",
        lambda events: delivered.append(list(events)),
        loop,
        keep=lambda namespace: namespace == "shop",
    )
    holder.append(stream)
    apps = Apps(holder)
    stream._apps = apps  # type: ignore[assignment]
    stream.start()
    await asyncio.wait_for(stream.listed.wait(), 5)
    await asyncio.to_thread(stream.join, 5)
    await asyncio.sleep(0.05)  # the last batch's hand-over

    events = [(kind, body["metadata"]["name"]) for batch in delivered for kind, body in batch]
    assert events[:2] == [(None, "a"), (None, "b")], "both pages, as a listing"
    assert events[2:4] == [("MODIFIED", "a"), ("ADDED", "c")], "watch events, split or joined in chunks"
    assert ("ADDED", "other") not in events, "a namespace the settings exclude is left out"
    # 410 from the watch, then 410 from the first list: listed again, and what went is deleted.
    assert events[4:] == [(None, "a"), ("DELETED", "b"), ("DELETED", "c")]
    watches = [c for c in apps.calls if c.get("watch")]
    assert len(watches) == 2
    assert watches[1]["resource_version"] == "20", "the watch resumes from the new list"
    assert all(c.get("limit") == 500 for c in apps.calls if not c.get("watch"))
