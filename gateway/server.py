"""The gateway's I/O shell: listeners, route-table swaps, the timeout sweeper, drain.

Data flows one way: fleet snapshot → build() (pure) → swap the table reference. The
sweeper is the only timer: one wake-up every 100 ms checks every connection's deadline,
so the request path schedules no timer of its own.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from fleet.snapshot import Diagnostic, FleetSnapshot
from fleet.view import FleetView, not_following

from .accesslog import AccessLog
from .context import GatewayContext, Limits
from .protocol.downstream import DownstreamH1
from .protocol.h2 import DownstreamH2, TLSDownstream
from .protocol.http1 import DATE
from .routing.build import DEFAULT_CLASSES, BuildMemo, build, route_backends
from .upstream.checker import ActiveChecker
from .routing.table import RouteTable, describe_table
from . import tlscodec
from .tls import CertStore

log = logging.getLogger("fleetgate.gateway")

SWEEP_INTERVAL = 0.1


@dataclass(frozen=True)
class GatewayOptions:
    http: tuple[str, int] = ("127.0.0.1", 8080)
    https: tuple[str, int] | None = None  # opened once some Ingress has tls; None: never
    ingress_classes: Sequence[str] = DEFAULT_CLASSES
    limits: Limits = Limits()
    cluster_header: bool = True
    reuse_port: bool = False
    drain_timeout: float = 10.0
    zone: str | None = None  # this gateway's topology zone: prefer member clusters in it
    publish_address: str | None = None  # written to served Ingresses' status (live hubs)
    access_log: str = "off"  # off | - (stdout) | a file path (the CLI's default is -)
    access_log_format: str = "text"  # text | json
    metrics_endpoint_labels: bool = False  # per-endpoint series (ejections, upstream connections)


class Gateway:
    """One worker's gateway: follows a fleet, serves HTTP on its listeners."""

    def __init__(self, options: GatewayOptions) -> None:
        self.options = options
        self.ctx = GatewayContext(limits=options.limits, cluster_header=options.cluster_header,
                                  zone=options.zone)
        self.ctx.metrics.endpoint_labels = options.metrics_endpoint_labels
        self.access_log: AccessLog | None = (None if options.access_log == "off"
                                             else AccessLog(options.access_log, options.access_log_format))
        self.checker = ActiveChecker(self.ctx.health)
        self._memo = BuildMemo()
        self.diagnostics: list[Diagnostic] = []
        self.servers: list[asyncio.AbstractServer] = []
        self._sweeper: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] = not_following
        self.table_ready = False
        self.certs: CertStore | None = None  # made when the first Ingress with tls appears
        self.https_server: asyncio.AbstractServer | None = None
        self._https_opening: asyncio.Task[None] | None = None  # the listener is being opened

    @property
    def table(self) -> RouteTable:
        return self.ctx.table

    def apply(self, snapshot: FleetSnapshot) -> None:
        """Build a new table from a snapshot and swap it in (requests in flight keep theirs)."""
        table, diags = build(snapshot, ingress_classes=self.options.ingress_classes,
                             version=snapshot.version, zone=self.options.zone, memo=self._memo)
        if table.tls or self.certs is not None:
            if self.certs is None:
                self.certs = CertStore()
            diags = diags + self.certs.update(table.tls)
        old = {str(d) for d in self.diagnostics}
        for d in diags:
            if str(d) not in old:
                (log.warning if d.severity == "warning" else log.error)("route: %s", d)
        self.diagnostics = diags
        self.ctx.swap_table(table)
        self.table_ready = True
        metrics = self.ctx.metrics
        metrics.config_generation = table.version
        metrics.last_reload = time.time()
        certs = self.certs
        if certs is not None:
            metrics.cert_expiry = lambda: certs.expiry
        if self.ctx.loop is not None:
            self._update_checks(table)
            if (table.tls and self.https_server is None and self._https_opening is None
                    and self.options.https is not None and not self.ctx.draining):
                self._https_opening = self.ctx.loop.create_task(self._open_https_later())
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

    def follow(self, fleet: FleetView) -> None:
        """Apply the fleet's current snapshot and every later one."""
        self._unsubscribe = fleet.follow(self.apply)

    async def start(self) -> list[tuple[str, int]]:
        loop = asyncio.get_running_loop()
        self.ctx.loop = loop
        if self.access_log is not None and self.ctx.metrics.log is None:
            self.access_log.open(loop)  # AccessLogError when it cannot be opened: before any listener
            self.ctx.metrics.log = self.access_log
        host, port = self.options.http
        sock = _listen_socket(host, port, reuse_port=self.options.reuse_port)
        ctx = self.ctx
        accepted = ctx.metrics.connection_accepted

        def downstream() -> DownstreamH1:
            accepted("http")
            return DownstreamH1(ctx)

        server = await loop.create_server(downstream, sock=sock, backlog=2048)
        self.servers.append(server)
        if self.ctx.table.tls and self.options.https is not None:
            await self.open_https()
        self._sweeper = loop.create_task(self._sweep())
        self._update_checks(self.ctx.table)
        return [s.getsockname()[:2] for srv in self.servers for s in srv.sockets]  # type: ignore[attr-defined]

    async def open_https(self) -> tuple[str, int]:
        """The TLS listener (once: later certificate changes only swap the SNI map)."""
        if self.https_server is None:
            if self.certs is None:
                self.certs = CertStore()
            assert self.options.https is not None
            host, port = self.options.https
            sock = _listen_socket(host, port, reuse_port=self.options.reuse_port)
            context = self.certs.context
            ctx = self.ctx

            loop = asyncio.get_running_loop()
            timeout = self.ctx.limits.header_timeout
            if tlscodec.TLSServer is not None:
                # the compiled TLS layer (gateway/tlscodec) is the socket's protocol; ALPN
                # picks the protocol above it once the handshake is done
                certs, listener, server_cls = self.certs, context.native, tlscodec.TLSServer  # type: ignore[attr-defined]

                def choose(alpn: str | None) -> Any:
                    return DownstreamH2(ctx, b"https") if alpn == "h2" else DownstreamH1(ctx, b"https")

                def tls_downstream() -> Any:
                    ctx.metrics.connection_accepted("https")
                    return server_cls(listener, certs.lookup, choose, loop, timeout)

                self.https_server = await loop.create_server(tls_downstream, sock=sock, backlog=2048)
            else:
                def downstream() -> TLSDownstream:
                    ctx.metrics.connection_accepted("https")
                    return TLSDownstream(ctx)

                self.https_server = await loop.create_server(
                    downstream, sock=sock, backlog=2048, ssl=context, ssl_handshake_timeout=timeout)
            self.servers.append(self.https_server)
            self.ctx.https_port = self.https_address[1]  # type: ignore[index]
            log.info("https listener on %s:%d", *self.https_address)  # type: ignore[misc]
        return self.https_address  # type: ignore[return-value]

    @property
    def https_address(self) -> tuple[str, int] | None:
        if self.https_server is None:
            return None
        return self.https_server.sockets[0].getsockname()[:2]  # type: ignore[attr-defined,no-any-return]

    async def _open_https_later(self) -> None:
        """The first Ingress with tls arrived after start: open the listener now."""
        try:
            await self.open_https()
        except OSError as exc:
            log.error("cannot open the https listener on %s:%d: %s", *self.options.https, exc)  # type: ignore[misc]

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
        self._unsubscribe()
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
        h2_pools = getattr(self.ctx, "h2_pools", None)  # gRPC upstreams (protocol/h2_grpc.py), made on first use
        if h2_pools is not None:
            h2_pools.close_all()
        self.checker.close()
        self.ctx.mirrors.close()
        log = self.access_log
        if log is not None and log.writer is not None:
            # the lines of the last requests are written before the process goes (the wait
            # for the writer thread off the loop: a stalled pipe holds nothing else up)
            await asyncio.to_thread(log.finish, log.stop())

    def debug_routes(self) -> dict[str, Any]:
        now = asyncio.get_running_loop().time()
        table = self.ctx.table
        health = {e.key: self.ctx.healthy(e.key, now)
                  for r in table.routes if r.backend for e in r.backend.endpoints}
        out = describe_table(table, health)
        loaded = self.certs.by_host if self.certs is not None else {}
        out["tls"] = {host: {"secret": c.secret, "loaded": host in loaded} for host, c in sorted(table.tls.items())}
        out["https"] = "%s:%d" % self.https_address if self.https_address else None
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
