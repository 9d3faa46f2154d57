"""The admin HTTP server shared by every component: health, readiness, metrics, debug.

aiohttp is fine here (it is off the data path). Components register their debug handlers
and Prometheus collectors; readiness asks the fleet which sources have loaded.
"""
from __future__ import annotations

import inspect
import json
import logging
from typing import Any, Awaitable, Callable

from aiohttp import web
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from .view import FleetView

log = logging.getLogger("fleetgate.admin")

Handler = Callable[[web.Request], Awaitable[Any] | Any]


class AdminServer:
    def __init__(self, fleet: FleetView | None = None) -> None:
        self.fleet = fleet
        self.registry = CollectorRegistry(auto_describe=True)
        self.app = web.Application()
        self.app.router.add_get("/healthz", self._healthz)
        self.app.router.add_get("/readyz", self._readyz)
        self.app.router.add_get("/metrics", self._metrics)
        self._runner: web.AppRunner | None = None
        self.address: tuple[str, int] | None = None

    def add_collector(self, collector: Collector) -> None:
        self.registry.register(collector)

    def add_json(self, path: str, handler: Callable[[web.Request], Any]) -> None:
        """Serve handler(request)'s return value as JSON; a ValueError becomes a 400."""
        async def wrapped(request: web.Request) -> web.Response:
            try:
                result = handler(request)
                if inspect.isawaitable(result):
                    result = await result
            except LookupError as exc:
                return web.Response(status=404, text=f"{exc.args[0] if exc.args else exc}\n")
            except ValueError as exc:
                return web.Response(status=400, text=f"{exc}\n")
            return web.Response(text=json.dumps(result, indent=2, default=str) + "\n",
                                content_type="application/json")
        self.app.router.add_get(path, wrapped)

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        missing: list[str] = []
        detail: dict[str, Any] = {}
        if self.fleet is not None:
            missing += [f"source {name} not loaded" for name in self.fleet.missing()]
            unreachable = self.fleet.unreachable()
            if unreachable:
                detail["unreachable"] = unreachable
        body = {"ready": not missing, "missing": missing, **detail}
        return web.Response(status=503 if missing else 200, text=json.dumps(body) + "\n",
                            content_type="application/json")

    async def _metrics(self, request: web.Request) -> web.Response:
        data = generate_latest(REGISTRY) + generate_latest(self.registry)
        return web.Response(body=data, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self, host: str, port: int) -> tuple[str, int]:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        await site.start()
        sockets = site._server.sockets if site._server else []  # type: ignore[union-attr,attr-defined]
        self.address = sockets[0].getsockname()[:2] if sockets else (host, port)
        return self.address

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
