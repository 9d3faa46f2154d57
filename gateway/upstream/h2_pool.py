"""Pools of HTTP/2 upstream connections, one pool per endpoint (and per h2c/TLS).

A stream takes the first connection with a free stream slot (the peer's
MAX_CONCURRENT_STREAMS); when none has one, one new connection is opened and every
stream waiting meanwhile is handed to it (those beyond its limit make the next one).
Each connection checks its peer with PINGs when quiet (`ping_interval`, `ping_timeout`:
h2_connection.py).
"""
from __future__ import annotations

import asyncio
import functools
import socket
import ssl
from typing import Callable

from .h2_connection import UpstreamH2

Waiter = Callable[["UpstreamH2 | None"], None]  # called with the connection, or None: connect failed
PING_INTERVAL = 10.0  # a connection that read nothing for this long is PINGed ...
PING_TIMEOUT = 5.0  # ... and dropped when the ACK does not come within this


@functools.cache
def upstream_h2_tls_context() -> ssl.SSLContext:
    """For `backend-protocol: GRPCS`: as HTTPS backends (encrypted, not verified, no SNI),
    with ALPN h2."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    return ctx


class H2Pool:
    """Live HTTP/2 connections to one endpoint."""

    def __init__(self, key: str, address: str, port: int, tls: bool, idle_timeout: float = 30.0, *,
                 ping_interval: float = PING_INTERVAL, ping_timeout: float = PING_TIMEOUT) -> None:
        self.key = key
        self.idle_timeout = idle_timeout  # an unused connection is closed after it
        self.ping_interval = ping_interval  # 0: no keepalive PINGs
        self.ping_timeout = ping_timeout
        self.address = address
        self.port = port
        self.tls = tls
        self.conns: list[UpstreamH2] = []
        self.waiters: list[Waiter] = []
        self.connecting = False

    def get(self, waiter: Waiter, connect_timeout: float) -> UpstreamH2 | None:
        """A connection with a free stream slot now, or None: `waiter` is called later."""
        for conn in self.conns:
            if conn.can_open():
                return conn
        self.waiters.append(waiter)
        if not self.connecting:
            self.connecting = True
            asyncio.get_running_loop().create_task(self._connect(connect_timeout))
        return None

    def cancel(self, waiter: Waiter) -> None:
        try:
            self.waiters.remove(waiter)
        except ValueError:
            pass

    async def _connect(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        conn: UpstreamH2 | None = None
        try:
            _, conn = await asyncio.wait_for(loop.create_connection(
                lambda: UpstreamH2(self), self.address, self.port,
                ssl=upstream_h2_tls_context() if self.tls else None,
                server_hostname="" if self.tls else None), timeout)
        except (OSError, ssl.SSLError, asyncio.TimeoutError):
            conn = None
        self.connecting = False
        if conn is not None:
            t = conn.transport
            sslobj = t.get_extra_info("ssl_object") if t is not None else None
            if sslobj is not None and sslobj.selected_alpn_protocol() != "h2":
                conn.close()  # an upstream that does not speak HTTP/2 over TLS
                conn = None
            else:
                sock = t.get_extra_info("socket") if t is not None else None
                if sock is not None:
                    try:
                        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    except OSError:
                        pass
                self.conns.append(conn)
        waiters, self.waiters = self.waiters, []
        for w in waiters:
            w(conn)  # a waiter finding no free slot calls get() again: the next connection

    def forget(self, conn: UpstreamH2) -> None:
        """conn takes no new streams (GOAWAY or closed)."""
        try:
            self.conns.remove(conn)
        except ValueError:
            pass

    def close(self) -> None:
        for conn in list(self.conns):
            conn.close()
        self.conns.clear()


class H2Pools:
    """H2Pool by endpoint key and transport; they outlive route tables."""

    def __init__(self, idle_timeout: float = 30.0, *, ping_interval: float = PING_INTERVAL,
                 ping_timeout: float = PING_TIMEOUT) -> None:
        self.pools: dict[tuple[str, bool], H2Pool] = {}
        self.idle_timeout = idle_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout

    def get(self, key: str, address: str, port: int, tls: bool) -> H2Pool:
        pool = self.pools.get((key, tls))
        if pool is None:
            pool = self.pools[(key, tls)] = H2Pool(key, address, port, tls, self.idle_timeout,
                                                   ping_interval=self.ping_interval, ping_timeout=self.ping_timeout)
        return pool

    def close_all(self) -> None:
        for pool in self.pools.values():
            pool.close()
