"""One keep-alive HTTP/1.1 connection to an upstream endpoint.

It parses responses with httptools and appends the downstream bytes to the downstream
connection's output list; the downstream flushes once per upstream read, so a small
response leaves in a single write. After a 101 it becomes a byte tunnel.
"""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import httptools

from ..protocol.http1 import MAX_RESPONSE_HEAD, RESPONSE_HOP, strip_response_hop

if TYPE_CHECKING:
    from ..protocol.downstream import DownstreamH1, Exchange
    from .pool import Pool


class UpstreamH1(asyncio.Protocol):
    __slots__ = ("pool", "transport", "parser", "ex", "idle_since", "head", "head_at", "in_head",
                 "chunked", "keep_alive", "interim", "upgraded", "tunnel", "close_delimited", "reused",
                 "discard", "fileno", "cluster", "cline", "settled", "stray")

    def __init__(self, pool: "Pool") -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.ex: Exchange | None = None
        self.idle_since = 0.0
        self.head = b""  # the bytes of the response head read so far (the head is rewritten whole)
        self.head_at = 0  # where the current head starts in `head` (after 1xx interim heads)
        self.in_head = False  # a request was sent and its final response head is not complete yet
        self.chunked = False
        self.keep_alive = True
        self.interim = False
        self.upgraded = False
        self.tunnel: DownstreamH1 | None = None
        self.close_delimited = False
        self.reused = False
        self.discard = 0  # status of a response being dropped for a retry
        self.fileno = -1
        self.cluster = ""
        self.cline: bytes | None = None  # x-fleetgate-cluster line, set by the first response
        # A response ended reusable in the read being parsed: the connection goes back to the
        # pool only once that whole read is parsed (data_received) and nothing followed the
        # response (stray: a second response nobody asked for, or garbage).
        self.settled = False
        self.stray = False

    # --- lifecycle -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        self.fileno = sock.fileno() if sock is not None else -1

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.tunnel is not None:
            ds, self.tunnel = self.tunnel, None
            ds.tunnel_closed()
            return
        ex = self.ex
        if ex is None:
            self.pool.discard(self)
            return
        self.ex = None
        if self.close_delimited and ex.response_started:
            # The end of a close-delimited body is the end of the connection.
            ex.ds.response_complete(ex, False, None)
            ex.ds.flush()
            return
        ex.ds.upstream_failed(ex, "reset" if exc else "closed", reused=self.reused,
                             got_bytes=bool(self.head) or not self.in_head)
        ex.ds.flush()

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

    # --- sending -------------------------------------------------------------------

    def send(self, ex: "Exchange", data: bytes) -> None:
        # Per-response state is set when the head arrives; only these need resetting here.
        self.ex = ex
        ex.upstream = self
        self.in_head = True
        self.transport.write(data)  # type: ignore[union-attr]

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

    def data_received(self, data: bytes) -> None:
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
        if self.in_head:
            # Keep the head's bytes: on_headers_complete rewrites it whole (no per-header callbacks)
            self.head = self.head + data if self.head else data
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self._start_tunnel(ex, data[upgrade.args[0]:])
        except httptools.HttpParserError:
            if self.ex is ex:
                self.abort()
                ds.upstream_failed(ex, "protocol", reused=False, got_bytes=True)
            elif self.settled:  # garbage after a complete response: never reused
                self.settled = False
                self.close()
        else:
            if self.settled:  # (inlined _settle: once per response)
                self.settled = False
                if self.stray or self.transport is None:
                    self.close()
                else:
                    self.pool.release(self, ds.now())
            elif self.ex is ex:  # the response goes on: the read timeout restarts
                ex.deadline = ds.now() + ex.route.policy.read_timeout
                if self.in_head and len(self.head) - self.head_at > MAX_RESPONSE_HEAD:
                    self.abort()  # a head that never ends
                    ds.upstream_failed(ex, "protocol", reused=False, got_bytes=True)
        ds.flush()

    def on_message_begin(self) -> None:
        if self.ex is None:
            self.stray = True  # a message starts after the one we read: no request is waiting for it

    def on_headers_complete(self) -> None:
        ex = self.ex
        if ex is None:  # a response nobody asked for, after the one we read: drop the connection
            self.close()
            return
        parser = self.parser
        code = parser.get_status_code()
        buf = self.head
        start = self.head_at
        end = buf.find(b"\r\n\r\n", start) + 2  # llhttp accepts CRLF line ends only
        if end - start > MAX_RESPONSE_HEAD:  # a head that came whole in one large read
            self.abort()
            ex.ds.upstream_failed(ex, "protocol", reused=False, got_bytes=True)
            return
        if code < 200 and code != 101:
            self.interim = True  # 100/103: swallowed; the real response follows
            self.head_at = end + 2
            return
        self.head = b""
        if start:
            self.head_at = 0
        self.in_head = False
        keep_alive = self.keep_alive = parser.should_keep_alive()
        ds = ex.ds
        if (code >= 400 or ds.ctx.health.endpoints) and not ds.response_head(ex, code):
            self.discard = code  # read it to its end, then retry elsewhere (reset there)
            return
        head = buf[start:end]  # status line and header lines, each with its CRLF
        if not head.startswith(b"HTTP/1.1 "):
            head = b"HTTP/1.1" + head[8:]  # we answer as HTTP/1.1 whatever the upstream spoke
        low = head.lower()
        chunked = False
        hop = RESPONSE_HOP.findall(low)
        if hop:
            at = low.find(b"\nconnection: keep-alive\r\n") + 1
            if at and len(hop) == 1:
                head = head[:at] + head[at + 24:]  # the usual one, alone
            else:
                head, chunked = strip_response_hop(head, low, code)
        ex.status = code
        ex.response_started = True
        cline = self.cline
        if cline is None:
            cline = self._cluster_line(ex)
        ex.cluster = self.cluster
        if keep_alive and not chunked and ex.keep_alive and ds.http11 and ex.method != b"HEAD":
            # the common answer: delimited by Content-Length (or bodiless by status) and both
            # connections stay open
            ex.chunked_response = False
            ds.out.append(b"".join((head, cline, ex.extra_resp, b"\r\n")))
            return
        self._framed_head(ex, ds, code, head, low, cline, chunked)

    def _framed_head(self, ex: "Exchange", ds: "DownstreamH1", code: int, head: bytes, low: bytes,
                     cline: bytes, chunked: bool) -> None:
        """The rest of the response head: upgrades, chunked or close-delimited bodies, HEAD,
        HTTP/1.0 clients, connections that close."""
        if code == 101:
            self.upgraded = True
            ds.out.append(b"".join((head, cline, ex.extra_resp, b"connection: upgrade\r\n\r\n")))
            return
        is_head = ex.method == b"HEAD"
        if chunked and not (is_head or code == 204 or code == 304):
            if ds.http11:
                tail = b"transfer-encoding: chunked\r\n\r\n"
                ex.chunked_response = True
            else:  # chunked upstream, HTTP/1.0 client: close-delimited downstream
                tail = b"\r\n"
                ex.keep_alive = False
                ex.chunked_response = False
        else:
            tail = b"\r\n"
            ex.chunked_response = False
            # llhttp keeps a connection alive only when the body is delimited: not chunked
            # and alive means a Content-Length (or no body at all); look only otherwise
            if not (self.keep_alive or chunked or is_head or code == 204 or code == 304
                    or b"\ncontent-length:" in low):
                self.close_delimited = True
                ex.keep_alive = False
        if not ex.keep_alive:
            tail = b"connection: close\r\n" + tail
        elif not ds.http11:
            tail = b"connection: keep-alive\r\n" + tail
        ds.out.append(b"".join((head, cline, ex.extra_resp, tail)))
        if is_head:
            # llhttp cannot be told this answers a HEAD; finish here and do not reuse.
            self.keep_alive = False
            self._complete(ex)

    def _cluster_line(self, ex: "Exchange") -> bytes:
        """The x-fleetgate-cluster line, fixed per connection (a connection has one endpoint)."""
        ep = ex.endpoint
        self.cluster = ep.cluster if ep is not None else ""
        cline = self.cline = ex.ds.ctx.cluster_line(self.cluster)
        return cline

    def on_body(self, body: bytes) -> None:
        ex = self.ex
        if ex is None or self.discard:
            return
        if ex.chunked_response:
            ex.ds.out += (b"%x\r\n" % len(body), body, b"\r\n")
        else:
            ex.ds.out.append(body)

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        ex = self.ex
        if ex is None or self.upgraded:
            return
        if self.discard:
            self.ex = None
            code, self.discard = self.discard, 0
            if self.keep_alive and ex.request_done:
                self.settled = True  # pooled by data_received once this read is parsed
                ex.ds.retry_after_status(ex, code, None, True)
            else:
                ex.ds.retry_after_status(ex, code, self, False)
            return
        if ex.chunked_response:
            ex.ds.out.append(b"0\r\n\r\n")
        self._complete(ex)

    def _complete(self, ex: "Exchange") -> None:
        self.ex = None
        if self.keep_alive and ex.request_done and not self.close_delimited:
            self.reused = True
            self.settled = True  # pooled by data_received once this read is parsed
            ex.ds.response_complete(ex, True, None)
        else:
            ex.ds.response_complete(ex, False, self)

    def _start_tunnel(self, ex: "Exchange", rest: bytes) -> None:
        if not self.upgraded:
            self.abort()
            ex.ds.upstream_failed(ex, "protocol", reused=False, got_bytes=True)
            return
        self.ex = None
        self.tunnel = ex.ds
        ex.ds.start_tunnel(ex, self, rest)
