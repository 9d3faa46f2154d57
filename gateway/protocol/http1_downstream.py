"""Reading a client's HTTP/1.1 connection: one buffer, the codec, body framing.

`H1Reader` is DownstreamH1's reading half (gateway/protocol/downstream.py is the
proxying half). Bytes go into one buffer per connection; head_end finds a head's end
(resuming where the last read stopped) and parse_request validates it and gives its
fields in one call: no Python work per header. A body is framed by a Content-Length
countdown or a ChunkedDecoder (re-chunked upstream; the trailer section is validated,
bounded by the decoder's max_trailers and dropped, the codec's documented choice).

Pipelining: bytes after a complete request stay in the buffer and reading pauses until
the response in flight is done; then the buffer is parsed again. After an Upgrade
request nothing is parsed or forwarded until the upstream answers 101 (the bytes are held,
then become the tunnel's; a decline closes the connection with them unread). The h2c
preface is recognised before parse_request (which refuses `PRI *`) and the connection
handed to h2.py. The header timeout runs from a head's first byte to its end.

A chunked request body found malformed after its head went upstream: the upstream
connection is aborted (it would wait for the rest) and the client gets the 400 if no
response began, else the connection is cut. Nothing after the bad bytes is ever parsed.
"""
from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import TYPE_CHECKING, Callable

from ..codec import ChunkedDecoder, HeadError, RequestHead, head_end, parse_request
from ..exchange import DONE, DownstreamCore, Exchange, Reject, RESPONDING
from ..exchange.sockets import direct_fd
from .http1 import error_response

if TYPE_CHECKING:
    from ..context import GatewayContext

log = logging.getLogger("fleetgate.gateway")

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# what an unfinished head may start with: empty lines, then a method's characters (the
# codec's rule) up to a space or the end of what came so far
_METHOD_START = re.compile(rb"(?:\r\n)*\r?$|(?:\r\n)*[A-Z_-]{1,32}(?: |$)")


# The codec's reasons as the x-fleetgate-reason values docs/headers.md lists (the names
# clients and dashboards already know); any other 400 of the codec is `bad-request`, its
# precise reason logged at debug level.
DOCUMENTED_REASONS = {
    "invalid-host": "bad-host",
    "duplicate-content-length": "conflicting-content-length",
    "te-and-content-length": "content-length-with-transfer-encoding",
    "te-on-http10": "transfer-encoding-in-http10",
    "bad-transfer-encoding": "unsupported-transfer-encoding",
    "version-not-supported": "http-version-not-supported",
}
_KEPT_REASONS = frozenset(("duplicate-host", "missing-host", "bad-content-length", "bad-request-target",
                           "unsupported-transfer-encoding", "uri-too-long", "headers-too-large",
                           "expectation-failed"))


def refusal(err: HeadError, peer: bytes) -> "Reject":
    """The answer to a head or body the codec refused."""
    reason = DOCUMENTED_REASONS.get(err.reason)
    if reason is None:
        reason = err.reason if err.reason in _KEPT_REASONS or err.status != 400 else "bad-request"
    if reason != err.reason:
        log.debug("refused a request from %s: %s", peer, err.reason)
    return Reject(err.status, reason)


