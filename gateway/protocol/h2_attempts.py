"""The attempts of an HTTP/2 stream's exchange: endpoint pick, send over a pooled HTTP/1.1
upstream connection, retries, failures and timeouts.

A mixin of H2Stream (h2_stream.py), apart so each module stays short. The decisions are
the pure ones DownstreamH1 applies too (upstream/decide.py: round robin, retry_decision,
failure_answer, wait_until, due); this part applies them to a stream: it answers with
`_generated` and resets a stream whose response had begun.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..exchange import DONE, RESPONDING, SENT, Exchange
from ..upstream import decide
from ..upstream.connect import TLS_POOL_PREFIX, connect

if TYPE_CHECKING:
    from ..routing.table import Route, UpstreamEndpoint
    from ..upstream.connection import UpstreamH1

IDEMPOTENT_METHODS = decide.IDEMPOTENT_METHODS
_GRPC_NO_ROUTE = [(b":status", b"200"), (b"content-type", b"application/grpc"), (b"grpc-status", b"12"),
                  (b"grpc-message", b"no-route"), (b"x-fleetgate-reason", b"no-route")]


class StreamAttempts:
    """Attempts and timeouts of an H2Stream (see the module docstring)."""

    ctx: Any
    conn: Any
    balancer: Any
    health: Any
    active: Exchange | None
    out: list[bytes]
    now: Any
    stream_id: int
    grpc_request: bool

    if TYPE_CHECKING:  # H2Stream's and Planning's (declared only: a stub here would shadow them)
        def _pick(self, ex: Exchange, now: float) -> "UpstreamEndpoint | None": ...
        def _generated(self, ex: Exchange, code: int, reason: str, extra: bytes = b"") -> None: ...
        def _observe(self, ex: Exchange, now: float) -> None: ...
        def _reset(self) -> None: ...
        def _ended(self) -> None: ...

    def _start(self, ex: Exchange) -> None:
        self.active = ex
        if ex.answer is not None:
            code, reason, extra = ex.answer
            self._generated(ex, code, reason, extra)
            return
        if ex.route is None:
            if self.grpc_request:  # a gRPC call with no route: UNIMPLEMENTED, the gRPC way
                ex.advance(DONE)
                self.active = None
                self.conn.h2.send_headers(self.stream_id, _GRPC_NO_ROUTE, end_stream=True)
                self._ended()
                return
            self._generated(ex, 404, "no-route")
            return
        now = self.now()
        ep = self._pick(ex, now)
        if ep is None:
            self._generated(ex, 503, "no-healthy-upstream")
            return
        self._send(ex, ep, now)

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
        connect(self, ex, ep, pool, tls=tls)  # type: ignore[arg-type]  # a task per new connection

    def connected(self, ex: Exchange, conn: "UpstreamH1") -> None:
        ex.deadline = decide.wait_until(self.now(), ex.route.policy, connected=True)
        conn.reused = False
        conn.send(ex, ex.head + b"".join(ex.body) if ex.body else ex.head)

    def upstream_failed(self, ex: Exchange, kind: str, *, reused: bool, got_bytes: bool) -> None:
        """Retry on another endpoint when nothing reached the client and the retry policy
        allows it (decide.retry_decision), else answer; a started response is reset."""
        if ex.phase == DONE or self.active is not ex:
            return
        ex.upstream = None
        now = self.now()
        ep = ex.endpoint
        connect_failed = kind in ("connect", "connect-timeout")
        stale = reused and not got_bytes and not connect_failed
        if ep is not None and not stale and kind != "protocol":
            self.ctx.eject(ep, ex.backend or ex.route.backend, now)
        if ex.phase < RESPONDING:
            if self._retry(ex, ep, now, connect_failed=connect_failed, stale=stale, timeout=kind == "timeout"):
                return
            give_up = decide.failure_answer(kind)
            self._generated(ex, give_up.status, give_up.reason)
            return
        ex.advance(DONE)  # the response began: the client must see it incomplete
        self.active = None
        self._uncount(ex)
        self._observe(ex, now)
        self.out.clear()
        self._reset()

    def _retry(self, ex: Exchange, ep: "UpstreamEndpoint | None", now: float, *, connect_failed: bool,
               stale: bool, timeout: bool = False, status: int = 0) -> bool:
        if ep is None:
            return False
        tried = ex.tried
        if tried is None:
            tried = ex.tried = []
        tried.append(ep.key)
        if stale:
            ex.free_tries += 1
        decision = decide.retry_decision(ex.route.policy.retry, ex.method, replayable=ex.replayable,
                                         tried=len(tried), free_tries=ex.free_tries, now=now, start=ex.start,
                                         hard_deadline=ex.hard_deadline, connect_failed=connect_failed,
                                         stale=stale, timeout=timeout, status=status)
        if decision is None:
            return False
        nxt = self._pick(ex, now)
        if nxt is None and stale:
            tried.remove(ep.key)
            nxt = self._pick(ex, now)
        if nxt is None:
            return False
        self.ctx.metrics.retry(nxt.cluster)
        self._send(ex, nxt, now)
        return True

    def response_head(self, ex: Exchange, code: int) -> bool:
        """Feed outlier detection; False when the response is dropped for a retry."""
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
                active.pop(ex.counted, None)
            ex.counted = None

    # --- timeouts (the sweeper's tick, through DownstreamH2) ----------------------------

    def check_timeouts(self, now: float, horizon: float) -> None:
        """The sweeper's tick (through DownstreamH2): the exchange's upstream deadline, with a
        precise one-off timer when it falls before the next tick (as DownstreamH1)."""
        ex = self.active
        if ex is None:
            return
        due = decide.due(ex.deadline, ex.hard_deadline, ex.phase >= RESPONDING)
        if due and now >= due:
            self._upstream_timeout(ex)
        elif due and due < now + horizon and ex.timer_attempt != ex.attempt:
            ex.timer_attempt = ex.attempt
            self.conn.loop.call_at(due, self._timer_fired, ex, ex.attempt)

    def _timer_fired(self, ex: Exchange, attempt: int) -> None:
        if self.active is not ex or ex.attempt != attempt or ex.phase == DONE:
            return
        ex.timer_attempt = 0
        due = decide.due(ex.deadline, ex.hard_deadline, ex.phase >= RESPONDING)
        if due and self.now() >= due:
            self._upstream_timeout(ex)

    def _upstream_timeout(self, ex: Exchange) -> None:
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
        self.conn.schedule()
