"""The downstream HTTP/1.1 connection's proxying half: route, pick, send, retry, answer.

Reading and framing are H1Reader's (http1_downstream.py); a parsed head arrives in
DownstreamCore._on_head (gateway/exchange/_core_py.py, compiled where built), which routes
it (a per-table cache of (host, target); Attempts._route_miss fills it) and sends the
common request itself (`_fast_send`); any other routed request comes to `_policy_head`,
which resolves the route's policy into a plan (policy_hooks.prepare, once per request) and
writes the upstream head in one codec call. The end of an exchange (`response_complete`)
is the core's too. The attempts (send, retries, failures, the attempt's timeout, the
request body) are attempts.py's, shared with HTTP/2 streams; the upstream connection calls
back through the `Downstream` protocol (gateway/exchange/); the per-request policy, picking
and mirroring: planning.py. What is left here is how an HTTP/1.1 client is answered, its
tunnels (after a 101) and its header and idle deadlines (the server's sweeper).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..codec import RequestHead, upstream_head
from ..exchange import DONE, Exchange
from ..routing.table import Route
from ..upstream import decide
from . import policy_hooks
from .attempts import Attempts
from .http1 import CONTINUE_100, DATE, error_response
from .http1_downstream import H1Reader, Reject
from .planning import Planning

if TYPE_CHECKING:
    from ..upstream.connection import UpstreamH1

IDEMPOTENT_METHODS = decide.IDEMPOTENT_METHODS


class DownstreamH1(Attempts, Planning, H1Reader):
    # (no more bases than this: the compiled core's isinstance(ds, DownstreamCore) walks
    # the MRO on every request, one step per class before DownstreamCore)
    __slots__ = ("cluster_line",)  # (pools, balancer, idle_timeout: DownstreamCore's fields)

    def __init__(self, ctx, scheme: bytes = b"http") -> None:  # type: ignore[no-untyped-def]
        super().__init__(ctx, scheme)
        self.pools = ctx.pools.pools  # endpoint key -> Pool (the registry keeps this dict)
        self.balancer = ctx.balancer
        self.cluster_line = ctx.cluster_line
        self.idle_timeout = ctx.limits.idle_timeout

    # --- a parsed head (DownstreamCore._on_head routes it and sends the common request) --

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

    # --- proxying ---------------------------------------------------------------------

    # --- answering the client (what the shared attempts, attempts.py, ask of it) ---------

    def _cut(self, ex: Exchange) -> None:
        """The response began and its attempt failed: close, so the client sees it incomplete."""
        self.flush()
        if self.transport is not None:
            self.transport.close()

    def _wake(self) -> None:
        self.flush()

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

    # --- upgrades (WebSocket and other tunnels) ------------------------------------------

    def start_tunnel(self, ex: Exchange, up: "UpstreamH1", rest: bytes) -> None:
        """The upstream answered 101: the held bytes are the tunnel's, both ways from now."""
        ex.advance(DONE)
        self.active = None
        self.tunnel = up
        self.deadline = 0.0
        self.ctx.metrics.request_done(ex, self.now())
        if rest:
            self.out.append(rest)
        held, self.held = self.held, None
        if held and up.transport is not None:
            up.transport.write(held)
        if self.transport is not None:
            self.transport.resume_reading()

    def tunnel_closed(self) -> None:
        self.tunnel = None
        self.flush()
        if self.transport is not None:
            self.transport.close()

    # --- timeouts (driven by the server's sweeper) ------------------------------------

    def check_timeouts(self, now: float, horizon: float = 0.0) -> None:
        """Called by the server's sweeper every interval: the active exchange's attempt
        (Attempts._check_attempt), else the client's header or idle deadline."""
        ex = self.active
        if ex is not None:
            self._check_attempt(ex, now, horizon)
            return
        if self.tunnel is None and self.deadline and now > self.deadline:
            if self.began:  # a head began and did not end in time: nginx's client_header_timeout
                self.out.append(error_response(408, "request-timeout", close=True))
                self.flush()
            if self.transport is not None:
                self.transport.close()

    def drain(self) -> None:
        """Graceful shutdown: close now if idle, else after the current response."""
        if self.active is None and not self.began and self.tunnel is None and self.cur is None:
            if self.transport is not None:
                self.transport.close()
        else:
            self.close_after = True
            if self.active is not None:
                self.active.keep_alive = False  # the response in flight says `connection: close`


__all__ = ["DownstreamH1", "Exchange", "Reject", "DATE"]
