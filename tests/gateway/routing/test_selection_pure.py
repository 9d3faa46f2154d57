"""Deterministic checks of the pure selection functions, with the random value injected."""
from __future__ import annotations

import random
import re

import pytest

from gateway.routing.backends import Backend
from gateway.routing.policy import CanaryRule, RoutePolicy, WeightedService
from gateway.routing.select import RequestView, choose_backend
from gateway.routing.table import Route
from gateway.upstream.balancer import (BalancerState, candidate_endpoints, choose_endpoint, level_loads,
                                       rendezvous)
from gateway.upstream.health import HealthState
from gateway_support import backend


MAIN, CANARY, CANARY2 = backend("main", a=1), backend("canary", a=1), backend("canary2", a=1)


def route_with(*canaries: CanaryRule, destinations=()) -> Route:
    return Route("h", "/", "Prefix", "demo/main", MAIN,
                 RoutePolicy(canaries=canaries, destinations=tuple(destinations)))


def canary(backend_: Backend = CANARY, **kw) -> CanaryRule:
    return CanaryRule(ingress=f"demo/{backend_.service}", service=backend_.service, port="80",
                      backend=backend_, **kw)


def pick(route: Route, rand: float = 0.99, usable=lambda b: True, **view) -> str:
    b, _ = choose_backend(route, RequestView(**view), rand, usable)
    return b.service


@pytest.mark.parametrize("value,expected", [("always", "canary"), ("never", "main"), ("other", "main"),
                                            (None, "main")])
def test_canary_by_header_always_never(value, expected):
    headers = {} if value is None else {"x-canary": value}
    assert pick(route_with(canary(header="x-canary")), headers=headers) == expected


def test_canary_by_header_value_and_pattern():
    r = route_with(canary(header="x-user", header_value="alice"))
    assert pick(r, headers={"x-user": "alice"}) == "canary"
    assert pick(r, headers={"x-user": "always"}) == "main"  # -value replaces always/never
    r = route_with(canary(header="x-user", header_pattern=re.compile("^(bob|carol)$")))
    assert pick(r, headers={"x-user": "carol"}) == "canary"
    assert pick(r, headers={"x-user": "dave"}) == "main"


def test_header_never_wins_over_weight_and_other_header_value_falls_through_to_weight():
    r = route_with(canary(header="x-canary", weight=100))
    assert pick(r, headers={"x-canary": "never"}, rand=0.0) == "main"
    assert pick(r, headers={"x-canary": "maybe"}, rand=0.0) == "canary"


def test_canary_by_cookie_and_by_query():
    r = route_with(canary(cookie="beta"))
    assert pick(r, headers={"cookie": "a=1; beta=always"}) == "canary"
    assert pick(r, headers={"cookie": "beta=never"}) == "main"
    r = route_with(canary(query="v", query_value="2"))
    assert pick(r, query_string="v=2&x=1") == "canary"
    assert pick(r, query_string="v=1") == "main"


def test_weights_of_several_canaries_add_up_and_the_rest_goes_to_main():
    r = route_with(canary(weight=10), canary(CANARY2, weight=200, weight_total=1000))
    assert pick(r, rand=0.05) == "canary"     # [0, 0.10)
    assert pick(r, rand=0.25) == "canary2"    # [0.10, 0.30)
    assert pick(r, rand=0.31) == "main"


def test_canary_without_usable_endpoint_falls_back_to_main():
    r = route_with(canary(header="x-canary"))
    assert pick(r, headers={"x-canary": "always"}, usable=lambda b: b is not CANARY) == "main"


def test_destinations_split_by_weight_and_skip_unusable():
    a, b = backend("a", a=1), backend("b", a=1)
    r = route_with(destinations=[WeightedService(30, "demo", "a", "80", a), WeightedService(70, "demo", "b", "80", b)])
    assert pick(r, rand=0.29) == "a"
    assert pick(r, rand=0.30) == "b"
    assert pick(r, rand=0.10, usable=lambda x: x is not a) == "b"


def test_envoy_priority_load_with_overprovisioning_factor():
    assert level_loads([1.0, 1.0]) == [1.0, 0.0]
    assert level_loads([0.75, 1.0]) == [1.0, 0.0]  # 0.75 × 1.4 ≥ 1: no spill yet
    loads = level_loads([0.5, 1.0])
    assert loads[0] == pytest.approx(0.7) and loads[1] == pytest.approx(0.3)
    assert level_loads([0.0, 1.0]) == [0.0, 1.0]


def test_cluster_priority_spills_as_healthy_share_drops():
    b = backend("svc", a=2, b=2)
    policy = RoutePolicy(cluster_priority=("a", "b"))
    all_up = lambda k: True  # noqa: E731
    assert {e.cluster for e in candidate_endpoints(b, policy, all_up, (), 0.99, None)} == {"a"}
    half = lambda k: k != "127.0.0.1:80"  # noqa: E731  one of a's two endpoints down: a takes 70 %
    assert {e.cluster for e in candidate_endpoints(b, policy, half, (), 0.69, None)} == {"a"}
    assert {e.cluster for e in candidate_endpoints(b, policy, half, (), 0.71, None)} == {"b"}


