"""The request path's pure decisions (gateway/upstream/decide.py, policy_hooks.prepare)
with fixed random values and a fake clock: no sockets, no loop."""
from __future__ import annotations

import pytest

from gateway.protocol.policy_hooks import prepare
from gateway.routing.policy import CanaryRule, MirrorPolicy, RetryPolicy, RoutePolicy
from gateway.routing.table import Route
from gateway.upstream import decide
from gateway.upstream.balancer import BalancerState
from gateway_support import backend


MAIN = backend("main", a=2, b=1)
CANARY = backend("canary", a=1)


def test_one_round_robin_cycles_endpoints_per_backend_key() -> None:
    state = BalancerState()
    picks = [decide.round_robin(MAIN.endpoints, state, MAIN.key).key for _ in range(6)]
    assert picks == [e.key for e in MAIN.endpoints] * 2
    assert state.rr == {MAIN.key: 6}


def test_pick_is_plain_round_robin_only_when_nothing_was_tried_and_all_are_up() -> None:
    state = BalancerState()
    policy = RoutePolicy()
    first = decide.pick(MAIN, policy, state, None, (), 0.0, 0.5, 0.5)
    assert first is MAIN.endpoints[0] and state.rr[MAIN.key] == 1
    # after a failure the balancer avoids what was tried (and the cursor is not the rule)
    retry = decide.pick(MAIN, policy, state, None, (first.key,), 0.0, 0.5, 0.5)
    assert retry is not None and retry.key != first.key
    # an endpoint down: never picked, whatever the random values
    down = MAIN.endpoints[1].key
    for r in (0.0, 0.3, 0.6, 0.99):
        ep = decide.pick(MAIN, policy, state, lambda k: k != down, (), 0.0, r, r)
        assert ep is not None and ep.key != down


def test_pick_with_cluster_weights_follows_the_random_value() -> None:
    policy = RoutePolicy(cluster_weights={"a": 0, "b": 100})
    state = BalancerState()
    for r in (0.0, 0.5, 0.99):
        ep = decide.pick(MAIN, policy, state, None, (), 0.0, r, 0.5)
        assert ep is not None and ep.cluster == "b"


def test_fallback_backend_only_when_the_routes_has_nothing_usable() -> None:
    from gateway.routing.policy import ServiceRef
    fb = backend("fallback", c=1)
    ref = ServiceRef("demo", "fallback", "80", fb)
    policy = RoutePolicy(default_backend=ref)
    assert decide.fallback_backend(MAIN, policy, lambda b: True) is MAIN
    assert decide.fallback_backend(MAIN, policy, lambda b: b is fb) is fb
    assert decide.fallback_backend(None, policy, lambda b: True) is fb
    assert decide.fallback_backend(None, RoutePolicy(), lambda b: True) is None


RETRY = RetryPolicy(tries=3)


def decision(retry: RetryPolicy = RETRY, method: bytes = b"GET", **kw) -> decide.Retry | None:
    args = dict(replayable=True, tried=1, free_tries=0, now=10.0, start=9.0, hard_deadline=0.0)
    args.update(kw)
    return decide.retry_decision(retry, method, **args)  # type: ignore[arg-type]


def test_retry_decision_counts_tries_and_respects_methods() -> None:
    assert decision() == decide.Retry()
    assert decision(tried=3) is None  # three tries spent
    assert decision(method=b"POST") is None  # not idempotent, nothing says otherwise
    assert decision(method=b"POST", connect_failed=True) == decide.Retry()  # nothing reached the upstream
    assert decision(RetryPolicy(non_idempotent=True), method=b"POST") == decide.Retry()
    assert decision(replayable=False) is None  # the body is gone
    assert decision(RetryPolicy(off=True)) is None


def test_retry_decision_stale_connections_cost_no_try() -> None:
    # the third attempt failed on a stale pooled connection: free_tries makes room
    assert decision(tried=3, free_tries=1, stale=True) == decide.Retry(stale=True)
    assert decision(RetryPolicy(off=True), stale=True) == decide.Retry(stale=True)
    assert decision(method=b"POST", stale=True) is None  # the server may have seen it


def test_retry_decision_timeouts_and_deadlines_with_a_fake_clock() -> None:
    assert decision(timeout=True) == decide.Retry()
    assert decision(RetryPolicy(on_timeout=False), timeout=True) is None
    assert decision(RetryPolicy(timeout=0.5), now=10.0, start=9.0) is None  # next-upstream-timeout spent
    assert decision(RetryPolicy(timeout=5.0), now=10.0, start=9.0) == decide.Retry()
    assert decision(hard_deadline=10.0, now=10.0) is None
    assert decision(RetryPolicy(on_status=frozenset({503})), status=503) == decide.Retry()
    assert decision(RetryPolicy(on_status=frozenset({503})), status=500) is None
    assert decision(RetryPolicy(on_error=False)) is None


