"""Opening a new upstream connection: the one place the request path makes a task.

Warm pools make this rare. The connect timeout is enforced by the server's sweeper (the
exchange's deadline), so a stale attempt is recognised by its attempt number when it
finally completes and its connection goes to the pool instead of a request that moved on.
"""
from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING

from .connection import UpstreamH1

if TYPE_CHECKING:
    from ..protocol.downstream import DownstreamH1, Exchange
    from ..routing.table import UpstreamEndpoint
    from .pool import Pool


def connect(ds: "DownstreamH1", ex: "Exchange", ep: "UpstreamEndpoint", pool: "Pool") -> None:
    asyncio.get_running_loop().create_task(_connect(ds, ex, ex.attempt, ep, pool))


async def _connect(ds: "DownstreamH1", ex: "Exchange", attempt: int, ep: "UpstreamEndpoint",
                   pool: "Pool") -> None:
    loop = asyncio.get_running_loop()
    try:
        transport, conn = await loop.create_connection(lambda: UpstreamH1(pool), ep.address, ep.port)
    except OSError:
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
