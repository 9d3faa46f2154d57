# cython: annotation_typing=False
"""What a request reads of its route: the route snapshot (`RouteHot`, built by
`_route_hot`) and the per-worker context that memoises them (`ContextCore`, `_hot_miss`),
the one round robin (`round_robin`, `_next_index`), the warm plan's pure decisions
(`resolve_warm`: gateway/routing/plan.py's warm plan resolved for one request) and
`wait_until`.

Part of the request path's hot core (see _core_py.py): one source, two builds. This file is
the pure-Python twin; setup.py also compiles it with Cython as `gateway.exchange._route`,
typed by `_route.pxd`, which _core.pxd cimports (its calls here are C calls).
"""
from __future__ import annotations

from typing import Any, Sequence

__all__ = ["RouteHot", "_route_hot", "ContextCore", "CONTEXT_DEFAULTS", "_hot_miss", "round_robin", "_next_index",
           "resolve_warm", "wait_until"]


def compiled() -> bool:
    """True in the Cython build of this module (its functions are not Python functions)."""
    return type(compiled).__name__ != "function"


_COMPILED = compiled()
_MISS = object()


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


# a context's memo of route snapshots by (Host, target) is cleared at this size, as the
# table's own memo is (gateway/protocol/attempts.py's ROUTE_CACHE_SIZE)
_HOT_MEMO_SIZE = 4096


class ContextCore:
    """The hot half of the per-worker GatewayContext (gateway/context.py builds on it): the
    fields every request reads (typed in the compiled build: from C each would otherwise be
    a generic attribute read), and the request path's memo of route snapshots
    (`hot_memo`: (Host, target) -> RouteHot, for the table `hot_table`; a new table
    starts a new memo, so a swap never serves an old route to a new request).
    No class-level defaults in the compiled build: CONTEXT_DEFAULTS, as for Exchange.
    (`counts`, `counts_of`: the metrics' RequestCounts, remembered by the core per metrics
    object.)"""

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


def _hot_miss(ctx: ContextCore, ds: Any, table: Any, key: tuple) -> RouteHot:
    """The route snapshot for a (host, target) not in the context's memo yet: the
    table's memo (or route() through the client connection ds's _route_miss), one
    snapshot per route."""
    r = table.route_memo.get(key, _MISS)
    if r is _MISS:
        r = ds._route_miss(table, key)  # (the client connection's: DownstreamH1)
    routes = ctx.hot_routes
    hot = routes.get(id(r))  # (the snapshot holds its route: the id stays its own)
    if hot is None:
        hot = routes[id(r)] = _route_hot(r)
    memo = ctx.hot_memo
    if len(memo) >= _HOT_MEMO_SIZE:
        memo.clear()
    memo[key] = hot
    return hot
