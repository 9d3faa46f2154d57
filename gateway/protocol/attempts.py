"""A request's attempts, one implementation for HTTP/1.1 (DownstreamH1) and HTTP/2 streams
(H2Stream): route miss, endpoint pick and send, retries, the status retry, failures, the
attempt's timer and timeout, and the request body's pieces.

A mixin. Both classes implement the `Downstream` protocol (gateway/exchange/) that the
pooled upstream connections call back through; what differs between the two protocols is
how the client is answered, so the mixin asks its host for that alone:

- `_generated(ex, code, reason, extra)`: answer ex ourselves;
- `_cut(ex)`: the response began and the attempt failed: the client must see it incomplete
  (HTTP/1.1 closes the connection, HTTP/2 resets the stream);
- `_wake()`: write what the timeout path queued (HTTP/1.1 flushes, HTTP/2 schedules);
- `_no_route(ex)`: optional (gRPC answers UNIMPLEMENTED on HTTP/2).

The decisions themselves are pure (upstream/decide.py); the common request's one-call send
and its end are the compiled core's (DownstreamCore._fast_send / response_complete) on
HTTP/1.1, so nothing here runs on that path.
"""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ..exchange import DONE, RESPONDING, SENT, Exchange, Reject
from ..routing.table import Route, route as find_route
from ..upstream import decide
from ..upstream.connect import TLS_POOL_PREFIX, connect
from .http1 import host_name

if TYPE_CHECKING:
    from ..routing.table import RouteTable, UpstreamEndpoint
    from ..upstream.connection import UpstreamH1

ROUTE_CACHE_SIZE = 4096  # a table's (host, target) memo, shared by both protocols
IDEMPOTENT_METHODS = decide.IDEMPOTENT_METHODS


def route_bytes(table: "RouteTable", host: bytes, target: bytes) -> Route | None:
    """route() on raw bytes: the host lowercased with its port stripped, the query dropped."""
    q = target.find(b"?")
    path = target if q < 0 else target[:q]
    return find_route(table, host_name(host).lower().decode("latin-1"), path.decode("latin-1"))


