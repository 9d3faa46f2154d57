"""Opening a new upstream connection: the one place the request path makes a task.

Warm pools make this rare. The connect timeout is enforced by the server's sweeper (the
exchange's deadline), so a stale attempt is recognised by its attempt number when it
finally completes and its connection goes to the pool instead of a request that moved on.
"""
from __future__ import annotations

import asyncio
import functools
import socket
import ssl
from typing import TYPE_CHECKING

from .connection import UpstreamH1

if TYPE_CHECKING:
    from ..exchange import Downstream as DownstreamH1, Exchange
    from ..routing.table import UpstreamEndpoint
    from .pool import Pool


TLS_POOL_PREFIX = "tls:"  # pools of TLS connections (backend-protocol HTTPS) are kept apart


@functools.cache
def upstream_tls_context() -> ssl.SSLContext:
    """For `backend-protocol: HTTPS`, as ingress-nginx by default: encrypted, not verified
    (proxy_ssl_verify off), no SNI (proxy_ssl_server_name off; pods are reached by IP)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx



def connect(ds: "DownstreamH1", ex: "Exchange", ep: "UpstreamEndpoint", pool: "Pool", *, tls: bool = False) -> None:
    asyncio.get_running_loop().create_task(_connect(ds, ex, ex.attempt, ep, pool, tls))


async def _connect(ds: "DownstreamH1", ex: "Exchange", attempt: int, ep: "UpstreamEndpoint",
                   pool: "Pool", tls: bool) -> None:
    loop = asyncio.get_running_loop()
    context = upstream_tls_context() if tls else None
    try:
        transport, conn = await loop.create_connection(lambda: UpstreamH1(pool), ep.address, ep.port,
                                                       ssl=context, server_hostname="" if tls else None)
    except (OSError, ssl.SSLError):
        if ex.attempt == attempt and not ex.finished:
            ds.upstream_failed(ex, "connect", reused=False, got_bytes=False)
            ds.flush()
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
    if ex.attempt != attempt or ex.finished or ds.active is not ex:
        pool.release(conn, loop.time())  # the request moved on; keep the connection warm
        return
    ds.connected(ex, conn)
    ds.flush()
