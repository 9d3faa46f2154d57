"""Per-worker gateway state shared by every connection: the current route table (swapped
whole), upstream pools, endpoint health, metrics and limits.

Connections read `ctx.table` once per request; `swap_table` replaces the reference, so a
request keeps the table it started with and no lock is needed on the event loop.
"""
from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .metrics import GatewayMetrics
from .routing.table import EMPTY_TABLE, Backend, RouteTable, UpstreamEndpoint
from .upstream.pool import PoolRegistry

if TYPE_CHECKING:
    from .protocol.downstream import DownstreamH1


@dataclass(frozen=True, slots=True)
class Limits:
    max_request_line: int = 8 * 1024
    max_header_bytes: int = 64 * 1024
    header_timeout: float = 10.0
    idle_timeout: float = 60.0
    upstream_idle_timeout: float = 30.0
    retry_buffer: int = 64 * 1024
    max_body_size: int | None = None


class GatewayContext:
    def __init__(self, *, limits: Limits = Limits(), cluster_header: bool = True,
                 scheme: bytes = b"http", max_idle_per_endpoint: int = 1024) -> None:
        self.table: RouteTable = EMPTY_TABLE
        self.limits = limits
        self.cluster_header = cluster_header
        self.scheme = scheme
        self.pools = PoolRegistry(max_idle_per_endpoint)
        self.metrics = GatewayMetrics()
        self.downstreams: set[DownstreamH1] = set()
        self.draining = False
        self.loop: asyncio.AbstractEventLoop | None = None
        # passive health: endpoint key -> time until which it is ejected
        self.ejected: dict[str, float] = {}
        self._rr: dict[str, int] = {}
        self._cluster_lines: dict[str, bytes] = {}
        self._rid_prefix = os.urandom(6).hex().encode()
        self._rid = 0

    def swap_table(self, table: RouteTable) -> None:
        from .routing.build import all_backends
        self.table = table
        keys = {e.key for b in all_backends(table) for e in b.endpoints}
        self.pools.retain(keys)
        for key in [k for k in self.ejected if k not in keys]:
            del self.ejected[key]

    def request_id(self) -> bytes:
        self._rid += 1
        return b"%s-%x" % (self._rid_prefix, self._rid)

    def cluster_line(self, cluster: str) -> bytes:
        line = self._cluster_lines.get(cluster)
        if line is None:
            line = self._cluster_lines[cluster] = (
                b"x-fleetgate-cluster: " + cluster.encode() + b"\r\n" if self.cluster_header else b"")
        return line

    def pick(self, backend: Backend, tried: list[str] | None, now: float) -> UpstreamEndpoint | None:
        """Round robin over the backend's endpoints (replica-proportional across member
        clusters), skipping ejected endpoints and ones this request already tried, and
        preferring a member cluster not yet tried. Panic: when every endpoint is ejected,
        use them anyway rather than fail."""
        eps = backend.endpoints
        n = len(eps)
        if n == 0:
            return None
        start = self._rr.get(backend.key, 0)
        self._rr[backend.key] = start + 1
        ejected = self.ejected
        if not tried and not ejected:
            return eps[start % n]
        tried_clusters = {e.cluster for e in eps if e.key in tried} if tried else ()
        fallback = None
        for i in range(n):
            e = eps[(start + i) % n]
            if tried and e.key in tried:
                continue
            until = ejected.get(e.key)
            if until is not None and until > now:
                fallback = fallback or e
                continue
            if e.cluster in tried_clusters:
                fallback = fallback or e
                continue
            return e
        if fallback is not None:
            return fallback
        if tried:
            return None
        return eps[start % n]  # panic: every endpoint ejected

    def eject(self, endpoint: UpstreamEndpoint, now: float, seconds: float = 30.0) -> None:
        self.ejected[endpoint.key] = now + seconds

    def healthy(self, key: str, now: float) -> bool:
        until = self.ejected.get(key)
        return until is None or until <= now
