"""One HTTP/2 request stream proxied to an HTTP/1.1 upstream, with no HTTP/1.1 request
engine in between.

The stream's decoded headers become the codec's RequestHead directly (no HTTP/1.1 request
bytes are synthesised and parsed again), so the upstream head is one `upstream_head` call
as on HTTP/1.1. Routing (the table's memo), the route's policy plan (Planning), and the
attempts (the endpoint pick, send, retries, failures, timeouts, the request body:
attempts.py) are DownstreamH1's own code, not a copy; the pooled HTTP/1.1 upstream connections
call back through the `Downstream` protocol (gateway/exchange.py), which H2Stream
implements for one stream: the response bytes they queue in `out` become HEADERS and DATA
frames at the next flush, and the connection writes once per loop turn (DownstreamH2.schedule).

Validation the HTTP/1.1 parser did on the synthesised head is kept: the method, target
and authority are checked when a (authority, path) pair first misses the route memo (a
pair in the memo was validated before it went in), the forwarded header block on every
request with one C-level regex match; the HTTP/2 layer already refused CR, LF and NUL.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import h2.errors

from .. import exchange as _exchange
from ..codec import ChunkedDecoder, RequestHead, upstream_head
from ..exchange import DONE, RESPONDING, SENT, Exchange, Reject
from ..routing.table import Route
from ..upstream import decide
from . import policy_hooks
from .attempts import Attempts
from .http1 import error_response
from .planning import Planning

if TYPE_CHECKING:
    from ..upstream.connection import UpstreamH1

IDEMPOTENT_METHODS = decide.IDEMPOTENT_METHODS
_MISS = object()
_NEW = tuple.__new__  # a RequestHead without its Python-level __new__ (it is a NamedTuple)

# Request header names the stream reads instead of forwarding (the codec's REQUEST_DROP, and
# cookie, which HTTP/2 may split and HTTP/1.1 wants on one line: RFC 9113 8.2.3).
_SPECIAL = frozenset((
    b"host", b"content-length", b"transfer-encoding", b"connection", b"keep-alive", b"proxy-connection", b"te",
    b"trailer", b"upgrade", b"proxy-authorization", b"proxy-authenticate", b"x-forwarded-for",
    b"x-forwarded-proto", b"x-forwarded-host", b"x-request-id", b"via", b"expect", b"cookie", b"content-type"))
# the forwarded block: token names, values of field-vchar, SP and HTAB (no CTL: RFC 9110 5.5)
_FIELDS = re.compile(rb"(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+: [^\x00-\x08\x0a-\x1f\x7f]*\r\n)*")
_METHOD = re.compile(rb"[A-Z_-]{1,32}")
_TARGET = re.compile(rb"/[!-\"$-~]*")  # origin form: visible ASCII but '#'
_HOST = re.compile(rb"(?:(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*|\[[0-9A-Fa-f:.vV]+\])(?::[0-9]*)?")
_KNOWN_METHODS = frozenset((b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"TRACE"))
_INTERNAL_ERROR = h2.errors.ErrorCodes.INTERNAL_ERROR
_GRPC_NO_ROUTE = [(b":status", b"200"), (b"content-type", b"application/grpc"), (b"grpc-status", b"12"),
                  (b"grpc-message", b"no-route"), (b"x-fleetgate-reason", b"no-route")]
_REFUSED_HEAD = RequestHead(b"", b"", 11, b"", -1, False, True, None, False, None, None, None, b"", 0)


def check_target(method: bytes, path: bytes, authority: bytes, max_line: int) -> None:
    """The request line's rules as the HTTP/1.1 parser applies them (Reject when broken)."""
    if len(method) + len(path) + 10 > max_line:
        raise Reject(414, "uri-too-long")
    if not (_TARGET.fullmatch(path) or (path == b"*" and method == b"OPTIONS")):
        raise Reject(400, "bad-request-target")
    if authority[:1] == b":" or _HOST.fullmatch(authority) is None:
        raise Reject(400, "bad-host")


