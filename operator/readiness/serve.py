"""The operator's own HTTP endpoints: /metrics, /healthz and /readyz (aiohttp, kopf's own dependency)."""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .metrics import Metrics


class Servers:
    def __init__(self, metrics: Metrics, ready: asyncio.Event, health_port: int, metrics_port: int) -> None:
        self._metrics = metrics
        self._ready = ready
        self._ports = (health_port, metrics_port)
        self._runners: list[web.AppRunner] = []

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, _: web.Request) -> web.Response:
        if self._ready.is_set():
            return web.Response(text="ok\n")
        return web.Response(status=503, text="watches not established\n")

    async def _scrape(self, _: web.Request) -> web.Response:
        body = generate_latest(self._metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self) -> None:
        health_port, metrics_port = self._ports
        routes: dict[int, list[web.RouteDef]] = {}
        if health_port:
            routes.setdefault(health_port, []).extend(
                [web.get("/healthz", self._healthz), web.get("/readyz", self._readyz)]
            )
        if metrics_port:
            routes.setdefault(metrics_port, []).append(web.get("/metrics", self._scrape))
        for port, defs in routes.items():
            app = web.Application()
            app.add_routes(defs)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, host="0.0.0.0", port=port).start()  # noqa: S104 (probes and scrapes come from outside the pod)
            self._runners.append(runner)

    async def stop(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
