"""One keep-alive HTTP/1.1 connection to an upstream endpoint.

It parses responses with httptools and appends the downstream bytes to the downstream
connection's output list; the downstream flushes once per upstream read, so a small
response leaves in a single write. After a 101 it becomes a byte tunnel.
"""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import httptools

from ..protocol.http1 import (R_CONNECTION, R_CONTENT_LENGTH, R_HOP,
                              R_TRANSFER_ENCODING, R_UPGRADE, RESPONSE_SPECIAL, connection_tokens, drop_named,
                              status_line)

if TYPE_CHECKING:
    from ..protocol.downstream import DownstreamH1, Exchange
    from .pool import Pool

_VIA = b"via: 1.1 fleetgate\r\n"


class UpstreamH1(asyncio.Protocol):
    __slots__ = ("pool", "transport", "parser", "ex", "ds", "idle_since", "got_bytes", "reason",
                 "hlines", "chunked", "has_length", "keep_alive", "interim", "upgraded", "tunnel",
                 "conn_tokens", "close_delimited", "reused", "discard", "fileno")

    def __init__(self, pool: "Pool") -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.ex: Exchange | None = None
        self.ds: DownstreamH1 | None = None
        self.idle_since = 0.0
        self.got_bytes = False
        self.reason = b""
        self.hlines: list[bytes] = []
        self.chunked = False
        self.has_length = False
        self.keep_alive = True
        self.interim = False
        self.upgraded = False
        self.tunnel: DownstreamH1 | None = None
        self.conn_tokens: list[bytes] | None = None
        self.close_delimited = False
        self.reused = False
        self.discard = 0  # status of a response being dropped for a retry
        self.fileno = -1

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
            ex.ds.response_complete(ex, reusable=False, upstream=None)
            ex.ds.flush()
            return
        ex.ds.upstream_failed(ex, "reset" if exc else "closed", reused=self.reused, got_bytes=self.got_bytes)
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
        self.ex = ex
        self.ds = ex.ds
        ex.upstream = self
        self.got_bytes = False
        self.hlines = []
        self.chunked = self.has_length = False
        self.keep_alive = True
        self.interim = self.upgraded = self.close_delimited = False
        self.conn_tokens = None
        self.discard = 0
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
        self.got_bytes = True
        ds = ex.ds
        ex.deadline = ds.now() + ex.route.policy.read_timeout
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self._start_tunnel(ex, data[upgrade.args[0]:])
        except httptools.HttpParserError:
            if self.ex is ex:
                self.abort()
                ds.upstream_failed(ex, "protocol", reused=False, got_bytes=True)
        ds.flush()

    def on_status(self, reason: bytes) -> None:
        self.reason = reason

    def on_header(self, name: bytes, value: bytes) -> None:
        kind = RESPONSE_SPECIAL.get(name.lower())
        if kind is None:
            self.hlines += (name, b": ", value, b"\r\n")
        elif kind == R_CONTENT_LENGTH:
            self.has_length = True
            self.hlines += (name, b": ", value, b"\r\n")
        elif kind == R_TRANSFER_ENCODING:
            self.chunked = b"chunked" in value.lower()
        elif kind == R_CONNECTION:
            self.conn_tokens = connection_tokens(value, self.conn_tokens)
        elif kind == R_UPGRADE and self.parser.get_status_code() == 101:
            self.hlines += (name, b": ", value, b"\r\n")
        # R_HOP, and Upgrade outside a 101: dropped (hop-by-hop)

    def on_headers_complete(self) -> None:
        ex = self.ex
        assert ex is not None
        parser = self.parser
        code = parser.get_status_code()
        if code < 200 and code != 101:
            self.interim = True  # 100/103: swallowed; the real response follows
            self.hlines = []
            return
        self.keep_alive = parser.should_keep_alive()
        ds = ex.ds
        lines = self.hlines
        if self.conn_tokens:
            lines = drop_named(lines, self.conn_tokens)
        if (code >= 400 or ds.ctx.health.endpoints) and not ds.response_head(ex, code):
            self.discard = code  # read it to its end, then retry elsewhere
            return
        ex.status = code
        ex.response_started = True
        ep = ex.endpoint
        cluster = ex.cluster = ep.cluster if ep is not None else ""
        ctx = ds.ctx
        cline = ctx._cluster_lines.get(cluster)
        if cline is None:
            cline = ctx.cluster_line(cluster)
        head = [b"HTTP/1.1 %d %s\r\n" % (code, self.reason) if self.reason else status_line(code)]
        head += lines
        head.append(cline)
        if ex.extra_resp:
            head.append(ex.extra_resp)
        if code == 101:
            self.upgraded = True
            head.append(b"connection: upgrade\r\n\r\n")
            ds.out.append(b"".join(head))
            return
        no_body = ex.is_head or code == 204 or code == 304
        if not no_body and not self.has_length:
            if self.chunked and ds.http11:
                head.append(b"transfer-encoding: chunked\r\n")
                ex.chunked_response = True
            elif not self.chunked:
                self.close_delimited = True
                ex.keep_alive = False
            else:  # chunked upstream, HTTP/1.0 client: close-delimited downstream
                ex.keep_alive = False
        if not ex.keep_alive:
            head.append(b"connection: close\r\n")
        elif not ds.http11:
            head.append(b"connection: keep-alive\r\n")
        head.append(b"\r\n")
        ds.out.append(b"".join(head))
        if ex.is_head:
            # llhttp cannot be told this answers a HEAD; finish here and do not reuse.
            self.keep_alive = False
            self._complete(ex)

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
            ex.ds.retry_after_status(ex, self.discard, self, self.keep_alive and ex.request_done)
            return
        if ex.chunked_response:
            ex.ds.out.append(b"0\r\n\r\n")
        self._complete(ex)

    def _complete(self, ex: "Exchange") -> None:
        self.ex = None
        reusable = self.keep_alive and ex.request_done and not self.close_delimited
        if reusable:
            self.reused = True
        ex.ds.response_complete(ex, reusable=reusable, upstream=self)

    def _start_tunnel(self, ex: "Exchange", rest: bytes) -> None:
        if not self.upgraded:
            self.abort()
            ex.ds.upstream_failed(ex, "protocol", reused=False, got_bytes=True)
            return
        self.ex = None
        self.tunnel = ex.ds
        ex.ds.start_tunnel(ex, self, rest)
