"""The downstream HTTP/1.1 connection: parse, route, forward, relay — no task per request.

httptools (llhttp) parses; callbacks build the upstream request head as a list of byte
pieces joined once; the response side appends to `out` and the connection flushes once
per upstream read. Pipelined requests queue behind the active one. Everything that can be
decided before the request (routes, endpoints, policy) was decided when the route table
was built.
"""
from __future__ import annotations

import asyncio
import logging
import random
import re
from collections import deque
from typing import TYPE_CHECKING

import httptools

from ..routing.table import Backend, Route, route as find_route
from ..upstream.balancer import affinity_id, choose_endpoint, hash_key
from ..upstream.connect import TLS_POOL_PREFIX, connect
from . import policy_hooks
from .http1 import (CONTINUE_100, DATE, H_CONNECTION, H_CONTENT_LENGTH,
                    H_EXPECT, H_HOST, H_REQUEST_ID, H_TRANSFER_ENCODING, H_UPGRADE, H_VIA,
                    H_XFF, IDEMPOTENT_METHODS, REQUEST_SPECIAL, connection_tokens, drop_named,
                    error_response, host_name, valid_host)

if TYPE_CHECKING:
    from ..context import GatewayContext
    from ..routing.policy import MirrorPolicy
    from ..routing.select import RequestView
    from ..routing.table import RouteTable, UpstreamEndpoint
    from ..upstream.connection import UpstreamH1

log = logging.getLogger("fleetgate.gateway")


ROUTE_CACHE_SIZE = 4096
PLAIN_HEAD_MIN = 200  # bytes; a browser's head is 400-800, curl's or wrk's under 100

# Request header names the proxy handles itself, at a line start of a lowercased head
# (optional whitespace before the colon, so an odd spelling never slips past).
_HANDLED = re.compile(rb"\n(" + b"|".join(re.escape(n) for n in REQUEST_SPECIAL) + rb")[ \t]*:")


class _HeadOnly:
    """What a second llhttp parser calls back: the same methods minus on_header. It
    parses (and validates) plain request heads whose header lines the connection then
    takes as one block, instead of one Python callback per header."""

    def __init__(self, ds: "DownstreamH1") -> None:
        self.on_url = ds.on_url
        self.on_headers_complete = ds._plain_headers_complete
        self.on_message_complete = ds.on_message_complete


def _route(table: "RouteTable", host: bytes, target: bytes) -> Route | None:
    """route() on raw bytes: Host lowercased with its port stripped, the query dropped."""
    q = target.find(b"?")
    path = target if q < 0 else target[:q]
    return find_route(table, host_name(host).lower().decode("latin-1"), path.decode("latin-1"))


def header_pairs(ex: "Exchange") -> list[tuple[bytes, bytes]]:
    """The forwarded request headers as (name, value), from either form of ex.hlines."""
    hl = ex.hlines
    if len(hl) == 1:  # one block of lines as received (the plain parser); else 4 pieces a header
        pairs = []
        for line in hl[0].split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name:
                pairs.append((name, value.strip(b" \t")))
        return pairs
    return [(hl[i], hl[i + 2]) for i in range(0, len(hl), 4)]


