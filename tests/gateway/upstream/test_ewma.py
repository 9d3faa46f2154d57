"""`load-balance: ewma`: the peak-EWMA arithmetic against a fake clock, and a real gateway
moving traffic away from an endpoint that answers 50 ms slower."""
from __future__ import annotations

import asyncio
import collections
import math
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.routing.backends import Backend, ClusterShare, make_endpoint
from gateway.routing.policy import RoutePolicy
from gateway.upstream.balancer import BalancerState, choose_endpoint
from gateway.upstream.ewma import DECAY_TIME, FLOOR, PeakEwma
from gateway_support import ingress, rule, served

NGINX = "nginx.ingress.kubernetes.io/"


@dataclass(frozen=True)
class Ep:
    key: str


A, B, C = Ep("a"), Ep("b"), Ep("c")
# rand values that draw (a, b) and (b, a) from two endpoints: i = int(r*2), j = the other one
DRAW_AB, DRAW_BA = 0.1, 0.6


def draw(n: int, i: int, j: int) -> float:
    """A rand value whose two choices among n endpoints are i then j (found, not assumed)."""
    eps = [Ep(str(k)) for k in range(n)]
    m = PeakEwma()
    for k in range(10_000):
        r = (k + 0.5) / 10_000
        first = int(r * n) % n
        second = (first + 1 + int(r * 7919) % (n - 1)) % n
        if (first, second) == (i, j):
            assert m.pick(eps, {}, 0.0, r) is eps[i]  # no samples, no load: the first drawn
            return r
    raise AssertionError(f"no draw of ({i}, {j}) among {n}")


# --- the arithmetic ---------------------------------------------------------------------------

def test_first_sample_is_the_estimate_and_it_decays_toward_zero_with_time():
    m = PeakEwma()
    assert m.estimate("a", 0.0) is None
    m.observe("a", 0.2, now=100.0)
    assert m.estimate("a", 100.0) == pytest.approx(0.2)
    # scored later without a new sample: ewma.lua's decay with DECAY_TIME = 10 s
    assert m.estimate("a", 110.0) == pytest.approx(0.2 * math.exp(-1))
    assert m.estimate("a", 130.0) == pytest.approx(0.2 * math.exp(-3))
    assert DECAY_TIME == 10.0


def test_a_slower_sample_is_taken_at_once_a_faster_one_only_by_elapsed_time():
    m = PeakEwma()
    m.observe("a", 0.010, now=0.0)
    m.observe("a", 0.500, now=0.001)  # peak: jumps up whatever the elapsed time
    assert m.estimate("a", 0.001) == pytest.approx(0.500)
    m.observe("a", 0.010, now=0.002)  # 1 ms later a fast sample barely moves it
    w = math.exp(-0.001 / DECAY_TIME)
    assert m.estimate("a", 0.002) == pytest.approx(0.5 * w + 0.010 * (1 - w))
    assert m.estimate("a", 0.002) > 0.49
    m.observe("a", 0.010, now=10.002)  # ten seconds later the same sample counts for 1 - 1/e
    w = math.exp(-1)
    prev = 0.5 * math.exp(-0.001 / DECAY_TIME) + 0.010 * (1 - math.exp(-0.001 / DECAY_TIME))
    assert m.estimate("a", 10.002) == pytest.approx(prev * w + 0.010 * (1 - w))


def test_score_is_the_estimate_times_requests_in_flight_plus_one():
    m = PeakEwma()
    assert m.score(0.05, 0) == pytest.approx(0.05)
    assert m.score(0.05, 3) == pytest.approx(0.20)
    assert m.score(0.0, 2) == pytest.approx(FLOOR * 3)  # no estimate yet: in flight still counts


def test_two_choices_keep_the_lower_score_in_either_draw_order():
    m = PeakEwma()
    m.observe("a", 0.100, now=0.0)
    m.observe("b", 0.010, now=0.0)
    for r in (DRAW_AB, DRAW_BA):
        assert m.pick([A, B], {}, 0.0, r) is B
    # 10 requests in flight on b: 0.010 × 11 > 0.100 × 1, a wins
    assert m.pick([A, B], {"b": 10}, 0.0, DRAW_AB) is A
    assert m.pick([A, B], {"b": 8}, 0.0, DRAW_AB) is B


def test_two_choices_draw_two_distinct_endpoints_and_never_see_the_third():
    m = PeakEwma()
    m.observe("a", 0.5, now=0.0)
    m.observe("b", 0.5, now=0.0)
    m.observe("c", 0.001, now=0.0)  # the best, but only wins when drawn
    picks = collections.Counter(m.pick([A, B, C], {}, 0.0, (k + 0.5) / 300).key for k in range(300))
    assert set(picks) == {"a", "b", "c"}
    assert picks["c"] == max(picks.values())
    # c is drawn in two of the three pairs, so it wins about two thirds
    assert 150 <= picks["c"] <= 250, picks


