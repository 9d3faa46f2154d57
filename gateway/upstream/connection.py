"""One keep-alive HTTP/1.1 connection to an upstream endpoint.

Responses are read with the codec: head_end finds a head's end in this connection's one
buffer, parse_response validates it and writes the downstream head in one pass, and the
body is framed here (Content-Length countdown, ChunkedDecoder re-chunked for the client,
or close-delimited). The downstream bytes go to the owner's output list, flushed once per
upstream read, so a small response leaves in a single write. After a 101 the connection
becomes a byte tunnel.

The owner is any `Downstream` (gateway/exchange/): this module never imports the
protocol side. A connection is judged reusable before it goes back to the pool: its
response ended, the request was sent whole, and no byte followed the response.
"""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ..codec import ChunkedDecoder, HeadError, head_end, parse_response
from ..exchange import MAX_RESPONSE_HEAD, RESPONDING, TUNNEL, UpstreamCore
from ..exchange.sockets import direct_fd

if TYPE_CHECKING:
    from ..exchange import Downstream, Exchange
    from .pool import Pool

# body framing of the response being read
_HEAD, _LENGTH, _CHUNKED, _UNTIL_CLOSE = range(4)


class UpstreamH1(UpstreamCore, asyncio.Protocol):
    """The common read (a whole small keep-alive response) and `send` are UpstreamCore's
    (gateway/exchange, compiled where built); every other read is `_read`'s."""

    # the hot fields are UpstreamCore's and must not be repeated here
    __slots__ = ("resume", "remaining", "decoder", "keep_alive", "discard", "fileno")

    def __init__(self, pool: "Pool") -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.ex: Exchange | None = None
        self.idle_since = 0.0
        self.buf = b""  # bytes of a response head not complete yet
        self.resume = 0  # len(buf) at the last head_end call (a dripped head is not rescanned)
        self.state = _HEAD
        self.remaining = 0  # Content-Length bytes still to relay
        self.decoder: ChunkedDecoder | None = None
        self.keep_alive = True
        self.tunnel: Downstream | None = None
        self.reused = False
        self.discard = 0  # status of a response being read to its end and dropped for a retry
        self.fileno = -1
        self.wfd = -1  # the socket the compiled core may write to (exchange/sockets.py)
        self.cluster = ""
        self.cline: bytes | None = None  # x-fleetgate-cluster line, set by the first response

    # --- lifecycle -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        self.fileno = sock.fileno() if sock is not None else -1
        self.wfd = direct_fd(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.wfd = -1
        if self.tunnel is not None:
            ds, self.tunnel = self.tunnel, None
            ds.tunnel_closed()
            return
        ex = self.ex
        if ex is None:
            self.pool.discard(self)
            return
        self.ex = None
        ds = ex.ds
        if self.state == _UNTIL_CLOSE and not self.discard:
            # The end of a close-delimited body is the end of the connection.
            ds.response_complete(ex, False, None)
            ds.flush()
            return
        ds.upstream_failed(ex, "reset" if exc else "closed", reused=self.reused,
                           got_bytes=bool(self.buf) or self.state != _HEAD)
        ds.flush()

    def close(self) -> None:
        t = self.transport
        if t is not None:
            t.close()

    def abort(self) -> None:
        """Drop the connection (the response will not be read to its end)."""
        self.ex = None
        t = self.transport
        if t is not None:
            t.abort()

    # --- sending: UpstreamCore.send ---------------------------------------------------

    # --- flow control: the downstream's reading follows our write buffer -------------

    def pause_writing(self) -> None:
        ds = self.ex.ds if self.ex is not None else self.tunnel
        if ds is not None and ds.transport is not None:
            ds.transport.pause_reading()

    def resume_writing(self) -> None:
        ds = self.ex.ds if self.ex is not None else self.tunnel
        if ds is not None and ds.transport is not None:
            ds.transport.resume_reading()

    # --- receiving -----------------------------------------------------------------

    def _read(self, data: bytes) -> None:
        """Every read but the common one (UpstreamCore.data_received)."""
        tunnel = self.tunnel
        if tunnel is not None:
            if tunnel.transport is not None:
                tunnel.transport.write(data)
            return
        ex = self.ex
        if ex is None:  # bytes on an idle connection: the server broke the protocol
            self.close()
            return
        ds = ex.ds
        try:
            self._received(ex, ds, data)
        except HeadError:
            if self.ex is ex:
                self.abort()
                ds.upstream_failed(ex, "protocol", reused=False, got_bytes=True)
        ds.flush()

    def _received(self, ex: "Exchange", ds: "Downstream", data: bytes) -> None:
        while True:
            state = self.state
            if state == _HEAD:
                buf = self.buf + data if self.buf else data
                end = head_end(buf, 0, MAX_RESPONSE_HEAD, resume=self.resume)
                if end < 0:
                    self.buf = buf
                    self.resume = len(buf)
                    ex.deadline = ds.now() + ex.route.policy.read_timeout
                    return
                if end > MAX_RESPONSE_HEAD:  # a head that came whole in one large read
                    raise HeadError(502, "response-head-too-large")
                self.buf = b""
                self.resume = 0
                rh = parse_response(buf, 0, end, ex.method == b"HEAD")
                data = buf[end:] if end < len(buf) else b""
                code = rh.status
                if code < 200 and code != 101:
                    if not data:
                        return  # 100/103: swallowed; the real response follows
                    continue
                if not self._head(ex, ds, rh, code):
                    if code == 101:
                        self._start_tunnel(ex, ds, data)
                        return
                    if not rh.content_length and not rh.chunked and not rh.close_delimited:
                        return self._ended(ex, ds, data)
                    if not data:
                        return
                    continue
                if not data:
                    return
            elif state == _LENGTH:
                n = len(data)
                rem = self.remaining
                if n < rem:
                    self.remaining = rem - n
                    if not self.discard:
                        ds.out.append(data)
                    ex.deadline = ds.now() + ex.route.policy.read_timeout
                    return
                if not self.discard:
                    ds.out.append(data if n == rem else data[:rem])
                return self._ended(ex, ds, data[rem:] if n > rem else b"")
            elif state == _CHUNKED:
                dec: ChunkedDecoder = self.decoder  # type: ignore[assignment]
                pieces = dec.feed(data)
                if pieces and not self.discard:
                    if ex.chunked_response:
                        out = ds.out
                        for p in pieces:
                            out += (b"%x\r\n" % len(p), p, b"\r\n")
                    else:
                        ds.out += pieces
                if not dec.done:
                    ex.deadline = ds.now() + ex.route.policy.read_timeout
                    return
                self.decoder = None
                if ex.chunked_response and not self.discard:
                    ds.out.append(b"0\r\n\r\n")
                return self._ended(ex, ds, dec.leftover)
            else:  # _UNTIL_CLOSE
                if not self.discard:
                    ds.out.append(data)
                ex.deadline = ds.now() + ex.route.policy.read_timeout
                return

    def _head(self, ex: "Exchange", ds: "Downstream", rh, code: int) -> bool:  # type: ignore[no-untyped-def]
        """A final response head (or 101): relay it and set up the body's framing.
        True when a body follows (state set), False when the response has none."""
        self.keep_alive = rh.keep_alive
        if (code >= 400 or ds.health.endpoints) and not ds.response_head(ex, code):
            self.discard = code  # read it to its end, then retry elsewhere
        else:
            ex.status = code
            ex.phase = RESPONDING if code != 101 else TUNNEL  # (see gateway/exchange/__init__.py)
            cline = self.cline
            if cline is None:
                cline = self._cluster_line(ex, ds)
            ex.cluster = self.cluster
            if rh.keep_alive and not rh.chunked and ex.keep_alive and ds.http11:
                # the common answer: delimited by Content-Length (or bodiless) and both connections stay open
                ex.chunked_response = False
                ds.out.append(b"".join((rh.head, cline, ex.extra_resp, b"\r\n")))
            else:
                self._framed_head(ex, ds, rh, code, cline)
        if rh.chunked:
            self.state = _CHUNKED
            self.decoder = ChunkedDecoder(error_status=502)
            return True
        if rh.close_delimited:
            self.state = _UNTIL_CLOSE
            return True
        if rh.content_length > 0:
            self.state = _LENGTH
            self.remaining = rh.content_length
            return True
        return False

    def _framed_head(self, ex: "Exchange", ds: "Downstream", rh, code: int,  # type: ignore[no-untyped-def]
                     cline: bytes) -> None:
        """The rest of the response heads: upgrades, chunked or close-delimited bodies,
        HTTP/1.0 clients, connections that close."""
        if code == 101:
            ds.out.append(b"".join((rh.head, cline, ex.extra_resp, b"connection: upgrade\r\n\r\n")))
            return
        ex.chunked_response = False
        tail = b"\r\n"
        if rh.chunked:
            if ds.http11:
                tail = b"transfer-encoding: chunked\r\n\r\n"
                ex.chunked_response = True
            else:  # chunked upstream, HTTP/1.0 client: close-delimited downstream
                ex.keep_alive = False
        elif rh.close_delimited:
            ex.keep_alive = False
        if not ex.keep_alive:
            tail = b"connection: close\r\n" + tail
        elif not ds.http11:
            tail = b"connection: keep-alive\r\n" + tail
        ds.out.append(b"".join((rh.head, cline, ex.extra_resp, tail)))

    def _cluster_line(self, ex: "Exchange", ds: "Downstream") -> bytes:
        """The x-fleetgate-cluster line, fixed per connection (a connection has one endpoint)."""
        ep = ex.endpoint
        self.cluster = ep.cluster if ep is not None else ""
        cline = self.cline = ds.cluster_line(self.cluster)
        return cline

    def _ended(self, ex: "Exchange", ds: "Downstream", rest: bytes) -> None:
        """The response was read to its end. The connection is reusable only when the
        upstream keeps it alive, the whole request was sent and nothing followed."""
        self.ex = None
        self.state = _HEAD
        reusable = self.keep_alive and ex.request_done and not rest
        if reusable:
            self.reused = True
        if self.discard:
            code, self.discard = self.discard, 0
            ds.retry_after_status(ex, code, self, reusable)
            return
        ds.response_complete(ex, reusable, self)

    def _start_tunnel(self, ex: "Exchange", ds: "Downstream", rest: bytes) -> None:
        if ex.req.upgrade is None or self.discard:  # a 101 nobody asked for
            self.abort()
            ds.upstream_failed(ex, "protocol", reused=False, got_bytes=True)
            return
        self.ex = None
        self.tunnel = ds
        ds.start_tunnel(ex, self, rest)
