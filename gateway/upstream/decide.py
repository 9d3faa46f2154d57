"""Pure decisions of the request path: which endpoint, whether to retry, until when.

Each is a function of (route policy, balancer state, attempt history, now, random values)
returning a decision; nothing here reads a clock, draws a random number or touches a
connection, so tests/gateway/upstream/test_decide.py checks them with fixed values. The
downstream connection applies the decision (sends, answers, counts).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

from ..exchange import IDEMPOTENT_METHODS, round_robin, wait_until
from ..routing.plan import cluster_rows
from .balancer import BalancerState, IsUp, choose_endpoint

if TYPE_CHECKING:
    from typing import TypeAlias

    from ..routing.backends import Backend, UpstreamEndpoint
    from ..routing.policy import RetryPolicy, RoutePolicy

    # cluster-weights as a draw table: (total weight, ((cumulative weight, endpoints), ...))
    Weighted: TypeAlias = "tuple[int, tuple[tuple[int, Sequence[UpstreamEndpoint]], ...]]"


# the one round robin, the one deadline and the idempotent methods live with the compiled
# request path that runs them on every request (gateway/exchange), re-exported here

__all__ = ["IDEMPOTENT_METHODS", "Retry", "GiveUp", "round_robin", "pick", "fallback_backend", "weighted_clusters",
           "retry_decision", "retry_status_allowed", "wait_until", "due"]

# (id(policy), id(backend)) -> (policy, backend, weighted_clusters' answer): a memo of a
# pure function of two immutable values, checked by identity (the entry holds both, so
# their ids cannot be reused while it lives); a table swap brings new ones, and the old
# entries go when the memo is full
_WEIGHTED: dict[tuple[int, int], tuple[RoutePolicy, Backend, Weighted | None]] = {}
_WEIGHTED_SIZE = 1024


@dataclass(frozen=True, slots=True)
class Retry:
    """Send again, elsewhere; `stale`: the failure was a pooled connection the server had
    closed (it costs no try, and may go to the same endpoint on a fresh connection)."""

    stale: bool = False


@dataclass(frozen=True, slots=True)
class GiveUp:
    """No further attempt: answer `status` with `reason` (x-fleetgate-reason)."""

    status: int
    reason: str


def fallback_backend(backend: "Backend | None", policy: "RoutePolicy",
                     usable: "Callable[[Backend], bool]") -> "Backend | None":
    """The `default-backend` annotation's backend when the route's has no usable endpoint."""
    if backend is not None and backend.endpoints and usable(backend):
        return backend
    fallback = policy.default_backend.backend if policy.default_backend is not None else None
    if fallback is not None and fallback.endpoints and (backend is None or not backend.endpoints
                                                        or usable(fallback)):
        return fallback
    return backend


def weighted_clusters(backend: "Backend", policy: "RoutePolicy") -> "Weighted | None":
    """`cluster-weights` over backend's member clusters as (total, ((cumulative weight,
    endpoints), ...)) in the policy's order, the clusters without an endpoint or weight
    left out: what balancer.candidate_endpoints draws from when every endpoint is up and
    nothing was tried. None when no weighted cluster has an endpoint (the balancer then
    falls through to priorities or every endpoint). Computed once per (policy, backend)."""
    key = (id(policy), id(backend))
    hit = _WEIGHTED.get(key)
    if hit is not None and hit[0] is policy and hit[1] is backend:
        return hit[2]
    answer = cluster_rows(backend, policy)
    if len(_WEIGHTED) >= _WEIGHTED_SIZE:
        _WEIGHTED.clear()
    _WEIGHTED[key] = (policy, backend, answer)
    return answer


def pick(backend: "Backend", policy: "RoutePolicy", state: BalancerState, is_up: IsUp,
         tried: Sequence[str], now: float, rand: float, rand2: float, *, header_cluster: str | None = None,
         hash_value: str | None = None, affinity: str | None = None) -> "UpstreamEndpoint | None":
    """The endpoint for the next attempt: plain round robin when the policy picks plainly,
    every endpoint is up and nothing was tried; the same with `cluster-weights` picks the
    member cluster by `rand` from a table made once (weighted_clusters), then round robin;
    else the balancer with member-cluster policy, health and the attempt history."""
    if is_up is None and not tried:
        if policy.plain_pick:
            if backend.endpoints:
                return round_robin(backend.endpoints, state, backend.key)
        elif (policy.cluster_weights and header_cluster is None and hash_value is None and not affinity
              and policy.load_balance == "round_robin"):
            hit = _WEIGHTED.get((id(policy), id(backend)))  # weighted_clusters' memo, read in line
            weighted = (hit[2] if hit is not None and hit[0] is policy and hit[1] is backend
                        else weighted_clusters(backend, policy))
            if weighted is not None:
                # balancer.candidate_endpoints' draw and choose_endpoint's round robin, the
                # same endpoint for the same rand and cursor
                total, rows = weighted
                target = rand * total
                for acc, eps in rows:
                    if target < acc:
                        break
                rr = state.rr
                key = backend.key
                n = rr.get(key, 0)
                rr[key] = n + 1
                return eps[n % len(eps)]
    return choose_endpoint(backend, policy, state, is_up, tried, rand, rand2, header_cluster=header_cluster,
                           hash_value=hash_value, affinity=affinity, now=now)


def retry_decision(retry: "RetryPolicy", method: bytes, *, replayable: bool, tried: int, free_tries: int,
                   now: float, start: float, hard_deadline: float, connect_failed: bool = False,
                   stale: bool = False, timeout: bool = False, status: int = 0) -> Retry | None:
    """Whether a failed attempt (`tried` attempts so far, this one included) is tried
    again: Retry, or None (give up: failure_answer(kind) says what the client gets).
    `tried` and `free_tries` count this attempt already.
    Connect failures are retried whatever the method (nothing reached the upstream);
    others only for idempotent methods unless `non_idempotent`; a stale pooled connection
    costs no try but is retried only for idempotent methods (the server may have seen it)."""
    if not replayable or (retry.off and not stale):
        return None
    if stale and method not in IDEMPOTENT_METHODS:
        return None
    if not (connect_failed or stale):
        if not (retry.non_idempotent or method in IDEMPOTENT_METHODS):
            return None
        if timeout and not retry.on_timeout:
            return None
        if status and status not in retry.on_status:
            return None
        if not timeout and not status and not retry.on_error:
            return None
    if retry.timeout is not None and now - start > retry.timeout:
        return None
    if hard_deadline and now >= hard_deadline:
        return None
    if tried >= retry.tries + free_tries:
        return None
    return Retry(stale=stale)


def retry_status_allowed(retry: "RetryPolicy", method: bytes, *, replayable: bool, tried: int,
                         free_tries: int) -> bool:
    """Whether a response with a retryable status is dropped for another attempt (read
    before the response is relayed: proxy-next-upstream http_5xx)."""
    if retry.off or not replayable or not (retry.non_idempotent or method in IDEMPOTENT_METHODS):
        return False
    return tried + 1 < retry.tries + free_tries


def failure_answer(kind: str) -> GiveUp:
    """The generated answer for an attempt that failed with `kind` and is not retried."""
    if kind == "timeout":
        return GiveUp(504, "upstream-timeout")
    if kind == "connect-timeout":
        return GiveUp(504, "upstream-connect-timeout")
    if kind == "connect":
        return GiveUp(502, "upstream-connect-error")
    return GiveUp(502, "upstream-error")


def due(deadline: float, hard_deadline: float, response_started: bool) -> float:
    """When the current wait ends: its deadline, or the route's total timeout when that
    comes first and the response has not begun (a started response is never cut by it)."""
    if hard_deadline and not response_started and (not deadline or hard_deadline < deadline):
        return hard_deadline
    return deadline