class H1Reader(DownstreamCore, asyncio.Protocol):
    """Connection lifecycle, reading, framing and rejects; the subclass decides what a
    request becomes (`_body_piece`, `_body_done`, and through DownstreamCore._on_head,
    `_policy_head`) and proxies it. The common read (a whole head on an idle connection),
    flush and the common request are DownstreamCore's (gateway/exchange, compiled where
    built); everything else reads here (`_read`)."""

    # Slots, not a __dict__ (the data path reads them on every request); the hot fields
    # are DownstreamCore's and must not be repeated here.
    __slots__ = ("resume", "remaining", "decoder")

    # the HTTP/2 connection protocol for h2c prior knowledge: set by h2.py when it loads
    # (h2.py builds on DownstreamH1, so this module cannot import it back)
    h2c: "Callable[[GatewayContext, bytes], asyncio.Protocol] | None" = None

    def __init__(self, ctx: "GatewayContext", scheme: bytes = b"http") -> None:
        self.ctx = ctx
        self.scheme = scheme  # of the listener: X-Forwarded-Proto, HTTPS redirects
        self.tls = scheme == b"https"
        self.transport: asyncio.Transport | None = None
        self.peer = b""
        self.buf = b""  # unparsed bytes: a head not complete yet, or pipelined requests
        self.resume = 0  # len(buf) at the last head_end call for the head in buf
        self.began = 0.0  # when the head being read began (its first byte); 0: none begun
        self.cur: Exchange | None = None  # the exchange whose request body is being read
        self.remaining = 0  # Content-Length bytes of cur's body still to read
        self.decoder: ChunkedDecoder | None = None  # cur's chunked body
        self.active: Exchange | None = None  # being proxied
        self.out: list[bytes] = []
        self.deadline = 0.0
        self.http11 = True
        self.tunnel: asyncio.Protocol | None = None  # the upstream connection after a 101
        # bytes after an Upgrade request: held until the upstream answers 101 (then they
        # open the tunnel), dropped with the connection when it declines
        self.held: bytes | None = None
        self.close_after = False
        self.paused = False  # reading paused while pipelined bytes wait in buf
        self.final = b""  # a rejection to send once the in-flight response is done, before closing
        # the monotonic clock itself, not the loop's cached time (uvloop's has millisecond
        # steps): request times have microsecond resolution; deadlines share its base
        self.now = time.monotonic
        self.sent = 0  # response bytes flushed to the client (metrics and the access log)
        self.logged = 0  # ... of them, accounted to a finished request already
        self.header_timeout = ctx.limits.header_timeout
        self.max_line = ctx.limits.max_request_line
        self.max_headers = ctx.limits.max_header_bytes
        self.head_limit = self.max_headers + self.max_line  # a head's bytes, its request line included
        self.health = ctx.health
        self.wfd = -1  # the socket the compiled core may write to (exchange/sockets.py)
        self.spare: Exchange | None = None  # the compiled core's last exchange, for the next request
        # the last routed request's table, Host, target and route snapshot (the core's memo)
        self.last_table = self.last_host = self.last_target = self.last_hot = None

    # --- connection lifecycle --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.wfd = direct_fd(transport)
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]).encode() if peer else b""
        self.ctx.downstreams.add(self)  # type: ignore[arg-type]
        self.deadline = self.now() + self.header_timeout

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.wfd = -1
        self.spare = None
        self.ctx.downstreams.discard(self)  # type: ignore[arg-type]
        if self.tunnel is not None:
            up, self.tunnel = self.tunnel, None
            up.tunnel = None  # type: ignore[attr-defined]
            up.close()  # type: ignore[attr-defined]
        ex = self.active
        if ex is not None:
            self.active = None
            if ex.phase != DONE:
                ex.phase = DONE
            if ex.upstream is not None:
                ex.upstream.abort()  # the rest of the response has nowhere to go

    def pause_writing(self) -> None:
        up = self.tunnel or (self.active.upstream if self.active is not None else None)
        if up is not None and up.transport is not None:  # type: ignore[union-attr]
            up.transport.pause_reading()  # type: ignore[union-attr]

    def resume_writing(self) -> None:
        up = self.tunnel or (self.active.upstream if self.active is not None else None)
        if up is not None and up.transport is not None:  # type: ignore[union-attr]
            up.transport.resume_reading()  # type: ignore[union-attr]

    # --- reading ---------------------------------------------------------------------

    def _read(self, data: bytes) -> None:
        """Every read but the common one (DownstreamCore.data_received): a tunnel's bytes,
        a held upgrade, a partial or pipelined head, a body."""
        if self.tunnel is not None:
            t = self.tunnel.transport  # type: ignore[attr-defined]
            if t is not None:
                t.write(data)
            return
        if self.held is not None:  # an upgrade awaits its answer: nothing is parsed or forwarded
            self.held += data
            return
        if self.close_after and self.active is None:
            return
        if self.buf:
            data = self.buf + data
            self.buf = b""
        try:
            if self.cur is not None:
                data = self._body(self.cur, data)
            if data:
                self._heads(data)
        except Reject as r:
            self._reject(r.code, r.reason)
        except Exception:
            log.exception("gateway bug while handling a request")
            self._reject(500, "internal-error")
        if self.out or self.close_after:
            self.flush()

    def _heads(self, data: bytes) -> None:
        """Parse and start requests from data while no response is pending."""
        while data:
            if self.active is not None or self.close_after or self.held is not None:
                if self.held is not None:
                    self.held += data
                    return
                self.buf = data  # pipelined: parsed once the response in flight is done
                self.resume = 0
                if self.transport is not None and not self.close_after:
                    self.paused = True
                    self.transport.pause_reading()
                return
            began = self.began
            if not began:
                began = self.began = self.now()
                self.deadline = began + self.header_timeout
            try:
                end = head_end(data, 0, self.head_limit, line_limit=self.max_line,
                               resume=self.resume)
                if end < 0:
                    if not _METHOD_START.match(data):  # not HTTP (a TLS hello...): refuse now, not at the timeout
                        raise Reject(400, "bad-method")
                    self.buf = data
                    self.resume = len(data)
                    return
                self.resume = 0
                if data[:5] == b"PRI *":
                    self._preface(data)
                    return
                head = parse_request(data, 0, end, self.max_line, self.max_headers)
            except HeadError as err:
                raise refusal(err, self.peer) from None
            self.began = 0.0
            data = data[end:] if end < len(data) else b""
            ex = self._on_head(head, began)
            if self.cur is ex:
                data = self._body(ex, data)
            elif head[7] is not None:  # an upgrade
                self._hold(data)
                return

    def _preface(self, data: bytes) -> None:
        """HTTP/2 with prior knowledge (h2c): hand the connection to h2.py."""
        if len(data) < len(PREFACE) and PREFACE.startswith(data):
            self.buf = data  # the preface's last 6 bytes are still to come
            return
        if not data.startswith(PREFACE):
            raise Reject(400, "bad-request-target")
        if self.h2c is None:  # h2.py not loaded: no HTTP/2 here
            raise Reject(400, "bad-request-target")
        t = self.transport
        self.ctx.downstreams.discard(self)  # type: ignore[arg-type]
        self.transport = None
        self.wfd = -1
        proto = self.h2c(self.ctx, self.scheme)
        t.set_protocol(proto)  # type: ignore[union-attr]
        proto.connection_made(t)  # type: ignore[arg-type]
        proto.data_received(data)

    def _body(self, ex: Exchange, data: bytes) -> bytes:
        """Take ex's body from data; returns the bytes after it (b"" while it goes on)."""
        dec = self.decoder
        if dec is None:
            n = len(data)
            rem = self.remaining
            if n < rem:
                self.remaining = rem - n
                self._body_piece(ex, data, n)
                return b""
            self.remaining = 0
            self._body_piece(ex, data if n == rem else data[:rem], rem)
            rest = data[rem:] if n > rem else b""
        else:
            try:
                pieces = dec.feed(data)
            except HeadError as err:
                raise refusal(err, self.peer) from None
            for p in pieces:
                if p:
                    self._body_piece(ex, b"%x\r\n%s\r\n" % (len(p), p), len(p))
            if not dec.done:
                return b""
            rest = dec.leftover
            self.decoder = None
        self.cur = None
        self._body_done(ex)
        if ex.req.upgrade is not None:
            self._hold(rest)
            return b""
        return rest

    def _expect_body(self, ex: Exchange, head: RequestHead) -> None:
        """Frame the body that follows head (called by _on_head for requests with one)."""
        self.cur = ex
        ex.body = []
        if head.chunked:
            self.decoder = ChunkedDecoder(error_status=400, max_line=self.max_line)
        else:
            self.remaining = head.content_length

    def _hold(self, rest: bytes) -> None:
        """An Upgrade request was read: what follows belongs to the new protocol only if
        the upstream agrees (101); until then it is held and reading pauses."""
        self.held = (self.held or b"") + rest
        if self.transport is not None:
            self.transport.pause_reading()

    def _parse_buffered(self) -> None:
        """The response in flight is done: parse the pipelined bytes it left behind."""
        data, self.buf = self.buf, b""
        was_paused, self.paused = self.paused, False  # _heads pauses again if a request must still wait
        try:
            self._heads(data)
        except Reject as r:
            self._reject(r.code, r.reason)
        except Exception:
            log.exception("gateway bug while handling a request")
            self._reject(500, "internal-error")
        # read on unless a later request waits in buf: also when the bytes ended inside the
        # body of the request now in flight (its rest is still to be read: no stall)
        if was_paused and not self.paused and not self.close_after and self.held is None:
            if self.transport is not None:
                self.transport.resume_reading()

    def _reject(self, code: int, reason: str) -> None:
        """Answer a request we cannot proceed with, then close; an in-flight response is
        finished first unless the bad bytes are its own request's body."""
        self.close_after = True
        self.buf = b""
        cur, self.cur = self.cur, None
        if self.transport is not None:
            self.transport.pause_reading()
        ex = self.active
        if ex is None or ex is not cur:
            # a head refused before it became a request: counted and logged with "-" for
            # its request (metrics.refused); a later one than the in-flight request is
            # answered after that response (flush)
            answer = error_response(code, reason, close=True)
            if ex is None:
                self.out.append(answer)
            else:
                self.final = answer
            began = self.began
            self.ctx.metrics.refused(self.peer, code, len(answer), 0, self.now() - began if began else 0.0)
        else:
            # The bad bytes are the in-flight request's own body: the upstream would wait
            # for the rest forever. Drop it and answer now, or cut a response under way.
            up = ex.upstream
            if up is not None:
                ex.upstream = None
                up.abort()
            if ex.phase >= RESPONDING:
                if ex.phase != DONE:
                    ex.advance(DONE)
                self.active = None
            elif ex.phase != DONE:
                self._generated(ex, code, reason)

    # --- what the proxying half provides ----------------------------------------------

    def _body_piece(self, ex: Exchange, piece: bytes, size: int) -> None:
        raise NotImplementedError

    def _body_done(self, ex: Exchange) -> None:
        raise NotImplementedError

    def _generated(self, ex: Exchange, code: int, reason: str, extra: bytes = b"") -> None:
        raise NotImplementedError
