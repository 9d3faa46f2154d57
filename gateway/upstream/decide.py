"""Pure decisions of the request path: which endpoint, whether to retry, until when.

Each is a function of (route policy, balancer state, attempt history, now, random values)
returning a decision; nothing here reads a clock, draws a random number or touches a
connection, so tests/gateway/upstream/test_decide.py checks them with fixed values. The
downstream connection applies the decision (sends, answers, counts).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

from .balancer import BalancerState, IsUp, choose_endpoint

if TYPE_CHECKING:
    from ..routing.backends import Backend, UpstreamEndpoint
    from ..routing.policy import RetryPolicy, RoutePolicy

IDEMPOTENT_METHODS = frozenset((b"GET", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"TRACE"))

__all__ = ["IDEMPOTENT_METHODS", "Retry", "GiveUp", "round_robin", "pick", "fallback_backend",
           "retry_decision", "retry_status_allowed", "wait_until", "due"]


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


def round_robin(endpoints: Sequence["UpstreamEndpoint"], state: BalancerState, key: str) -> "UpstreamEndpoint":
    """The one round robin: the backend's cursor in `state` advances by one."""
    rr = state.rr
    n = rr.get(key, 0)
    rr[key] = n + 1
    return endpoints[n % len(endpoints)]


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


def pick(backend: "Backend", policy: "RoutePolicy", state: BalancerState, is_up: IsUp,
         tried: Sequence[str], now: float, rand: float, rand2: float, *, header_cluster: str | None = None,
         hash_value: str | None = None, affinity: str | None = None) -> "UpstreamEndpoint | None":
    """The endpoint for the next attempt: plain round robin when the policy picks plainly,
    every endpoint is up and nothing was tried; else the balancer with member-cluster
    policy, health and the attempt history."""
    if policy.plain_pick and is_up is None and not tried and backend.endpoints:
        return round_robin(backend.endpoints, state, backend.key)
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


def wait_until(now: float, policy: "RoutePolicy", *, connected: bool) -> float:
    """The one deadline of an attempt's wait: the connect timeout until connected, then the
    read timeout (restarted by each upstream read)."""
    return now + (policy.read_timeout if connected else policy.connect_timeout)


def due(deadline: float, hard_deadline: float, response_started: bool) -> float:
    """When the current wait ends: its deadline, or the route's total timeout when that
    comes first and the response has not begun (a started response is never cut by it)."""
    if hard_deadline and not response_started and (not deadline or hard_deadline < deadline):
        return hard_deadline
    return deadline