def test_cluster_weights_move_the_share_of_a_cluster_without_healthy_endpoints():
    b = backend("svc", a=1, b=1)
    policy = RoutePolicy(cluster_weights={"a": 80, "b": 20})
    up = lambda k: True  # noqa: E731
    assert candidate_endpoints(b, policy, up, (), 0.79, None)[0].cluster == "a"
    assert candidate_endpoints(b, policy, up, (), 0.81, None)[0].cluster == "b"
    a_down = lambda k: not k.startswith("127.0.0.")  # noqa: E731
    assert candidate_endpoints(b, policy, a_down, (), 0.10, None)[0].cluster == "b"


def test_cluster_by_header_names_a_healthy_cluster_else_normal_balancing():
    b = backend("svc", a=1, b=1)
    policy = RoutePolicy(cluster_by_header="x-cluster")
    assert {e.cluster for e in candidate_endpoints(b, policy, lambda k: True, (), 0.5, "b")} == {"b"}
    assert {e.cluster for e in candidate_endpoints(b, policy, lambda k: True, (), 0.5, "zz")} == {"a", "b"}


def test_local_zone_is_preferred():
    b = backend("svc", a=1, b=1)  # a in az-1, b in az-2
    policy = RoutePolicy(local_zone="az-2")
    assert {e.cluster for e in candidate_endpoints(b, policy, lambda k: True, (), 0.99, None)} == {"b"}


def test_a_retry_prefers_another_member_cluster():
    b = backend("svc", a=2, b=1)
    eps = candidate_endpoints(b, RoutePolicy(), lambda k: True, ("127.0.0.1:80",), 0.5, None)
    assert [e.cluster for e in eps] == ["b"]


def test_default_round_robin_is_replica_proportional_and_panics_when_all_down():
    b = backend("svc", a=3, b=1)
    state = BalancerState()
    picks = [choose_endpoint(b, RoutePolicy(), state, lambda k: True, (), 0.5, 0.5).cluster for _ in range(8)]
    assert picks.count("a") == 6 and picks.count("b") == 2
    assert choose_endpoint(b, RoutePolicy(), state, lambda k: False, (), 0.5, 0.5) is not None


def test_least_conn_picks_the_less_loaded_of_two():
    b = backend("svc", a=2)
    state = BalancerState(active={"127.0.0.1:80": 5, "127.0.0.2:80": 0})
    policy = RoutePolicy(load_balance="least_conn")
    for r in (0.1, 0.6, 0.9):
        assert choose_endpoint(b, policy, state, lambda k: True, (), 0.5, r).key == "127.0.0.2:80"


def test_rendezvous_hash_moves_only_the_keys_of_a_removed_endpoint():
    b = backend("svc", a=4)
    keys = [f"user-{i}" for i in range(200)]
    before = {k: rendezvous(b.endpoints, k).key for k in keys}
    gone = b.endpoints[0].key
    after = {k: rendezvous([e for e in b.endpoints if e.key != gone], k).key for k in keys}
    assert all(after[k] == before[k] for k in keys if before[k] != gone)
    assert len(set(before.values())) == 4


def test_ejection_grows_with_repeats_and_spares_the_last_endpoint():
    h = HealthState()
    peers = ["a", "b"]
    assert h.eject("a", peers, now=0.0)
    assert not h.eject("b", peers, now=1.0)  # a is out: b is the last one up
    assert not h.is_up("a", 29.0) and h.is_up("a", 31.0)
    assert h.eject("a", peers, now=100.0)
    assert not h.is_up("a", 159.0) and h.is_up("a", 161.0)  # second ejection: 60 s


def test_consecutive_5xx_eject_and_a_success_resets_the_count():
    h = HealthState()
    for status in (500, 502, 200, 503, 503):
        h.record_status("a", status, ["a", "b"], threshold=3, now=0.0)
    assert h.is_up("a", 0.0)
    h.record_status("a", 500, ["a", "b"], threshold=3, now=0.0)
    assert not h.is_up("a", 0.0)


def test_active_check_thresholds_and_success_unejects():
    h = HealthState()
    kw = dict(healthy_threshold=2, unhealthy_threshold=2)
    h.check_result("a", False, now=0.0, **kw)
    assert h.is_up("a", 0.0)
    h.check_result("a", False, now=0.0, **kw)
    assert not h.is_up("a", 0.0)
    h.check_result("a", True, now=0.0, **kw)
    assert not h.is_up("a", 0.0)
    h.check_result("a", True, now=0.0, **kw)
    assert h.is_up("a", 0.0)
    h.eject("a", ["a", "b"], now=10.0)
    h.check_result("a", True, now=11.0, **kw)
    assert h.is_up("a", 11.0)


@pytest.mark.parametrize("policy", [RoutePolicy(), RoutePolicy(cluster_weights={"a": 80, "b": 20}),
                                    RoutePolicy(cluster_priority=("b", "a")), RoutePolicy(local_zone="az-1")])
def test_no_health_callback_means_every_endpoint_is_up(policy: RoutePolicy) -> None:
    """`is_up=None` (nothing is ejected) must choose exactly as a callback that says yes."""
    b = backend("svc", a=2, b=3)
    rng = random.Random(7)
    for _ in range(200):
        rand = rng.random()
        tried = rng.choice([(), ("127.0.0.1:80",), ("127.0.0.1:80", "127.0.1.2:80")])
        assert (list(candidate_endpoints(b, policy, None, tried, rand, None))
                == list(candidate_endpoints(b, policy, lambda k: True, tried, rand, None)))