class H2Stream(Attempts, Planning):
    """One non-gRPC HTTP/2 stream and its exchange (see the module docstring). DownstreamH2
    calls request_data / request_end / connection_lost / pause_writing / resume_writing
    / check_timeouts; the upstream connection calls the `Downstream` protocol."""

    grpc = False
    http11 = True  # the upstream connection frames for an HTTP/1.1 client; we re-frame as HTTP/2
    started = False  # final response HEADERS sent
    ended = False  # END_STREAM sent or the stream reset
    end_pending = False  # END_STREAM waits for held DATA
    upstream_paused = False
    reading = True
    unacked = 0  # request DATA bytes not yet credited back (reading paused)
    chunked = False  # the request body goes upstream chunked (no content-length)
    decoder: ChunkedDecoder | None = None  # a chunked upstream response being re-framed
    ex: Exchange | None = None
    active: Exchange | None = None
    grpc_request = False
    sent = 0  # response bytes queued for the client, in their HTTP/1.1 form (metrics)
    logged = 0  # ... of them, accounted to the finished request already
    deadline = 0.0  # (an HTTP/1.1 connection's client deadline: none on a stream)

    def __init__(self, conn: Any, stream_id: int) -> None:
        self.conn = conn
        ctx = self.ctx = conn.ctx
        self.stream_id = stream_id
        self.out: list[bytes] = []
        self.held: list[bytes] = []  # response DATA beyond the client's window
        self.now = conn.now
        self.health = ctx.health
        self.balancer = ctx.balancer
        self.peer = conn.peer
        self.scheme = conn.scheme
        self.tls = conn.tls

    # --- the request ---------------------------------------------------------------------

    def begin(self, headers: list[tuple[bytes, bytes]], ended: bool) -> Route | None:
        """Route and start the request; returns the route when it is a gRPC one (the
        connection relays those as HTTP/2 end to end: h2_grpc.py), else None."""
        try:
            return self._begin(headers, ended)
        except Reject as r:
            ex = self.ex
            if ex is None:  # refused before it became an exchange (as a refused HTTP/1.1 head)
                ex = self._exchange(b"", self.now())
                ex.req = _REFUSED_HEAD
            self._refuse(ex, r.code, r.reason)
            return None

    def _begin(self, headers: list[tuple[bytes, bytes]], ended: bool) -> Route | None:
        ctx = self.ctx
        now = self.now()
        method = path = authority = b""
        host: bytes | None = None
        lines: list[bytes] = []
        cookies: list[bytes] | None = None
        clen = -1
        xff = rid = via = None
        expect = False
        for name, value in headers:
            if name[:1] == b":":
                if name == b":method":
                    method = value
                elif name == b":path":
                    path = value
                elif name == b":authority":
                    authority = value
                continue
            if name in _SPECIAL:
                if name == b"content-type":
                    if value[:16] == b"application/grpc":
                        self.grpc_request = True
                    lines += (name, b": ", value, b"\r\n")
                elif name == b"cookie":
                    if cookies is None:
                        cookies = []
                    cookies.append(value)
                elif name == b"host":
                    if host is None:
                        host = value
                elif name == b"content-length":
                    if clen >= 0:
                        raise Reject(400, "conflicting-content-length")
                    if not value.isdigit() or len(value) > 18:
                        raise Reject(400, "bad-content-length")
                    clen = int(value)
                elif name == b"x-forwarded-for":
                    xff = value if xff is None else xff + b", " + value
                elif name == b"x-request-id":
                    rid = value
                elif name == b"via":
                    via = value if via is None else via + b", " + value
                elif name == b"expect" and value:
                    if value.lower() != b"100-continue":
                        raise Reject(417, "expectation-failed")
                    expect = True
                continue  # the rest: hop-by-hop, or written by the gateway
            lines += (name, b": ", value, b"\r\n")
        if cookies is not None:
            lines += (b"cookie: ", b"; ".join(cookies), b"\r\n")
        if not authority and host is not None:
            authority = host  # :authority wins over Host
        if method == b"CONNECT":
            raise Reject(405, "connect-not-allowed")
        if method not in _KNOWN_METHODS and _METHOD.fullmatch(method) is None:
            raise Reject(400, "bad-request")
        block = b"".join(lines)
        if block and _FIELDS.fullmatch(block) is None:
            raise Reject(400, "bad-request")
        limits = ctx.limits
        if len(block) > limits.max_header_bytes:
            raise Reject(431, "headers-too-large")
        table = ctx.table
        key = (authority, path)
        r = table.route_memo.get(key, _MISS)
        if r is _MISS:
            check_target(method, path, authority, limits.max_request_line)  # (a pair in the memo passed it)
            r = self._route_miss(table, key)
        if r is not None and r.policy.backend_protocol in ("GRPC", "GRPCS"):
            return r  # type: ignore[return-value]
        chunked = not ended and clen < 0
        self.chunked = chunked
        head = _NEW(RequestHead, (method, path, 11, authority, clen, chunked, True, None, expect, xff, rid, via,
                                  block, len(headers)))
        ex = self._exchange(method, now)
        ex.req = head
        if rid is None:
            ctx.rid += 1
            rid = b"%s%x" % (ctx.rid_prefix, ctx.rid)
        ex.request_id = rid
        if r is None:
            if ended:
                ex.request_done = True
            else:
                ex.body = []
            self._start(ex)
            return None
        ex.route = r
        ex.label = r.ingress  # type: ignore[attr-defined]
        policy = r.policy  # type: ignore[attr-defined]
        if (policy.fast or (self.tls and policy.fast_tls)) and ended:
            # the common request: no body, no per-request policy
            ex.head = upstream_head(head, path, authority, self.peer, self.scheme, rid)
            ex.request_done = True
            if not self.health.down and method in IDEMPOTENT_METHODS and self._fast_send(ex, r):  # type: ignore[arg-type]
                return None
            self._start(ex)
            return None
        limit = policy.max_body_size or limits.max_body_size
        if limit is not None and clen > limit:
            raise Reject(413, "request-too-large")
        if policy.total_timeout is not None:
            ex.hard_deadline = now + policy.total_timeout
        up_target, up_host = path, authority
        if policy.per_request:
            up_target, up_host = self._plan(ex, r, head)  # type: ignore[arg-type]
        if ex.answer is None:
            ex.head = h = upstream_head(head, up_target, up_host, self.peer, self.scheme, rid)
            if ex.mirror is not None:
                tail = h[h.find(b"\r\n", h.find(b"\r\n") + 2) + 2:]  # after the request and host lines
                ex.mirror_head = policy_hooks.mirror_head(ex, tail, up_target)
        if not ended:
            ex.body = []
            if expect and ex.answer is None:
                self.conn.h2.send_headers(self.stream_id, [(b":status", b"100")])
        else:
            ex.request_done = True
            if ex.mirror is not None:
                self._submit_mirror(ex)
        if (ex.answer is None and policy.fast_send and not self.health.down and method in IDEMPOTENT_METHODS
                and self._fast_send(ex, r)):  # type: ignore[arg-type]
            return None
        self._start(ex)
        return None

    def _exchange(self, method: bytes, now: float) -> Exchange:
        ex = _exchange.EXCHANGE_CLASS()
        ex.ds = self  # type: ignore[assignment]
        ex.method = method
        ex.start = now
        # read on every request: set so the reads never fall back to the class
        ex.backend = None
        ex.counted = None
        ex.extra_resp = b""
        self.ex = ex
        return ex

    def request_data(self, data: bytes, flow: int) -> None:
        """DATA of the request body (`flow`: its flow-controlled length, credited back
        while the upstream keeps taking the body)."""
        ex = self.ex
        if data and ex is not None and ex.phase != DONE:
            try:
                self._body_piece(ex, b"%x\r\n%s\r\n" % (len(data), data) if self.chunked else data, len(data))
            except Reject as r:
                self._refuse(ex, r.code, r.reason)
        conn = self.conn
        if self.reading or self.ended:
            conn.h2.acknowledge_received_data(flow, self.stream_id)
        else:
            self.unacked += flow

    def request_end(self) -> None:
        """END_STREAM from the client: the request body is complete."""
        ex = self.ex
        if ex is None or ex.request_done:
            return
        self._body_done(ex)  # (ex.req.chunked: the body goes upstream chunked, as self.chunked)

    def _refuse(self, ex: Exchange, code: int, reason: str) -> None:
        """A request (or its body) refused: the upstream attempt is dropped, the client gets
        `code` unless its response began (then the stream is reset)."""
        up = ex.upstream
        if up is not None:
            ex.upstream = None
            up.abort()
        if ex.phase >= RESPONDING:
            if ex.phase != DONE:
                ex.advance(DONE)
            self.active = None
            self._reset()
        elif ex.phase != DONE:
            self._generated(ex, code, reason)

    def response_complete(self, ex: Exchange, reusable: bool, upstream: "UpstreamH1 | None") -> None:
        ex.phase = DONE  # (hot path: unchecked here, checked under CheckedExchange)
        now = self.now()
        if upstream is not None:
            if reusable:
                upstream.pool.release(upstream, now)  # (the HTTP/1.1 core inlines it)
            else:
                upstream.close()
        if ex.counted is not None:
            self.balancer.observe(ex.counted, now - ex.sent, now)
            self._uncount(ex)
        self._observe(ex, now)
        self.active = None
        self._emit(True)

    def _generated(self, ex: Exchange, code: int, reason: str, extra: bytes = b"") -> None:
        """Answer ex ourselves (404/413/502/503/504...): the same response as on HTTP/1.1."""
        ex.advance(DONE)
        ex.status = code
        self._uncount(ex)
        self.active = None
        if self.ended or self.started:  # (a response under way cannot be replaced)
            self._observe(ex, self.now())
            self._reset()
            return
        data = error_response(code, reason, request_id=ex.request_id, extra=extra + ex.extra_resp)
        if ex.method == b"HEAD":
            data = data[:data.find(b"\r\n\r\n") + 4]
        self.out[:] = [data]
        self._observe(ex, self.now())
        self._emit(True)

    def _fast_send(self, ex: Exchange, r: Route) -> bool:
        """Plain round robin with every endpoint up and a warm pooled connection, in one
        call; False (nothing done) when the backend has no endpoint."""
        backend = ex.backend or r.backend
        if backend is None or not backend.endpoints:
            return False
        ep = decide.round_robin(backend.endpoints, self.balancer, backend.key)
        self.active = ex
        pool = self.ctx.pools.pools.get(ep.key)
        if pool is not None and pool.idle:
            conn = pool.idle.pop()
            t = conn.transport
            if t is not None and not t.is_closing():
                ex.endpoint = ep
                ex.attempt = 1
                ex.phase = SENT  # (hot path: unchecked here, checked under CheckedExchange)
                ex.deadline = decide.wait_until(ex.start, r.policy, connected=True)
                conn.send(ex, ex.head)
                return True
        self._send(ex, ep, self.now())
        return True

    def _no_route(self, ex: Exchange) -> None:
        if self.grpc_request:  # a gRPC call with no route: UNIMPLEMENTED, the gRPC way
            ex.advance(DONE)
            self.active = None
            self.conn.h2.send_headers(self.stream_id, _GRPC_NO_ROUTE, end_stream=True)
            self._ended()
            return
        self._generated(ex, 404, "no-route")

    def _cut(self, ex: Exchange) -> None:
        """The response began and its attempt failed: reset, so the client sees it incomplete."""
        self.out.clear()
        self._reset()

    def _wake(self) -> None:
        self.conn.schedule()

    def check_timeouts(self, now: float, horizon: float) -> None:
        """The sweeper's tick (through DownstreamH2): the exchange's attempt (Attempts)."""
        ex = self.active
        if ex is not None:
            self._check_attempt(ex, now, horizon)

    def _observe(self, ex: Exchange, now: float) -> None:
        """The finished request, to the metrics and the access log (which read `sent`, `logged`
        and `out` here as on a DownstreamH1)."""
        self.ctx.metrics.request_done(ex, now)

    def start_tunnel(self, ex: Exchange, up: Any, rest: bytes) -> None:
        """A 101 nobody can have asked for (HTTP/2 has no Upgrade): the attempt failed."""
        up.abort()
        ex.phase = DONE
        self.active = None
        self._reset()

    def tunnel_closed(self) -> None:
        pass

    def cluster_line(self, cluster: str) -> bytes:
        return self.ctx.cluster_line(cluster)  # type: ignore[no-any-return]

    # --- the response, as frames --------------------------------------------------------

    def flush(self) -> None:
        if self.out:
            self._emit(False)

    def _emit(self, end: bool) -> None:
        """What the upstream queued in `out` (an HTTP/1.1 head, then body bytes, chunked
        when ex.chunked_response) as HEADERS and DATA; END_STREAM when `end`."""
        if self.ended:
            self.out.clear()
            return
        out = self.out
        conn = self.conn
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        self.sent += len(data)
        if not self.started:
            if not data:
                if end:
                    self._reset()
                return
            i = data.find(b"\r\n\r\n")
            if i < 0:  # cannot happen: the head is queued whole
                self._reset()
                return
            self.started = True
            ex = self.ex
            if ex is not None and ex.chunked_response:
                self.decoder = ChunkedDecoder(error_status=502)
            if end and len(data) == i + 4:
                conn.h2.send_h1_head(self.stream_id, data, i, True)
                self._ended()
                conn.schedule()
                return
            conn.h2.send_h1_head(self.stream_id, data, i)
            data = data[i + 4:]
        dec = self.decoder
        if dec is not None and data:
            data = b"".join(dec.feed(data))
        if end:
            conn.send_last(self, data)
        elif data:
            conn.send_data(self, data)
        conn.schedule()

    def end_stream(self) -> None:
        if self.held:
            self.end_pending = True
            return
        self.conn.h2.end_stream(self.stream_id)
        self._ended()

    def _ended(self) -> None:
        self.ended = True
        self.ex = None  # (no cycle left for the garbage collector: the exchange points here)
        self.conn.stream_done(self)

    def _reset(self) -> None:
        if not self.ended:
            self.conn.reset(self, _INTERNAL_ERROR)
            self.conn.schedule()

    # --- what DownstreamH2 asks of its streams -------------------------------------------

    def connection_lost(self, exc: Exception | None) -> None:
        """The stream is gone (reset by the client, or its connection closed): the rest of
        the response has nowhere to go."""
        self.ended = True
        self.ex = None
        ex = self.active
        if ex is not None:
            self.active = None
            if ex.phase != DONE:
                ex.phase = DONE
            self._uncount(ex)
            if ex.upstream is not None:
                ex.upstream.abort()

    def pause_writing(self) -> None:
        """The client's window (or socket) is full: stop reading the upstream."""
        ex = self.active
        up = ex.upstream if ex is not None else None
        if up is not None and up.transport is not None:
            up.transport.pause_reading()

    def resume_writing(self) -> None:
        ex = self.active
        up = ex.upstream if ex is not None else None
        if up is not None and up.transport is not None:
            up.transport.resume_reading()

    @property
    def transport(self) -> "H2Stream | None":
        """What an upstream pauses when its write buffer fills: the stream itself, while open."""
        return None if self.ended else self

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True
        if self.unacked and not self.ended:
            self.conn.h2.acknowledge_received_data(self.unacked, self.stream_id)
            self.unacked = 0
            self.conn.schedule()
