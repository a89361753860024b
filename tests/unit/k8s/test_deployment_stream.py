"""The Deployment stream against a scripted local apiserver: pages, watch events split across
chunks, bookmarks, 410 Gone from a watch and from a list."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web
from kubernetes import client as k8s

from readiness.k8s import Transport
from readiness.k8s.watch import DeploymentStream, Event


def deployment(name: str, version: str, namespace: str = "shop") -> dict[str, Any]:
    return {"metadata": {"namespace": namespace, "name": name, "resourceVersion": version}}


def line(kind: str, obj: dict[str, Any]) -> bytes:
    return json.dumps({"type": kind, "object": obj}).encode() + b"\n"


class Apiserver:
    """Two list pages, a watch with events split across chunks, a 410; the next list is refused
    with 410; the list after that has lost one Deployment; then a watch that stays open."""

    def __init__(self) -> None:
        self.calls: list[dict[str, str]] = []
        self.lists = 0
        self.watches = 0
        self.second_watch = asyncio.Event()
        self.release = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        assert request.path == "/apis/apps/v1/namespaces/shop/deployments"
        query = dict(request.query)
        self.calls.append(query)
        if query.get("watch") == "true":
            self.watches += 1
            response = web.StreamResponse()
            await response.prepare(request)
            if self.watches == 1:
                assert query["resourceVersion"] == "10"
                assert query["allowWatchBookmarks"] == "true"
                first = line("MODIFIED", deployment("a", "11"))
                for chunk in (
                    first[:20],
                    first[20:] + line("BOOKMARK", {"metadata": {"resourceVersion": "12"}}),
                    line("ADDED", deployment("c", "13")) + line("ADDED", deployment("other", "14", "else")),
                    line("ERROR", {"code": 410, "message": "too old"}),
                ):
                    await response.write(chunk)
                    await asyncio.sleep(0.02)  # separate chunks on the wire
                return response
            self.second_watch.set()
            await self.release.wait()  # open until the test is done
            return response
        if "continue" not in query:
            self.lists += 1
        if self.lists == 1:
            if "continue" not in query:
                return web.json_response({"metadata": {"continue": "p2"}, "items": [deployment("a", "1")]})
            assert query["continue"] == "p2"
            return web.json_response({"metadata": {"resourceVersion": "10"}, "items": [deployment("b", "2")]})
        if self.lists == 2:
            return web.json_response({"kind": "Status", "code": 410, "reason": "Expired"}, status=410)
        return web.json_response({"metadata": {"resourceVersion": "20"}, "items": [deployment("a", "11")]})


async def test_lists_in_pages_watches_and_lists_again_after_gone() -> None:
    apiserver = Apiserver()
    app = web.Application()
    app.router.add_get("/{tail:.*}", apiserver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    transport = Transport(k8s.Configuration(host=f"http://127.0.0.1:{runner.addresses[0][1]}"))
    delivered: list[list[Event]] = []
    stream = DeploymentStream(
        transport, "shop", lambda events: delivered.append(list(events)), keep=lambda ns: ns == "shop"
    )
    try:
        stream.start()
        await asyncio.wait_for(stream.listed.wait(), 5)
        await asyncio.wait_for(apiserver.second_watch.wait(), 5)
    finally:
        await stream.stop()
        await transport.close()
        apiserver.release.set()
        await runner.cleanup()

    events = [(kind, body["metadata"]["name"]) for batch in delivered for kind, body in batch]
    assert events[:2] == [(None, "a"), (None, "b")], "both pages, as a listing"
    assert events[2:4] == [("MODIFIED", "a"), ("ADDED", "c")], "watch events, split or joined in chunks"
    assert ("ADDED", "other") not in events, "a namespace the settings exclude is left out"
    # 410 from the watch, then 410 from the first list: listed again, and what went is deleted.
    assert events[4:] == [(None, "a"), ("DELETED", "b"), ("DELETED", "c")]
    watches = [c for c in apiserver.calls if c.get("watch")]
    assert len(watches) == 2
    assert watches[1]["resourceVersion"] == "20", "the watch resumes from the new list"
    assert all(c.get("limit") == "500" for c in apiserver.calls if not c.get("watch"))