def test_a_new_endpoint_is_scored_with_the_mean_of_the_known_ones():
    m = PeakEwma()
    m.observe("a", 0.100, now=0.0)
    m.observe("b", 0.300, now=0.0)
    assert m.mean([A, B, C], 0.0) == pytest.approx(0.200)
    # c (unknown, filled with the candidates' mean 0.2) against a (0.1): a; against b (0.3): c
    assert m.pick([A, B, C], {}, 0.0, draw(3, 2, 0)) is A
    assert m.pick([A, B, C], {}, 0.0, draw(3, 1, 2)) is C
    # with no sample at all, in-flight counts decide (least-connections)
    m2 = PeakEwma()
    assert m2.pick([A, B], {"a": 2, "b": 1}, 0.0, DRAW_AB) is B
    assert m2.pick([A, B], {}, 0.0, DRAW_BA) is B  # a tie keeps the first drawn


def test_an_idle_slow_endpoint_is_tried_again_once_its_estimate_has_decayed():
    m = PeakEwma()
    m.observe("slow", 0.100, now=0.0)
    m.observe("fast", 0.010, now=0.0)
    slow, fast = Ep("slow"), Ep("fast")
    assert m.pick([slow, fast], {}, 1.0, DRAW_AB) is fast
    # fast kept serving at 10 ms; slow was left alone for 30 s: 0.1 × e^-3 ≈ 5 ms < 10 ms
    for t in range(1, 31):
        m.observe("fast", 0.010, now=float(t))
    assert m.pick([slow, fast], {}, 30.0, DRAW_AB) is slow


def test_choose_endpoint_uses_ewma_for_the_policy_and_least_conn_ignores_it():
    eps = tuple(make_endpoint(f"10.0.0.{i}", 80, "zone-a", None) for i in (1, 2))
    backend = Backend(key="demo/web:80", namespace="demo", service="web", port="80",
                      clusters=(ClusterShare("zone-a", None, eps),), endpoints=eps)
    state = BalancerState()
    state.observe(eps[0].key, 0.200, now=5.0)
    state.observe(eps[1].key, 0.002, now=5.0)
    ewma = RoutePolicy(load_balance="ewma")
    for r in (DRAW_AB, DRAW_BA):
        assert choose_endpoint(backend, ewma, state, None, (), 0.5, r, now=5.0) is eps[1]
    least = RoutePolicy(load_balance="least_conn")
    assert choose_endpoint(backend, least, state, None, (), 0.5, DRAW_AB, now=5.0) is eps[0]  # tie: first


# --- over real sockets ------------------------------------------------------------------------

async def answer_slowly(request: web.Request) -> web.StreamResponse:
    await asyncio.sleep(0.05)
    return web.json_response({"backend": "slow"})


async def fast_and_slow_pods(fleet_dir, echo_backends, start_gateway, hosts: tuple[str, str],
                             annotations: dict[str, str]) -> tuple[Any, Any, Any]:
    """A gateway routing web.example.com to Service web: one pod answering at once, one 50 ms
    later (same port, two loopback addresses); (gateway, fast pod, slow pod)."""
    fd = fleet_dir("zone-a")
    fast_pod = await echo_backends("fast", host=hosts[0])
    slow_pod = await echo_backends("slow", host=hosts[1], port=fast_pod.port, handler=answer_slowly)
    fd.member("zone-a", served("web", fast_pod, slow_pod))
    fd.hub([ingress("web", [rule("web.example.com", ("/", "Prefix", "web"))], annotations=annotations)])
    return await start_gateway(fd), fast_pod, slow_pod


async def test_ewma_moves_traffic_away_from_an_endpoint_answering_50ms_slower(fleet_dir, echo_backends,
                                                                           start_gateway):
    gw, fast_pod, slow_pod = await fast_and_slow_pods(fleet_dir, echo_backends, start_gateway,
                                                      ("127.0.31.1", "127.0.31.2"),
                                                      {f"{NGINX}load-balance": "ewma"})
    seen: collections.Counter[str] = collections.Counter()

    async def client(s: aiohttp.ClientSession, n: int) -> None:
        for _ in range(n):
            async with s.get(gw.url + "/", headers={"Host": "web.example.com"}) as r:
                assert r.status == 200
                seen[(await r.json())["backend"]] += 1

    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as s:
        await client(s, 100)  # sequential
        await asyncio.gather(*(client(s, 25) for _ in range(4)))  # 4 concurrent clients
    assert sum(seen.values()) == 200
    assert seen["slow"] >= 1, seen  # it was tried (no sample yet at first)
    assert seen["fast"] > 2 * seen["slow"], seen
    est = gw.gateway.ctx.balancer.ewma
    now = asyncio.get_running_loop().time()
    slow_est = est.estimate(f"{slow_pod.host}:{slow_pod.port}", now)
    fast_est = est.estimate(f"{fast_pod.host}:{fast_pod.port}", now)
    assert slow_est is not None and fast_est is not None and slow_est > fast_est


async def test_round_robin_splits_the_same_pair_evenly(fleet_dir, echo_backends, start_gateway):
    """The control: without `ewma` the slow endpoint gets its half, so the test above measures
    the balancer, not the backends."""
    gw, _, _ = await fast_and_slow_pods(fleet_dir, echo_backends, start_gateway, ("127.0.31.3", "127.0.31.4"), {})
    seen: collections.Counter[str] = collections.Counter()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:
        for _ in range(40):
            async with s.get(gw.url + "/", headers={"Host": "web.example.com"}) as r:
                seen[(await r.json())["backend"]] += 1
    assert seen == {"fast": 20, "slow": 20}
