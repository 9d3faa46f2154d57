"""The downstream HTTP/1.1 connection's proxying half: route, pick, send, retry, answer.

Reading and framing are H1Reader's (http1_downstream.py); a parsed head arrives in
DownstreamCore._on_head (gateway/exchange/_core_py.py, compiled where built), which routes
it (a per-table cache of (host, target); `_route_miss` here fills it) and sends the common
request itself (`_fast_send`); any other routed request comes to `_policy_head`, which
resolves the route's policy into a plan (policy_hooks.prepare, once per request) and
writes the upstream head in one codec call. The end of an exchange (`response_complete`)
is the core's too. Which endpoint and whether to retry are pure decisions
(upstream/decide.py); this class applies them. The upstream connection calls back through
the `Downstream` protocol (gateway/exchange/). Tunnels and timeouts: timeouts.py; the
per-request policy, picking and mirroring: planning.py.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..codec import RequestHead, upstream_head
from ..exchange import DONE, RESPONDING, SENT, Exchange
from ..routing.table import Route, route as find_route
from ..upstream import decide
from ..upstream.connect import TLS_POOL_PREFIX, connect
from . import policy_hooks
from .http1 import CONTINUE_100, DATE, error_response, host_name
from .http1_downstream import H1Reader, Reject
from .planning import Planning
from .timeouts import TunnelsAndTimeouts

if TYPE_CHECKING:
    from ..routing.table import RouteTable, UpstreamEndpoint
    from ..upstream.connection import UpstreamH1

ROUTE_CACHE_SIZE = 4096
IDEMPOTENT_METHODS = decide.IDEMPOTENT_METHODS


def _route(table: "RouteTable", host: bytes, target: bytes) -> Route | None:
    """route() on raw bytes: Host lowercased with its port stripped, the query dropped."""
    q = target.find(b"?")
    path = target if q < 0 else target[:q]
    return find_route(table, host_name(host).lower().decode("latin-1"), path.decode("latin-1"))


class DownstreamH1(Planning, TunnelsAndTimeouts, H1Reader):
    __slots__ = ("cluster_line",)  # (pools, balancer, idle_timeout: DownstreamCore's fields)

    def __init__(self, ctx, scheme: bytes = b"http") -> None:  # type: ignore[no-untyped-def]
        super().__init__(ctx, scheme)
        self.pools = ctx.pools.pools  # endpoint key -> Pool (the registry keeps this dict)
        self.balancer = ctx.balancer
        self.cluster_line = ctx.cluster_line
        self.idle_timeout = ctx.limits.idle_timeout

    # --- a parsed head (DownstreamCore._on_head routes it and sends the common request) --

    def _route_miss(self, table: "RouteTable", key: tuple[bytes, bytes]) -> Route | None:
        """route() for a (host, target) not in the table's cache yet; cached."""
        r = _route(table, key[0], key[1])
        if len(table.route_memo) >= ROUTE_CACHE_SIZE:
            table.route_memo.clear()
        table.route_memo[key] = r
        return r

    def _policy_head(self, ex: Exchange, head: RequestHead, r: Route, has_body: bool) -> None:
        """A routed request that is not the common one: a body, an upgrade, or a policy to
        apply per request (planning.py resolves it into a plan)."""
        ctx = self.ctx
        method, target, host, content_length, expect = ex.method, head[1], head[3], head[4], head[8]
        policy = r.policy
        if policy.grpc:  # gRPC needs HTTP/2 end to end (h2_grpc.py takes HTTP/2 streams before here)
            raise Reject(426, "grpc-requires-http2")
        up_target, up_host = target, host
        limit = policy.max_body_size or ctx.limits.max_body_size
        if limit is not None and content_length > limit:
            raise Reject(413, "request-too-large")
        if policy.total_timeout is not None:
            ex.hard_deadline = ex.start + policy.total_timeout
        if policy.per_request:
            up_target, up_host = self._plan(ex, r, head)
        if ex.answer is None:
            ex.head = upstream_head(head, up_target, up_host, self.peer, self.scheme, ex.request_id)
            if ex.mirror is not None:
                h = ex.head
                tail = h[h.find(b"\r\n", h.find(b"\r\n") + 2) + 2:]  # after the request and host lines
                ex.mirror_head = policy_hooks.mirror_head(ex, tail, up_target)
        if has_body:
            self._expect_body(ex, head)
            if expect and ex.answer is None:
                self.out.append(CONTINUE_100)
        else:
            ex.request_done = True
            if ex.mirror is not None:
                self._submit_mirror(ex)
        # warm_send: a weighted (or hashed...) pick may still go on a warm connection in one call
        if (ex.answer is None and policy.warm_send and not self.health.down and method in IDEMPOTENT_METHODS
                and self._fast_send(ex, r, policy.plain_pick)):
            return
        self._start(ex)

    def _body_piece(self, ex: Exchange, piece: bytes, size: int) -> None:
        if ex.phase == DONE:
            return
        ex.body_size += size
        limits = self.ctx.limits
        limit = (ex.route.policy.max_body_size if ex.route is not None else None) or limits.max_body_size
        if limit is not None and ex.body_size > limit:
            raise Reject(413, "request-too-large")
        up = ex.upstream
        if up is not None and up.ex is ex and up.transport is not None:
            up.transport.write(piece)
            if ex.replayable:
                if ex.body_size <= limits.retry_buffer and ex.phase < RESPONDING:
                    ex.body.append(piece)
                else:
                    ex.replayable = False
                    ex.body = []
        else:
            ex.body.append(piece)
            if ex.body_size > limits.retry_buffer:
                ex.replayable = False

    def _body_done(self, ex: Exchange) -> None:
        ex.request_done = True
        if ex.mirror is not None:
            self._submit_mirror(ex)
        if ex.phase == DONE:
            return
        if ex.req.chunked:
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

    def _send(self, ex: Exchange, ep: "UpstreamEndpoint", now: float) -> None:
        ex.endpoint = ep
        ex.attempt += 1
        ex.advance(SENT)
        policy = ex.route.policy
        if policy.load_balance != "round_robin":
            active = self.balancer.active
            self._uncount(ex)
            active[ep.key] = active.get(ep.key, 0) + 1
            ex.counted = ep.key
            ex.sent = now
        ex.deadline = decide.wait_until(now, policy, connected=False)
        tls = policy.upstream_tls
        pool = self.ctx.pools.get(TLS_POOL_PREFIX + ep.key if tls else ep.key)
        conn = pool.acquire(verify=ex.method not in IDEMPOTENT_METHODS)
        if conn is not None:
            ex.deadline = decide.wait_until(now, policy, connected=True)
            conn.send(ex, ex.head + b"".join(ex.body) if ex.body else ex.head)
            return
        connect(self, ex, ep, pool, tls=tls)  # slow path: a task per new connection

    def connected(self, ex: Exchange, conn: "UpstreamH1") -> None:
        """A new upstream connection for ex is ready (called by upstream.connect)."""
        ex.deadline = decide.wait_until(self.now(), ex.route.policy, connected=True)
        conn.reused = False
        conn.send(ex, ex.head + b"".join(ex.body) if ex.body else ex.head)

    def upstream_failed(self, ex: Exchange, kind: str, *, reused: bool, got_bytes: bool) -> None:
        """The upstream of ex failed: connect error, reset, timeout or protocol error.
        Retry on another endpoint (preferring another member cluster) when nothing reached
        the client and the retry policy allows it; eject the endpoint for the others."""
        if ex.phase == DONE or self.active is not ex:
            return
        ex.upstream = None
        now = self.now()
        ep = ex.endpoint
        connect_failed = kind in ("connect", "connect-timeout")
        stale = reused and not got_bytes and not connect_failed  # a pooled connection the server closed
        if ep is not None and not stale and kind != "protocol":
            self.ctx.eject(ep, ex.backend or ex.route.backend, now)
        if ex.phase < RESPONDING:
            if self._retry(ex, ep, now, connect_failed=connect_failed, stale=stale, timeout=kind == "timeout"):
                return
            give_up = decide.failure_answer(kind)
            self._generated(ex, give_up.status, give_up.reason)
            return
        # The response already started: all we can do is cut the connection so the
        # client sees an incomplete response rather than a wrong one.
        ex.advance(DONE)
        self.active = None
        self._uncount(ex)
        self.ctx.metrics.request_done(ex, now)
        self.flush()
        if self.transport is not None:
            self.transport.close()

    def _retry(self, ex: Exchange, ep: "UpstreamEndpoint | None", now: float, *, connect_failed: bool,
               stale: bool, timeout: bool = False, status: int = 0) -> bool:
        """Send ex again to another endpoint when decide.retry_decision says so; True when it did."""
        if ep is None:
            return False
        tried = ex.tried
        if tried is None:
            tried = ex.tried = []
        tried.append(ep.key)  # the retry goes elsewhere, preferring another member cluster
        if stale:
            ex.free_tries += 1  # a pooled connection the server had closed costs no try
        decision = decide.retry_decision(ex.route.policy.retry, ex.method, replayable=ex.replayable,
                                         tried=len(tried), free_tries=ex.free_tries, now=now, start=ex.start,
                                         hard_deadline=ex.hard_deadline, connect_failed=connect_failed,
                                         stale=stale, timeout=timeout, status=status)
        if decision is None:
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
        if ep is None:
            return True
        policy = ex.route.policy
        if code >= 500 or ep.key in self.health.endpoints:
            backend = ex.backend or ex.route.backend
            self.health.record_status(ep.key, code, (e.key for e in backend.endpoints) if backend else (),
                                      policy.consecutive_5xx, self.now())
        if code in policy.retry.on_status and ex.request_done:
            return not decide.retry_status_allowed(policy.retry, ex.method, replayable=ex.replayable,
                                                   tried=len(ex.tried or ()), free_tries=ex.free_tries)
        return True

    def retry_after_status(self, ex: Exchange, code: int, upstream: "UpstreamH1 | None", reusable: bool) -> None:
        """The dropped response has been read to its end: release the connection, retry."""
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
            active = self.balancer.active
            n = active.get(ex.counted, 1) - 1
            if n > 0:
                active[ex.counted] = n
            else:
                active.pop(ex.counted, None)  # (a table swap may have pruned it already)
            ex.counted = None

    def _generated(self, ex: Exchange, code: int, reason: str, extra: bytes = b"") -> None:
        """Answer ex ourselves (404/502/503/504...), in order with pipelined responses."""
        ex.advance(DONE)
        ex.status = code
        self._uncount(ex)
        if not ex.request_done:
            ex.keep_alive = False  # the unread body would be taken for the next request
        close = not ex.keep_alive or self.ctx.draining
        if not close and not self.http11:
            extra += b"connection: keep-alive\r\n"
        self.out.append(error_response(code, reason, close=close, request_id=ex.request_id,
                                       extra=extra + ex.extra_resp))
        now = self.now()
        self.ctx.metrics.request_done(ex, now)
        self._next(ex, now)

    def _next(self, ex: Exchange, now: float) -> None:
        self.active = None
        if not ex.keep_alive or self.ctx.draining:
            self.close_after = True
            if self.transport is not None:
                self.transport.pause_reading()
            return
        self.deadline = now + (self.header_timeout if self.began else self.ctx.limits.idle_timeout)
        if self.paused:
            self._parse_buffered()


__all__ = ["DownstreamH1", "Exchange", "Reject", "DATE"]