def test_retry_status_allowed_and_failure_answers() -> None:
    r = RetryPolicy(on_status=frozenset({503}), tries=2)
    assert decide.retry_status_allowed(r, b"GET", replayable=True, tried=0, free_tries=0)
    assert not decide.retry_status_allowed(r, b"GET", replayable=True, tried=1, free_tries=0)
    assert not decide.retry_status_allowed(r, b"POST", replayable=True, tried=0, free_tries=0)
    assert decide.failure_answer("timeout") == decide.GiveUp(504, "upstream-timeout")
    assert decide.failure_answer("connect-timeout") == decide.GiveUp(504, "upstream-connect-timeout")
    assert decide.failure_answer("connect") == decide.GiveUp(502, "upstream-connect-error")
    assert decide.failure_answer("reset") == decide.GiveUp(502, "upstream-error")


def test_one_deadline_computation() -> None:
    p = RoutePolicy(connect_timeout=2.0, read_timeout=7.0)
    assert decide.wait_until(100.0, p, connected=False) == 102.0
    assert decide.wait_until(100.0, p, connected=True) == 107.0
    assert decide.due(107.0, 0.0, False) == 107.0
    assert decide.due(107.0, 103.0, False) == 103.0  # the total timeout comes first
    assert decide.due(107.0, 103.0, True) == 107.0  # a started response is not cut by it
    assert decide.due(0.0, 103.0, False) == 103.0


def route(policy: RoutePolicy) -> Route:
    return Route("h", "/", "Prefix", "demo/main", MAIN, policy)


def plan(policy: RoutePolicy, *, rand_backend: float = 0.5, rand_mirror: float = 0.5, headers=None,
         target: bytes = b"/x?q=1", tls: bool = False):  # type: ignore[no-untyped-def]
    return prepare(route(policy), b"GET", b"h.example", target, headers or {}, peer=b"10.0.0.1", tls=tls,
                   https_port=8443, usable=lambda b: True, rand_backend=rand_backend, rand_mirror=rand_mirror)


def test_plan_canary_weight_follows_the_random_value() -> None:
    rule = CanaryRule(ingress="demo/canary", service="canary", port="80", backend=CANARY, weight=30)
    policy = RoutePolicy(canaries=(rule,))
    low, high = plan(policy, rand_backend=0.1), plan(policy, rand_backend=0.9)
    assert low.backend is CANARY and low.label == "demo/canary"
    assert high.backend in (None, MAIN) and high.label != "demo/canary"


def test_plan_mirror_percentage_follows_the_random_value() -> None:
    m = MirrorPolicy(url_host="127.0.0.9", percentage=10.0)
    policy = RoutePolicy(mirror=m)
    assert plan(policy, rand_mirror=0.05).mirror is m
    assert plan(policy, rand_mirror=0.5).mirror is None


def test_plan_answers_and_rewrites() -> None:
    redirect = plan(RoutePolicy(ssl_redirect=True))
    assert redirect.answer == (308, "ssl-redirect", b"location: https://h.example:8443/x?q=1\r\n")
    assert plan(RoutePolicy(ssl_redirect=True), tls=True).answer is None
    assert plan(RoutePolicy(upstream_vhost="inner")).host == b"inner"
    same = plan(RoutePolicy())
    assert (same.answer, same.target, same.host, same.backend, same.mirror) == (None, b"/x?q=1", b"h.example", None, None)


@pytest.mark.parametrize("rand", [0.0, 0.25, 0.5, 0.75, 0.999])
def test_plan_is_a_function_of_its_inputs(rand: float) -> None:
    rule = CanaryRule(ingress="demo/canary", service="canary", port="80", backend=CANARY, weight=50)
    policy = RoutePolicy(canaries=(rule,), mirror=MirrorPolicy(url_host="127.0.0.9", percentage=50.0))
    assert plan(policy, rand_backend=rand, rand_mirror=rand) == plan(policy, rand_backend=rand, rand_mirror=rand)


def test_balancer_state_forgets_endpoints_that_left_the_table() -> None:
    state = BalancerState()
    a, b = MAIN.endpoints[0].key, MAIN.endpoints[1].key
    decide.round_robin(MAIN.endpoints, state, MAIN.key)
    decide.round_robin(CANARY.endpoints, state, CANARY.key)
    state.active.update({a: 2, b: 1})
    state.observe(a, 0.1, 1.0)
    state.observe(b, 0.2, 1.0)
    state.retain({a}, {MAIN.key})
    assert state.rr == {MAIN.key: 1}
    assert state.active == {a: 2}
    assert set(state.ewma.stats) == {a}
