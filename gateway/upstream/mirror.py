"""Traffic mirroring: fire-and-forget copies of requests on their own pooled connections.

The primary never waits for the mirror: a copy is written (or queued behind a connect)
and its response is read and dropped. At most `max_in_flight` copies per target are
outstanding; beyond that copies are dropped and counted, so a slow or dead mirror costs
the primary nothing but the bytes of the copy.
"""
from __future__ import annotations

import asyncio
import logging
import socket
from typing import Callable

import httptools

from ..codec import IMPLEMENTATION as _CODEC, HeadError, head_end, parse_response

log = logging.getLogger("fleetgate.mirror")

MAX_IN_FLIGHT = 128
MIRROR_TIMEOUT = 10.0
MAX_RESPONSE_HEAD = 64 * 1024  # a longer head is left to httptools (which refuses it)
_CODEC_COMPILED = _CODEC == "compiled"


class _MirrorConnection(asyncio.Protocol):
    def __init__(self, target: "MirrorTarget") -> None:
        self.target = target
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.busy = False
        self.keep_alive = True
        self.deadline = 0.0
        self.partial = False  # httptools holds part of a response

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.busy:
            self.busy = False
            self.target.done(self, "error")
        self.target.forget(self)

    def send(self, data: bytes, now: float) -> None:
        self.busy = True
        self.deadline = now + MIRROR_TIMEOUT
        self.transport.write(data)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        if not self.partial and self.busy and _CODEC_COMPILED:
            # the common read: one whole response with its Content-Length body, read by the
            # compiled codec in one call (httptools' callbacks cost ~4k instructions a copy;
            # the codec's twin costs more than httptools, so it leaves the read to httptools)
            try:
                end = head_end(data, 0, MAX_RESPONSE_HEAD)
                if 0 < end:
                    code, _, _, keep_alive, clen, chunked, _, _ = parse_response(data, 0, end, False)
                    if code >= 200 and not chunked and clen == len(data) - end:
                        self.busy = False
                        self.keep_alive = keep_alive
                        self.target.done(self, "success" if keep_alive else "success-close")
                        return
            except HeadError:
                pass  # httptools says what is wrong
        self.partial = True  # httptools has bytes of a response until it completes one
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.keep_alive = False
            if self.transport is not None:
                self.transport.close()

    def on_headers_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()

    def on_message_complete(self) -> None:
        self.partial = False
        if self.parser.get_status_code() < 200:
            return
        self.busy = False
        self.target.done(self, "success" if self.keep_alive else "success-close")


class MirrorTarget:
    """One mirror destination (an endpoint address:port) with its idle connections."""

    def __init__(self, address: str, port: int, cluster: str, count: Callable[[str, str], None]) -> None:
        self.address = address
        self.port = port
        self.cluster = cluster
        self.count = count
        self.idle: list[_MirrorConnection] = []
        self.all: set[_MirrorConnection] = set()
        self.in_flight = 0

    def submit(self, data: bytes, loop: asyncio.AbstractEventLoop) -> None:
        if self.in_flight >= MAX_IN_FLIGHT:
            self.count(self.cluster, "dropped")
            return
        self.in_flight += 1
        idle = self.idle
        while idle:
            conn = idle.pop()
            t = conn.transport
            if t is not None and not t.is_closing():
                conn.busy = True  # conn.send, in line
                conn.deadline = loop.time() + MIRROR_TIMEOUT
                t.write(data)
                return
        loop.create_task(self._connect(data, loop))

    async def _connect(self, data: bytes, loop: asyncio.AbstractEventLoop) -> None:
        try:
            transport, conn = await asyncio.wait_for(
                loop.create_connection(lambda: _MirrorConnection(self), self.address, self.port), 2.0)
        except (OSError, asyncio.TimeoutError):
            self.in_flight -= 1
            self.count(self.cluster, "error")
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.all.add(conn)
        conn.send(data, loop.time())

    def done(self, conn: _MirrorConnection, result: str) -> None:
        self.in_flight -= 1
        self.count(self.cluster, "error" if result == "error" else "success")
        if result == "success" and conn.transport is not None and len(self.idle) < MAX_IN_FLIGHT:
            self.idle.append(conn)
        elif conn.transport is not None:
            conn.transport.close()

    def forget(self, conn: _MirrorConnection) -> None:
        self.all.discard(conn)
        if conn in self.idle:
            self.idle.remove(conn)

    def expire(self, now: float) -> None:
        """Abort copies whose response did not come in time (called by the sweeper)."""
        for conn in list(self.all):
            if conn.busy and conn.deadline < now and conn.transport is not None:
                conn.transport.abort()

    def close(self) -> None:
        for conn in list(self.all):
            if conn.transport is not None:
                conn.transport.abort()


class Mirrors:
    """Mirror targets by address; counts `fleetgate_mirror_requests_total{cluster,result}`."""

    def __init__(self) -> None:
        self.targets: dict[tuple[str, int], MirrorTarget] = {}
        self.counts: dict[tuple[str, str], int] = {}

    def _count(self, cluster: str, result: str) -> None:
        key = (cluster, result)
        self.counts[key] = self.counts.get(key, 0) + 1

    def submit(self, address: str, port: int, cluster: str, data: bytes, loop: asyncio.AbstractEventLoop) -> None:
        target = self.targets.get((address, port))
        if target is None:
            target = self.targets[(address, port)] = MirrorTarget(address, port, cluster, self._count)
        target.submit(data, loop)

    def expire(self, now: float) -> None:
        for target in self.targets.values():
            if target.in_flight:
                target.expire(now)

    def close(self) -> None:
        for target in self.targets.values():
            target.close()
