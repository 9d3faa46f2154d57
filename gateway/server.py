"""The gateway's I/O shell: listeners, route-table swaps, the timeout sweeper, drain.

Data flows one way: fleet snapshot → build() (pure) → swap the table reference. The
sweeper is the only timer: one wake-up every 100 ms checks every connection's deadline,
so the request path schedules no timer of its own.
"""
from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from fleet.snapshot import Diagnostic, FleetSnapshot

from .context import GatewayContext, Limits
from .protocol.downstream import DownstreamH1
from .protocol.http1 import DATE
from .routing.build import DEFAULT_CLASSES, BuildMemo, build, route_backends
from .upstream.checker import ActiveChecker
from .routing.table import RouteTable, describe_table

log = logging.getLogger("fleetgate.gateway")

SWEEP_INTERVAL = 0.1


@dataclass(frozen=True)
class GatewayOptions:
    http: tuple[str, int] = ("127.0.0.1", 8080)
    ingress_classes: Sequence[str] = DEFAULT_CLASSES
    limits: Limits = Limits()
    cluster_header: bool = True
    reuse_port: bool = False
    drain_timeout: float = 10.0
    zone: str | None = None  # this gateway's topology zone: prefer member clusters in it
    publish_address: str | None = None  # written to served Ingresses' status (live hubs)


class Gateway:
    """One worker's gateway: follows a fleet, serves HTTP on its listeners."""

    def __init__(self, options: GatewayOptions) -> None:
        self.options = options
        self.ctx = GatewayContext(limits=options.limits, cluster_header=options.cluster_header,
                                  zone=options.zone)
        self.checker = ActiveChecker(self.ctx.health)
        self._memo = BuildMemo()
        self.diagnostics: list[Diagnostic] = []
        self.servers: list[asyncio.AbstractServer] = []
        self._sweeper: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self.table_ready = False

    @property
    def table(self) -> RouteTable:
        return self.ctx.table

    def apply(self, snapshot: FleetSnapshot) -> None:
        """Build a new table from a snapshot and swap it in (requests in flight keep theirs)."""
        table, diags = build(snapshot, ingress_classes=self.options.ingress_classes,
                             version=snapshot.version, zone=self.options.zone, memo=self._memo)
        old = {str(d) for d in self.diagnostics}
        for d in diags:
            if str(d) not in old:
                (log.warning if d.severity == "warning" else log.error)("route: %s", d)
        self.diagnostics = diags
        self.ctx.swap_table(table)
        self.table_ready = True
        if self.ctx.loop is not None:
            self._update_checks(table)
        log.info("route table v%d: %d routes", table.version, len(table.routes))

    def _update_checks(self, table: RouteTable) -> None:
        """Active checks for the endpoints of routes that ask for them (first route wins)."""
        targets: dict[str, Any] = {}
        for r in (*table.routes, *([table.default] if table.default else [])):
            check = r.policy.health_check
            if check is None:
                continue
            for b in route_backends(r):
                for e in b.endpoints:
                    targets.setdefault(e.key, (e, check))
        self.checker.update(targets)

    def follow(self, fleet: Any) -> None:
        """Apply the fleet's current snapshot and every later one."""
        if fleet.snapshot is not None:
            self.apply(fleet.snapshot)
        self._unsubscribe = fleet.subscribe(self.apply)

    async def start(self) -> list[tuple[str, int]]:
        loop = asyncio.get_running_loop()
        self.ctx.loop = loop
        host, port = self.options.http
        sock = _listen_socket(host, port, reuse_port=self.options.reuse_port)
        server = await loop.create_server(lambda: DownstreamH1(self.ctx), sock=sock, backlog=2048)
        self.servers.append(server)
        self._sweeper = loop.create_task(self._sweep())
        self._update_checks(self.ctx.table)
        return [s.getsockname()[:2] for srv in self.servers for s in srv.sockets]  # type: ignore[attr-defined]

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        ctx = self.ctx
        reap_every = 0
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            now = loop.time()
            DATE.refresh()
            for ds in list(ctx.downstreams):
                ds.check_timeouts(now, SWEEP_INTERVAL * 1.5)
            ctx.mirrors.expire(now)
            reap_every += 1
            if reap_every >= 10:
                reap_every = 0
                ctx.pools.reap(now - ctx.limits.upstream_idle_timeout)

    async def drain(self, timeout: float | None = None) -> None:
        """Stop accepting, let in-flight requests finish (up to timeout), then close."""
        timeout = self.options.drain_timeout if timeout is None else timeout
        ctx = self.ctx
        ctx.draining = True
        for server in self.servers:
            server.close()
        for ds in list(ctx.downstreams):
            ds.drain()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while ctx.downstreams and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for ds in list(ctx.downstreams):
            if ds.transport is not None:
                ds.transport.abort()
        await self.close()

    async def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for server in self.servers:
            server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            try:
                await self._sweeper
            except asyncio.CancelledError:
                pass
            self._sweeper = None
        self.ctx.pools.close_all()
        self.checker.close()
        self.ctx.mirrors.close()

    def debug_routes(self) -> dict[str, Any]:
        now = asyncio.get_running_loop().time()
        table = self.ctx.table
        health = {e.key: self.ctx.healthy(e.key, now)
                  for r in table.routes if r.backend for e in r.backend.endpoints}
        out = describe_table(table, health)
        out["diagnostics"] = [str(d) for d in self.diagnostics]
        return out


def _listen_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    sock.setblocking(False)
    return sock
