# cython: annotation_typing=False
"""The request path's hot core: the exchange and the two connection halves that drive it.

One source, two builds. This file is the pure-Python twin as it stands; setup.py also
compiles it with Cython as `gateway.exchange._core`, where `_core.pxd` beside it turns
`Exchange`, `DownstreamCore` and `UpstreamCore` into extension types with typed
attributes, so the common request's attribute reads and calls between the three are C
(compiling one of them alone was slower: its reads of the others stayed generic). The
same holds for what they read of the rest of the gateway: `ContextCore` (the per-worker
context's hot fields: GatewayContext builds on it) and `RouteHot` (what a request reads of
its Route, its policy and its backend, copied once per route into one typed record and
memoised per context and table), so a plain request makes no generic attribute read of
routing data. A few C-only helpers (request ids, the response piece, the bucket search,
reading a codec NamedTuple as a plain tuple) are inline functions in _core.pxd, called
only where `_COMPILED` is true. `gateway/exchange/__init__.py` chooses the build, as
gateway/codec does.

What lives here is only what a plain proxied request runs: a whole request head read on
an idle client connection (`DownstreamCore.data_received` -> `_on_head` -> `_send_on`),
the upstream's whole keep-alive response (`UpstreamCore.data_received` ->
`DownstreamCore.response_complete`), and the writes. Everything else stays in the Python
subclasses (H1Reader and DownstreamH1 in gateway/protocol/, UpstreamH1 in
gateway/upstream/), which these methods call by name: `_read`, `_hold`, `_reject`,
`_route_miss`, `_policy_head`, `_expect_body`, `_start`, `_pick`, `_send`, `_uncount`, `_next`
(downstream) and `_read` (upstream). No class here has class-level defaults (a compiled
extension type cannot): `Exchange`'s defaults are `EXCHANGE_DEFAULTS`, set on the class
by the twin and in `__cinit__` by the compiled build (tests/gateway/test_exchange.py
holds both to the same values).
"""
from __future__ import annotations

import logging
import sys
from bisect import bisect_left
from random import random as _random
from typing import Any, Sequence

from ..codec import HeadError, head_end, parse_request, parse_response, upstream_head
from ..codec._h1fast_py import request_whole, response_whole  # (the twin's one-call heads)
from .phases import ALLOWED, DONE, RESPONDING, SENT, Phase, PhaseError

log = logging.getLogger("fleetgate.gateway")