class Reject(Exception):
    """A request the gateway answers itself and then closes (limits, malformed input)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Exchange:
    """One request/response pair.

    Defaults live on the class so creating one per request sets only what differs (no
    __init__: on_url sets `ds` and `hlines`; `body` becomes a list only for requests that
    have one)."""

    method = b""
    target = b""
    url = b""  # the request target as received (httptools may hand it over in pieces)
    host: bytes | None = None
    content_length: int | None = None
    chunked_request = False
    conn_tokens: list[bytes] | None = None
    xff: bytes | None = None
    request_id: bytes | None = None  # the client's x-request-id, or ours once generated
    rid = 0  # our x-request-id's counter on the fast path (its bytes only go into the head)
    via: bytes | None = None
    expect = False
    special = False  # a request header beyond Host needs handling (framing, hop-by-hop, forwarding)
    upgrade: bytes | None = None
    head_done = False
    request_done = False
    keep_alive = True
    route: Route = None  # type: ignore[assignment]  # set once routed; None only for a 404
    head = b""
    body_size = 0
    replayable = True
    upstream: UpstreamH1 | None = None
    endpoint: UpstreamEndpoint | None = None
    tried: list[str] | None = None
    response_started = False
    chunked_response = False
    status = 0
    cluster = ""
    start = 0.0
    deadline = 0.0
    finished = False
    attempt = 0
    head_raw = 0  # head bytes read after the read that began it
    backend: Backend | None = None  # chosen by policy (canary...); None: the route's
    label = ""  # metrics label: the route's Ingress, or the canary's
    answer: tuple[int, str, bytes] | None = None  # a response the gateway gives itself
    extra_resp = b""  # response header lines a policy adds (CORS, affinity cookie)
    view: RequestView | None = None  # for routes whose policy reads the request
    mirror: MirrorPolicy | None = None  # set when this request is mirrored
    mirror_head = b""
    headers: dict[str, str] | None = None  # request headers some policy reads
    hard_deadline = 0.0  # mse `timeout`: total time including retries
    counted: str | None = None  # endpoint key counted in-flight (least_conn)
    sent = 0.0  # when the counted attempt was sent (its response time feeds ewma)
    free_tries = 0  # attempts that failed on stale pooled connections (not counted)
    timer_attempt = 0  # the attempt a precise deadline timer was set for
    body: list[bytes] = ()  # type: ignore[assignment]  # a list once the request has a body
    ds: "DownstreamH1"
    hlines: list[bytes]  # header lines to forward, as (name, ": ", value, CRLF) pieces


# Set on every request, in request-path order. CPython lets a class's instances share one
# key table of at most 30 attribute names, taken by the first names any instance sets;
# an instance that sets a name outside it pays for a private dict. Claim the table for
# these at import, before rarer paths (bodies, retries, policies) can take the places.
HOT_ATTRIBUTES = ("ds", "hlines", "url", "special", "counted", "extra_resp", "start", "host",
                  "head_done", "method", "keep_alive", "target", "request_done", "route", "label",
                  "rid", "head", "endpoint", "attempt", "deadline", "upstream", "status",
                  "response_started", "chunked_response", "cluster", "finished")


def _claim_shared_keys() -> None:
    seed = Exchange()
    for name in HOT_ATTRIBUTES:
        setattr(seed, name, None)


_claim_shared_keys()


class DownstreamH1(asyncio.Protocol):
    def __init__(self, ctx: "GatewayContext", scheme: bytes = b"http") -> None:
        self.ctx = ctx
        self.scheme = scheme  # of the listener: X-Forwarded-Proto, HTTPS redirects
        self.tls = scheme == b"https"  # (a flag: the request path reads it)
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)  # every request it cannot be sure of
        self.plain_parser = httptools.HttpRequestParser(_HeadOnly(self))  # see data_received
        self.feeding = self.parser  # the parser of the bytes being fed (for the head's facts)
        self.open = False  # `parser` is inside a message (a later read must go to it too)
        self.plain_host = b""
        self.plain_fields = b""
        self.peer = b""
        self.cur: Exchange | None = None  # being parsed
        self.active: Exchange | None = None  # being proxied
        self.queue: deque[Exchange] | None = None
        self.out: list[bytes] = []
        self.deadline = 0.0
        self.http11 = True
        self.tunnel: UpstreamH1 | None = None
        # bytes after an Upgrade request's head: held until the upstream answers 101 (then
        # they open the tunnel), dropped with the connection when it declines
        self.held: bytes | None = None
        self.began = 0.0  # when the head being parsed began (its first byte): the header timeout's start
        self.close_after = False
        self.final = b""  # a rejection to send once the in-flight response is done, before closing
        self.now = asyncio.get_event_loop().time
        self.header_timeout = ctx.limits.header_timeout
        self.max_line = ctx.limits.max_request_line
        self.max_headers = ctx.limits.max_header_bytes
        self.pools = ctx.pools.pools  # endpoint key -> Pool (the registry keeps this dict)
        self.rr = ctx.balancer.rr  # round-robin cursors by backend key
        self.forwarded = b""  # x-forwarded-for/-proto lines for requests that bring none

    # --- connection lifecycle --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]).encode() if peer else b""
        self.forwarded = b"x-forwarded-for: %s\r\nx-forwarded-proto: %s\r\n" % (self.peer, self.scheme)
        self.ctx.downstreams.add(self)
        self.deadline = self.now() + self.ctx.limits.header_timeout

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.ctx.downstreams.discard(self)
        if self.tunnel is not None:
            up, self.tunnel = self.tunnel, None
            up.tunnel = None
            up.close()
        ex = self.active
        if ex is not None:
            self.active = None
            ex.finished = True
            if ex.upstream is not None:
                ex.upstream.abort()  # the rest of the response has nowhere to go

    def pause_writing(self) -> None:
        up = self.tunnel or (self.active.upstream if self.active is not None else None)
        if up is not None and up.transport is not None:
            up.transport.pause_reading()

    def resume_writing(self) -> None:
        up = self.tunnel or (self.active.upstream if self.active is not None else None)
        if up is not None and up.transport is not None:
            up.transport.resume_reading()

    def flush(self) -> None:
        out = self.out
        if out:
            t = self.transport
            if t is not None:
                t.write(out[0] if len(out) == 1 else b"".join(out))
            out.clear()
        if self.close_after and self.active is None and self.transport is not None:
            if self.final:
                self.transport.write(self.final)
                self.final = b""
            self.transport.close()

    # --- reading ---------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            t = self.tunnel.transport
            if t is not None:
                t.write(data)
            return
        if self.held is not None:  # an upgrade awaits its answer: nothing is parsed or forwarded
            self.held += data
            return
        if self.close_after and self.active is None:
            return
        cur = self.cur
        # A read that is exactly one head with Host as its only handled header (no body,
        # nothing to strip) goes to the parser without per-header callbacks; llhttp still
        # validates it. Everything else, and everything while a message is open, goes to
        # the full parser. Short heads too: sorting a head costs about what the callbacks
        # of three or four headers do (measured), so only longer heads gain.
        parser = self.parser
        if (not self.open and len(data) >= PLAIN_HEAD_MIN and data.find(b"\r\n\r\n") == len(data) - 4
                and self._plain_head(data)):
            parser = self.plain_parser
        self.feeding = parser
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self._upgrade_requested(data[upgrade.args[0]:])
        except httptools.HttpParserCallbackError as err:
            cause = err.__context__
            if isinstance(cause, Reject):
                self._reject(cause.code, cause.reason)
            else:
                log.exception("gateway bug while handling a request", exc_info=cause)
                self._reject(500, "internal-error")
        except httptools.HttpParserError as err:
            if err.args == ("Pause on PRI/Upgrade",) and self.active is None and not self.queue:
                # HTTP/2 with prior knowledge (h2c): llhttp stopped on the connection preface
                from .h2 import preface_rest
                t = self.transport
                self.ctx.downstreams.discard(self)
                self.transport = None
                self._become_h2(t, preface_rest(data))  # type: ignore[arg-type]
                return
            log.debug("malformed request from %s: %s", self.peer, err)
            self._reject(400, "bad-request")
        else:
            if cur is not None and cur is self.cur and not cur.head_done:
                # httptools buffers a header line until it ends: bound a head that never does
                cur.head_raw += len(data)
                limits = self.ctx.limits
                if cur.head_raw > limits.max_header_bytes + limits.max_request_line:
                    self._reject(431, "headers-too-large")
        if self.out or self.close_after:
            self.flush()

    def _become_h2(self, transport: asyncio.Transport, first: bytes) -> None:
        """Hand the connection to the HTTP/2 framing layer (which runs each stream
        through a DownstreamH1 of its own)."""
        from .h2 import DownstreamH2
        proto = DownstreamH2(self.ctx, self.scheme)
        transport.set_protocol(proto)
        proto.connection_made(transport)
        proto.data_received(first)

    def _plain_head(self, data: bytes) -> bool:
        """Whether data is a head the plain parser may take: Host is the only handled
        name and it appears once; keeps Host's value and the other header lines."""
        low = data.lower()
        if _HANDLED.findall(low) != [b"host"]:
            return False
        at = low.find(b"\nhost:")
        if at < 0:  # "Host :": leave the odd spelling to the full parser
            return False
        eol = data.find(b"\r\n", at)
        self.plain_host = data[at + 6:eol].strip(b" \t")  # as llhttp: OWS either side
        first = data.find(b"\r\n")
        self.plain_fields = data[first + 2:at + 1] + data[eol + 2:-2]
        return True

    def _plain_headers_complete(self) -> None:
        ex: Exchange = self.cur  # type: ignore[assignment]  # set by on_url
        ex.host = self.plain_host
        ex.hlines = [self.plain_fields]  # the header lines as one block
        self.on_headers_complete()

    def on_message_begin(self) -> None:
        # (only the full parser calls this: it tells data_received a message is open). The
        # header timeout runs from here, a head's first byte, to its end (nginx's
        # client_header_timeout): a head dripped a byte at a time does not restart it.
        self.open = True
        self.began = now = self.now()
        if self.active is None:
            self.deadline = now + self.header_timeout

    def _reject(self, code: int, reason: str) -> None:
        """Answer a request we cannot proceed with, then close; an in-flight response is
        finished first unless the bad bytes are its own request's body."""
        self.close_after = True
        self.cur = None
        if self.queue:
            self.queue.clear()
        if self.transport is not None:
            self.transport.pause_reading()
        ex = self.active
        if ex is None:
            self.out.append(error_response(code, reason, close=True))
            self.ctx.metrics.observe("", "", code, 0.0)
        elif ex.request_done:
            # a later pipelined request is bad: answered after the in-flight response (flush)
            self.final = error_response(code, reason, close=True)
            self.ctx.metrics.observe("", "", code, 0.0)
        else:
            # The bad bytes are the in-flight request's own body: the upstream would wait
            # for the rest forever. Drop it and answer now, or cut a response under way.
            up = ex.upstream
            if up is not None:
                ex.upstream = None
                up.abort()
            if ex.response_started:
                ex.finished = True
                self.active = None
            else:
                self._generated(ex, code, reason)

    def on_url(self, url: bytes) -> None:
        # The first callback of every request (no on_message_begin: one call less each)
        ex = self.cur
        if ex is None:
            ex = self.cur = Exchange()
            ex.ds = self
            ex.hlines = []
            ex.url = url
            # read on every request: set here so the reads never fall back to the class
            ex.special = False
            ex.counted = None
            ex.extra_resp = b""
            ex.start = self.began if self.open else self.now()  # the plain parser: a whole head, now
            if self.active is None:
                self.deadline = ex.start + self.header_timeout
        else:
            ex.url += url  # the target came in pieces

    def on_header(self, name: bytes, value: bytes) -> None:
        # Sizes are checked once the head is complete (and for heads that span reads, in
        # data_received); here only what must be looked at: Host, and the rare names.
        ex: Exchange = self.cur  # type: ignore[assignment]  # set by on_url
        hlines = ex.hlines
        if hlines is None:
            return  # a trailer field (the head is done): dropped, it never frames nor routes
        kind = REQUEST_SPECIAL.get(name.lower())
        if kind is None:
            hlines += (name, b": ", value, b"\r\n")
        elif kind == H_HOST:
            if ex.host is not None:  # RFC 9112 §3.2: more than one Host is a 400, equal or not
                raise Reject(400, "duplicate-host")
            ex.host = value
        else:
            self._special_header(ex, kind, value)

    def _special_header(self, ex: Exchange, kind: int, value: bytes) -> None:
        ex.special = True
        if kind == H_CONTENT_LENGTH:
            try:
                n = int(value)
            except ValueError:
                raise Reject(400, "bad-content-length") from None
            if ex.content_length is not None and ex.content_length != n:
                raise Reject(400, "conflicting-content-length")
            ex.content_length = n
        elif kind == H_TRANSFER_ENCODING:
            ex.chunked_request = True
            if value.strip().lower() != b"chunked":
                raise Reject(501 if b"chunked" not in value.lower() else 400, "unsupported-transfer-encoding")
        elif kind == H_CONNECTION:
            ex.conn_tokens = connection_tokens(value, ex.conn_tokens)
        elif kind == H_XFF:
            ex.xff = value if ex.xff is None else ex.xff + b", " + value
        elif kind == H_REQUEST_ID:
            ex.request_id = value
        elif kind == H_VIA:
            ex.via = value if ex.via is None else ex.via + b", " + value
        elif kind == H_EXPECT:
            if value.lower() != b"100-continue":
                raise Reject(417, "expectation-failed")
            ex.expect = True
        elif kind == H_UPGRADE:
            ex.upgrade = value
        # H_HOP, H_XFP, H_XFH: dropped (hop-by-hop, or set by us)

    def on_headers_complete(self) -> None:
        ex: Exchange = self.cur  # type: ignore[assignment]  # set by on_url
        ctx = self.ctx
        parser = self.feeding
        method = ex.method = parser.get_method()
        keep_alive = parser.should_keep_alive()
        special = ex.special
        # Without a Connection header (that would make the request special), llhttp keeps
        # an HTTP/1.1 connection alive and an HTTP/1.0 one not: the version, for free.
        http11 = self.http11 = parser.get_http_version() == "1.1" if special else keep_alive
        if not http11 and parser.get_http_version() != "1.0":
            raise Reject(505, "http-version-not-supported")  # HTTP/0.9 (llhttp takes it) and 2.0
        ex.keep_alive = keep_alive and not ctx.draining
        url = target = ex.url
        fields = b"".join(ex.hlines)
        if len(url) > self.max_line:
            raise Reject(414, "uri-too-long")
        if len(fields) > self.max_headers:
            raise Reject(431, "headers-too-large")
        if method == b"CONNECT":
            raise Reject(405, "connect-not-allowed")
        if url[0] != 47:  # not origin form ("/...")
            target = self._other_target(ex, url)
        host = ex.host
        if host is None:
            if http11:
                raise Reject(400, "missing-host")
            host = ex.host = b""
        if special:
            if ex.chunked_request:
                if ex.content_length is not None:
                    raise Reject(400, "content-length-with-transfer-encoding")
                if not http11:  # RFC 9112 §6.1: framing an HTTP/1.0 peer may not share
                    raise Reject(400, "transfer-encoding-in-http10")
            if ex.upgrade is not None:
                if not parser.should_upgrade():
                    ex.upgrade = None  # Upgrade without `Connection: upgrade` is no upgrade: drop it
                else:
                    ex.keep_alive = False  # declined or not, nothing after it is parsed as a request
            if ex.conn_tokens:
                ex.hlines = drop_named(ex.hlines, ex.conn_tokens)
                fields = b"".join(ex.hlines)
            has_body = ex.chunked_request or bool(ex.content_length)
            if has_body:
                ex.body = []
            else:
                ex.request_done = True
        else:
            has_body = False
            ex.request_done = True
        table = ctx.table
        key = (host, target)
        try:
            r = table.cache[key]
        except KeyError:
            # validated once per (host, target) a table caches: a bad Host never reaches routing
            if not valid_host(host):
                raise Reject(400, "bad-host") from None
            r = _route(table, host, target)
            if len(table.cache) >= ROUTE_CACHE_SIZE:
                table.cache.clear()
            table.cache[key] = r
        if r is None:
            ex.head_done = True
            ex.target = target
        else:
            ex.route = r
            ex.label = r.ingress
            policy = r.policy
            if (policy.fast or (self.tls and policy.fast_tls)) and not special:
                # the common request: no body, nothing to rewrite; its upstream head in one format
                rid = ex.rid = ctx.rid = ctx.rid + 1
                ex.head = (b"%s %s HTTP/1.1\r\nhost: %s\r\n%s%sx-forwarded-host: %s\r\n"
                           b"x-request-id: %s%x\r\nvia: 1.1 fleetgate\r\n\r\n") % (
                    method, target, host, fields, self.forwarded, host, ctx.rid_prefix, rid)
                self.cur = None  # no body: the request is complete (on_message_complete has nothing to do)
                if self.active is not None:
                    self._enqueue(ex)
                    return
                if not ctx.health.down and method in IDEMPOTENT_METHODS and self._fast_send(ex, r):
                    return
                self._start(ex)
                return
            ex.head_done = True  # (the fast path above needs neither: it is done with the request)
            ex.target = target
            prepared = self._prepare(ex, r, table, target, host)
            if prepared is None:
                r = None  # answered by the gateway (ex.answer)
            else:
                upstream_target, upstream_host = prepared
        if ex.request_id is None:
            ctx.rid += 1
            ex.request_id = b"%s%x" % (ctx.rid_prefix, ctx.rid)
        if r is not None:
            # the upstream request head, joined once
            parts = [method, b" ", upstream_target, b" HTTP/1.1\r\nhost: ", upstream_host, b"\r\n"]
            parts.append(fields)
            parts += (b"x-forwarded-for: ", ex.xff + b", " + self.peer if ex.xff else self.peer,
                      b"\r\nx-forwarded-proto: ", self.scheme, b"\r\nx-forwarded-host: ", host,
                      b"\r\nx-request-id: ", ex.request_id,
                      b"\r\nvia: ", ex.via + b", 1.1 fleetgate\r\n" if ex.via else b"1.1 fleetgate\r\n")
            if ex.chunked_request:
                parts.append(b"transfer-encoding: chunked\r\n")
            elif ex.content_length is not None:
                parts.append(b"content-length: %d\r\n" % ex.content_length)
            if ex.upgrade is not None:
                parts += (b"connection: upgrade\r\nupgrade: ", ex.upgrade, b"\r\n")
                ex.keep_alive = False
            parts.append(b"\r\n")
            ex.head = b"".join(parts)
            if ex.mirror is not None:
                ex.mirror_head = policy_hooks.mirror_head(ex, b"".join(parts[6:]), upstream_target)
        ex.hlines = None  # type: ignore[assignment]
        if self.active is None:
            if ex.expect and has_body and r is not None:
                self.out.append(CONTINUE_100)
            if (r is not None and ex.answer is None and r.policy.fast_send and not ctx.health.down
                    and method in IDEMPOTENT_METHODS and self._fast_send(ex, r)):
                return
            self._start(ex)
        else:
            self._enqueue(ex)

    def _enqueue(self, ex: Exchange) -> None:
        """A pipelined request waits for the responses before it."""
        if self.queue is None:
            self.queue = deque()
        self.queue.append(ex)
        if self.transport is not None:
            self.transport.pause_reading()  # pipelining: bound what we buffer

    def _other_target(self, ex: Exchange, url: bytes) -> bytes:
        """A request target not in origin form: `*`, or absolute form (its authority
        becomes the host)."""
        if url == b"*":
            return url
        if url[:7].lower() == b"http://" or url[:8].lower() == b"https://":
            rest = url[url.index(b"//") + 2:]
            slash = rest.find(b"/")
            ex.host = rest if slash < 0 else rest[:slash]
            return b"/" if slash < 0 else rest[slash:]
        raise Reject(400, "bad-request-target")

    def _prepare(self, ex: Exchange, r: Route, table: "RouteTable", target: bytes,
                 host: bytes) -> tuple[bytes, bytes] | None:
        """Route-level checks and per-request policy for requests off the fast path.
        Returns (upstream target, upstream host), or None when the gateway answers itself."""
        policy = r.policy
        limit = policy.max_body_size or self.ctx.limits.max_body_size
        if limit is not None and ex.content_length is not None and ex.content_length > limit:
            raise Reject(413, "request-too-large")
        if policy.total_timeout is not None:
            ex.hard_deadline = ex.start + policy.total_timeout
        if not policy.per_request:
            return target, host
        want = table.request_headers
        if want:
            headers = ex.headers = {}
            for name, value in header_pairs(ex):
                name = name.lower()
                if name in want:
                    headers[name.decode("latin-1")] = value.decode("latin-1")
        q = target.find(b"?")
        path = target if q < 0 else target[:q]
        q_str = "" if q < 0 else target[q + 1:].decode("latin-1")
        return policy_hooks.prepare(self, ex, r, path.decode("latin-1"), q_str)

    def on_body(self, body: bytes) -> None:
        ex = self.cur
        if ex is None or ex.finished:
            return
        if ex.chunked_request:
            piece = b"%x\r\n%s\r\n" % (len(body), body)
        else:
            piece = body
        ex.body_size += len(body)
        limit = ex.route.policy.max_body_size or self.ctx.limits.max_body_size
        if limit is not None and ex.body_size > limit:
            raise Reject(413, "request-too-large")
        up = ex.upstream
        if up is not None and up.ex is ex and up.transport is not None:
            up.transport.write(piece)
            if ex.replayable:
                if ex.body_size <= self.ctx.limits.retry_buffer and not ex.response_started:
                    ex.body.append(piece)
                else:
                    ex.replayable = False
                    ex.body = []
        else:
            ex.body.append(piece)
            if ex.body_size > self.ctx.limits.retry_buffer:
                ex.replayable = False

    def on_message_complete(self) -> None:
        self.open = False
        ex = self.cur
        self.cur = None
        if ex is None:
            return
        ex.request_done = True
        if ex.mirror is not None:
            self._submit_mirror(ex)
        if ex.finished:
            return
        if ex.chunked_request:
            up = ex.upstream
            if up is not None and up.ex is ex and up.transport is not None:
                up.transport.write(b"0\r\n\r\n")
            if ex.replayable or up is None:
                ex.body.append(b"0\r\n\r\n")

    # --- proxying ---------------------------------------------------------------------

    def _start(self, ex: Exchange) -> None:
        self.active = ex
        self.deadline = 0.0
        if ex.answer is not None:
            code, reason, extra = ex.answer
            self._generated(ex, code, reason, extra)
            return
        if ex.route is None:
            self._generated(ex, 404, "no-route")
            return
        now = self.now()
        ep = self._pick(ex, now)
        if ep is None:
            self._generated(ex, 503, "no-healthy-upstream")
            return
        self._send(ex, ep, now)

    def _fast_send(self, ex: Exchange, r: Route) -> bool:
        """The common case in one call: plain round robin, every endpoint up, a warm pooled
        connection. False (nothing done) when the backend has no endpoint."""
        backend = ex.backend or r.backend
        if backend is None:
            return False
        eps = backend.endpoints
        if not eps:
            return False
        rr = self.rr
        key = backend.key
        n = rr.get(key, 0)
        rr[key] = n + 1
        ep = eps[n % len(eps)]
        self.active = ex
        self.deadline = 0.0
        pool = self.pools.get(ep.key)
        if pool is not None and pool.idle:
            conn = pool.idle.pop()
            t = conn.transport
            if t is not None and not t.is_closing():
                ex.endpoint = ep
                ex.attempt = 1
                ex.deadline = ex.start + r.policy.read_timeout
                conn.send(ex, ex.head)
                return True
        self._send(ex, ep, self.now())  # no warm connection: the general send
        return True

    def _pick(self, ex: Exchange, now: float) -> "UpstreamEndpoint | None":
        """The endpoint for ex's next attempt: plain round robin on the fast path, else the
        balancer with member-cluster policy, health and retries; the `default-backend`
        annotation when the backend has no endpoint at all."""
        route = ex.route
        policy = route.policy
        backend = ex.backend or route.backend
        ctx = self.ctx
        health = ctx.health
        if backend is not None and policy.plain_pick and not health.down and not ex.tried:
            eps = backend.endpoints
            if eps:
                return eps[ctx.balancer.next_rr(backend.key) % len(eps)]
        if backend is None or not backend.endpoints or not ctx.usable(backend):
            fallback = policy.default_backend.backend if policy.default_backend is not None else None
            if fallback is not None and fallback.endpoints and (backend is None or not backend.endpoints
                                                                or ctx.usable(fallback)):
                backend = ex.backend = fallback
        if backend is None:
            return None
        view = ex.view
        header_cluster = hash_value = affinity = None
        if view is not None:
            if policy.cluster_by_header:
                header_cluster = view.header(policy.cluster_by_header)
            if policy.hash_by:
                hash_value = hash_key(policy, view.uri, view.host, view.remote_addr, view.header, view.arg)
            if policy.affinity is not None:
                affinity = view.cookie(policy.affinity.name)
        is_up = (lambda k: health.is_up(k, now)) if health.down else None  # None: all up, skip the checks
        ep = choose_endpoint(backend, policy, ctx.balancer, is_up, ex.tried or (),
                             random.random(), random.random(), header_cluster=header_cluster,
                             hash_value=hash_value, affinity=affinity, now=now)
        if ep is not None and policy.affinity is not None:
            cookie = affinity_id(ep.key)
            if cookie != affinity:
                a = policy.affinity
                ex.extra_resp += (f"set-cookie: {a.name}={cookie}; Path={a.path or '/'}; HttpOnly"
                                  + (f"; Max-Age={a.max_age}" if a.max_age else "") + "\r\n").encode()
        return ep

    def _send(self, ex: Exchange, ep: "UpstreamEndpoint", now: float) -> None:
        ex.endpoint = ep
        ex.attempt += 1
        if ex.route.policy.load_balance != "round_robin":
            active = self.ctx.balancer.active
            self._uncount(ex)
            active[ep.key] = active.get(ep.key, 0) + 1
            ex.counted = ep.key
            ex.sent = now
        policy = ex.route.policy
        ex.deadline = now + policy.connect_timeout
        tls = policy.upstream_tls
        pool = self.ctx.pools.get(TLS_POOL_PREFIX + ep.key if tls else ep.key)
        conn = pool.acquire(verify=ex.method not in IDEMPOTENT_METHODS)
        if conn is not None:
            ex.deadline = now + policy.read_timeout
            body = ex.body
            conn.send(ex, ex.head + b"".join(body) if body else ex.head)
            return
        connect(self, ex, ep, pool, tls=tls)  # slow path: a task per new connection

    def connected(self, ex: Exchange, conn: "UpstreamH1") -> None:
        """A new upstream connection for ex is ready (called by upstream.connect)."""
        ex.deadline = self.now() + ex.route.policy.read_timeout
        conn.reused = False
        body = ex.body
        conn.send(ex, ex.head + b"".join(body) if body else ex.head)

    def upstream_failed(self, ex: Exchange, kind: str, *, reused: bool, got_bytes: bool) -> None:
        """The upstream of ex failed: connect error, reset, timeout or protocol error.
        Retry on another endpoint (preferring another member cluster) when nothing reached
        the client and the retry policy allows it; eject the endpoint for the others."""
        if ex.finished or self.active is not ex:
            return
        ex.upstream = None
        ctx = self.ctx
        now = self.now()
        ep = ex.endpoint
        connect_failed = kind in ("connect", "connect-timeout")
        stale = reused and not got_bytes and not connect_failed  # a pooled connection the server closed
        if ep is not None and not stale and kind != "protocol":
            ctx.eject(ep, ex.backend or ex.route.backend, now)
        if not ex.response_started:
            if self._retry(ex, ep, now, connect_failed=connect_failed, stale=stale,
                           timeout=kind == "timeout"):
                return
            if kind == "timeout":
                self._generated(ex, 504, "upstream-timeout")
            elif kind == "connect-timeout":
                self._generated(ex, 504, "upstream-connect-timeout")
            elif kind == "connect":
                self._generated(ex, 502, "upstream-connect-error")
            else:
                self._generated(ex, 502, "upstream-error")
            return
        # The response already started: all we can do is cut the connection so the
        # client sees an incomplete response rather than a wrong one.
        ex.finished = True
        self.active = None
        self._uncount(ex)
        ctx.metrics.observe(ex.label, ex.cluster, ex.status, now - ex.start)
        self.flush()
        if self.transport is not None:
            self.transport.close()

    def _retry(self, ex: Exchange, ep: "UpstreamEndpoint | None", now: float, *, connect_failed: bool,
               stale: bool, timeout: bool = False, status: int = 0) -> bool:
        """Send ex again to another endpoint if the policy allows; True when it did.
        Connect failures are retried whatever the method (nothing reached the upstream);
        other failures only for idempotent methods unless `non_idempotent`."""
        retry = ex.route.policy.retry
        if ep is None or not ex.replayable or (retry.off and not stale):
            return False
        if stale and ex.method not in IDEMPOTENT_METHODS:
            return False  # the server may have seen it before it closed
        if not (connect_failed or stale):
            if not (retry.non_idempotent or ex.method in IDEMPOTENT_METHODS):
                return False
            if timeout and not retry.on_timeout:
                return False
            if status and status not in retry.on_status:
                return False
            if not timeout and not status and not retry.on_error:
                return False
        if retry.timeout is not None and now - ex.start > retry.timeout:
            return False
        if ex.hard_deadline and now >= ex.hard_deadline:
            return False
        tried = ex.tried
        if tried is None:
            tried = ex.tried = []
        tried.append(ep.key)  # the retry goes elsewhere, preferring another member cluster
        if stale:
            ex.free_tries += 1  # a pooled connection the server had closed costs no try
        if len(tried) >= retry.tries + ex.free_tries:
            return False
        nxt = self._pick(ex, now)
        if nxt is None and stale:
            tried.remove(ep.key)  # no other endpoint: a fresh connection to the same one
            nxt = self._pick(ex, now)
        if nxt is None:
            return False
        self.ctx.metrics.retry(nxt.cluster)
        self._send(ex, nxt, now)
        return True

    def response_head(self, ex: Exchange, code: int) -> bool:
        """The upstream answered `code`: feed outlier detection; False when the response is
        to be dropped and the request retried instead (proxy-next-upstream http_5xx)."""
        ep = ex.endpoint
        ctx = self.ctx
        if ep is None:
            return True
        if code >= 500 or ep.key in ctx.health.endpoints:
            backend = ex.backend or ex.route.backend
            ctx.health.record_status(ep.key, code, (e.key for e in backend.endpoints) if backend else (),
                                     ex.route.policy.consecutive_5xx, self.now())
        if code in ex.route.policy.retry.on_status and ex.request_done:
            return not self._can_retry_status(ex, code)
        return True

    def _can_retry_status(self, ex: Exchange, code: int) -> bool:
        retry = ex.route.policy.retry
        if retry.off or not ex.replayable or not (retry.non_idempotent or ex.method in IDEMPOTENT_METHODS):
            return False
        return len(ex.tried or ()) + 1 < retry.tries + ex.free_tries

    def retry_after_status(self, ex: Exchange, code: int, upstream: "UpstreamH1 | None", reusable: bool) -> None:
        """The dropped response has been read to its end: release the connection (None: the
        connection pools itself once its read is parsed), retry."""
        now = self.now()
        ex.upstream = None
        if upstream is not None:
            if reusable:
                upstream.pool.release(upstream, now)
            else:
                upstream.close()
        if not self._retry(ex, ex.endpoint, now, connect_failed=False, stale=False, status=code):
            self._generated(ex, 502, "upstream-error")

    def _uncount(self, ex: Exchange) -> None:
        if ex.counted is not None:
            active = self.ctx.balancer.active
            active[ex.counted] = active.get(ex.counted, 1) - 1
            ex.counted = None

    def response_complete(self, ex: Exchange, reusable: bool, upstream: "UpstreamH1 | None") -> None:
        ex.finished = True
        ctx = self.ctx
        now = self.now()
        if upstream is not None:
            if reusable:
                upstream.pool.release(upstream, now)
            else:
                upstream.close()
        if ex.counted is not None:
            ctx.balancer.observe(ex.counted, now - ex.sent, now)  # peak EWMA's sample
            self._uncount(ex)
        ctx.metrics.observe(ex.label, ex.cluster, ex.status, now - ex.start)
        if ex.keep_alive and not self.queue and not ctx.draining:
            self.active = None  # the common end of a keep-alive exchange: wait for the next
            self.deadline = now + (self.header_timeout if self.cur is not None else ctx.limits.idle_timeout)
            return
        self._next(ex, now)

    def _generated(self, ex: Exchange, code: int, reason: str, extra: bytes = b"") -> None:
        """Answer ex ourselves (404/502/503/504...), in order with pipelined responses."""
        ex.finished = True
        ex.status = code
        self._uncount(ex)
        if not ex.request_done and ex.head_done:
            ex.keep_alive = False  # the unread body would be taken for the next request
        close = not ex.keep_alive or self.ctx.draining
        if not close and not self.http11:
            extra += b"connection: keep-alive\r\n"
        rid = ex.request_id or (self.ctx.rid_prefix + b"%x" % ex.rid if ex.rid else b"")
        self.out.append(error_response(code, reason, close=close, request_id=rid,
                                       extra=extra + ex.extra_resp))
        now = self.now()
        self.ctx.metrics.observe(ex.label, "", code, now - ex.start)
        self._next(ex, now)

    def _next(self, ex: Exchange, now: float) -> None:
        self.active = None
        if not ex.keep_alive or self.ctx.draining:
            self.close_after = True
            if self.transport is not None:
                self.transport.pause_reading()
            return
        q = self.queue
        if q:
            nxt = q.popleft()
            if not q and self.transport is not None:
                self.transport.resume_reading()
            self._start(nxt)
            return
        self.deadline = now + (self.ctx.limits.header_timeout if self.cur is not None
                               else self.ctx.limits.idle_timeout)

    def _submit_mirror(self, ex: Exchange) -> None:
        """Fire and forget a copy (a body larger than the retry buffer is not mirrored)."""
        m = ex.mirror
        ex.mirror = None
        if m is None or (m.request_body and not ex.replayable):
            return
        body = b"".join(ex.body) if m.request_body and ex.body else b""
        loop = self.ctx.loop or asyncio.get_running_loop()
        if m.url_host is not None:
            self.ctx.mirrors.submit(m.url_host, m.url_port, "external", ex.mirror_head + body, loop)
            return
        backend = m.service.backend if m.service is not None else None
        if backend is None or not backend.endpoints:
            self.ctx.mirrors._count("", "no-endpoint")
            return
        eps = backend.endpoints
        ep = eps[self.ctx.balancer.next_rr(backend.key) % len(eps)]
        self.ctx.mirrors.submit(ep.address, ep.port, ep.cluster, ex.mirror_head + body, loop)

    # --- upgrades (WebSocket and other tunnels) ------------------------------------------

    def _upgrade_requested(self, rest: bytes) -> None:
        """llhttp stopped after an Upgrade request: what follows belongs to the new protocol
        only if the upstream agrees (101); until then it is held and reading pauses. When the
        upstream declines, the connection closes with the response (the request was made
        keep_alive=False): those bytes are never parsed as requests nor forwarded."""
        self.held = (self.held or b"") + rest
        if self.transport is not None:
            self.transport.pause_reading()

    def start_tunnel(self, ex: Exchange, up: "UpstreamH1", rest: bytes) -> None:
        ex.finished = True
        self.active = None
        self.tunnel = up
        self.deadline = 0.0
        self.ctx.metrics.observe(ex.label, ex.cluster, 101, self.now() - ex.start)
        if rest:
            self.out.append(rest)
        held, self.held = self.held, None
        if held and up.transport is not None:
            up.transport.write(held)  # the upstream switched: the held bytes are the tunnel's
        if self.transport is not None:
            self.transport.resume_reading()

    def tunnel_closed(self) -> None:
        self.tunnel = None
        self.flush()
        if self.transport is not None:
            self.transport.close()

    # --- timeouts (driven by the server's sweeper) ------------------------------------

    def check_timeouts(self, now: float, horizon: float = 0.0) -> None:
        """Called by the server's sweeper every interval; an upstream deadline that falls
        before the next sweep (now + horizon) gets a precise one-off timer, so timeouts
        are exact while the request path schedules no timer of its own."""
        ex = self.active
        if ex is not None:
            due = ex.deadline
            if ex.hard_deadline and not ex.response_started and (not due or ex.hard_deadline < due):
                due = ex.hard_deadline
            if due and now >= due:
                self._upstream_timeout(ex)
            elif due and due < now + horizon and ex.timer_attempt != ex.attempt:
                ex.timer_attempt = ex.attempt
                loop = self.ctx.loop or asyncio.get_running_loop()
                loop.call_at(due, self._timer_fired, ex, ex.attempt)
            return
        if self.tunnel is None and self.deadline and now > self.deadline:
            if self.cur is not None and not self.cur.head_done:
                self.out.append(error_response(408, "request-timeout", close=True))
                self.flush()
            if self.transport is not None:
                self.transport.close()

    def _timer_fired(self, ex: Exchange, attempt: int) -> None:
        if self.active is not ex or ex.attempt != attempt or ex.finished:
            return
        ex.timer_attempt = 0
        now = self.now()
        due = ex.deadline
        if ex.hard_deadline and not ex.response_started and (not due or ex.hard_deadline < due):
            due = ex.hard_deadline
        if due and now >= due:
            self._upstream_timeout(ex)
        # else: a read moved the deadline on; the sweeper keeps watching

    def _upstream_timeout(self, ex: Exchange) -> None:
        now = self.now()
        up = ex.upstream
        if ex.hard_deadline and now >= ex.hard_deadline and not ex.response_started:
            if up is not None:
                up.abort()
            ex.upstream = None
            self._generated(ex, 504, "upstream-timeout")
        else:
            kind = "timeout" if up is not None else "connect-timeout"
            if up is not None:
                up.abort()
            self.upstream_failed(ex, kind, reused=False, got_bytes=True)
        self.flush()

    def drain(self) -> None:
        """Graceful shutdown: close now if idle, else after the current response."""
        if self.active is None and self.cur is None and self.tunnel is None:
            if self.transport is not None:
                self.transport.close()
        else:
            self.close_after = True


__all__ = ["DownstreamH1", "Exchange", "Reject", "DATE"]
