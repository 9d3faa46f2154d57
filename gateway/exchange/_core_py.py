# cython: annotation_typing=False
"""The request path's hot core: the two connection halves that drive an exchange, and
the per-request metrics row.

One source, two builds: this file is the pure-Python twin as it stands, and setup.py
compiles it with Cython as `gateway.exchange._core`, where `_core.pxd` makes the classes
extension types with typed fields and cimports `_exchange` and `_route` (each compiled from
its own twin), so the common request's field reads and calls are C. C-only helpers are
inline functions in _core.pxd, called only where `_COMPILED` is true; a twin-only `else:`
may inline a small helper (a Python call costs ~400 instructions there).
`gateway/exchange/__init__.py` chooses the build (all compiled or all twins).

Only what a plain proxied request runs lives here: a whole request head on an idle client
connection (`DownstreamCore.data_received` -> `_on_head` -> `_send_on`), the upstream's
whole keep-alive response (`UpstreamCore.data_received` -> `DownstreamCore.response_complete`),
the writes. The rest is the Python subclasses' (H1Reader, DownstreamH1 in gateway/protocol/,
UpstreamH1 in gateway/upstream/), called by name: `_read`, `_hold`, `_reject`, `_route_miss`,
`_policy_head`, `_expect_body`, `_start`, `_pick`, `_send`, `_uncount`, `_next` (downstream),
`_read` (upstream).
"""
from __future__ import annotations

import logging
import sys
from bisect import bisect_left
from random import random as _random
from typing import Any

from ..codec import HeadError, head_end, parse_request, parse_response, upstream_head
from ..codec._h1fast_py import request_whole, response_whole  # (the twin's one-call heads)
from .phases import DONE, RESPONDING, SENT

log = logging.getLogger("fleetgate.gateway")

_MAX_HEAD = 64 * 1024
MAX_RESPONSE_HEAD = _MAX_HEAD  # a response head longer than this is refused (502)
_HEAD = 0  # UpstreamCore.state: reading a response head (gateway/upstream/connection.py: the others)
_MISS = object()
# RequestHead's indexes as objects: a NamedTuple's type has a generic sq_item (a Python
# call, ~750 instructions) that Cython uses for a C index; an object index goes through its
# mp_subscript, the tuple's own
_TARGET, _HOST, _FIELDS = 1, 3, 12

# the request duration histogram's upper bounds (seconds); gateway/metrics.py's BUCKETS. A
# metrics row: the request count per bucket (and the +Inf one), then at _SUM the sum of
# seconds, at _RECV request bytes, at _SENT response bytes
BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
           10.0, 30.0, 60.0)
_BOUNDS = BUCKETS
_SUM = len(BUCKETS) + 1
_RECV = _SUM + 1
_SENT = _SUM + 2

# the package's namespace: EXCHANGE_CLASS is read there per request (tests swap in a checked class)
_package = vars(sys.modules[__name__.rpartition(".")[0]])


def compiled() -> bool:
    """True in the Cython build of this module (its functions are not Python functions)."""
    return type(compiled).__name__ != "function"


# The exchange and the route side: the compiled build cimports them (_core.pxd) and imports
# their Python-only names from the compiled modules; the twin imports the twins. Never a mix.
if compiled():
    from ._exchange import IDEMPOTENT_METHODS, Reject  # type: ignore[import-not-found, no-redef]
else:
    from ._exchange_py import *  # noqa: F403
    from ._route_py import *  # noqa: F403

# The compiled build writes a plain Exchange's phase field directly; a subclass's moves go
# through advance() so its `phase` property sees them. The twin just assigns.
_COMPILED = compiled()
if _COMPILED:  # the histogram's bounds as C doubles (_core.pxd's _bucket searches them)
    assert len(BUCKETS) == _NBOUNDS
    for _i in range(_NBOUNDS):
        _BOUNDS_C[_i] = BUCKETS[_i]


