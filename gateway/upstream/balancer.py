"""Which endpoint serves a request: member-cluster choice, then load balancing within it.

Pure functions over a Backend, the request's policy, an `is_up(key)` health callback and
random values passed in. Mutable per-backend state (round-robin cursors, in-flight counts)
lives in a small BalancerState the caller owns, so route tables stay immutable.

Cluster choice, in order: `cluster-by-header` (a healthy named cluster wins), then
`cluster-weights` (weights of clusters without a healthy endpoint move to the others),
then priority levels from `cluster-priority` or the local zone, with Envoy's
overprovisioning factor 1.4: a level takes min(1, 1.4 × healthy share) of the traffic and
the rest spills to the next level. Default: every healthy endpoint, which is
replica-proportional across clusters.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable, Sequence

from ..routing.policy import RoutePolicy
from ..routing.table import Backend, UpstreamEndpoint
from .ewma import PeakEwma

OVERPROVISIONING = 1.4

IsUp = Callable[[str], bool] | None  # None: every endpoint is up (no check per endpoint)


@dataclass
class BalancerState:
    rr: dict[str, int] = field(default_factory=dict)
    active: dict[str, int] = field(default_factory=dict)  # endpoint key -> requests in flight
    ewma: PeakEwma = field(default_factory=PeakEwma)  # response times for `load-balance: ewma`

    def next_rr(self, key: str) -> int:
        n = self.rr.get(key, 0)
        self.rr[key] = n + 1
        return n

    def observe(self, key: str, rtt: float, now: float) -> None:
        """A response from endpoint `key` completed `rtt` seconds after it was sent."""
        self.ewma.observe(key, rtt, now)

    def retain(self, endpoint_keys: set[str], backend_keys: set[str]) -> None:
        """Forget the state of endpoints and backends that left the route table (called
        on every table swap): without it the dicts grow with every endpoint ever seen.
        A request still in flight to a removed endpoint just uncounts to nothing."""
        self.rr = {k: v for k, v in self.rr.items() if k in backend_keys}
        self.active = {k: v for k, v in self.active.items() if k in endpoint_keys and v > 0}
        stats = self.ewma.stats
        for k in [k for k in stats if k not in endpoint_keys]:
            del stats[k]


def _healthy(eps: Sequence[UpstreamEndpoint], is_up: IsUp, tried: Sequence[str]) -> Sequence[UpstreamEndpoint]:
    if is_up is None:
        return [e for e in eps if e.key not in tried] if tried else eps
    return [e for e in eps if is_up(e.key) and e.key not in tried]


def priority_levels(backend: Backend, policy: RoutePolicy) -> list[list[str]] | None:
    """Cluster names per priority level, or None when no priority applies."""
    names = [c.cluster for c in backend.clusters]
    if policy.cluster_priority:
        levels = [[c] for c in policy.cluster_priority if c in names]
        rest = [c for c in names if c not in policy.cluster_priority]
        return levels + ([rest] if rest else [])
    if policy.local_zone:
        local = [c.cluster for c in backend.clusters if c.zone == policy.local_zone]
        if local and len(local) < len(names):
            return [local, [c for c in names if c not in local]]
    return None


def level_loads(healthy_share: Sequence[float]) -> list[float]:
    """Envoy's priority load: each level takes min(remaining, 1.4 × its healthy share)."""
    loads, remaining = [], 1.0
    for share in healthy_share:
        take = min(remaining, share * OVERPROVISIONING)
        loads.append(take)
        remaining -= take
    if remaining > 1e-9 and sum(loads) > 0:
        total = sum(loads)  # every level degraded: normalise what is healthy
        loads = [x / total for x in loads]
    return loads


