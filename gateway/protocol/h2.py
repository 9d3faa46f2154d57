"""HTTP/2 downstream: a framing layer in front of the one HTTP/1.1 request engine.

Each stream becomes a request of its own DownstreamH1, fed an HTTP/1.1 head synthesised
from the stream's headers (and its DATA, chunked when the client gave no length), and
writing to a StreamTransport that turns the HTTP/1.1 response back into HEADERS and DATA
frames. Routing, policies, retries, timeouts, limits and metrics are therefore the same
code for both protocols (Apache's mod_http2 is built the same way). The h2 library does
the protocol: frames, HPACK, stream states, flow control windows, header validation.

Flow control both ways: request DATA is acknowledged (window credit returned) only while
the stream's DownstreamH1 keeps reading, i.e. while its upstream accepts; response DATA
is sent as the client's windows allow, the rest is held and the upstream's reading paused
until a WINDOW_UPDATE.
"""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
from hyperframe.frame import GoAwayFrame

from .. import h2codec
from ..codec import ChunkedDecoder, HeadError, head_end, parse_response
from .downstream import ROUTE_CACHE_SIZE, DownstreamH1, _route
from .h2_grpc import GrpcStream, is_grpc
from .http1_downstream import H1Reader

if TYPE_CHECKING:
    from ..codec import ResponseHead
    from ..context import GatewayContext

log = logging.getLogger("fleetgate.gateway")

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_HEAD, _LENGTH, _CHUNKED, _UNTIL_CLOSE = range(4)  # StreamTransport's response framing
_MAX_HEAD = 256 * 1024  # heads the request engine writes (it relays upstream heads of up to 64 KiB)
MAX_CONCURRENT_STREAMS = 128
IMPLEMENTATION = h2codec.IMPLEMENTATION  # the layer new connections use unless a test switches it
# Abuse bounds (as nginx and Envoy): past them the connection gets GOAWAY ENHANCE_YOUR_CALM
# and is closed; other connections are served as before. CONTINUATION floods are bounded by
# the h2 library (64 frames per header block), HPACK bombs by the decoded header list size.
MAX_PREMATURE_RESETS = 100  # streams the client reset before their answer, when they are most of its streams
MAX_CONTROL_PER_SECOND = 200  # PING and SETTINGS frames (each makes us write an ACK)
# hop-by-hop in HTTP/1.1, forbidden in HTTP/2 responses (RFC 9113 8.2.2)
_CONNECTION_SPECIFIC = frozenset((b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding",
                                  b"upgrade"))


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