class DownstreamCore:
    """The hot half of a client's HTTP/1.1 connection (H1Reader and DownstreamH1 build on
    it; they set every field in their __init__)."""

    # Slots, not a __dict__ (the data path reads them on every request); the compiled
    # build declares the same fields in _core.pxd.
    __slots__ = ("ctx", "scheme", "tls", "transport", "peer", "buf", "began", "cur", "active", "out",
                 "deadline", "http11", "tunnel", "held", "close_after", "paused", "final", "now",
                 "header_timeout", "idle_timeout", "max_line", "max_headers", "head_limit", "health",
                 "pools", "balancer", "sent", "logged", "wfd", "spare", "last_table", "last_host", "last_target",
                 "last_hot", "__weakref__")

    def __cinit__(self) -> None:
        """(Compiled build only: no direct writes until a subclass names the socket; a C
        int field would start at 0, stdin.)"""
        self.wfd = -1

    def flush(self) -> None:
        out = self.out
        if out:
            t = self.transport
            data = out[0] if len(out) == 1 else b"".join(out)
            self.sent += len(data)
            if t is not None:
                t.write(data)
            out.clear()
        if self.close_after and self.active is None and self.transport is not None:
            if self.final:
                self.transport.write(self.final)
                self.final = b""
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if (self.active is None and self.cur is None and not self.buf and self.held is None
                and self.tunnel is None and not self.close_after):
            # The common read: one whole request head on an idle connection, nothing behind
            # it. Anything else (a partial head, pipelining, a refusal, h2c) takes the
            # general way (H1Reader._read), which parses again and says precisely what is wrong.
            try:
                if _COMPILED:
                    head = None
                    end = head_end(data, 0, self.head_limit)
                    if end == len(data) and not _is_preface(data):  # (_core.pxd: not h2c's preface)
                        head = parse_request(data, 0, end, self.max_line, self.max_headers)
                else:  # the twin: one call (the same head, or None for the general way)
                    head = request_whole(data, self.max_line, self.max_headers)
                if head is not None:
                    ex = self._on_head(head, self.now())
                    # an upgrade (never keep-alive here; head[7]: by index, see _on_head)
                    if not ex.keep_alive and head[7] is not None and self.cur is not ex:
                        self._hold(b"")
                    if self.out:
                        self.flush()
                    return
            except HeadError:
                pass
            except Reject as r:
                self._reject(r.code, r.reason)
                self.flush()
                return
            except Exception:
                log.exception("gateway bug while handling a request")
                self._reject(500, "internal-error")
                self.flush()
                return
        self._read(data)

    def _on_head(self, head: Any, began: float) -> Exchange:
        """A parsed head: its exchange, routed (a per-table memo of route snapshots by
        (host, target)); the common request (no body, no per-request policy) sent here, the
        rest by DownstreamH1._policy_head."""
        ctx = self.ctx
        # The head's fields unpacked at once: a NamedTuple field read is a descriptor call
        # (~240 instructions on 3.11), one unpack of the whole tuple costs about two of them.
        if _COMPILED:  # as a plain tuple's (_core.pxd's _as_tuple): C reads of its items
            (method, target, version, host, content_length, chunked, keep_alive, upgrade,
             _expect, _xff, rid, _via, _fields, _count) = _as_tuple(head)
        else:
            (method, target, version, host, content_length, chunked, keep_alive, upgrade,
             _expect, _xff, rid, _via, _fields, _count) = head
        if method == b"CONNECT":
            raise Reject(405, "connect-not-allowed")
        cls = _package["EXCHANGE_CLASS"]
        if _COMPILED and self.spare is not None:
            # the compiled build: this connection's last exchange again, when it is free
            ex = self.spare
            self.spare = None
            if _spare_free(ex, cls):  # type: ignore[name-defined]  # (_core.pxd)
                reset_exchange(ex)
            else:
                ex = cls()
        elif _COMPILED:  # (the plain class: a direct allocation, no call)
            ex = Exchange.__new__(Exchange) if cls is Exchange else cls()
        else:  # (the twin: a class call costs less than __new__'s)
            ex = cls()
        ex.ds = self
        ex.req = head
        ex.method = method
        ex.start = began
        # read on every request: set here so the reads never fall back to the class (an
        # unspecialised attribute load on 3.11, in the twin)
        ex.backend = None
        ex.counted = None
        ex.extra_resp = b""
        self.http11 = version == 11
        if upgrade is not None or ctx.draining:
            ex.keep_alive = False  # declined or not, nothing after an upgrade is parsed as a request
        else:
            ex.keep_alive = keep_alive
        table = ctx.table
        if table is self.last_table and host == self.last_host and target == self.last_target:
            # the connection's previous request had the same Host and target on the same
            # table (two byte compares, where the memo hashes both)
            hot = self.last_hot
        else:
            if table is not ctx.hot_table:  # a new table (or the first request): a new memo
                ctx.hot_table = table
                ctx.hot_memo = {}
                ctx.hot_routes = {}
            key = (host, target)
            hot = ctx.hot_memo.get(key)
            if hot is None:
                hot = _hot_miss(ctx, self, table, key)
            self.last_table = table
            self.last_host = host
            self.last_target = target
            self.last_hot = hot
        has_body = chunked or content_length > 0
        if rid is None:
            if _COMPILED:
                rid = _next_rid(ctx)  # (_core.pxd: the same bytes, formatted by a C loop)
            else:
                ctx.rid += 1
                rid = b"%s%x" % (ctx.rid_prefix, ctx.rid)
        ex.request_id = rid
        r = hot.route
        if r is None:
            if has_body:
                self._expect_body(ex, head)
            else:
                ex.request_done = True
            self._start(ex)
            return ex
        ex.route = r
        ex.label = hot.label
        if (hot.fast or (self.tls and hot.fast_tls)) and not has_body and upgrade is None:
            # the common request: no body, no per-request policy; its upstream head in one
            # call (arguments by position: the compiled codec parses no keywords then)
            ex.head = upstream_head(head, target, host, self.peer, self.scheme, rid)
            ex.request_done = True
            if not self.health.down and (method == b"GET" or method in IDEMPOTENT_METHODS):
                eps = hot.endpoints
                if eps:  # _fast_send's plain round robin, over the snapshot's endpoints and their keys
                    i = _next_index(self.balancer.rr, hot.bkey, len(eps))
                    self._send_on(ex, eps[i], hot.keys[i], hot.read_timeout)
                    return ex
            self._start(ex)
            return ex
        warm = hot.warm
        if (warm is not None and not has_body and upgrade is None and not self.health.down
                and method in IDEMPOTENT_METHODS):
            # the route's policies as a table (gateway/routing/plan.py): one pure call
            # resolves them, and the request goes out as the common one does
            self._warm_head(ex, head, hot, target, host, _fields)
            return ex
        self._policy_head(ex, head, r, has_body)
        return ex

    def _warm_head(self, ex: Exchange, head: Any, hot: RouteHot, target: bytes, host: bytes, fields: bytes) -> None:
        """A request whose route's policies have a warm plan (routing/plan.py; every
        endpoint up, no body, an idempotent method): resolve_warm decides the backend, the
        member cluster and the mirror, round robin the endpoint, then the warm send.
        (target, host, fields: the head's, as _on_head unpacked them.)"""
        backend, label, eps, mirror = resolve_warm(hot.warm, fields, _random(), _random(), _random())
        ex.backend = backend
        ex.label = label
        ex.head = upstream_head(head, target, host, self.peer, self.scheme, ex.request_id)
        ex.request_done = True
        if mirror is not None:
            ex.mirror = mirror
            self._mirror_now(ex)  # (DownstreamH1: the copy's head, submitted)
        ep = eps[_next_index(self.balancer.rr, backend.key, len(eps))]
        self._send_on(ex, ep, ep.key, hot.read_timeout)

    def _fast_send(self, ex: Exchange, r: Any, plain: bool) -> bool:
        """The common case in one call: round robin (plain, or the policy's pick: weighted
        clusters...), every endpoint up, a warm pooled connection. False (nothing done)
        when the backend has no endpoint (or the policy's pick finds none). `plain`: the
        route's policy picks plainly (the caller has read it)."""
        backend = ex.backend or r.backend
        if backend is None or not backend.endpoints:
            return False
        if plain:
            ep = round_robin(backend.endpoints, self.balancer, backend.key)
        else:
            ep = self._pick(ex, ex.start)
            if ep is None:
                return False
        self._send_on(ex, ep, ep.key, r.policy.read_timeout)
        return True

    def _send_on(self, ex: Exchange, ep: Any, key: str, read_timeout: float) -> None:
        """ex to ep (whose key is `key`): on a warm pooled connection in one call, else
        the general send. `read_timeout`: the route policy's (the attempt's deadline is
        wait_until's for a connected attempt: start + the read timeout)."""
        self.active = ex
        self.deadline = 0.0
        pool = self.pools.get(key)
        if pool is not None:
            idle = pool.idle
            if idle:
                conn = idle.pop()
                t = conn.transport
                if t is not None and not t.is_closing():
                    ex.endpoint = ep
                    ex.attempt = 1
                    if _COMPILED and type(ex) is not Exchange:
                        ex.advance(SENT)  # a checked class: its property checks (the C field would bypass it)
                    else:
                        ex.phase = SENT
                    ex.deadline = ex.start + read_timeout
                    if _COMPILED:
                        conn.send(ex, ex.head)
                    else:  # the twin: UpstreamCore.send, inlined (t: the connection's open transport)
                        conn.ex = ex
                        ex.upstream = conn
                        conn.state = _HEAD
                        t.write(ex.head)
                    return
        self._send(ex, ep, self.now())  # no warm connection: the general send

    def response_complete(self, ex: Exchange, reusable: bool, upstream: Any) -> None:
        if _COMPILED and type(ex) is not Exchange:
            ex.advance(DONE)  # a checked class: its property checks (the C field would bypass it)
        else:
            ex.phase = DONE
        ctx = self.ctx
        now = self.now()
        if upstream is not None:
            if reusable:
                # Pool.release, inlined (a call per request saved): idle while under the cap
                pool = upstream.pool
                idle = pool.idle
                if len(idle) < pool.max_idle and upstream.transport is not None:
                    upstream.idle_since = now
                    idle.append(upstream)
                else:
                    upstream.close()
            else:
                upstream.close()
        if ex.counted is not None:
            self.balancer.observe(ex.counted, now - ex.sent, now)  # peak EWMA's sample
            self._uncount(ex)
        if _COMPILED:
            # the metrics' RequestCounts, typed (remembered per metrics object): a C call
            m = ctx.metrics
            if m is not ctx.counts_of:
                counts = m.counts  # (typed: checked here, once per metrics object)
                ctx.counts = counts
                ctx.counts_of = m
            _counts(ctx).done(ex, now)  # type: ignore[name-defined]  # (_core.pxd: ctx.counts, typed unchecked)
        else:
            ctx.metrics.counts.done(ex, now)
        if ex.keep_alive and not self.paused and not ctx.draining:
            self.active = None  # the common end of a keep-alive exchange: wait for the next
            if _COMPILED:
                self.spare = ex  # (its object serves the next request when nothing else holds it)
            self.deadline = now + (self.header_timeout if self.began else self.idle_timeout)
            return
        self._next(ex, now)