_MAX_HEAD = 64 * 1024
MAX_RESPONSE_HEAD = _MAX_HEAD  # a response head longer than this is refused (502)
IDEMPOTENT_METHODS = frozenset((b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"))
_HEAD = 0  # UpstreamCore.state: reading a response head (gateway/upstream/connection.py: the others)
_MISS = object()
# RequestHead's indexes as objects: a NamedTuple's type has a generic sq_item (a Python
# call, ~750 instructions) that Cython uses for a C index; an object index goes through its
# mp_subscript, the tuple's own
_TARGET, _HOST, _FIELDS = 1, 3, 12
_STATUS, _KEEP, _CLEN, _CHUNKED, _RHEAD = 0, 3, 4, 5, 7  # ResponseHead's, likewise

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


class Reject(Exception):
    """A request the gateway answers itself and then closes (limits, malformed input)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def round_robin(endpoints: Sequence[Any], state: Any, key: str) -> Any:
    """The one round robin: the backend's cursor in `state` (a BalancerState) advances by one."""
    return endpoints[_next_index(state.rr, key, len(endpoints))]


def _next_index(rr: dict, key: Any, n: int) -> int:
    """round_robin's step: the index of the next of `n` endpoints for the backend `key`,
    its cursor in `rr` (BalancerState.rr) advanced by one (the request path's typed callers
    index the snapshot's endpoints and their keys with it)."""
    c = rr.get(key, 0)
    rr[key] = c + 1
    return c % n


def resolve_warm(plan: tuple, fields: bytes, rand: float, rand_cluster: float,
                 rand_mirror: float) -> tuple:
    """The request's plan from its route's warm plan (gateway/routing/plan.py), pure:
    (backend, label, the endpoints to round robin over, the mirror or None). The canary
    order of routing/select.choose_backend (a deciding header rule wins; else the
    undecided weighted canaries share `rand`, in order), the member-cluster draw of
    upstream/decide.pick by `rand_cluster`, the mirror when rand_mirror * 100 is under its
    percentage: the general path's answers for the same values when every endpoint is up."""
    canaries, row, mirror, mirror_pct = plan
    if canaries:
        drawn = None
        acc = 0.0
        src = low = b""
        for canary in canaries:
            key, exact, pattern, share, crow = canary
            outcome = -1  # -1: undecided, 1: this canary, 0: not this one
            if key is not None and fields:
                if _COMPILED:
                    value = _header_value(fields, key)  # a typed scan, no copy of the head
                else:
                    value = None
                    if not low:
                        src = b"\r\n" + fields  # every line starts after a CRLF (a value holds none)
                        low = src.lower()
                    i = low.rfind(key)
                    if i >= 0:
                        i += len(key)
                        value = src[i:low.find(b"\r\n", i)].strip(b" \t").decode("latin-1")
                if value is not None:
                    if exact is not None:
                        if value == exact:
                            outcome = 1
                    elif pattern is not None:
                        if pattern.match(value):
                            outcome = 1
                    elif value == "always":
                        outcome = 1
                    elif value == "never":
                        outcome = 0
            if outcome == 1:
                drawn = crow  # (a canary that cannot serve has the main row)
                break
            if outcome == -1 and share > 0.0 and drawn is None:
                acc += share
                if rand < acc:
                    drawn = crow
        if drawn is not None:
            row = drawn
    backend, label, total, clusters = row
    cluster = clusters[0]
    if total:
        target = rand_cluster * total
        for cluster in clusters:
            cum = cluster[0]
            if target < cum:
                break
    if mirror is not None and not rand_mirror * 100 < mirror_pct:
        mirror = None
    return backend, label, cluster[1], mirror


def _header_value(fields: bytes, key: bytes) -> Any:
    """The value of the last line of `fields` (the codec's forwarded header lines, each
    ending in CRLF) named as `key` says (b"\\r\\n" + lowercase name + b":"), without its
    surrounding blanks, decoded; None when no line has that name. The compiled build's
    scan (a C loop over the bytes, through a pointer: no index checks); the twin runs
    resolve_warm's bytes methods instead."""
    n = len(fields)
    k = len(key) - 2
    p = fields
    kp = key
    found = -1
    i = 0
    while i < n:  # at the start of a line
        if n - i > k:
            j = 0
            while j < k:
                c = p[i + j]
                if 65 <= c <= 90:
                    c += 32
                if c != kp[j + 2]:
                    break
                j += 1
            if j == k:
                found = i + k
        while i < n and p[i] != 10:
            i += 1
        i += 1
    if found < 0:
        return None
    end = found
    while end < n and p[end] != 13:
        end += 1
    while found < end and (p[found] == 32 or p[found] == 9):
        found += 1
    while end > found and (p[end - 1] == 32 or p[end - 1] == 9):
        end -= 1
    return fields[found:end].decode("latin-1")


def wait_until(now: float, policy: Any, connected: bool) -> float:
    """The one deadline of an attempt's wait: the connect timeout until connected, then the
    read timeout (restarted by each upstream read)."""
    return now + (policy.read_timeout if connected else policy.connect_timeout)


class Exchange:
    """One request/response pair, from its parsed head to its last response byte.

    Groups of fields (defaults: EXCHANGE_DEFAULTS):

    - request: `req` (the codec's RequestHead), method, target and host (req's, as
      properties), keep_alive (the client's connection survives this exchange),
      request_done (the whole request body was read), body (pieces kept for a retry, a
      list once there is a body), body_size, replayable (the body still fits the retry
      buffer), request_id (the client's x-request-id, or ours), start.
    - routing and policy (decided once, before the first attempt): route (None: 404),
      backend (a canary's or destination's, else the route's), label (metrics), answer (a
      response the gateway gives itself), extra_resp (header lines a policy adds), view
      and headers (what a policy reads of the request), mirror and mirror_head,
      hard_deadline (the route's total timeout), head (the upstream request head).
    - attempts: upstream (the connection of the current attempt), endpoint, attempt,
      tried (endpoint keys already tried), free_tries (stale pooled connections, not
      counted), counted and sent (least-connections accounting, EWMA sample), deadline
      (of the current wait), timer_attempt (a precise timer is set for that attempt).
    - response: phase, status, cluster, chunked_response (re-chunked to the client).
    """

    def __cinit__(self) -> None:
        """(Compiled build only: a new extension object's fields are None/0; the twin
        has the defaults on its class and never calls this.)"""
        self.method = b""
        self.keep_alive = True
        self.request_done = False
        self.body = ()
        self.body_size = 0
        self.replayable = True
        self.request_id = b""
        self.start = 0.0
        self.label = ""
        self.extra_resp = b""
        self.mirror_head = b""
        self.hard_deadline = 0.0
        self.head = b""
        self.attempt = 0
        self.free_tries = 0
        self.sent = 0.0
        self.deadline = 0.0
        self.timer_attempt = 0
        self.status = 0
        self.cluster = ""
        self.chunked_response = False

    @property
    def target(self) -> bytes:
        """The request target (origin form; an absolute-form target's path and query)."""
        return self.req.target

    @property
    def host(self) -> bytes:
        """The Host (an absolute-form target's authority), b"" for an HTTP/1.0 request without one."""
        return self.req.host

    @property
    def finished(self) -> bool:
        return self.phase == DONE

    @property
    def response_started(self) -> bool:
        return self.phase >= RESPONDING

    def advance(self, new: int) -> None:
        """Move to `new`, checked against TRANSITIONS (the slow paths' way to move)."""
        if not ALLOWED[self.phase] >> new & 1:
            raise PhaseError("exchange %s: %s -> %s is not allowed" % (
                self.method.decode("latin-1"), Phase(self.phase).name, Phase(new).name))
        self.phase = new


EXCHANGE_DEFAULTS: dict[str, Any] = {
    "phase": 0, "ds": None, "req": None, "method": b"", "keep_alive": True, "request_done": False,
    "body": (), "body_size": 0, "replayable": True, "request_id": b"", "start": 0.0,
    "route": None, "backend": None, "label": "", "answer": None, "extra_resp": b"", "view": None,
    "headers": None, "mirror": None, "mirror_head": b"", "hard_deadline": 0.0, "head": b"",
    "upstream": None, "endpoint": None, "attempt": 0, "tried": None, "free_tries": 0, "counted": None,
    "sent": 0.0, "deadline": 0.0, "timer_attempt": 0, "status": 0, "cluster": "", "chunked_response": False,
}

def reset_exchange(ex: Any) -> None:
    """Every field of ex back to its EXCHANGE_DEFAULTS value: a connection's finished
    exchange made ready for its next request (the compiled core reuses one when nothing
    else holds it: no allocation and no deallocation per request). A field added to
    EXCHANGE_DEFAULTS is added here too (tests/gateway/protocol/test_connection_layer.py
    holds the two equal, in both builds)."""
    ex.phase = 0
    ex.ds = None
    ex.req = None
    ex.method = b""
    ex.keep_alive = True
    ex.request_done = False
    ex.body = ()
    ex.body_size = 0
    ex.replayable = True
    ex.request_id = b""
    ex.start = 0.0
    ex.route = None
    ex.backend = None
    ex.label = ""
    ex.answer = None
    ex.extra_resp = b""
    ex.view = None
    ex.headers = None
    ex.mirror = None
    ex.mirror_head = b""
    ex.hard_deadline = 0.0
    ex.head = b""
    ex.upstream = None
    ex.endpoint = None
    ex.attempt = 0
    ex.tried = None
    ex.free_tries = 0
    ex.counted = None
    ex.sent = 0.0
    ex.deadline = 0.0
    ex.timer_attempt = 0
    ex.status = 0
    ex.cluster = ""
    ex.chunked_response = False


# Set on every request, in request-path order (the twin only). CPython lets a class's
# instances share one key table of at most 30 attribute names, taken by the first names
# any instance sets; an instance that sets a name outside it pays for a private dict.
# Claim the table for these at import, before rarer paths can take the places.
HOT_ATTRIBUTES = ("ds", "req", "method", "start", "keep_alive", "request_done",
                  "route", "label", "request_id", "head", "endpoint", "attempt", "deadline", "upstream",
                  "phase", "status", "chunked_response", "cluster", "counted", "extra_resp", "backend")


def compiled() -> bool:
    """True in the Cython build of this module (its functions are not Python functions)."""
    return type(compiled).__name__ != "function"


def _twin_defaults() -> None:
    """The twin: defaults on the class (an instance sets only what differs), and the
    shared key table claimed for the hot attributes."""
    for name, value in EXCHANGE_DEFAULTS.items():
        setattr(Exchange, name, value)
    seed = Exchange()
    for name in HOT_ATTRIBUTES:
        setattr(seed, name, None)


# The compiled build writes a plain Exchange's phase field directly; a subclass's moves go
# through advance() so its `phase` property sees them. The twin just assigns (a property
# there is always called).
_COMPILED = compiled()
if not _COMPILED:
    _twin_defaults()
else:  # the histogram's bounds as C doubles (_core.pxd's _bucket searches them)
    assert len(BUCKETS) == _NBOUNDS
    for _i in range(_NBOUNDS):
        _BOUNDS_C[_i] = BUCKETS[_i]


# a context's memo of route snapshots by (Host, target) is cleared at this size, as the
# table's own memo is (gateway/protocol/attempts.py's ROUTE_CACHE_SIZE)
_HOT_MEMO_SIZE = 4096


class RouteHot:
    """What the request path reads of a Route, copied once into one record (typed fields
    in the compiled build, where a Route's, its policy's and its backend's attributes are
    each a generic attribute read): built by `_route_hot` the first time a context routes
    to the Route, and never changed (a Route and what it holds are immutable)."""

    __slots__ = ("route", "label", "policy", "backend", "bkey", "endpoints", "keys", "fast", "fast_tls",
                 "read_timeout", "warm")


def _route_hot(r: Any) -> RouteHot:
    """The snapshot of route r (None: no route, a 404)."""
    h = RouteHot()
    h.route = r
    h.label = ""
    h.policy = None
    h.backend = None
    h.bkey = ""
    h.endpoints = ()
    h.keys = ()
    h.fast = False
    h.fast_tls = False
    h.read_timeout = 0.0
    h.warm = None
    if r is not None:
        policy = r.policy
        h.label = r.ingress
        h.policy = policy
        h.fast = policy.fast
        h.fast_tls = policy.fast_tls
        h.read_timeout = policy.read_timeout
        h.warm = r.warm
        b = r.backend
        if b is not None:
            h.backend = b
            h.bkey = b.key
            h.endpoints = tuple(b.endpoints)
            h.keys = tuple([e.key for e in b.endpoints])
    return h


class ContextCore:
    """The hot half of the per-worker GatewayContext (gateway/context.py builds on it): the
    fields every request reads (typed in the compiled build: from C each would otherwise be
    a generic attribute read), and the request path's memo of route snapshots
    (`hot_memo`: (Host, target) -> RouteHot, for the table `hot_table`; a new table
    starts a new memo, so a swap never serves an old route to a new request).
    No class-level defaults in the compiled build: CONTEXT_DEFAULTS, as for Exchange."""

    def __cinit__(self) -> None:
        """(Compiled build only; the twin has the defaults on its class.)"""
        self.draining = False
        self.rid = 0
        self.rid_prefix = b""
        self.hot_memo = {}
        self.hot_routes = {}


CONTEXT_DEFAULTS: dict[str, Any] = {"table": None, "metrics": None, "draining": False, "rid": 0, "rid_prefix": b"",
                                    "hot_table": None, "hot_memo": None, "hot_routes": None, "counts": None,
                                    "counts_of": None}
if not _COMPILED:  # the twin: defaults on the class (the memos are set per context, on its first request)
    for _name, _value in CONTEXT_DEFAULTS.items():
        setattr(ContextCore, _name, _value)


class DownstreamCore:
    """The hot half of a client's HTTP/1.1 connection (H1Reader and DownstreamH1 build on
    it; they set every field in their __init__)."""

    # Slots, not a __dict__ (the data path reads them on every request); the compiled
    # build declares the same fields in _core.pxd.
    __slots__ = ("ctx", "scheme", "tls", "transport", "peer", "buf", "began", "cur", "active", "out",
                 "deadline", "http11", "tunnel", "held", "close_after", "paused", "final", "now",
                 "header_timeout", "idle_timeout", "max_line", "max_headers", "head_limit", "health",
                 "pools", "balancer", "sent", "logged", "wfd", "spare", "__weakref__")

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
        else:
            # (the plain class: a direct allocation in the compiled build, no call)
            ex = Exchange.__new__(Exchange) if cls is Exchange else cls()
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
        if table is not ctx.hot_table:  # a new table (or the first request): a new memo
            ctx.hot_table = table
            ctx.hot_memo = {}
            ctx.hot_routes = {}
        if _COMPILED and table is self.last_table and host == self.last_host and target == self.last_target:
            # the compiled build: the connection's previous request had the same Host and
            # target on the same table (two byte compares, where the memo hashes both)
            hot = self.last_hot
        else:
            key = (host, target)
            hot = ctx.hot_memo.get(key)
            if hot is None:
                hot = self._hot_miss(ctx, table, key)
            if _COMPILED:
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

    def _hot_miss(self, ctx: ContextCore, table: Any, key: tuple) -> RouteHot:
        """The route snapshot for a (host, target) not in the context's memo yet: the
        table's memo (or route() through _route_miss), one snapshot per route."""
        r = table.route_memo.get(key, _MISS)
        if r is _MISS:
            r = self._route_miss(table, key)
        routes = ctx.hot_routes
        hot = routes.get(id(r))  # (the snapshot holds its route: the id stays its own)
        if hot is None:
            hot = routes[id(r)] = _route_hot(r)
        memo = ctx.hot_memo
        if len(memo) >= _HOT_MEMO_SIZE:
            memo.clear()
        memo[key] = hot
        return hot

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
                    conn.send(ex, ex.head)
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
                ctx.counts = m.counts
                ctx.counts_of = m
            ctx.counts.done(ex, now)
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
                    if r is not None:
                        code, end, rhead = r
                        whole = 200 <= code < 400 and ex.keep_alive and ds.http11 and not ds.health.endpoints
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
                    if _COMPILED and isinstance(ds, DownstreamCore):
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
                    # head and body in one piece
                    if _COMPILED:  # (_core.pxd: copied into one new bytes, no slice, no tuple)
                        piece = _join_piece(rhead, self.cline, ex.extra_resp, data, end)
                    else:
                        piece = (b"".join((rhead, self.cline, ex.extra_resp, b"\r\n", data[end:]))
                                 if end < len(data) else b"".join((rhead, self.cline, ex.extra_resp, b"\r\n")))
                    if isinstance(ds, DownstreamCore):
                        _whole_response(ds, ex, piece, reusable, self)
                    else:  # another Downstream (an HTTP/2 stream): its flush frames what is in out
                        ds.out.append(piece)
                        ds.response_complete(ex, reusable, self)
                        ds.flush()
                    return
            except HeadError:
                pass  # the general way says what is wrong
        self._read(data)


def _whole_response(ds: DownstreamCore, ex: Exchange, piece: bytes, reusable: bool, up: UpstreamCore) -> None:
    """A whole response for a client connection: written at once when nothing waits
    before it in ds.out (what flush would do, without its call), then the exchange ends."""
    out = ds.out
    t = ds.transport
    if out or t is None:
        out.append(piece)
    else:
        ds.sent += len(piece)
        t.write(piece)
    ds.response_complete(ex, reusable, up)
    if out or ds.close_after:
        ds.flush()


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
        # The compiled build's last row and what chose it (strong references, so an identity
        # match is the same object, never a new one at a freed address). Rows are never
        # removed from `rows`, so a remembered row stays the one /metrics exports.
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
            for b in ds.out:
                n += len(b)
            sent = n - ds.logged
            ds.logged = n
        r = ex.route
        if _COMPILED:
            # the last request's row again when its key's sources are the same objects (a
            # route's ingress and a backend's key do not change; label and cluster are
            # shared strings) and method and status equal: no 6-tuple, no hash, no lookup
            b0 = ex.backend
            label = ex.label
            cluster = ex.cluster
            method = ex.method
            status = ex.status
            if (r is self.c_route and b0 is self.c_backend and label is self.c_label
                    and cluster is self.c_cluster and status == self.c_status and method == self.c_method):
                row = self.c_row
            else:
                row = self._row(ex, r)
                self.c_route = r
                self.c_backend = b0
                self.c_label = label
                self.c_cluster = cluster
                self.c_method = method
                self.c_status = status
                self.c_row = row
        elif r is None:  # the twin: the key's row (a remembered row's compares cost it more)
            key = (ex.label, "", "", ex.cluster, ex.method, ex.status)
            row = self.rows.get(key)
            if row is None:
                row = self.owner._new_row(key)
        else:
            be = ex.backend or r.backend
            key = (ex.label, r.ingress, be.key if be is not None else "", ex.cluster, ex.method, ex.status)
            row = self.rows.get(key)
            if row is None:
                row = self.owner._new_row(key)
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

    def _row(self, ex: Exchange, r: Any) -> list:
        """The row of the request's key (label, ingress, backend, cluster, method, status),
        made by the owner on the key's first request."""
        if r is None:
            key = (ex.label, "", "", ex.cluster, ex.method, ex.status)
        else:
            be = ex.backend or r.backend
            key = (ex.label, r.ingress, be.key if be is not None else "", ex.cluster, ex.method, ex.status)
        row = self.rows.get(key)
        if row is None:
            row = self.owner._new_row(key)
        return row
