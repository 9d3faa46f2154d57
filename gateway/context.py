"""Per-worker gateway state shared by every connection: the current route table (swapped
whole), upstream pools, endpoint health, balancer cursors, mirrors, metrics and limits.

Connections read `ctx.table` once per request; `swap_table` replaces the reference, so a
request keeps the table it started with and no lock is needed on the event loop.
"""
from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Any, Iterable

from .exchange import ContextCore
from .metrics import GatewayMetrics
from .routing.build import all_backends
from .routing.table import EMPTY_TABLE, Backend, RouteTable, UpstreamEndpoint
from .upstream.balancer import BalancerState
from .upstream.connect import TLS_POOL_PREFIX
from .upstream.health import HealthState
from .upstream.mirror import Mirrors
from .upstream.pool import PoolRegistry


@dataclass(frozen=True, slots=True)
class Limits:
    max_request_line: int = 8 * 1024
    max_header_bytes: int = 64 * 1024
    header_timeout: float = 10.0
    idle_timeout: float = 60.0
    upstream_idle_timeout: float = 30.0
    retry_buffer: int = 64 * 1024
    max_body_size: int | None = None
    # idle keep-alive connections kept per upstream endpoint (ingress-nginx's
    # upstream-keepalive-connections and its default); more are closed when released
    upstream_keepalive_connections: int = 320


class CountedHealth(HealthState):
    """HealthState that tells the metrics of each new outlier ejection (connect failures
    and consecutive 5xx both eject through `eject`)."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        super().__init__()
        self.metrics = metrics

    def eject(self, key: str, peers: Iterable[str], now: float) -> bool:
        h = self.endpoints.get(key)
        already = h is not None and h.ejected_until > now
        ejected = super().eject(key, peers, now)
        if ejected and not already:
            self.metrics.ejected(key)
        return ejected


class GatewayContext(ContextCore):
    """(ContextCore: the fields the request path reads per request, typed in the compiled
    core: table, metrics, draining, rid, rid_prefix.)"""

    def __init__(self, *, limits: Limits = Limits(), cluster_header: bool = True,
                 max_idle_per_endpoint: int | None = None, zone: str | None = None) -> None:
        self.table: RouteTable = EMPTY_TABLE
        self.limits = limits
        self.cluster_header = cluster_header
        self.https_port = 443  # the TLS listener's port, for HTTPS redirects (set when it opens)
        self.zone = zone
        self.pools = PoolRegistry(limits.upstream_keepalive_connections if max_idle_per_endpoint is None
                                  else max_idle_per_endpoint)
        self.metrics = GatewayMetrics()
        self.health: HealthState = CountedHealth(self.metrics)
        self.balancer = BalancerState()
        self.mirrors = Mirrors()
        # open client connections (protocol/'s DownstreamH1, DownstreamH2): drained on
        # shutdown, swept for timeouts; typed loosely so context stays below protocol/
        self.downstreams: set[Any] = set()
        self.draining = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self.metrics.health_rows = self.health_rows
        self.metrics.mirror_counts = self.mirrors.counts
        self.metrics.connection_rows = self.connection_rows
        self._cluster_lines: dict[str, bytes] = {}
        self.rid_prefix = os.urandom(6).hex().encode() + b"-"  # x-request-id: <prefix>-<counter>
        self.rid = 0

    def swap_table(self, table: RouteTable) -> None:
        self.table = table
        backends = list(all_backends(table))
        self.metrics.endpoint_cluster = clusters = {e.key: e.cluster for b in backends for e in b.endpoints}
        keys = set(clusters)
        self.pools.retain(keys | {TLS_POOL_PREFIX + k for k in keys})
        self.health.retain(keys)
        self.balancer.retain(keys, {b.key for b in backends})

    def cluster_line(self, cluster: str) -> bytes:
        line = self._cluster_lines.get(cluster)
        if line is None:
            line = self._cluster_lines[cluster] = (
                b"x-fleetgate-cluster: " + cluster.encode() + b"\r\n" if self.cluster_header else b"")
        return line

    def usable(self, backend: Backend) -> bool:
        """Has at least one endpoint that is up (canary and destination fallback)."""
        if not backend.endpoints:
            return False
        down = self.health.down
        if not down:
            return True
        now = self.loop.time() if self.loop else 0.0
        return any(self.health.is_up(e.key, now) for e in backend.endpoints)

    def eject(self, endpoint: UpstreamEndpoint, backend: Backend | None, now: float) -> None:
        peers: Iterable[str] = (e.key for e in backend.endpoints) if backend is not None else ()
        self.health.eject(endpoint.key, peers, now)

    def healthy(self, key: str, now: float) -> bool:
        return self.health.is_up(key, now)

    def health_rows(self) -> dict[tuple[str, str, str], int]:
        """fleetgate_upstream_endpoint_healthy rows for the current table."""
        now = self.loop.time() if self.loop else 0.0
        rows = {}
        for b in all_backends(self.table):
            for e in b.endpoints:
                rows[(e.cluster, f"{b.namespace}/{b.service}", e.key)] = int(self.health.is_up(e.key, now))
        return rows

    def connection_rows(self) -> tuple[int, dict[tuple[str, str, str], int]]:
        """Client connections open, and upstream HTTP/1.1 connections by (member cluster,
        state, endpoint): idle ones from the pools, active ones from the exchanges in
        flight (read at scrape time, never counted on the request path)."""
        clusters = self.metrics.endpoint_cluster
        by_endpoint = self.metrics.endpoint_labels
        rows: dict[tuple[str, str, str], int] = {}
        client = 0
        for ds in list(self.downstreams):
            if getattr(ds.transport, "stream_id", None) is None:
                client += 1  # (an HTTP/2 stream's request engine rides its connection's)
            streams = getattr(ds, "streams", None)  # an HTTP/2 connection: its streams' exchanges
            for holder in (ds, *(streams.values() if streams else ())):
                ex = getattr(holder, "active", None)
                if ex is not None and ex.upstream is not None and ex.endpoint is not None:
                    k = (ex.endpoint.cluster, "active", ex.endpoint.key if by_endpoint else "")
                    rows[k] = rows.get(k, 0) + 1
        for key, pool in list(self.pools.pools.items()):
            if pool.idle:
                ep_key = key[len(TLS_POOL_PREFIX):] if key.startswith(TLS_POOL_PREFIX) else key
                k = (clusters.get(ep_key, ""), "idle", ep_key if by_endpoint else "")
                rows[k] = rows.get(k, 0) + len(pool.idle)
        return client, rows
