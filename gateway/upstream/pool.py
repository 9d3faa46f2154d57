"""Per-endpoint pools of idle keep-alive upstream connections.

Idle capacity must be at least the downstream concurrency: a pool capped below it turns
every request into a new connection and TIME_WAIT churn (measured: 64 idle under 200
clients halved throughput). So idle connections are capped high (Limits.
upstream_keepalive_connections, ingress-nginx's default of 320 per endpoint) and reaped by
age. A connection is released only once the read that completed its response is parsed
and nothing followed it (UpstreamH1.data_received): a pooled connection is never mid-parse.
"""
from __future__ import annotations

import select
from typing import Any, Iterable, Protocol

from ..exchange import PoolCore


class UpstreamH1(Protocol):
    """What a pool keeps of a connection (connection.py's UpstreamH1; a protocol so the
    two modules do not import each other)."""

    transport: Any
    fileno: int
    idle_since: float

    def close(self) -> None: ...


def _readable(fd: int) -> bool:
    """True when an idle socket has something to read: EOF, a reset, or stray bytes."""
    poller = select.poll()  # poll, not select: file descriptors past 1024 are common here
    poller.register(fd, select.POLLIN | select.POLLPRI)
    try:
        return bool(poller.poll(0))
    except OSError:
        return True


class Pool(PoolCore):
    """Idle connections to one endpoint, most recently used first (warm caches, fewer
    stale-connection races). `idle` and `max_idle` are PoolCore's (gateway/exchange,
    compiled where built: the request path reads them as C fields)."""

    __slots__ = ("key",)

    def __init__(self, key: str, max_idle: int) -> None:
        self.key = key
        self.idle: list[UpstreamH1] = []
        self.max_idle = max_idle

    def acquire(self, *, verify: bool = False) -> "UpstreamH1 | None":
        """The most recently used idle connection. With verify (for requests that must not
        be sent twice), skip connections whose peer already closed or reset them but whose
        event the loop has not processed yet: an idle keep-alive socket is never readable."""
        idle = self.idle
        while idle:
            conn = idle.pop()
            if conn.transport is None or conn.transport.is_closing():
                continue
            if verify and conn.fileno >= 0 and _readable(conn.fileno):
                conn.close()
                continue
            return conn
        return None

    def release(self, conn: "UpstreamH1", now: float) -> None:
        # (DownstreamH1.response_complete inlines this for the common end of a request)
        if len(self.idle) >= self.max_idle or conn.transport is None:
            conn.close()
            return
        conn.idle_since = now
        self.idle.append(conn)

    def discard(self, conn: "UpstreamH1") -> None:
        try:
            self.idle.remove(conn)
        except ValueError:
            pass

    def reap(self, older_than: float) -> None:
        """Close connections idle since before `older_than` (oldest are at the front)."""
        idle = self.idle
        n = 0
        while n < len(idle) and idle[n].idle_since < older_than:
            n += 1
        if n:
            stale, self.idle = idle[:n], idle[n:]
            for conn in stale:
                conn.close()


class PoolRegistry:
    """Pools by endpoint key; they outlive route tables so a config swap keeps warm
    connections."""

    def __init__(self, max_idle: int = 1024) -> None:
        self.pools: dict[str, Pool] = {}
        self.max_idle = max_idle

    def get(self, key: str) -> Pool:
        pool = self.pools.get(key)
        if pool is None:
            pool = self.pools[key] = Pool(key, self.max_idle)
        return pool

    def reap(self, older_than: float) -> None:
        for pool in self.pools.values():
            if pool.idle:
                pool.reap(older_than)

    def retain(self, keys: Iterable[str]) -> None:
        """Drop pools of endpoints no longer in any route (closing their idle connections)."""
        keep = set(keys)
        for key in [k for k in self.pools if k not in keep]:
            pool = self.pools.pop(key)
            for conn in pool.idle:
                conn.close()

    def close_all(self) -> None:
        for pool in self.pools.values():
            for conn in pool.idle:
                conn.close()
            pool.idle.clear()
