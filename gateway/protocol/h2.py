"""HTTP/2 downstream: one client connection and its streams.

The HTTP/2 layer (gateway/h2codec: libnghttp2, or the h2 library) does the protocol:
frames, HPACK, stream states, flow control windows, header validation. Each request
stream is an H2Stream (h2_stream.py), routed and planned from its decoded headers and
proxied over the pooled HTTP/1.1 upstream connections with the same pure decisions as
DownstreamH1 (no HTTP/1.1 request bytes are synthesised); streams of gRPC routes are
GrpcStreams (h2_grpc.py), relayed as HTTP/2 end to end.

Flow control both ways: request DATA is acknowledged (window credit returned) only while
the stream's upstream keeps taking it; response DATA is sent as the client's windows
allow, the rest is held and the upstream's reading paused until a WINDOW_UPDATE. Frames
the streams queue are written once per loop turn (`schedule`), so the responses of many
streams that complete in one turn leave in one write.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
from hyperframe.frame import GoAwayFrame

from .. import h2codec
from .downstream import DownstreamH1
from .h2_grpc import GrpcStream
from .h2_stream import H2Stream
from .http1_downstream import H1Reader

if TYPE_CHECKING:
    from ..context import GatewayContext

log = logging.getLogger("fleetgate.gateway")

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MAX_CONCURRENT_STREAMS = 128
IMPLEMENTATION = h2codec.IMPLEMENTATION  # the layer new connections use unless a test switches it
# Abuse bounds (as nginx and Envoy): past them the connection gets GOAWAY ENHANCE_YOUR_CALM
# and is closed; other connections are served as before. CONTINUATION floods are bounded by
# the h2 library (64 frames per header block), HPACK bombs by the decoded header list size.
MAX_PREMATURE_RESETS = 100  # streams the client reset before their answer, when they are most of its streams
MAX_CONTROL_PER_SECOND = 200  # PING and SETTINGS frames (each makes us write an ACK)
Stream = "H2Stream | GrpcStream"


class TLSDownstream(asyncio.Protocol):
    """The TLS listener's protocol until the handshake is done: ALPN decides whether the
    connection speaks HTTP/2 or HTTP/1.1, then the chosen protocol takes the transport."""

    def __init__(self, ctx: "GatewayContext") -> None:
        self.ctx = ctx

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sslobj = transport.get_extra_info("ssl_object")
        proto: asyncio.Protocol
        if sslobj is not None and sslobj.selected_alpn_protocol() == "h2":
            proto = DownstreamH2(self.ctx, b"https")
        else:
            proto = DownstreamH1(self.ctx, b"https")
        transport.set_protocol(proto)
        proto.connection_made(transport)


class DownstreamH2(asyncio.Protocol):
    """One HTTP/2 client connection (h2c with prior knowledge, or TLS with ALPN h2)."""

    def __init__(self, ctx: "GatewayContext", scheme: bytes) -> None:
        self.ctx = ctx
        self.scheme = scheme
        self.transport: asyncio.Transport | None = None
        limits = ctx.limits
        # libnghttp2 or the h2 library, behind the same interface (gateway/h2codec)
        self.h2 = h2codec.server_connection(MAX_CONCURRENT_STREAMS, limits.max_header_bytes + limits.max_request_line)
        self.streams: dict[int, H2Stream | GrpcStream] = {}
        self.deadline = 0.0
        self.tls = scheme == b"https"
        self.peer = b""
        self.loop = asyncio.get_event_loop()
        self.flush_soon = False  # a flush is scheduled for the end of this loop turn
        self.draining = False
        self.last_stream = 0  # streams above it arrived after our GOAWAY: refused
        self.now = time.monotonic  # (as DownstreamH1's: gRPC call times in microseconds)
        self.opened = 0  # streams the client opened
        self.premature = 0  # ... and reset before we answered them (rapid reset)
        self.control = 0  # PING/SETTINGS frames in the current second
        self.control_window = 0.0
        self.stalled_since = 0.0  # response DATA waiting for a client window since then (0: none)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]).encode() if peer else b""
        self.ctx.downstreams.add(self)  # type: ignore[arg-type]  # the sweeper's timeouts and drain
        limits = self.ctx.limits
        self.h2.initiate_connection()
        self.deadline = self.now() + limits.header_timeout
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.ctx.downstreams.discard(self)  # type: ignore[arg-type]
        for st in list(self.streams.values()):
            st.ended = True
            st.connection_lost(None)  # aborts an upstream response with nowhere to go
        self.streams.clear()

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data and self.transport is not None:
            self.transport.write(data)

    def schedule(self) -> None:
        """Flush at the end of this loop turn: the frames of every stream answered in the
        turn leave in one write (one syscall instead of one per response)."""
        if not self.flush_soon:
            self.flush_soon = True
            self.loop.call_soon(self._flush_soon)

    def _flush_soon(self) -> None:
        self.flush_soon = False
        self.flush()

    def pause_writing(self) -> None:
        for st in self.streams.values():
            st.pause_writing()

    def resume_writing(self) -> None:
        for st in self.streams.values():
            if not st.held:
                st.resume_writing()

    # --- frames in ----------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            log.debug("h2 protocol error from %s: %s", self.transport and self.transport.get_extra_info("peername"),
                      exc)
            self.flush()  # the GOAWAY h2 queued
            if self.transport is not None:
                self.transport.close()
            return
        for ev in events:
            if isinstance(ev, h2.events.RequestReceived):
                self._request(ev)
            elif isinstance(ev, h2.events.DataReceived):
                self._data(ev)
            elif isinstance(ev, h2.events.StreamEnded):
                st = self.streams.get(ev.stream_id)
                if st is not None:
                    st.request_end()
            elif isinstance(ev, h2.events.StreamReset):
                st = self.streams.pop(ev.stream_id, None)
                if st is not None:
                    st.ended = True
                    st.connection_lost(None)
                    self.premature += 1
                    if self.premature > MAX_PREMATURE_RESETS and self.premature * 2 > self.opened:
                        self._calm("rapid reset")
                        return
            elif isinstance(ev, (h2.events.PingReceived, h2.events.RemoteSettingsChanged)):
                now = self.now()
                if now - self.control_window >= 1.0:
                    self.control_window, self.control = now, 0
                self.control += 1
                if self.control > MAX_CONTROL_PER_SECOND:
                    self._calm("PING/SETTINGS flood")
                    return
            elif isinstance(ev, h2.events.WindowUpdated):
                self._window_opened(ev.stream_id)
            elif isinstance(ev, h2.events.ConnectionTerminated):
                if self.transport is not None:
                    self.transport.close()
        self.flush()

    def _calm(self, why: str) -> None:
        """An abusive client: GOAWAY ENHANCE_YOUR_CALM, its streams dropped, the connection closed."""
        log.info("h2: closing the connection of %s: %s",
                 self.transport and self.transport.get_extra_info("peername"), why)
        try:
            self.h2.close_connection(error_code=h2.errors.ErrorCodes.ENHANCE_YOUR_CALM,
                                     additional_data=why.encode())
        except h2.exceptions.ProtocolError:
            pass
        self.flush()
        if self.transport is not None:
            self.transport.close()

    def _request(self, ev: h2.events.RequestReceived) -> None:
        sid = ev.stream_id
        self.opened += 1
        if self.draining and sid > self.last_stream:
            self.h2.reset_stream(sid, h2.errors.ErrorCodes.REFUSED_STREAM)  # safe to retry elsewhere
            return
        st = H2Stream(self, sid)
        self.streams[sid] = st
        self.deadline = 0.0
        ended = ev.stream_ended is not None
        try:
            r = st.begin(ev.headers, ended)
        except Exception:
            log.exception("gateway bug while handling an HTTP/2 request")
            self.reset(st, h2.errors.ErrorCodes.INTERNAL_ERROR)
            return
        if r is not None:  # a gRPC route: relayed as HTTP/2 end to end, trailers and all
            gs = GrpcStream(self, sid, r, ev.headers, ended)
            self.streams[sid] = gs
            gs.begin()

    def _data(self, ev: h2.events.DataReceived) -> None:
        st = self.streams.get(ev.stream_id)
        if st is None:  # the stream was answered (and closed) before its body ended
            self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            return
        st.request_data(ev.data, ev.flow_controlled_length)

    # --- frames out -----------------------------------------------------------------

    def send_data(self, st: "H2Stream | GrpcStream", data: bytes) -> None:
        if st.held:
            st.held.append(data)
            return
        rest = self._send_what_fits(st, data)
        if rest:
            if not self.stalled_since:
                self.stalled_since = self.now()
            st.held.append(rest)
            if not st.upstream_paused:
                st.upstream_paused = True
                st.pause_writing()  # stop reading the upstream until the window opens

    def send_last(self, st: H2Stream, data: bytes) -> None:
        """The response's last DATA and END_STREAM: one frame when it fits the windows."""
        if not st.held:
            conn = self.h2
            if not data:
                conn.end_stream(st.stream_id)
                st._ended()
                return
            if len(data) <= min(conn.local_flow_control_window(st.stream_id), conn.max_outbound_frame_size):
                conn.send_data(st.stream_id, data, end_stream=True)
                st._ended()
                return
        if data:
            self.send_data(st, data)
        st.end_stream()

    def _send_what_fits(self, st: "H2Stream | GrpcStream", data: bytes) -> bytes:
        conn = self.h2
        view = memoryview(data)
        while view:
            window = min(conn.local_flow_control_window(st.stream_id), conn.max_outbound_frame_size)
            if window <= 0:
                return bytes(view)
            conn.send_data(st.stream_id, view[:window].tobytes())
            view = view[window:]
        return b""

    def _window_opened(self, stream_id: int) -> None:
        if stream_id == 0:  # the connection's window: every stream may send again
            targets = list(self.streams.values())
        else:
            st = self.streams.get(stream_id)
            targets = [st] if st is not None else []
        if targets:
            self.stalled_since = self.now()  # progress: the stall clock starts again
        for st in targets:
            while st.held and not st.ended:
                rest = self._send_what_fits(st, st.held.pop(0))
                if rest:
                    st.held.insert(0, rest)
                    break
            if not st.held and not st.ended:
                if st.end_pending:
                    st.end_pending = False
                    st.end_stream()
                elif st.upstream_paused:
                    st.upstream_paused = False
                    st.resume_writing()

    def reset(self, st: "H2Stream | GrpcStream", code: h2.errors.ErrorCodes) -> None:
        if not st.ended:
            try:
                self.h2.reset_stream(st.stream_id, code)
            except h2.exceptions.ProtocolError:  # the stream (or connection) is closed already
                pass
            st._ended()

    def stream_done(self, st: "H2Stream | GrpcStream") -> None:
        """The stream has ended on our side (a GrpcStream is let go once it has returned)."""
        if self.streams.pop(st.stream_id, None) is not None and st.grpc:
            self.loop.call_soon(st.connection_lost, None)
        if not self.streams:
            self.deadline = self.now() + self.ctx.limits.idle_timeout
            if self.draining and self.transport is not None:
                self.h2.close_connection(last_stream_id=self.last_stream)
                self.flush()
                self.transport.close()

    # --- the sweeper's hooks (as DownstreamH1) -------------------------------------------

    def check_timeouts(self, now: float, horizon: float = 0.0) -> None:
        for st in list(self.streams.values()):
            if not st.grpc:  # (a gRPC call's deadline is its own timer)
                st.check_timeouts(now, horizon)  # type: ignore[union-attr]
        if self.stalled_since:
            if not any(st.held for st in self.streams.values()):
                self.stalled_since = 0.0
            elif now - self.stalled_since > self.ctx.limits.idle_timeout:
                self._calm("zero-window stall")  # a client that never opens its window
                return
        if not self.streams and self.deadline and now > self.deadline and self.transport is not None:
            self.h2.close_connection()
            self.flush()
            self.transport.close()

    def drain(self) -> None:
        """GOAWAY: no new streams; close once the open ones are done. The GOAWAY is written
        as a raw frame: telling the h2 library would close its state machine, and the open
        streams could not send their responses any more."""
        if self.draining:
            return
        self.draining = True
        self.last_stream = self.h2.highest_inbound_stream_id
        if self.transport is not None:
            self.flush()
            self.transport.write(GoAwayFrame(0, last_stream_id=self.last_stream, error_code=0).serialize())
            if not self.streams:
                self.transport.close()


H1Reader.h2c = DownstreamH2  # h2c prior knowledge: an HTTP/1 connection hands itself over


def set_http2(on: bool) -> None:
    """`--http2 on|off` (ingress-nginx's use-http2): off, TLS offers ALPN http/1.1 only and an
    h2c preface is refused, so every client speaks HTTP/1.1 (gRPC routes then answer 426).
    Applies to TLS contexts made afterwards: set before the gateway starts."""
    from .. import tls

    H1Reader.h2c = DownstreamH2 if on else None
    tls.ALPN[:] = ["h2", "http/1.1"] if on else ["http/1.1"]
