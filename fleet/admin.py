"""The admin HTTP server shared by every component: health, readiness, metrics, debug.

aiohttp is fine here (it is off the data path). Components register their debug handlers
and Prometheus collectors; readiness asks the fleet which sources have loaded.

Readiness cannot stick: a member cluster whose API server is down at start holds /readyz
at 503 only for `member_sync_timeout` seconds; after that the process is ready with what
it has, and the body and `fleetgate_member_sync_missing{source}` name what is missing
(a gateway that serves nine clusters is better than none). /healthz never looks at members:
liveness restarts a process, which cannot bring an API server back. Draining (SIGTERM)
turns /readyz to 503 at once, so endpoint controllers stop sending before listeners close.

/debug/* shows routes, endpoints and secrets' names: it answers only peers on loopback or
an address named by `debug_addresses` (`--debug-address`), 403 to anyone else.
"""
from __future__ import annotations

import html
import inspect
import ipaddress
import json
import logging
import time
from typing import Any, Awaitable, Callable, Iterable, Iterator

from aiohttp import web
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from .view import FleetView

log = logging.getLogger("fleetgate.admin")

Handler = Callable[[web.Request], Awaitable[Any] | Any]

DEFAULT_MEMBER_SYNC_TIMEOUT = 10.0

ENDPOINTS = {
    "/healthz": "liveness: 200 while the process runs",
    "/readyz": "readiness: 200 once sources loaded (or --member-sync-timeout passed); 503 while draining",
    "/metrics": "Prometheus text exposition",
}


def debug_allowed(peer: str | None, allowed: Iterable[str] = ()) -> bool:
    """May `peer` (the remote IP; None for a Unix socket) read /debug/*? Loopback always
    (127.0.0.0/8, ::1, an IPv4-mapped loopback), a Unix socket too, else only the
    addresses in `allowed` (`--debug-address`; `0.0.0.0` or `::` allows every peer)."""
    if peer is None or peer == "":
        return True
    try:
        ip = ipaddress.ip_address(peer.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return True
    for name in allowed:
        if name in ("0.0.0.0", "::", "*"):
            return True
        try:
            if ip in ipaddress.ip_network(name, strict=False):
                return True
        except ValueError:
            continue
    return False


class AdminServer:
    def __init__(self, fleet: FleetView | None = None, *, member_sync_timeout: float = DEFAULT_MEMBER_SYNC_TIMEOUT,
                 debug_addresses: Iterable[str] = (), started_at: float | None = None) -> None:
        self.fleet = fleet
        self.member_sync_timeout = member_sync_timeout
        self.debug_addresses = tuple(debug_addresses)
        self.draining = False  # set on SIGTERM: /readyz answers 503 from then on
        # the member sync timeout counts from here: the composition root passes the time the
        # fleet began to start (time.monotonic()), so the wait for sources counts too
        self.started_at = time.monotonic() if started_at is None else started_at
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_SyncMissing(self))
        self.app = web.Application(middlewares=[self._guard_debug])
        self.app.router.add_get("/", self._index)
        self.app.router.add_get("/healthz", self._healthz)
        self.app.router.add_get("/readyz", self._readyz)
        self.app.router.add_get("/metrics", self._metrics)
        self.endpoints: dict[str, str] = dict(ENDPOINTS)
        self._runner: web.AppRunner | None = None
        self.address: tuple[str, int] | None = None
        # --workers N: worker 0 merges every worker's exposition into its own
        # (fleetgate.workers); None: this process's alone
        self.aggregate: Callable[[bytes], Awaitable[bytes]] | None = None

    def add_collector(self, collector: Collector) -> None:
        self.registry.register(collector)

    def add_json(self, path: str, handler: Callable[[web.Request], Any], description: str = "JSON") -> None:
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
        self.endpoints[path] = description

    @web.middleware
    async def _guard_debug(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/debug") and not debug_allowed(request.remote, self.debug_addresses):
            log.debug("admin: /debug refused to %s", request.remote)
            return web.Response(status=403, text="debug endpoints answer on loopback only (see --debug-address)\n")
        result = handler(request)
        return await result if inspect.isawaitable(result) else result  # type: ignore[no-any-return]

    async def _index(self, request: web.Request) -> web.Response:
        show_debug = debug_allowed(request.remote, self.debug_addresses)
        rows = [(path, text) for path, text in sorted(self.endpoints.items())
                if show_debug or not path.startswith("/debug")]
        if "text/html" in request.headers.get("Accept", ""):
            items = "".join(f'<li><a href="{html.escape(p)}">{html.escape(p)}</a> {html.escape(t)}</li>'
                            for p, t in rows)
            return web.Response(text=f"<!doctype html><title>fleetgate admin</title><ul>{items}</ul>\n",
                                content_type="text/html")
        return web.Response(text="".join(f"{p}\t{t}\n" for p, t in rows))

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    def missing_members(self) -> list[str]:
        return self.fleet.missing() if self.fleet is not None else []

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """(ready, body): not ready while draining, or while a source has not loaded and the
        member sync timeout has not passed; after it, ready with the missing ones named."""
        names = self.missing_members()
        missing = [f"source {name} not loaded" for name in names]
        body: dict[str, Any] = {"missing": missing}
        if self.fleet is not None:
            unreachable = self.fleet.unreachable()
            if unreachable:
                body["unreachable"] = unreachable
        waited = time.monotonic() - self.started_at
        gave_up = bool(names) and waited >= self.member_sync_timeout
        if gave_up:
            body["degraded"] = f"ready without {', '.join(names)}: not loaded within --member-sync-timeout " \
                               f"{self.member_sync_timeout:g}s"
        ready = not self.draining and (not names or gave_up)
        if self.draining:
            body["draining"] = True
        body = {"ready": ready, **body}
        return ready, body

    async def _readyz(self, request: web.Request) -> web.Response:
        ready, body = self.readiness()
        return web.Response(status=200 if ready else 503, text=json.dumps(body) + "\n",
                            content_type="application/json")

    def exposition(self) -> bytes:
        """This process's metrics as text: the default registry's, then the components'."""
        return generate_latest(REGISTRY) + generate_latest(self.registry)

    async def _metrics(self, request: web.Request) -> web.Response:
        data = self.exposition()
        if self.aggregate is not None:
            data = await self.aggregate(data)
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


class _SyncMissing(Collector):
    """`fleetgate_member_sync_missing{source}` 1 per source not loaded yet (none when all
    are), and `fleetgate_draining` 1 once SIGTERM arrived."""

    def __init__(self, admin: AdminServer) -> None:
        self.admin = admin

    def collect(self) -> Iterator[GaugeMetricFamily]:
        g = GaugeMetricFamily("fleetgate_member_sync_missing",
                              "1 for each source (member cluster or hub) whose objects have not loaded yet",
                              labels=["source"])
        for name in sorted(self.admin.missing_members()):
            g.add_metric([name], 1)
        yield g
        yield GaugeMetricFamily("fleetgate_draining", "1 once the process is draining (SIGTERM)",
                                value=1 if self.admin.draining else 0)

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())