class StreamTransport(asyncio.Transport):
    """What one stream's DownstreamH1 writes its HTTP/1.1 response to."""

    grpc = False  # (GrpcStream, h2_grpc.py, is the other kind of stream)

    def __init__(self, conn: "DownstreamH2", stream_id: int, method: bytes) -> None:
        super().__init__()
        self.conn = conn
        self.stream_id = stream_id
        self.method = method
        self.buf = b""  # a response head not complete yet
        self.state = _HEAD
        self.remaining = 0  # Content-Length bytes still to send as DATA
        self.decoder: ChunkedDecoder | None = None
        self.ds: DownstreamH1 = None  # type: ignore[assignment]
        self.chunked = False  # the request body is sent to the DownstreamH1 chunked
        self.started = False  # final response HEADERS sent
        self.ended = False  # END_STREAM sent or the stream reset
        self.end_pending = False  # END_STREAM waits for held DATA
        self.held: list[bytes] = []  # response DATA beyond the client's window
        self.upstream_paused = False
        self.reading = True
        self.unacked = 0  # request DATA bytes not yet credited back (reading paused)

    # --- the HTTP/1.1 response, as frames ---------------------------------------

    def write(self, data: bytes) -> None:  # type: ignore[override]
        if self.ended:
            return
        try:
            self._framed(data)
        except HeadError:
            log.exception("h2: response bytes from the request engine could not be framed")
            self.conn.reset(self, h2.errors.ErrorCodes.INTERNAL_ERROR)
        self.conn.flush()

    def _framed(self, data: bytes) -> None:
        """The HTTP/1.1 response bytes as HEADERS and DATA: the codec reads the head, the
        body is framed by its length, its chunks, or the end of the stream's transport."""
        while data and not self.ended:
            state = self.state
            if state == _HEAD:
                buf = self.buf + data if self.buf else data
                end = head_end(buf, 0, _MAX_HEAD)
                if end < 0:
                    self.buf = buf
                    return
                self.buf = b""
                data = buf[end:]
                self._headers(parse_response(buf, 0, end, head_request=self.method == b"HEAD"))
            elif state == _LENGTH:
                take = data if len(data) <= self.remaining else data[:self.remaining]
                self.remaining -= len(take)
                self.conn.send_data(self, take)
                if not self.remaining:
                    self.end_stream()
                return
            elif state == _CHUNKED:
                dec: ChunkedDecoder = self.decoder  # type: ignore[assignment]
                for piece in dec.feed(data):
                    if piece and not self.ended:
                        self.conn.send_data(self, piece)
                if dec.done and not self.ended:
                    self.end_stream()
                return
            else:  # close-delimited: the stream ends when the request engine closes us
                self.conn.send_data(self, data)
                return

    def _headers(self, rh: "ResponseHead") -> None:
        fields = [(b":status", b"%d" % rh.status)]
        for line in rh.head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.lower()
            if name and name not in _CONNECTION_SPECIFIC:
                fields.append((name, value.strip(b" \t")))
        if rh.status < 200:  # 100 Continue: an informational HEADERS, the final one follows
            self.conn.h2.send_headers(self.stream_id, fields)
            return
        self.started = True
        if rh.chunked:
            self.state = _CHUNKED
            self.decoder = ChunkedDecoder(error_status=502)
        elif rh.close_delimited:
            self.state = _UNTIL_CLOSE
        elif rh.content_length > 0:
            self.state = _LENGTH
            self.remaining = rh.content_length
        else:  # no body: HEAD, 204, 304, or a length of 0
            self.conn.h2.send_headers(self.stream_id, fields, end_stream=True)
            self._ended()
            return
        self.conn.h2.send_headers(self.stream_id, fields)

    def end_stream(self) -> None:
        if self.held:
            self.end_pending = True
            return
        self.conn.h2.end_stream(self.stream_id)
        self._ended()

    def _ended(self) -> None:
        self.ended = True
        self.conn.stream_done(self)

    # --- what DownstreamH1 asks of a transport ----------------------------------

    def close(self) -> None:
        if not self.ended:
            if self.started:
                self.end_stream()  # a close-delimited body ends here
            else:
                self.conn.reset(self, h2.errors.ErrorCodes.INTERNAL_ERROR)
            self.conn.flush()

    def abort(self) -> None:
        if not self.ended:
            self.conn.reset(self, h2.errors.ErrorCodes.INTERNAL_ERROR)
            self.conn.flush()

    def is_closing(self) -> bool:
        return self.ended

    def get_extra_info(self, name: str, default: object = None) -> object:
        t = self.conn.transport
        return t.get_extra_info(name, default) if t is not None else default

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True
        if self.unacked and not self.ended:
            self.conn.h2.acknowledge_received_data(self.unacked, self.stream_id)
            self.unacked = 0
            self.conn.flush()

    def is_reading(self) -> bool:
        return self.reading