class PoolCore:
    """The hot half of a per-endpoint pool of idle upstream connections (Pool in
    gateway/upstream/pool.py builds on it): the two fields the request path reads, typed
    in the compiled build (from Python each read is a descriptor call)."""

    __slots__ = ("idle", "max_idle")


class UpstreamCore:
    """The hot half of one keep-alive HTTP/1.1 connection to an upstream endpoint
    (UpstreamH1 builds on it and sets every field in its __init__)."""

    __slots__ = ("pool", "transport", "ex", "idle_since", "buf", "state", "reused", "tunnel", "cluster", "cline",
                 "wfd")

    def __cinit__(self) -> None:
        """(Compiled build only: as DownstreamCore's.)"""
        self.wfd = -1

    def send(self, ex: Exchange, data: bytes) -> None:
        self.ex = ex
        ex.upstream = self
        self.state = _HEAD
        if _COMPILED:
            _write(self.transport, self.wfd, data)  # type: ignore[name-defined]  # (_core.pxd: the socket first)
        else:
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        ex = self.ex
        if ex is not None and self.state == _HEAD and not self.buf and self.cline is not None and self.tunnel is None:
            # The common read: a whole keep-alive response delimited by Content-Length (or
            # bodiless), status below 400, nothing watched, both connections staying open.
            ds = ex.ds
            try:
                whole = False  # answered here
                if _COMPILED:
                    end = head_end(data, 0, _MAX_HEAD)
                    if 0 < end <= _MAX_HEAD:
                        # by position: the compiled codec parses no keywords then. The fields
                        # unpacked as a plain tuple's (_core.pxd's _as_tuple: a NamedTuple's own
                        # unpacking is the iterator protocol, a call per field); the client's
                        # fields as C reads when it is a DownstreamCore
                        (code, _reason, _version, keep_alive, clen, chunked, _close,
                         rhead) = _as_tuple(parse_response(data, 0, end, ex.method == b"HEAD"))
                        if isinstance(ds, DownstreamCore):
                            dc = ds
                            client_ok = dc.http11 and not dc.health.endpoints
                        else:
                            client_ok = ds.http11 and not ds.health.endpoints
                        if (clen == len(data) - end and keep_alive and not chunked
                                and 200 <= code < 400 and ex.keep_alive and client_ok):
                            whole = True
                else:  # the twin: one call, for a whole reusable response only (else None)
                    r = response_whole(data, ex.method == b"HEAD")
                    if r is not None and ex.keep_alive and ds.http11 and not ds.health.endpoints:
                        code, end, rhead = r
                        whole = 200 <= code < 400
                if whole:
                    ex.status = code
                    if _COMPILED and type(ex) is not Exchange:
                        ex.advance(RESPONDING)  # a checked class: its property checks (the C field would bypass it)
                    else:
                        ex.phase = RESPONDING
                    ex.cluster = self.cluster
                    self.ex = None
                    reusable = ex.request_done
                    if reusable:
                        self.reused = True
                    if _COMPILED:
                        if isinstance(ds, DownstreamCore):
                            dc = ds
                            if not dc.out and dc.transport is not None:
                                # nothing waits before it: head and body straight to the client
                                # (one sendmsg of the pieces, _core.pxd), then the exchange ends
                                dc.sent += _write_response(  # type: ignore[name-defined]  # (_core.pxd)
                                    dc.transport, dc.wfd, rhead, self.cline, ex.extra_resp, data, end)
                                dc.response_complete(ex, reusable, self)
                                if dc.out or dc.close_after:
                                    dc.flush()
                                return
                        # head and body in one piece (_core.pxd: one new bytes, no slice, no tuple)
                        piece = _join_piece(rhead, self.cline, ex.extra_resp, data, end)  # type: ignore[name-defined]
                    else:
                        piece = b"".join((rhead, self.cline, ex.extra_resp, b"\r\n", data[end:]))
                    if isinstance(ds, DownstreamCore):
                        # written at once when nothing waits in out (flush's work, without its call)
                        dc = ds
                        out = dc.out
                        t = dc.transport
                        if out or t is None:
                            out.append(piece)
                        else:
                            dc.sent += len(piece)
                            t.write(piece)
                        dc.response_complete(ex, reusable, self)
                        if out or dc.close_after:
                            dc.flush()
                    else:  # another Downstream (an HTTP/2 stream): its flush frames what is in out
                        ds.out.append(piece)
                        ds.response_complete(ex, reusable, self)
                        ds.flush()
                    return
            except HeadError:
                pass  # the general way says what is wrong
        self._read(data)


