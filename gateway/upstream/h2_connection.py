"""HTTP/2 upstream connections (backend-protocol GRPC: h2c; GRPCS: TLS with ALPN h2).

The HTTP/2 layer is the downstream's (gateway/h2codec): libnghttp2's client session when it
was built, the h2 library otherwise, behind one client interface (client_connection).

One connection carries many streams, up to the peer's SETTINGS_MAX_CONCURRENT_STREAMS;
each stream reports to a sink (the gRPC stream of the downstream, h2_grpc.py). Flow
control is left to the sink both ways: DATA is credited back only when the sink says it
was passed on, and what the upstream's window does not take is returned to the sink to
hold, so a slow reader on one side slows the other and memory stays bounded by windows.
GOAWAY: streams above its last stream id were not processed and are reported refused
(safe to send elsewhere); the connection takes no new streams and closes when idle.

PING-based idle checks (Envoy's connection_keepalive): a connection that has read nothing
for the pool's `ping_interval` is sent a PING; without its ACK within `ping_timeout` the
peer is taken for gone (a half-open connection, a silent network drop): the connection is
dropped, so new streams open a fresh one, and its streams hear `up_lost` (a call that got
no response yet is retried elsewhere when it may be).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

import h2.errors
import h2.events
import h2.exceptions

from .. import h2codec

log = logging.getLogger("fleetgate.gateway")

STREAM_WINDOW = 1 << 20  # what one upstream stream may send before we credit it back
CONNECTION_WINDOW = 16 << 20


class H2Sink(Protocol):
    """What an upstream stream reports to."""

    def up_headers(self, headers: list[tuple[bytes, bytes]], end: bool) -> None: ...
    def up_data(self, data: bytes, flow: int) -> None: ...
    def up_trailers(self, headers: list[tuple[bytes, bytes]]) -> None: ...
    def up_end(self) -> None: ...
    def up_reset(self, code: int, refused: bool) -> None: ...
    def up_window(self) -> None: ...
    def up_lost(self) -> None: ...


class UpstreamH2(asyncio.Protocol):
    """One HTTP/2 connection to an upstream endpoint, shared by many streams."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.h2 = h2codec.client_connection(STREAM_WINDOW, CONNECTION_WINDOW, 256 * 1024)
        self.streams: dict[int, H2Sink] = {}
        self.flush_soon = False  # a write is scheduled for the end of this loop turn
        self.goaway = False
        self.idle_since = 0.0
        self.idle_timer: asyncio.TimerHandle | None = None
        self.last_read = 0.0  # when a frame last came (the keepalive's clock)
        self.ping_sent = 0.0  # when the unanswered keepalive PING went out (0: none)
        self.ping_timer: asyncio.TimerHandle | None = None
        self.pings = self.pongs = 0  # keepalive PINGs sent, and ACKs of them received

    # --- lifecycle ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.h2.initiate_connection()
        self.flush()
        loop = asyncio.get_event_loop()
        self.last_read = loop.time()
        interval = getattr(self.pool, "ping_interval", 0.0)
        if interval > 0:
            self.ping_timer = loop.call_later(interval, self._keepalive)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None
        if self.ping_timer is not None:
            self.ping_timer.cancel()
            self.ping_timer = None
        self.pool.forget(self)
        streams, self.streams = self.streams, {}
        for sink in streams.values():
            sink.up_lost()

    def close(self) -> None:
        if self.transport is not None:
            try:
                self.h2.close_connection()
                self.flush_now()
            except h2.exceptions.ProtocolError:
                pass
            self.transport.close()

    def flush(self) -> None:
        """Write what the HTTP/2 layer queued at the end of this loop turn: the frames of
        every stream that moved in the turn leave in one write, not one syscall each."""
        if not self.flush_soon:
            self.flush_soon = True
            asyncio.get_event_loop().call_soon(self.flush_now)

    def flush_now(self) -> None:
        self.flush_soon = False
        data = self.h2.data_to_send()
        if data and self.transport is not None:
            self.transport.write(data)

    # --- streams out ---------------------------------------------------------------

    def can_open(self) -> bool:
        return (self.transport is not None and not self.goaway and not self.transport.is_closing()
                and self.h2.can_open_stream())

    def open(self, sink: H2Sink, headers: list[tuple[bytes, bytes]], end: bool) -> int:
        sid = self.h2.open_stream(headers, end)
        self.streams[sid] = sink
        self.flush()
        return sid

    def send_data(self, sid: int, data: bytes) -> bytes:
        """Send what the windows allow; the rest is returned for the sink to hold."""
        conn = self.h2
        view = memoryview(data)
        try:
            while view:
                window = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
                if window <= 0:
                    break
                conn.send_data(sid, view[:window].tobytes())
                view = view[window:]
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            return b""  # the stream was reset meanwhile: its sink hears of it
        self.flush()
        return bytes(view)

    def end(self, sid: int) -> None:
        try:
            self.h2.end_stream(sid)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            return
        self.flush()

    def ack(self, sid: int, n: int) -> None:
        """Credit n bytes of received DATA back (the sink passed them on)."""
        if n and self.transport is not None:
            try:
                self.h2.acknowledge_received_data(n, sid)
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                # the stream is gone: credit the connection window alone
                self.h2.increment_flow_control_window(n)
            self.flush()

    def reset(self, sid: int, code: h2.errors.ErrorCodes = h2.errors.ErrorCodes.CANCEL) -> None:
        if self.streams.pop(sid, None) is None:
            return
        try:
            self.h2.reset_stream(sid, code)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            pass
        self.flush()
        self._maybe_close()

    def _maybe_close(self) -> None:
        if self.streams:
            return
        if self.goaway:
            self.close()
            return
        # idle: closed once it stays so for the pool's idle timeout (one timer per idle spell)
        loop = asyncio.get_event_loop()
        self.idle_since = loop.time()
        if self.idle_timer is None and self.transport is not None:
            self.idle_timer = loop.call_later(self.pool.idle_timeout, self._idle_check)

    def _idle_check(self) -> None:
        self.idle_timer = None
        if self.streams or self.transport is None:
            return
        loop = asyncio.get_event_loop()
        left = self.idle_since + self.pool.idle_timeout - loop.time()
        if left > 0:  # used again meanwhile: wait for the rest of the new idle spell
            self.idle_timer = loop.call_later(left, self._idle_check)
            return
        self.pool.forget(self)
        self.close()

    # --- keepalive (the idle check) ---------------------------------------------------

    def _keepalive(self) -> None:
        """The keepalive timer: PING a connection quiet for ping_interval; drop one whose PING
        went unanswered for ping_timeout."""
        self.ping_timer = None
        t = self.transport
        if t is None:
            return
        loop = asyncio.get_event_loop()
        now = loop.time()
        interval, timeout = self.pool.ping_interval, self.pool.ping_timeout
        if self.ping_sent:
            if now - self.ping_sent >= timeout:
                log.info("h2 upstream %s: no PING ACK in %.1fs, dropping the connection", self.pool.key, timeout)
                self.pool.forget(self)
                t.abort()  # connection_lost tells the streams
                return
            self.ping_timer = loop.call_at(self.ping_sent + timeout, self._keepalive)
            return
        quiet = now - self.last_read
        if quiet < interval:
            self.ping_timer = loop.call_at(self.last_read + interval, self._keepalive)
            return
        try:
            self.h2.ping(b"fleetgt!")
        except h2.exceptions.ProtocolError:
            return
        self.ping_sent = now
        self.pings += 1
        self.flush()
        self.ping_timer = loop.call_at(now + timeout, self._keepalive)

    # --- frames in ---------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.last_read = asyncio.get_event_loop().time()
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            log.debug("h2 upstream protocol error from %s: %s", self.pool.key, exc)
            self.flush_now()
            if self.transport is not None:
                self.transport.close()
            return
        streams = self.streams
        for ev in events:
            if isinstance(ev, h2.events.DataReceived):
                sink = streams.get(ev.stream_id)
                if sink is None:
                    self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                else:
                    sink.up_data(ev.data, ev.flow_controlled_length)
            elif isinstance(ev, h2.events.ResponseReceived):
                sink = streams.get(ev.stream_id)
                if sink is not None:
                    sink.up_headers(ev.headers, ev.stream_ended is not None)
            elif isinstance(ev, h2.events.TrailersReceived):
                sink = streams.get(ev.stream_id)
                if sink is not None:
                    sink.up_trailers(ev.headers)
            elif isinstance(ev, h2.events.StreamEnded):
                sink = streams.pop(ev.stream_id, None)
                if sink is not None:
                    sink.up_end()
            elif isinstance(ev, h2.events.StreamReset):
                sink = streams.pop(ev.stream_id, None)
                if sink is not None:
                    sink.up_reset(ev.error_code, ev.error_code == h2.errors.ErrorCodes.REFUSED_STREAM)
            elif isinstance(ev, h2.events.WindowUpdated):
                if ev.stream_id == 0:
                    for sink in list(streams.values()):
                        sink.up_window()
                else:
                    sink = streams.get(ev.stream_id)
                    if sink is not None:
                        sink.up_window()
            elif isinstance(ev, h2.events.RemoteSettingsChanged):
                for sink in list(streams.values()):  # a larger initial window opens every stream
                    sink.up_window()
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self._goaway(ev.last_stream_id)
            elif isinstance(ev, h2.events.PingAckReceived):
                self.ping_sent = 0.0
                self.pongs += 1
        self.flush()
        self._maybe_close()

    def _goaway(self, last_stream_id: int | None) -> None:
        """No new streams here; those the server did not process go elsewhere."""
        self.goaway = True
        self.pool.forget(self)
        last = last_stream_id if last_stream_id is not None else 0
        for sid in [s for s in self.streams if s > last]:
            self.streams.pop(sid).up_reset(h2.errors.ErrorCodes.REFUSED_STREAM, True)
