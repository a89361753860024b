"""The operator's own HTTP endpoints: /metrics, /healthz and /readyz (aiohttp, kopf's own dependency)."""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from readiness.observe.metrics import Metrics

Check = Callable[[], Awaitable[str | None]]


class PortUnavailable(Exception):
    def __init__(self, port: int, reason: str) -> None:
        super().__init__(f"cannot listen on port {port}: {reason}")
        self.port, self.reason = port, reason


class Servers:
    """``readiness`` returns None when ready, else why not; its answer is cached briefly so
    that frequent probes do not turn into a stream of API calls."""

    def __init__(
        self,
        metrics: Metrics,
        readiness: Check,
        health_port: int,
        metrics_port: int,
        liveness: Callable[[], str | None] = lambda: None,
    ) -> None:
        self._metrics = metrics
        self._readiness = readiness
        self._liveness = liveness
        self._cached: tuple[float, str | None] = (0.0, "not checked yet")
        self._ports = (health_port, metrics_port)
        self._runners: list[web.AppRunner] = []

    async def _healthz(self, _: web.Request) -> web.Response:
        reason = self._liveness()
        if reason is None:
            return web.Response(text="ok\n")
        return web.Response(status=503, text=f"{reason}\n")

    async def _readyz(self, _: web.Request) -> web.Response:
        checked_at, reason = self._cached
        if time.monotonic() - checked_at > 5 or reason is not None:
            reason = await self._readiness()
            self._cached = (time.monotonic(), reason)
        if reason is None:
            return web.Response(text="ok\n")
        return web.Response(status=503, text=f"{reason}\n")

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
            self._runners.append(runner)
            try:
                await web.TCPSite(runner, host="0.0.0.0", port=port).start()  # noqa: S104 (probes and scrapes come from outside the pod)
            except OSError as error:
                await self.stop()
                raise PortUnavailable(
                    port, os.strerror(error.errno).lower() if error.errno else str(error)
                ) from None

    async def stop(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