class Attempts:
    """The attempts of the exchange a downstream is proxying (see the module docstring)."""

    __slots__ = ()

    ctx: Any
    balancer: Any
    health: Any
    active: Exchange | None
    out: list[bytes]
    deadline: float
    now: Any

    if TYPE_CHECKING:  # the host's and Planning's (declared only: a stub here would shadow them)
        def _pick(self, ex: Exchange, now: float) -> "UpstreamEndpoint | None": ...
        def _generated(self, ex: Exchange, code: int, reason: str, extra: bytes = b"") -> None: ...
        def _cut(self, ex: Exchange) -> None: ...
        def _wake(self) -> None: ...

    # --- routing -------------------------------------------------------------------------

    def _route_miss(self, table: "RouteTable", key: tuple[bytes, bytes]) -> Route | None:
        """route() for a (host, target) not in the table's memo yet; memoised."""
        r = route_bytes(table, key[0], key[1])
        memo = table.route_memo
        if len(memo) >= ROUTE_CACHE_SIZE:
            memo.clear()
        memo[key] = r
        return r

    # --- sending -------------------------------------------------------------------------

    def _start(self, ex: Exchange) -> None:
        """The first attempt of a routed (or unroutable) exchange, or its own answer."""
        self.active = ex
        self.deadline = 0.0  # (HTTP/1.1: no client-side deadline while an exchange is proxied)
        if ex.answer is not None:
            code, reason, extra = ex.answer
            self._generated(ex, code, reason, extra)
            return
        if ex.route is None:
            self._no_route(ex)
            return
        now = self.now()
        ep = self._pick(ex, now)
        if ep is None:
            self._generated(ex, 503, "no-healthy-upstream")
            return
        self._send(ex, ep, now)

    def _no_route(self, ex: Exchange) -> None:
        self._generated(ex, 404, "no-route")

    def _send(self, ex: Exchange, ep: "UpstreamEndpoint", now: float) -> None:
        """An attempt on ep: a pooled connection when one is idle, else a new one (a task)."""
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
        connect(self, ex, ep, pool, tls=tls)  # type: ignore[arg-type]  # slow path: a task per new connection

    def connected(self, ex: Exchange, conn: "UpstreamH1") -> None:
        """A new upstream connection for ex is ready (called by upstream.connect)."""
        ex.deadline = decide.wait_until(self.now(), ex.route.policy, connected=True)
        conn.reused = False
        conn.send(ex, ex.head + b"".join(ex.body) if ex.body else ex.head)

    def _uncount(self, ex: Exchange) -> None:
        """Take ex's attempt off its endpoint's active count (least connections)."""
        if ex.counted is not None:
            active = self.balancer.active
            n = active.get(ex.counted, 1) - 1
            if n > 0:
                active[ex.counted] = n
            else:
                active.pop(ex.counted, None)  # (a table swap may have pruned it already)
            ex.counted = None

    # --- failures and retries ------------------------------------------------------------

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
        # The response already started: the client must see it incomplete, not wrong.
        ex.advance(DONE)
        self.active = None
        self._uncount(ex)
        self.ctx.metrics.request_done(ex, now)
        self._cut(ex)

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

    # --- the attempt's timeout (the server's sweeper, and a precise timer near it) -----------

    def _check_attempt(self, ex: Exchange, now: float, horizon: float) -> None:
        """The active exchange's upstream deadline at a sweep: due now, or due before the
        next sweep (now + horizon) and then a precise one-off timer, so timeouts are exact
        while the request path schedules no timer of its own."""
        due = decide.due(ex.deadline, ex.hard_deadline, ex.phase >= RESPONDING)
        if due and now >= due:
            self._upstream_timeout(ex)
        elif due and due < now + horizon and ex.timer_attempt != ex.attempt:
            ex.timer_attempt = ex.attempt
            loop = self.ctx.loop or asyncio.get_running_loop()
            loop.call_at(due, self._timer_fired, ex, ex.attempt)

    def _timer_fired(self, ex: Exchange, attempt: int) -> None:
        if self.active is not ex or ex.attempt != attempt or ex.phase == DONE:
            return
        ex.timer_attempt = 0
        due = decide.due(ex.deadline, ex.hard_deadline, ex.phase >= RESPONDING)
        if due and self.now() >= due:
            self._upstream_timeout(ex)
        # else: a read moved the deadline on; the sweeper keeps watching

    def _upstream_timeout(self, ex: Exchange) -> None:
        """The attempt's wait ran out: 504 past the route's total timeout, else a failure
        (which may retry)."""
        now = self.now()
        up = ex.upstream
        if up is not None:
            up.abort()
        if ex.hard_deadline and now >= ex.hard_deadline and ex.phase < RESPONDING:
            ex.upstream = None
            self._generated(ex, 504, "upstream-timeout")
        else:
            self.upstream_failed(ex, "timeout" if up is not None else "connect-timeout", reused=False,
                                 got_bytes=True)
        self._wake()

    # --- the request body ----------------------------------------------------------------

    def _body_piece(self, ex: Exchange, piece: bytes, size: int) -> None:
        """A piece of the request body (`size`: its payload bytes): to the upstream when an
        attempt is connected, kept for a retry while it fits the retry buffer."""
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
        """The request body is complete: the mirror gets it, a chunked one its last chunk."""
        ex.request_done = True
        if ex.mirror is not None:
            self._submit_mirror(ex)  # type: ignore[attr-defined]  # Planning's
        if ex.phase == DONE:
            return
        if ex.req.chunked:
            up = ex.upstream
            if up is not None and up.ex is ex and up.transport is not None:
                up.transport.write(b"0\r\n\r\n")
            if ex.replayable or up is None:
                ex.body.append(b"0\r\n\r\n")
