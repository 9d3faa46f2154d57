"""UDP and TCP listeners for the responder, sharing one ZoneHolder.

The protocols are thin: each datagram or TCP frame goes through resolver.resolve against
the zone the holder points at when it arrives (the pointer is swapped whole, so an answer
never mixes two snapshots). Names outside the zone are forwarded to `upstream` when set.

UDP has a fast path in front of resolve: one lookup of the query (from byte 2 on,
lowercased) in the answers resolve learned for this zone (resolver._learn), then the ID,
flags+counts, the question as asked (its case) and the learned body: exactly the bytes
resolve returned for the same query. Everything else takes resolve, which learns.
"""
from __future__ import annotations

import asyncio
import logging
import struct
from typing import Any, Callable

from .metrics import FAST_NOERROR, QUERY_COUNTS, count
from .resolver import FORWARD, SERVFAIL, Stats, error_reply, resolve
from .zone import FastEntry, Zone

log = logging.getLogger(__name__)

Address = tuple[str, int]


class ZoneHolder:
    """The zone currently served; `zone` is replaced, never mutated.

    `fast` is that zone's learned UDP answers (empty before the first zone), held here so
    the fast path reaches it in two attribute loads; swap changes both in one callback.
    """

    __slots__ = ("zone", "fast")

    def __init__(self, zone: Zone | None = None) -> None:
        self.zone: Zone | None = zone
        self.fast: dict[bytes, FastEntry] = zone.fast if zone is not None else {}

    def swap(self, zone: Zone | None) -> None:
        self.zone = zone
        self.fast = zone.fast if zone is not None else {}


def _question_type(data: bytes) -> int:
    try:
        i = 12
        while data[i]:
            i += data[i] + 1
        return (data[i + 1] << 8) | data[i + 2]
    except IndexError:
        return 0


class Forwarder:
    """Relays queries for names outside the zone to one upstream server."""

    def __init__(self, upstream: Address, *, timeout: float = 2.0) -> None:
        self.upstream = upstream
        self.timeout = timeout

    async def query_udp(self, data: bytes) -> bytes:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[bytes] = loop.create_future()
        qid = data[:2]

        class _Client(asyncio.DatagramProtocol):
            def datagram_received(self, reply: bytes, addr: Any) -> None:
                if reply[:2] == qid and not done.done():
                    done.set_result(reply)

            def error_received(self, exc: Exception) -> None:
                if not done.done():
                    done.set_exception(exc)

        transport, _ = await loop.create_datagram_endpoint(_Client, remote_addr=self.upstream)
        try:
            transport.sendto(data)
            return await asyncio.wait_for(done, self.timeout)
        finally:
            transport.close()

    async def query_tcp(self, data: bytes) -> bytes:
        async def exchange() -> bytes:
            reader, writer = await asyncio.open_connection(*self.upstream)
            try:
                writer.write(struct.pack("!H", len(data)) + data)
                size = struct.unpack("!H", await reader.readexactly(2))[0]
                return await reader.readexactly(size)
            finally:
                writer.close()
        return await asyncio.wait_for(exchange(), self.timeout)

    async def answer(self, data: bytes, *, tcp: bool, stats: Stats) -> bytes | None:
        qtype = _question_type(data)
        try:
            reply = await (self.query_tcp(data) if tcp else self.query_udp(data))
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, struct.error) as exc:
            log.warning("upstream %s:%d failed: %r", self.upstream[0], self.upstream[1], exc)
            count(stats, qtype, SERVFAIL)
            return error_reply(data, SERVFAIL)
        count(stats, qtype, reply[3] & 0x0F if len(reply) > 3 else SERVFAIL)
        return reply