class DownstreamH2(asyncio.Protocol):
    """One HTTP/2 client connection (h2c with prior knowledge, or TLS with ALPN h2)."""

    def __init__(self, ctx: "GatewayContext", scheme: bytes) -> None:
        self.ctx = ctx
        self.scheme = scheme
        self.transport: asyncio.Transport | None = None
        limits = ctx.limits
        # libnghttp2 or the h2 library, behind the same interface (gateway/h2codec)
        self.h2 = h2codec.server_connection(MAX_CONCURRENT_STREAMS, limits.max_header_bytes + limits.max_request_line)
        self.streams: dict[int, StreamTransport] = {}
        self.deadline = 0.0
        self.draining = False
        self.last_stream = 0  # streams above it arrived after our GOAWAY: refused
        self.now = asyncio.get_event_loop().time
        self.opened = 0  # streams the client opened
        self.premature = 0  # ... and reset before we answered them (rapid reset)
        self.control = 0  # PING/SETTINGS frames in the current second
        self.control_window = 0.0
        self.stalled_since = 0.0  # response DATA waiting for a client window since then (0: none)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
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
            st.ds.connection_lost(None)  # aborts an upstream response with nowhere to go
        self.streams.clear()

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data and self.transport is not None:
            self.transport.write(data)

    def pause_writing(self) -> None:
        for st in self.streams.values():
            st.ds.pause_writing()

    def resume_writing(self) -> None:
        for st in self.streams.values():
            if not st.held:
                st.ds.resume_writing()

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
                    if st.grpc:
                        st.request_end()  # type: ignore[attr-defined]
                    elif st.chunked:
                        st.ds.data_received(b"0\r\n\r\n")
            elif isinstance(ev, h2.events.StreamReset):
                st = self.streams.pop(ev.stream_id, None)
                if st is not None:
                    st.ended = True
                    st.ds.connection_lost(None)
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
        method = path = authority = b""
        lines: list[bytes] = []
        cookies: list[bytes] = []
        has_length = False
        # validate_inbound_headers made h2 refuse CR, LF and NUL, which would split the head
        for name, value in ev.headers:
            if name[:1] == b":":
                if name == b":method":
                    method = value
                elif name == b":path":
                    path = value
                elif name == b":authority":
                    authority = value
                continue
            if name == b"cookie":  # HTTP/2 may split it; HTTP/1.1 wants one line (RFC 9113 8.2.3)
                cookies.append(value)
                continue
            if name == b"host":
                if authority:
                    continue  # :authority wins
                authority = value
                continue
            if name == b"content-length":
                has_length = True
            lines += (name, b": ", value, b"\r\n")
        table = self.ctx.table
        r = table.route_memo.get((authority, path), False)
        if r is False:
            r = _route(table, authority, path)
            if len(table.route_memo) >= ROUTE_CACHE_SIZE:
                table.route_memo.clear()
            table.route_memo[(authority, path)] = r
        if r is None and any(n == b"content-type" and v.startswith(b"application/grpc") for n, v in ev.headers):
            self.h2.send_headers(sid, [(b":status", b"200"), (b"content-type", b"application/grpc"),
                                       (b"grpc-status", b"12"), (b"grpc-message", b"no-route"),
                                       (b"x-fleetgate-reason", b"no-route")], end_stream=True)
            return  # a gRPC call with no route: UNIMPLEMENTED, the gRPC way (its DATA is credited as unknown)
        if is_grpc(r):  # relayed as HTTP/2 end to end, trailers and all
            gs = GrpcStream(self, sid, r, ev.headers, ev.stream_ended is not None)
            self.streams[sid] = gs  # type: ignore[assignment]
            self.deadline = 0.0
            gs.begin()
            return
        if cookies:
            lines += (b"cookie: ", b"; ".join(cookies), b"\r\n")
        st = StreamTransport(self, sid, method)
        if ev.stream_ended is None and not has_length:
            st.chunked = True
            lines.append(b"transfer-encoding: chunked\r\n")
        ds = st.ds = DownstreamH1(self.ctx, self.scheme)
        self.streams[sid] = st
        self.deadline = 0.0
        ds.connection_made(st)
        head = b"%s %s HTTP/1.1\r\nhost: %s\r\n%s\r\n" % (method, path, authority, b"".join(lines))
        ds.data_received(head)

    def _data(self, ev: h2.events.DataReceived) -> None:
        st = self.streams.get(ev.stream_id)
        if st is None:  # the stream was answered (and closed) before its body ended
            self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            return
        if st.grpc:
            st.request_data(ev.data, ev.flow_controlled_length)  # type: ignore[attr-defined]
            return
        data = ev.data
        if data:
            st.ds.data_received(b"%x\r\n%s\r\n" % (len(data), data) if st.chunked else data)
        if st.reading and not st.ended:
            self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        else:
            st.unacked += ev.flow_controlled_length

    # --- frames out -----------------------------------------------------------------

    def send_data(self, st: StreamTransport, data: bytes) -> None:
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
                st.ds.pause_writing()  # stop reading the upstream until the window opens

    def _send_what_fits(self, st: StreamTransport, data: bytes) -> bytes:
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
                    st.ds.resume_writing()

    def reset(self, st: StreamTransport, code: h2.errors.ErrorCodes) -> None:
        if not st.ended:
            try:
                self.h2.reset_stream(st.stream_id, code)
            except h2.exceptions.ProtocolError:  # the stream (or connection) is closed already
                pass
            st._ended()

    def stream_done(self, st: StreamTransport) -> None:
        """The stream has ended on our side: let its DownstreamH1 go once it has returned."""
        if self.streams.pop(st.stream_id, None) is not None:
            asyncio.get_event_loop().call_soon(st.ds.connection_lost, None)
        if not self.streams:
            self.deadline = self.now() + self.ctx.limits.idle_timeout
            if self.draining and self.transport is not None:
                self.h2.close_connection(last_stream_id=self.last_stream)
                self.flush()
                self.transport.close()

    # --- the sweeper's hooks (as DownstreamH1) -------------------------------------------

    def check_timeouts(self, now: float, horizon: float = 0.0) -> None:
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