def candidate_endpoints(backend: Backend, policy: RoutePolicy, is_up: IsUp, tried: Sequence[str],
                        rand: float, header_cluster: str | None) -> Sequence[UpstreamEndpoint]:
    """The endpoints this request may use after member-cluster choice (healthy ones, not
    yet tried); empty when none is healthy (the caller then panics or fails)."""
    by_cluster = {c.cluster: c.endpoints for c in backend.clusters}
    tried_clusters = {e.cluster for e in backend.endpoints if e.key in tried} if tried else set()
    if header_cluster is not None and header_cluster in by_cluster:
        eps = _healthy(by_cluster[header_cluster], is_up, tried)
        if eps:
            return eps
    if policy.cluster_weights:
        weighted = []
        for cluster, weight in policy.cluster_weights.items():
            eps = _healthy(by_cluster.get(cluster, ()), is_up, tried)
            if eps and weight > 0:
                weighted.append((cluster, weight, eps))
        fresh = [w for w in weighted if w[0] not in tried_clusters]  # a retry prefers another cluster
        weighted = fresh or weighted
        total = sum(w for _, w, _ in weighted)
        if total > 0:
            target, acc = rand * total, 0.0
            for _, weight, eps in weighted:
                acc += weight
                if target < acc:
                    return eps
            return weighted[-1][2]
    levels = priority_levels(backend, policy)
    if levels is not None:
        per_level = [[e for c in level for e in by_cluster.get(c, ())] for level in levels]
        healthy = [_healthy(eps, is_up, tried) for eps in per_level]
        shares = [len(h) / len(all_) if all_ else 0.0 for h, all_ in zip(healthy, per_level)]
        loads = level_loads(shares)
        acc = 0.0
        for load, eps in zip(loads, healthy):
            acc += load
            if rand < acc and eps:
                return eps
        return next((eps for eps in healthy if eps), [])
    eps = _healthy(backend.endpoints, is_up, tried)
    if tried_clusters and eps:
        other = [e for e in eps if e.cluster not in tried_clusters]
        if other:
            return other
    return eps


def hash_key(policy: RoutePolicy, request_uri: str, host: str, remote_addr: str,
             header: Callable[[str], str | None], arg: Callable[[str], str | None]) -> str:
    spec = policy.hash_by or ""
    if spec == "$request_uri":
        return request_uri
    if spec == "$host":
        return host
    if spec == "$remote_addr":
        return remote_addr
    if spec.startswith("$http_"):
        return header(spec[6:].replace("_", "-")) or ""
    if spec.startswith("$arg_"):
        return arg(spec[5:]) or ""
    return ""


def rendezvous(eps: Sequence[UpstreamEndpoint], key: str) -> UpstreamEndpoint:
    """Consistent hashing by highest random weight: removing an endpoint remaps only the
    keys it owned."""
    best, best_score = eps[0], b""
    for e in eps:
        score = hashlib.blake2b(f"{key}\0{e.key}".encode(), digest_size=8).digest()
        if score > best_score:
            best, best_score = e, score
    return best


def affinity_id(endpoint_key: str) -> str:
    """The cookie value naming an endpoint (opaque to clients, stable across restarts)."""
    return hashlib.blake2b(endpoint_key.encode(), digest_size=8).hexdigest()


def choose_endpoint(backend: Backend, policy: RoutePolicy, state: BalancerState, is_up: IsUp,
                    tried: Sequence[str], rand: float, rand2: float, *, header_cluster: str | None = None,
                    hash_value: str | None = None, affinity: str | None = None,
                    now: float = 0.0) -> UpstreamEndpoint | None:
    """The endpoint for one attempt. `now` is read by `ewma` only (its estimates decay with
    time); rand picks the member cluster, rand2 the endpoint within it."""
    eps = candidate_endpoints(backend, policy, is_up, tried, rand, header_cluster)
    if not eps:
        eps = [e for e in backend.endpoints if e.key not in tried]  # panic: all unhealthy
        if not eps:
            return None
    if affinity:
        for e in eps:
            if affinity_id(e.key) == affinity:
                return e
    if hash_value is not None:
        return rendezvous(eps, hash_value)
    lb = policy.load_balance
    if lb == "random":
        return eps[int(rand2 * len(eps)) % len(eps)]
    if lb == "ewma":
        return state.ewma.pick(eps, state.active, now, rand2)
    if lb == "least_conn" and len(eps) > 1:
        n = len(eps)
        i = int(rand2 * n) % n
        j = (i + 1 + int(rand2 * 7919) % (n - 1)) % n  # a second, different draw
        a, b = eps[i], eps[j]
        return a if state.active.get(a.key, 0) <= state.active.get(b.key, 0) else b
    return eps[state.next_rr(backend.key) % len(eps)]