class _Tasks:
    """Background forwarding tasks, cancelled on close."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def cancel(self) -> None:
        for task in list(self.tasks):
            task.cancel()


class UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, holder: ZoneHolder, forwarder: Forwarder | None, tasks: _Tasks,
                 stats: Stats = QUERY_COUNTS, fast_counts: list[int] = FAST_NOERROR) -> None:
        self.holder = holder
        self.forwarder = forwarder
        self.forward = forwarder is not None
        self.tasks = tasks
        self.stats = stats
        self.fast_counts = fast_counts
        self.transport: asyncio.DatagramTransport | None = None
        self.sendto: Callable[[bytes, Any], None] = lambda data, addr: None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.sendto = transport.sendto  # type: ignore[attr-defined]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        entry = self.holder.fast.get(data[2:].lower())
        if entry is not None:  # the same query as one resolve answered, but for ID and name case
            self.fast_counts[entry[3]] += 1
            self.sendto(data[:2] + entry[0] + data[12:entry[2]] + entry[1], addr)
            return
        self._answer(data, addr)

    def _answer(self, data: bytes, addr: Any) -> None:
        """Everything the fast path does not take: the full resolver, forwarding, errors."""
        try:
            resp = resolve(self.holder.zone, data, forward=self.forward, stats=self.stats, learn=True)
        except Exception:  # the resolver's own bug: never take the listener down
            log.exception("resolver failed on a %d-byte query from %s", len(data), addr)
            resp = error_reply(data, SERVFAIL)
        if resp is None:
            return
        if resp is FORWARD:
            self.tasks.spawn(self._forward(data, addr))
            return
        self.transport.sendto(resp, addr)  # type: ignore[union-attr, arg-type]

    async def _forward(self, data: bytes, addr: Any) -> None:
        assert self.forwarder is not None
        reply = await self.forwarder.answer(data, tcp=False, stats=self.stats)
        if reply is not None and self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("udp error: %r", exc)


class TcpProtocol(asyncio.Protocol):
    """RFC 7766 framing: 2-byte length, several queries per connection, idle timeout."""

    def __init__(self, holder: ZoneHolder, forwarder: Forwarder | None, tasks: _Tasks,
                 connections: set["TcpProtocol"], *, idle_timeout: float = 10.0,
                 stats: Stats = QUERY_COUNTS) -> None:
        self.holder = holder
        self.forwarder = forwarder
        self.tasks = tasks
        self.connections = connections
        self.idle_timeout = idle_timeout
        self.stats = stats
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.pending = 0  # forwarded queries not answered yet

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.connections.add(self)
        self._arm()

    def _arm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = asyncio.get_running_loop().call_later(self.idle_timeout, self._idle)

    def _idle(self) -> None:
        if self.pending:
            self._arm()
            return
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        buf = self.buffer
        pos = 0
        while len(buf) - pos >= 2:
            size = (buf[pos] << 8) | buf[pos + 1]
            if len(buf) - pos - 2 < size:
                break
            msg = bytes(buf[pos + 2:pos + 2 + size])
            pos += 2 + size
            self._answer(msg)
        if pos:
            del buf[:pos]
        self._arm()

    def _answer(self, msg: bytes) -> None:
        try:
            resp = resolve(self.holder.zone, msg, tcp=True, forward=self.forwarder is not None,
                           stats=self.stats)
        except Exception:
            log.exception("resolver failed on a %d-byte TCP query", len(msg))
            resp = error_reply(msg, SERVFAIL)
        if resp is None:
            # no readable header: nothing sensible to frame back, so drop the connection
            if self.transport is not None:
                self.transport.close()
            return
        if resp is FORWARD:
            self.pending += 1
            self.tasks.spawn(self._forward(msg))
            return
        self._write(resp)  # type: ignore[arg-type]

    def _write(self, resp: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(struct.pack("!H", len(resp)) + resp)

    async def _forward(self, msg: bytes) -> None:
        assert self.forwarder is not None
        try:
            reply = await self.forwarder.answer(msg, tcp=True, stats=self.stats)
            if reply is not None:
                self._write(reply)
        finally:
            self.pending -= 1

    # A client that pipelines queries but does not read its answers stops being read from.
    def pause_writing(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        if self.timer is not None:
            self.timer.cancel()


class DnsListener:
    """A UDP and a TCP listener on one address."""

    def __init__(self, holder: ZoneHolder, *, upstream: Address | None = None,
                 idle_timeout: float = 10.0, forward_timeout: float = 2.0) -> None:
        self.holder = holder
        self.forwarder = Forwarder(upstream, timeout=forward_timeout) if upstream else None
        self.idle_timeout = idle_timeout
        self.tasks = _Tasks()
        self.connections: set[TcpProtocol] = set()
        self.udp: asyncio.DatagramTransport | None = None
        self.tcp: asyncio.base_events.Server | None = None
        self.udp_address: Address | None = None
        self.tcp_address: Address | None = None

    async def start(self, host: str, port: int) -> None:
        """Bind UDP, then TCP on the same port (port 0: retry until both bind). Raises OSError."""
        loop = asyncio.get_running_loop()
        attempts = 20 if port == 0 else 1
        for attempt in range(attempts):
            udp, _ = await loop.create_datagram_endpoint(
                lambda: UdpProtocol(self.holder, self.forwarder, self.tasks), local_addr=(host, port))
            bound = udp.get_extra_info("sockname")
            try:
                tcp = await loop.create_server(self._tcp_factory(), host, bound[1], reuse_address=True)
            except OSError:
                udp.close()
                if attempt + 1 == attempts:
                    raise
                continue
            self.udp, self.tcp = udp, tcp
            self.udp_address = (bound[0], bound[1])
            sock = tcp.sockets[0].getsockname()
            self.tcp_address = (sock[0], sock[1])
            log.info("dns listening on %s:%d (udp+tcp)", bound[0], bound[1])
            return

    def _tcp_factory(self) -> Callable[[], TcpProtocol]:
        return lambda: TcpProtocol(self.holder, self.forwarder, self.tasks, self.connections,
                                   idle_timeout=self.idle_timeout)

    async def close(self) -> None:
        if self.udp is not None:
            self.udp.close()
        if self.tcp is not None:
            self.tcp.close()
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()
        self.tasks.cancel()
        if self.tcp is not None:
            await self.tcp.wait_closed()
        if self.tasks.tasks:
            await asyncio.gather(*self.tasks.tasks, return_exceptions=True)
