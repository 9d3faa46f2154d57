"""A route's policies precomputed into a table, so a request resolves them with a few
random draws and indexes (issue 13: canary + cluster weights + mirror near plain cost).

`warm_plan(backend, policy, ingress)` is computed once per Route (Route.__post_init__);
the request path (gateway/exchange, compiled where built) reads it when nothing is down
and the request has no body, and `resolve_warm` there turns it into the request's plan in
one pure call (the random values passed in). Only the policies that ask nothing of the request but a header line and the
random values qualify: header/weight canaries, `cluster-weights`, a mirror. Anything else
(cookies, query, destinations, hashing, rewrites, redirects, CORS, allow-lists, a total
timeout, non-round-robin balancing, TLS or gRPC upstreams) gives None, and the general
path (gateway/protocol/policy_hooks.prepare and upstream/decide.pick) runs instead.

The answers are the general path's for the same random values when every endpoint is up
(tests/gateway/protocol/test_policies_plan.py holds them to that).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from .backends import Backend, UpstreamEndpoint
    from .policy import RoutePolicy

# A warm plan, as plain tuples (the compiled request path indexes them as C):
#   (canaries, main, mirror, mirror_pct)
#   canaries: ((key, value, pattern, share, row), ...) in the policy's order, where key is
#     b"\r\n" + the lowercase header name + b":" (None: no header rule), value the exact
#     header value (str) or None, pattern a compiled header-pattern or None, share the
#     canary's weight / weight_total (0.0: no weight) and row the canary's target (or the
#     main one when the canary has no endpoint: it cannot serve)
#   a row: (backend, label, total, clusters) where clusters is cluster_rows' draw table
#     ((cumulative weight, endpoints), ...) and total its sum (floats), or total 0.0 and
#     clusters ((0.0, backend.endpoints),): round robin over every endpoint
#   mirror: the policy's MirrorPolicy (None: no mirror); mirror_pct its percentage (float)
Row = tuple  # (Backend, str, float, tuple[tuple[float, Sequence[UpstreamEndpoint]], ...])
WarmPlan = tuple  # (tuple[tuple[bytes | None, str | None, Any, float, Row], ...], Row, MirrorPolicy | None, float)


def cluster_rows(backend: "Backend",
                 policy: "RoutePolicy") -> "tuple[int, tuple[tuple[int, Sequence[UpstreamEndpoint]], ...]] | None":
    """`cluster-weights` over backend's member clusters as (total, ((cumulative weight,
    endpoints), ...)) in the policy's order, the clusters without an endpoint or weight
    left out; None when no weighted cluster has an endpoint (the balancer then falls
    through to priorities or every endpoint)."""
    by_cluster = {c.cluster: c.endpoints for c in backend.clusters}
    rows, acc = [], 0
    for cluster, weight in (policy.cluster_weights or {}).items():
        eps = by_cluster.get(cluster, ())
        if eps and weight > 0:
            acc += weight
            rows.append((acc, eps))
    return (acc, tuple(rows)) if acc > 0 else None


def _row(backend: "Backend", label: str, policy: "RoutePolicy") -> Row | None:
    if policy.cluster_weights:
        weighted = cluster_rows(backend, policy)
        if weighted is None:
            return None  # the balancer's fall-through: the general path
        # as floats: the compiled draw compares C doubles (the same answers for these sizes)
        return (backend, label, float(weighted[0]), tuple((float(cum), eps) for cum, eps in weighted[1]))
    return (backend, label, 0.0, ((0.0, backend.endpoints),))


def qualifies(policy: "RoutePolicy") -> bool:
    """The policy asks nothing a warm plan cannot answer (see the module docstring)."""
    return bool(
        policy.per_request and policy.warm_send and policy.total_timeout is None
        and not (policy.destinations or policy.cluster_by_header or policy.cluster_priority or policy.local_zone
                 or policy.hash_by or policy.affinity or policy.rewrite_target or policy.upstream_vhost
                 or policy.app_root or policy.cors or policy.whitelist is not None or policy.ssl_redirect
                 or policy.force_ssl_redirect or policy.load_balance != "round_robin")
        and all(c.cookie is None and c.query is None for c in policy.canaries))


def warm_plan(backend: "Backend | None", policy: "RoutePolicy", ingress: str) -> WarmPlan | None:
    """The route's policies as a table (see the module docstring), or None."""
    if backend is None or not backend.endpoints or not qualifies(policy):
        return None
    main = _row(backend, ingress, policy)
    if main is None:
        return None
    canaries = []
    for c in policy.canaries:
        if c.backend is not None and c.backend.endpoints:
            row = _row(c.backend, c.ingress, policy)
            if row is None:
                return None
        else:
            row = main  # a canary without an endpoint is not usable: the main backend serves
        key = b"\r\n" + c.header.lower().encode("latin-1") + b":" if c.header is not None else None
        share = c.weight / c.weight_total if c.weight > 0 else 0.0
        canaries.append((key, c.header_value, c.header_pattern, share, row))
    mirror = policy.mirror
    return (tuple(canaries), main, mirror, float(mirror.percentage) if mirror is not None else 0.0)
