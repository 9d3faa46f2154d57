"""gRPC through the gateway: a downstream HTTP/2 stream relayed to an HTTP/2 upstream stream.

Routes with `backend-protocol: GRPC|GRPCS` do not go through the HTTP/1.1 request engine
(it has no trailers): DownstreamH2 hands their streams to a GrpcStream, which picks the
endpoint as HTTP routes do (canary, cluster weights, header routing, health), opens a
stream on a pooled upstream HTTP/2 connection (upstream/h2_pool.py) and relays HEADERS,
DATA and trailers both ways unchanged and unbuffered. Flow control is end to end: client
DATA is credited back only once the upstream's window took it, upstream DATA only once
the client's window took it.

The gateway's own failures are answered the gRPC way (HTTP 200, `grpc-status`, never a
body): 14 UNAVAILABLE for no endpoint or connect failure, 4 DEADLINE_EXCEEDED when the
call's `grpc-timeout` passes, 12 UNIMPLEMENTED for no route. A stream that got no
response yet and whose request is still held in full (up to the retry buffer) is sent to
another endpoint, preferring another member cluster, when its connect failed, its stream
was refused (RST_STREAM REFUSED_STREAM, or above a GOAWAY's last stream id) or its
connection died before any response (Envoy's `reset,unavailable` retry policy).
"""
from __future__ import annotations

import asyncio
import logging
import random
from typing import TYPE_CHECKING, Any, Callable, Protocol

import h2.errors
import h2.exceptions

from ..upstream.h2_pool import H2Pools
from . import policy_hooks
from .planning import Planning

if TYPE_CHECKING:
    from ..routing.backends import Backend
    from ..routing.select import RequestView
    from ..routing.table import Route, UpstreamEndpoint
    from ..upstream.h2_connection import UpstreamH2

log = logging.getLogger("fleetgate.gateway")


class H2Connection(Protocol):
    """What a GrpcStream asks of the client connection that owns it (DownstreamH2 in h2.py),
    declared here so this module does not import h2.py back (no import cycle)."""

    ctx: Any
    scheme: bytes
    transport: asyncio.Transport | None
    h2: Any  # the HTTP/2 layer (libnghttp2 binding or the h2 library), same interface
    now: Callable[[], float]

    def flush(self) -> None: ...
    def schedule(self) -> None: ...
    def send_data(self, st: Any, data: bytes) -> None: ...
    def reset(self, st: Any, code: Any) -> None: ...
    def stream_done(self, st: Any) -> None: ...

UNKNOWN, DEADLINE_EXCEEDED, PERMISSION_DENIED, RESOURCE_EXHAUSTED = 2, 4, 7, 8
UNIMPLEMENTED, UNAVAILABLE, UNAUTHENTICATED = 12, 14, 16
# a generated HTTP answer (policy_hooks.prepare) as a gRPC status (the gRPC HTTP mapping)
_HTTP_TO_GRPC = {400: 13, 401: UNAUTHENTICATED, 403: PERMISSION_DENIED, 404: UNIMPLEMENTED, 413: RESOURCE_EXHAUSTED,
                 429: UNAVAILABLE, 502: UNAVAILABLE, 503: UNAVAILABLE, 504: UNAVAILABLE}