class RequestCounts:
    """The per-request half of gateway/metrics.py's GatewayMetrics, here so that the compiled
    build reads the exchange's and the connection's typed fields as C (from Python each read
    is a descriptor call; the call was ~9k instructions of a ~37k request). GatewayMetrics
    owns it and everything else: `rows` is its dict (shared, not copied), `log` its access
    log (None: off), and a new row or a possible failover goes back to it (`owner`)."""

    __slots__ = ("owner", "rows", "log", "c_route", "c_backend", "c_label", "c_cluster", "c_method",
                 "c_status", "c_row")

    def __init__(self, owner: Any, rows: dict) -> None:
        self.owner = owner
        self.rows = rows
        self.log = None
        # The last row and what chose it (strong references: an identity match is the same
        # object). Rows are never removed from `rows`: a remembered row is the one exported.
        self.c_route = _MISS
        self.c_backend = _MISS
        self.c_label = _MISS
        self.c_cluster = _MISS
        self.c_method = _MISS
        self.c_status = _MISS
        self.c_row = None

    def done(self, ex: Exchange, now: float) -> None:
        """A downstream request was answered (relayed, generated or cut): count it in its
        row, and queue it for the access log when that is on. `now` is the same clock as
        `ex.start` (monotonic)."""
        ds = ex.ds
        if _COMPILED and isinstance(ds, DownstreamCore):
            c = ds  # typed in the compiled build: its fields are C reads
            n = c.sent  # response bytes: flushed on this connection, plus what waits in its output
            for b in c.out:
                n += len(b)
            sent = n - c.logged
            c.logged = n
        else:
            n = ds.sent
            out = ds.out
            if out:
                for b in out:
                    n += len(b)
            sent = n - ds.logged
            ds.logged = n
        r = ex.route
        # the last request's row again when its key's sources are the same objects (a route's
        # ingress and a backend's key do not change; label and cluster are shared strings)
        # and method and status equal: no 6-tuple, no hash, no lookup
        if (r is self.c_route and ex.backend is self.c_backend and ex.label is self.c_label
                and ex.cluster is self.c_cluster and ex.status == self.c_status and ex.method == self.c_method):
            row = self.c_row
        else:
            row = self._remember(ex, r)
        start = ex.start
        seconds = now - start
        req = ex.req
        # the request's target, Host and forwarded header lines and its body, and 30 bytes for
        # the rest of the request line and the framing (the codec keeps no raw head; each
        # RequestHead field read costs, so the method's length is in the 30)
        if _COMPILED:
            # the row's cells are floats: each sum read as a C double and written back as one
            # new float (`row[k] += x` would box x first and dispatch a float + int add)
            body = ex.body_size
            if isinstance(req, tuple):  # (a RequestHead: its items as a plain tuple's, C reads)
                t = _as_tuple(req)
                received = len(t[1]) + len(t[3]) + len(t[12]) + 30 + body
            else:
                received = len(req[_TARGET]) + len(req[_HOST]) + len(req[_FIELDS]) + 30 + body
            i = _bucket(seconds)  # (_core.pxd: over a C array of the bounds)
            acc = row[i]
            row[i] = acc + 1.0
            acc = row[_SUM]
            row[_SUM] = acc + seconds
            acc = row[_RECV]
            row[_RECV] = acc + received
            acc = row[_SENT]
            row[_SENT] = acc + sent
        else:
            i = bisect_left(_BOUNDS, seconds)
            row[i] += 1
            row[_SUM] += seconds
            received = len(req[_TARGET]) + len(req[_HOST]) + len(req[_FIELDS]) + 30 + ex.body_size
            row[_RECV] += received
            row[_SENT] += sent
        if ex.attempt > 1:  # a retry (the first attempt set it to 1): maybe a failover
            self.owner._failover(ex, r)
        lg = self.log
        if lg is not None:
            pending = lg.pending
            if not pending:
                lg.schedule()
            pending.append((ex, seconds, sent, received))

    def _remember(self, ex: Exchange, r: Any) -> list:
        """The row of ex's key (label, ingress, backend, cluster, method, status), made by the
        owner on the key's first request; remembered with what chose it, for the next one."""
        if r is None:
            key = (ex.label, "", "", ex.cluster, ex.method, ex.status)
        else:
            be = ex.backend or r.backend
            key = (ex.label, r.ingress, be.key if be is not None else "", ex.cluster, ex.method, ex.status)
        row = self.rows.get(key)
        if row is None:
            row = self.owner._new_row(key)
        self.c_route = r
        self.c_backend = ex.backend
        self.c_label = ex.label
        self.c_cluster = ex.cluster
        self.c_method = ex.method
        self.c_status = ex.status
        self.c_row = row
        return row
