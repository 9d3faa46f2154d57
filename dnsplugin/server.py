"""UDP and TCP listeners for the responder, sharing one ZoneHolder.

Each datagram or TCP frame is answered against the zone the holder points at when it
arrives (the pointer is swapped whole, so an answer never mixes two snapshots). Names
outside the zone are forwarded to `upstream` when set.

In front of resolver.resolve sits the fast path (dnsplugin.codec): one lookup of the
query (from byte 2 on, lowercased) in the answers resolve learned for this zone
(resolver._learn), then the ID, flags+counts, the question as asked (its case) and the
learned body: exactly the bytes resolve returned for the same query. Everything else
takes resolve, which learns.

UDP is not an asyncio transport: the listener owns a non-blocking socket, and one
readiness callback (loop.add_reader) reads and answers up to BATCH_LIMIT datagrams
(recvmmsg/sendmmsg in the compiled module, recvfrom/sendto in its twin), then returns to
the loop so TCP connections and zone swaps run between batches: a UDP flood cannot starve
them, and no datagram waits on a thread or a busy loop.

Metrics per transport (dnsplugin.metrics.UDP, .TCP): plain counters bumped on the way, and
answer latency timed per batch (UDP) or per read (TCP), not per query.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import struct
from bisect import bisect_left
from time import perf_counter
from typing import Any, Callable

from .codec import BATCH_LIMIT, IMPLEMENTATION, MAX_QUERY, FastEntry, answer, pump
from .codec.types import LATENCY_BOUNDS
from .metrics import TCP, UDP, Counts, count, observe
from .resolver import FORWARD, SERVFAIL, Stats, error_reply, resolve
from .zone import Zone

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


class UdpListener:
    """One non-blocking UDP socket answered in bounded batches from one readiness callback.

    `batches` and `datagrams` count readiness callbacks and datagrams read, `largest` the
    most datagrams one callback took (never above `batch_limit`; 1 when not `batched`,
    where `batches` is not counted).

    With the pure-Python fast path on uvloop, the socket is handed to the loop's datagram
    transport instead (`batched` False): uvloop reads in C, one datagram per callback,
    which is faster than the twin's Python recvfrom loop (on the stdlib loop, whose
    transport reads with Python calls too, the twin's pump is used).
    """

    def __init__(self, holder: ZoneHolder, forwarder: Forwarder | None, tasks: _Tasks, sock: socket.socket,
                 *, batch_limit: int = BATCH_LIMIT, counts: Counts = UDP) -> None:
        self.holder = holder
        self.forwarder = forwarder
        self.forward = forwarder is not None
        self.tasks = tasks
        self.sock = sock
        self.batch_limit = batch_limit
        self.stats = counts.queries
        self.fast_counts = counts.fast
        self.latency = counts.latency
        self.batches = self.datagrams = self.largest = 0
        self.closed = False
        self.loop = asyncio.get_running_loop()
        self.batched = IMPLEMENTATION == "compiled" or not type(self.loop).__module__.startswith("uvloop")
        self.transport: asyncio.DatagramTransport | None = None

    async def open(self) -> None:
        if self.batched:
            self.loop.add_reader(self.sock.fileno(), self._readable)
            return
        self.largest = 1
        self.transport, _ = await self.loop.create_datagram_endpoint(lambda: _UdpProtocol(self), sock=self.sock)

    def _readable(self) -> None:
        n = pump(self.sock, self.holder, self.fast_counts, self._slow, self.batch_limit)
        self.batches += 1
        self.datagrams += n
        if n > self.largest:
            self.largest = n

    def _slow(self, data: bytes, addr: Any) -> bytes | None:
        """Everything the fast path does not take: the full resolver, forwarding, errors."""
        try:
            resp = resolve(self.holder.zone, data, forward=self.forward, stats=self.stats, learn=True)
        except Exception:  # the resolver's own bug: never take the listener down
            log.exception("resolver failed on a %d-byte query from %s", len(data), addr)
            resp = error_reply(data, SERVFAIL)
        if resp is FORWARD:
            self.tasks.spawn(self._forward(data, addr, perf_counter()))
            return None
        return resp  # type: ignore[return-value]

    async def _forward(self, data: bytes, addr: Any, started: float) -> None:
        assert self.forwarder is not None
        reply = await self.forwarder.answer(data, tcp=False, stats=self.stats)
        if reply is not None and not self.closed:
            try:
                if self.transport is not None:
                    self.transport.sendto(reply, addr)
                else:
                    self.sock.sendto(reply, addr)
            except OSError as exc:
                log.debug("udp send to %s failed: %r", addr, exc)
            else:
                observe(self.latency, perf_counter() - started)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()
                return
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()


class _UdpProtocol(asyncio.DatagramProtocol):
    """The pure-Python path on uvloop: the same answers as pump, one datagram per callback."""

    def __init__(self, listener: UdpListener) -> None:
        self.listener = listener
        self.holder = listener.holder
        self.fast_counts = listener.fast_counts
        self.latency = listener.latency
        self.slow = listener._slow
        self.sendto: Callable[[bytes, Any], None] = lambda data, addr: None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.sendto = transport.sendto  # type: ignore[attr-defined]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        started = perf_counter()
        self.listener.datagrams += 1
        # _fastpath_py.answer inlined (a Python call less per datagram); the same bytes
        entry = self.holder.fast.get(data[2:].lower())
        if entry is not None:
            self.fast_counts[entry[3]] += 1
            self.sendto(data[:2] + entry[0] + data[12:entry[2]] + entry[1], addr)
        else:
            if len(data) > MAX_QUERY:
                return
            reply = self.slow(data, addr)
            if reply is None:
                return
            self.sendto(reply, addr)
        # metrics.observe inlined (a Python call less per datagram)
        seconds = perf_counter() - started
        row = self.latency
        row[bisect_left(LATENCY_BOUNDS, seconds)] += 1
        row[-1] += seconds

    def error_received(self, exc: Exception) -> None:
        log.debug("udp error: %r", exc)


class TcpProtocol(asyncio.Protocol):
    """RFC 7766 framing: 2-byte length, several queries per connection, idle timeout.

    The answers to every whole query in one read go out in one write (forwarded ones
    later, as they come back: RFC 7766 lets answers leave out of order).
    """

    def __init__(self, holder: ZoneHolder, forwarder: Forwarder | None, tasks: _Tasks,
                 connections: set["TcpProtocol"], *, idle_timeout: float = 10.0, counts: Counts = TCP) -> None:
        self.holder = holder
        self.forwarder = forwarder
        self.tasks = tasks
        self.connections = connections
        self.idle_timeout = idle_timeout
        self.stats = counts.queries
        self.fast_counts = counts.fast
        self.latency = counts.latency
        self.buffer = bytearray()  # the start of a frame not yet whole
        self.need = 0  # bytes the buffer must hold before a frame can be whole
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.last_read = 0.0
        self.pending = 0  # forwarded queries not answered yet
        self.closing = False  # a query without a header: close once the answers due are written
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.connections.add(self)
        self.last_read = self.loop.time()
        self.timer = self.loop.call_later(self.idle_timeout, self._idle)

    def _idle(self) -> None:
        """One timer per connection, re-armed from the last read (not one per read)."""
        left = self.last_read + self.idle_timeout - self.loop.time()
        if self.pending or left > 0:
            self.timer = self.loop.call_later(max(left, 0.0) if not self.pending else self.idle_timeout, self._idle)
            return
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        started = perf_counter()
        self.last_read = self.loop.time()
        if self.buffer:  # a frame in pieces: gather them (amortised) until it is whole
            self.buffer += data
            if len(self.buffer) < self.need:
                return
            buf = bytes(self.buffer)
            self.buffer = bytearray()
        else:
            buf = data
        size_all = len(buf)
        pos = 0
        out: list[bytes] = []
        fast = self.holder.fast
        while size_all - pos >= 2:
            size = (buf[pos] << 8) | buf[pos + 1]
            if size_all - pos - 2 < size:
                break
            msg = buf[pos + 2:pos + 2 + size]
            pos += 2 + size
            resp = answer(fast, msg, self.fast_counts, True)
            if resp is None:
                resp = self._slow(msg)
                if resp is None:
                    if self.closing:
                        break
                    continue
            out.append(struct.pack("!H", len(resp)) + resp)
        if pos < size_all and not self.closing:
            self.buffer = bytearray(buf[pos:])
            self.need = 2 if size_all - pos < 2 else 2 + ((buf[pos] << 8) | buf[pos + 1])
        if out and self.transport is not None:
            self.transport.write(b"".join(out))
            observe(self.latency, perf_counter() - started, len(out))
        if self.closing and self.transport is not None:
            self.transport.close()

    def _slow(self, msg: bytes) -> bytes | None:
        try:
            resp = resolve(self.holder.zone, msg, tcp=True, forward=self.forwarder is not None,
                           stats=self.stats, learn=True)
        except Exception:
            log.exception("resolver failed on a %d-byte TCP query", len(msg))
            resp = error_reply(msg, SERVFAIL)
        if resp is None:
            # no readable header: nothing sensible to frame back, so drop the connection
            # (after the answers already due)
            self.closing = True
            return None
        if resp is FORWARD:
            self.pending += 1
            self.tasks.spawn(self._forward(msg, perf_counter()))
            return None
        return resp  # type: ignore[return-value]

    def _write(self, resp: bytes) -> bool:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(struct.pack("!H", len(resp)) + resp)
            return True
        return False

    async def _forward(self, msg: bytes, started: float) -> None:
        assert self.forwarder is not None
        try:
            reply = await self.forwarder.answer(msg, tcp=True, stats=self.stats)
            if reply is not None and self._write(reply):
                observe(self.latency, perf_counter() - started)
        finally:
            self.pending -= 1

    # A client that pipelines queries but does not read its answers stops being read from.
    def pause_writing(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.transport.is_closing() and not self.closing:
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        if self.timer is not None:
            self.timer.cancel()


class DnsListener:
    """A UDP and a TCP listener on one address (with reuse_port, one of several processes')."""

    def __init__(self, holder: ZoneHolder, *, upstream: Address | None = None,
                 idle_timeout: float = 10.0, forward_timeout: float = 2.0, reuse_port: bool = False,
                 batch_limit: int = BATCH_LIMIT) -> None:
        self.holder = holder
        self.forwarder = Forwarder(upstream, timeout=forward_timeout) if upstream else None
        self.idle_timeout = idle_timeout
        self.reuse_port = reuse_port
        self.batch_limit = batch_limit
        self.tasks = _Tasks()
        self.connections: set[TcpProtocol] = set()
        self.udp: UdpListener | None = None
        self.tcp: asyncio.base_events.Server | None = None
        self.udp_address: Address | None = None
        self.tcp_address: Address | None = None

    def _udp_socket(self, host: str, port: int) -> socket.socket:
        family, kind, proto, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM,
                                                              flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
        try:
            if self.reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            try:  # room for a burst between two batches (the kernel caps it at rmem_max)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
            except OSError:
                pass
            sock.setblocking(False)
            sock.bind(sockaddr)
        except BaseException:
            sock.close()
            raise
        return sock

    async def start(self, host: str, port: int) -> None:
        """Bind UDP, then TCP on the same port (port 0: retry until both bind). Raises OSError."""
        loop = asyncio.get_running_loop()
        attempts = 20 if port == 0 else 1
        for attempt in range(attempts):
            sock = self._udp_socket(host, port)
            bound = sock.getsockname()
            try:
                tcp = await loop.create_server(self._tcp_factory(), host, bound[1], reuse_address=True,
                                               reuse_port=self.reuse_port or None)
            except OSError:
                sock.close()
                if attempt + 1 == attempts:
                    raise
                continue
            self.udp = UdpListener(self.holder, self.forwarder, self.tasks, sock, batch_limit=self.batch_limit)
            await self.udp.open()
            self.tcp = tcp
            self.udp_address = (bound[0], bound[1])
            tsock = tcp.sockets[0].getsockname()
            self.tcp_address = (tsock[0], tsock[1])
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