# trailers-only answers retried elsewhere (see up_headers)
_RETRIED_STATUSES = frozenset(((b"grpc-status", b"14"), (b"grpc-status", b"1")))
_DROP = frozenset((b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade", b"host"))
_UNITS = {b"H": 3600.0, b"M": 60.0, b"S": 1.0, b"m": 1e-3, b"u": 1e-6, b"n": 1e-9}


def is_grpc(route: "Route | None") -> bool:
    return route is not None and route.policy.backend_protocol in ("GRPC", "GRPCS")


def grpc_timeout(value: bytes) -> float | None:
    """`grpc-timeout` (an integer of up to 8 digits and a unit) in seconds; None if malformed."""
    if 2 <= len(value) <= 9 and value[:-1].isdigit() and value[-1:] in _UNITS:
        return int(value[:-1]) * _UNITS[value[-1:]]
    return None


def pools(ctx: Any) -> H2Pools:
    """The context's HTTP/2 upstream pools (made on first use)."""
    p = getattr(ctx, "h2_pools", None)
    if p is None:
        p = ctx.h2_pools = H2Pools(ctx.limits.upstream_idle_timeout)
    return p


class GrpcStream:
    """One gRPC call: a DownstreamH2 stream and its upstream stream (see the module docstring).
    Speaks to DownstreamH2 as its StreamTransports do (held, ended, end_stream, ds)."""

    grpc = True
    chunked = False

    def __init__(self, conn: "H2Connection", sid: int, route: "Route", headers: list[tuple[bytes, bytes]],
                 ended: bool) -> None:
        ctx = conn.ctx
        self.conn = conn
        self.ctx = ctx
        self.balancer = ctx.balancer
        self.stream_id = sid
        self.route = route
        self.backend: "Backend | None" = None
        self.view: "RequestView | None" = None
        self.tried: list[str] = []
        self.extra_resp = b""
        self.label = route.ingress
        self.ds = self  # DownstreamH2 calls ds.pause_writing/resume_writing/connection_lost
        # downstream response side
        self.held: list[bytes] = []
        self.ended = False
        self.end_pending = False
        self.upstream_paused = False
        self.reading = True
        self.unacked = 0
        self.responded = False
        self.trailers: list[tuple[bytes, bytes]] | None = None
        self.status = 0
        self.grpc_status = b""
        # upstream side
        self.up: "UpstreamH2 | None" = None
        self.up_sid = 0
        self.up_open = False
        self.up_unacked = 0  # upstream DATA bytes waiting for the client's window
        self.ep: "UpstreamEndpoint | None" = None
        self.waiting_pool: Any = None
        # request side
        self.request_done = ended
        self.out: list[bytes] = []  # client DATA the upstream's window has not taken
        self.out_flow = 0  # ... and its flow-controlled size, credited back once sent
        self.body: list[bytes] = []  # the whole request so far, for a retry, while replayable
        self.body_size = 0
        self.replayable = True
        self.start = conn.now()
        self.timer: asyncio.TimerHandle | None = None
        self.headers = self._forwarded(headers)

    def _forwarded(self, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """The request's fields for the upstream, after the route's policy (rewrite, vhost)."""
        conn = self.conn
        method = path = authority = b""
        rest: list[tuple[bytes, bytes]] = []
        rid = None
        for name, value in headers:
            if name == b":method":
                method = value
            elif name == b":path":
                path = value
            elif name == b":authority":
                authority = value
            elif name == b"host":
                authority = authority or value
            elif name == b"grpc-timeout":
                t = grpc_timeout(value)
                if t is not None:
                    self.timer = asyncio.get_event_loop().call_later(t, self._deadline)
                rest.append((name, value))
            elif name == b"x-request-id":
                rid = value
                rest.append((name, value))
            elif name[:1] != b":" and name not in _DROP:
                rest.append((name, value))
        policy = self.route.policy
        peer = getattr(conn.transport, "get_extra_info", lambda *_: None)("peername")
        peer_b = (peer[0] if peer else "").encode()
        self.answer = None
        if policy.per_request:
            want = self.ctx.table.request_headers
            fields = {n.decode("latin-1"): v.decode("latin-1") for n, v in rest if n in want} if want else {}
            plan = policy_hooks.prepare(self.route, method, authority, path, fields, peer=peer_b,
                                        tls=conn.scheme == b"https", https_port=self.ctx.https_port,
                                        usable=self.ctx.usable, rand_backend=random.random(), rand_mirror=1.0)
            self.answer = plan.answer
            self.view = plan.view
            self.backend = plan.backend
            self.label = plan.label
            path, authority = plan.target, plan.host
        if rid is None:
            self.ctx.rid += 1
            rest.append((b"x-request-id", b"%s%x" % (self.ctx.rid_prefix, self.ctx.rid)))
        rest.append((b"x-forwarded-for", peer_b))
        rest.append((b"x-forwarded-proto", conn.scheme))
        return [(b":method", method), (b":scheme", b"https" if policy.backend_protocol == "GRPCS" else b"http"),
                (b":path", path), (b":authority", authority), *rest]

    # --- the call's progress ------------------------------------------------------------

    def begin(self) -> None:
        if self.answer is not None:
            code, reason, _ = self.answer
            self.fail(_HTTP_TO_GRPC.get(code, UNKNOWN), reason)
            return
        self._attempt()

    def _attempt(self) -> None:
        now = self.conn.now()
        ep = Planning._pick(self, self, now)  # type: ignore[arg-type]  # duck-typed: ctx, balancer, route...
        if ep is None:
            self.fail(UNAVAILABLE, "no-healthy-upstream")
            return
        self.ep = ep
        self.tried.append(ep.key)
        pool = pools(self.ctx).get(ep.key, ep.address, ep.port, self.route.policy.backend_protocol == "GRPCS")
        self.waiting_pool = pool
        up = pool.get(self._connected, self.route.policy.connect_timeout)
        if up is not None:
            self._connected(up)

    def _connected(self, up: "UpstreamH2 | None") -> None:
        if self.ended:
            return
        self.waiting_pool = None
        self._connected_to(up)
        self.conn.schedule()  # (called from the pool's connect task too: nothing else writes)

    def _connected_to(self, up: "UpstreamH2 | None") -> None:
        if up is None:
            self._failed(connect=True)
            return
        if not up.can_open():
            self.tried.pop()  # no free slot: the next connection to the same endpoint
            self._attempt()
            return
        self.up = up
        self.up_open = True
        try:
            self.up_sid = up.open(self, self.headers, self.request_done and not self.body and not self.out)
            self._end_sent = self.request_done and not self.body and not self.out
        except h2.exceptions.ProtocolError:
            self.up = None
            self.up_open = False
            self._failed(connect=True)
            return
        if self.body:  # DATA that came while connecting, or a retry: all of it (again)
            self.out = list(self.body) + self.out
        self._pump()

    def _pump(self) -> None:
        """Client DATA to the upstream as its window allows; END_STREAM after the last."""
        up = self.up
        if up is None or not self.up_open:
            return
        out = self.out
        while out:
            rest = up.send_data(self.up_sid, out[0])
            if rest:
                out[0] = rest
                return
            out.pop(0)
        if self.out_flow:  # all sent: the client may send as much again
            self.conn.h2.acknowledge_received_data(self.out_flow, self.stream_id)
            self.out_flow = 0
            self.conn.schedule()
        if self.request_done and self.up_open and up.streams.get(self.up_sid) is self and not self._end_sent:
            self._end_sent = True
            up.end(self.up_sid)

    _end_sent = False

    # --- from the client (DownstreamH2) --------------------------------------------------

    def request_data(self, data: bytes, flow: int) -> None:
        if self.ended:
            self.conn.h2.acknowledge_received_data(flow, self.stream_id)
            return
        self.out_flow += flow  # credited back once the upstream took it
        keep = self.replayable and not self.responded
        if keep:
            self.body_size += len(data)
            if self.body_size > self.ctx.limits.retry_buffer:
                self.replayable = keep = False
                if self.up is None:
                    self.out = self.body  # what came while connecting goes out first
                self.body = []
        if self.up is None:
            if keep:
                self.body.append(data)  # sent from the body once connected
            else:
                self.out.append(data)
            return
        if keep:
            self.body.append(data)
        self.out.append(data)
        self._pump()

    def request_end(self) -> None:
        self.request_done = True
        self._pump()

    # --- from the upstream stream (H2Sink) -------------------------------------------------

    def up_headers(self, headers: list[tuple[bytes, bytes]], end: bool) -> None:
        if self.ended:
            return
        if end and not self.responded and _RETRIED_STATUSES.intersection(headers) and self._may_retry(self.conn.now()):
            # a trailers-only UNAVAILABLE or CANCELLED from the server (one shutting down answers
            # its calls in flight so: "Cancelling all calls"), nothing relayed yet: another
            # endpoint, as Envoy's `unavailable,cancelled` retry policies
            up = self.up
            if up is not None:
                up.streams.pop(self.up_sid, None)  # its END_STREAM is no longer this call's
            self.up_open = False
            self.up = None
            self._failed(connect=False)
            self.conn.schedule()
            return
        fields = [(n, v) for n, v in headers if n not in _DROP]
        for n, v in fields:
            if n == b":status":
                self.status = int(v)
            elif n == b"grpc-status":
                self.grpc_status = v
        line = self.ctx.cluster_line(self.ep.cluster) if self.ep is not None else b""
        if line:
            name, _, value = line.partition(b":")
            fields.append((name, value.strip()))
        self.responded = True
        self.body = []
        self.conn.h2.send_headers(self.stream_id, fields, end_stream=end)
        if end:  # trailers-only
            self._ended()
        self.conn.schedule()

    def up_data(self, data: bytes, flow: int) -> None:
        if self.ended:
            if self.up is not None:
                self.up.ack(self.up_sid, flow)
            return
        self.conn.send_data(self, data)
        if self.held:
            self.up_unacked += flow
        elif self.up is not None:
            self.up.ack(self.up_sid, flow)
        self.conn.schedule()

    def up_trailers(self, headers: list[tuple[bytes, bytes]]) -> None:
        self.trailers = [(n, v) for n, v in headers if n not in _DROP]
        for n, v in self.trailers:
            if n == b"grpc-status":
                self.grpc_status = v

    def up_end(self) -> None:
        self.up_open = False
        if not self.ended:
            self.end_stream()
            self.conn.schedule()

    def up_reset(self, code: int, refused: bool) -> None:
        self.up_open = False
        self.up = None
        if self.ended:
            return
        if not self.responded:  # reset before any response (refused or not): Envoy's reset, refused-stream
            self._failed(connect=False, refused=refused)
        else:
            self.fail(UNAVAILABLE, "upstream-reset", code=h2.errors.ErrorCodes.CANCEL)
        self.conn.schedule()

    def up_window(self) -> None:
        self._pump()

    def up_lost(self) -> None:
        self.up_open = False
        self.up = None
        if self.ended:
            return
        if not self.responded:
            self._failed(connect=False, lost=True)
        else:
            self.fail(UNAVAILABLE, "upstream-error")
        self.conn.schedule()

    def _failed(self, *, connect: bool, refused: bool = False, lost: bool = False) -> None:
        """The attempt failed before any response: another endpoint when the call may go again."""
        now = self.conn.now()
        ep = self.ep
        if ep is not None and not refused:
            self.ctx.eject(ep, self.backend or self.route.backend, now)
        if self._may_retry(now, refused=refused):
            if ep is not None:
                self.ctx.metrics.retry(ep.cluster)
            self.out = []
            self._end_sent = False
            self._attempt()
            return
        self.fail(UNAVAILABLE, "upstream-connect-error" if connect else "upstream-error")

    def _may_retry(self, now: float, *, refused: bool = False) -> bool:
        """The call may go to another endpoint: held whole, tries and retry time left (a refused
        stream was not processed: it costs no try)."""
        retry = self.route.policy.retry
        return (self.replayable and not retry.off and len(self.tried) < retry.tries + (1 if refused else 0)
                and (retry.timeout is None or now - self.start <= retry.timeout))

    def _deadline(self) -> None:
        self.timer = None
        if not self.ended:
            self.fail(DEADLINE_EXCEEDED, "deadline-exceeded")
            self.conn.schedule()

    def fail(self, status: int, reason: str, *, code: int = h2.errors.ErrorCodes.CANCEL) -> None:
        """End the call with a gRPC status of ours: trailers-only before a response, trailers after."""
        if self.ended:
            return
        self._cancel_upstream(code)
        self.grpc_status = b"%d" % status
        fields = [(b"grpc-status", self.grpc_status), (b"grpc-message", reason.encode()),
                  (b"x-fleetgate-reason", reason.encode())]
        self.held = []
        self.end_pending = False
        try:
            if not self.responded:
                self.responded = True
                self.status = 200
                self.conn.h2.send_headers(self.stream_id, [(b":status", b"200"),
                                                          (b"content-type", b"application/grpc"), *fields],
                                          end_stream=True)
            else:
                self.conn.h2.send_headers(self.stream_id, fields, end_stream=True)
        except h2.exceptions.ProtocolError:
            self.conn.reset(self, h2.errors.ErrorCodes.INTERNAL_ERROR)  # type: ignore[arg-type]
            return
        self._ended()

    def _cancel_upstream(self, code: int = h2.errors.ErrorCodes.CANCEL) -> None:
        if self.waiting_pool is not None:
            self.waiting_pool.cancel(self._connected)
            self.waiting_pool = None
        if self.up is not None and self.up_open:
            self.up_open = False
            self.up.reset(self.up_sid, code)  # type: ignore[arg-type]
        self.up = None

    # --- what DownstreamH2 asks of its streams ----------------------------------------------

    def end_stream(self) -> None:
        if self.held:
            self.end_pending = True
            return
        if self.trailers:
            self.conn.h2.send_headers(self.stream_id, self.trailers, end_stream=True)
        else:
            self.conn.h2.end_stream(self.stream_id)
        self._ended()

    def _ended(self) -> None:
        self.ended = True
        self.conn.stream_done(self)  # type: ignore[arg-type]

    def pause_writing(self) -> None:
        self.upstream_paused = True

    def resume_writing(self) -> None:
        if self.up_unacked and self.up is not None:
            self.up.ack(self.up_sid, self.up_unacked)
        self.up_unacked = 0

    def connection_lost(self, exc: Exception | None) -> None:
        """The downstream stream is done (ended, reset, or its connection closed)."""
        self.ended = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self._cancel_upstream()
        if self.out_flow:
            self.out_flow = 0
        if not getattr(self, "_observed", False):
            self._observed = True
            self.ctx.metrics.grpc_done(self, self.conn.now())
