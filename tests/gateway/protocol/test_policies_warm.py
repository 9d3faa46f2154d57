"""The policies case on its warm plan (issue 13: canary + cluster weights + mirror near plain
cost): a route's policies precomputed into a table (gateway/routing/plan.py) and resolved
per request by one pure call (`resolve_warm`, compiled where built). Held to the general
path (policy_hooks.prepare, then decide.pick) for the same random values, in both builds;
routes it cannot answer keep the general path; over sockets the warm path is the one taken
and the three policies still work."""
from __future__ import annotations

import asyncio
import collections
import itertools
import re
from types import ModuleType
from typing import Any

import aiohttp
import pytest

from gateway.codec import head_end, parse_request
from gateway.protocol.downstream import DownstreamH1
from gateway.protocol.planning import wanted_headers
from gateway.protocol.policy_hooks import prepare
from gateway.routing.plan import cluster_rows, qualifies, warm_plan
from gateway.routing.policy import (AffinityCookie, CanaryRule, CorsPolicy, MirrorPolicy, RoutePolicy, ServiceRef,
                                    WeightedService)
from gateway.routing.table import Route
from gateway.upstream import decide
from gateway.upstream.balancer import BalancerState
from gateway_support import backend, endpoint_slice, exchange_builds, ingress, rule, served, service

NGINX = "nginx.ingress.kubernetes.io/"


BUILDS = exchange_builds()
BUILD_IDS = ["twin" if m.__name__.endswith("_py") else "compiled" for m in BUILDS]


def fields_of(*lines: bytes) -> bytes:
    raw = b"GET / HTTP/1.1\r\nHost: h\r\n" + b"".join(line + b"\r\n" for line in lines) + b"\r\n"
    return parse_request(raw, 0, head_end(raw, 0, 1 << 16), 8192, 1 << 16).fields


MAIN = backend("main", a=2, b=3)
CAN_A = backend("canary-a", a=1, b=1)
CAN_B = backend("canary-b", b=2)
EMPTY = backend("empty")  # no endpoint: a canary here cannot serve
SHADOW = backend("shadow", a=1)
MIRROR = MirrorPolicy(service=ServiceRef("demo", "shadow", "80", SHADOW), percentage=30.0)

CANARY_SETS = {
    "none": (),
    "header-or-weight": (CanaryRule("demo/ca", "ca", "80", header="x-canary", weight=10, backend=CAN_A),),
    "two": (CanaryRule("demo/ca", "ca", "80", header="x-a", weight=20, backend=CAN_A),
            CanaryRule("demo/cb", "cb", "80", header="x-b", header_value="v2", weight=30, backend=CAN_B)),
    "pattern": (CanaryRule("demo/ca", "ca", "80", header="x-a", header_pattern=re.compile("^ver-[0-9]+$"),
                           weight=50, weight_total=200, backend=CAN_A),),
    "weight-only": (CanaryRule("demo/ca", "ca", "80", weight=40, backend=CAN_A),),
    "cannot-serve": (CanaryRule("demo/ce", "ce", "80", header="x-a", weight=50, backend=EMPTY),
                     CanaryRule("demo/cn", "cn", "80", header="x-b", weight=50, backend=None)),
}
WEIGHTS = {"none": None, "70/30": {"a": 70, "b": 30}, "b-only": {"a": 0, "b": 5},
           "unknown+a+b": {"zz": 9, "a": 1, "b": 2}}
HEADS = [(), (b"X-Canary: always",), (b"x-canary: never",), (b"X-A: Always", b"x-b: v2"), (b"x-a:never", b"X-B: v2"),
         (b"x-a: never", b"x-b: v3"), (b"X-A: ver-12",), (b"x-a: ver-x",), (b"x-a: always", b"X-A: never"),
         (b"x-canary-x: always", b"my-x-a: always"), (b"x-a:\t ver-7 \t", b"X-CANARY:always"),
         (b"Accept: x-a: always", b"x-b:"), (b"X-B:  v2  ", b"x-a: ver-1x", b"x-canary:  never")]
RANDS = [0.0, 0.05, 0.0999, 0.1, 0.2, 0.25, 0.29999, 0.3, 0.5, 0.7, 0.99999]


def route_with(canaries: tuple[CanaryRule, ...], weights: dict[str, int] | None,
               mirror: MirrorPolicy | None = MIRROR) -> Route:
    return Route("h", "/", "Prefix", "demo/main", MAIN, RoutePolicy(canaries=canaries, cluster_weights=weights,
                                                                    mirror=mirror))


def general(route: Route, fields: bytes, rands: tuple[float, float, float], state: BalancerState) -> tuple:
    """What the general path decides: prepare (every backend with an endpoint usable), then
    decide.pick with every endpoint up and nothing tried."""
    want = frozenset(c.header.encode() for c in route.policy.canaries if c.header)
    headers = wanted_headers(fields, want) if want and fields else {}
    plan = prepare(route, b"GET", b"h", b"/", headers, peer=b"10.0.0.1", tls=False, https_port=443,
                   usable=lambda b: bool(b.endpoints), rand_backend=rands[0], rand_mirror=rands[2])
    be = plan.backend or route.backend
    assert be is not None
    ep = decide.pick(be, route.policy, state, None, (), 0.0, rands[1], 0.5)
    return be, plan.label, ep, plan.mirror


@pytest.mark.parametrize("core", BUILDS, ids=BUILD_IDS)
@pytest.mark.parametrize("weights", list(WEIGHTS), ids=list(WEIGHTS))
@pytest.mark.parametrize("canaries", list(CANARY_SETS), ids=list(CANARY_SETS))
def test_resolve_warm_is_the_general_paths_decision(core: ModuleType, canaries: str, weights: str) -> None:
    route = route_with(CANARY_SETS[canaries], WEIGHTS[weights])
    assert route.warm is not None, route.policy  # (with neither, the mirror alone is a policy)
    slow, fast = BalancerState(), BalancerState()
    for lines, r1, r2 in itertools.product(HEADS, RANDS, RANDS[::3]):
        fields = fields_of(*lines)
        r3 = 1.0 - r1
        want = general(route, fields, (r1, r2, r3), slow)
        be, label, eps, mirror = core.resolve_warm(route.warm, fields, r1, r2, r3)
        got = (be, label, core.round_robin(eps, fast, be.key), mirror)
        assert got == want, (lines, r1, r2, r3)
    assert fast.rr == slow.rr  # the round-robin cursors moved the same way


def test_the_draws_reach_every_outcome() -> None:
    """(The comparison above is not vacuous: canaries, both clusters and the mirror are drawn.)"""
    core = BUILDS[-1]
    route = route_with(CANARY_SETS["two"], WEIGHTS["70/30"])
    seen: set[tuple[str, str, bool]] = set()
    for r1, r2, r3 in itertools.product(RANDS, RANDS, RANDS):
        be, label, eps, mirror = core.resolve_warm(route.warm, fields_of(b"x-b: v3"), r1, r2, r3)
        seen.add((label, eps[0].cluster, mirror is not None))
    assert {label for label, _, _ in seen} == {"demo/main", "demo/ca", "demo/cb"}
    assert {(c, m) for label, c, m in seen if label == "demo/main"} == {("a", True), ("a", False), ("b", True),
                                                                          ("b", False)}
    assert core.resolve_warm(route.warm, fields_of(b"x-b: v2"), 0.99, 0.0, 0.99)[1] == "demo/cb"  # the rule


@pytest.mark.parametrize("policy", [
    RoutePolicy(),  # nothing per request: the plain path
    RoutePolicy(canaries=(CanaryRule("demo/ca", "ca", "80", cookie="c", backend=CAN_A),)),
    RoutePolicy(canaries=(CanaryRule("demo/ca", "ca", "80", query="q", backend=CAN_A),)),
    RoutePolicy(destinations=(WeightedService(100, "demo", "canary-a", "80", CAN_A),)),
    RoutePolicy(cluster_weights={"a": 1}, cluster_by_header="x-zone"),
    RoutePolicy(cluster_weights={"a": 1}, cluster_priority=("a", "b")),
    RoutePolicy(cluster_weights={"a": 1}, local_zone="az-1"),
    RoutePolicy(mirror=MIRROR, hash_by="$request_uri"),
    RoutePolicy(mirror=MIRROR, affinity=AffinityCookie()),
    RoutePolicy(mirror=MIRROR, load_balance="least_conn"),
    RoutePolicy(mirror=MIRROR, rewrite_target="/x"),
    RoutePolicy(mirror=MIRROR, upstream_vhost="v"),
    RoutePolicy(mirror=MIRROR, app_root="/app"),
    RoutePolicy(mirror=MIRROR, cors=CorsPolicy()),
    RoutePolicy(mirror=MIRROR, whitelist=()),
    RoutePolicy(mirror=MIRROR, ssl_redirect=True),
    RoutePolicy(mirror=MIRROR, force_ssl_redirect=True),
    RoutePolicy(mirror=MIRROR, total_timeout=1.0),
    RoutePolicy(mirror=MIRROR, backend_protocol="HTTPS"),
    RoutePolicy(mirror=MIRROR, backend_protocol="GRPC"),
])
def test_policies_a_warm_plan_cannot_answer_keep_the_general_path(policy: RoutePolicy) -> None:
    assert not qualifies(policy)
    assert Route("h", "/", "Prefix", "demo/main", MAIN, policy).warm is None


def test_no_warm_plan_without_endpoints_or_weighted_clusters() -> None:
    policy = RoutePolicy(mirror=MIRROR, cluster_weights={"zz": 1})
    assert qualifies(policy)
    assert cluster_rows(MAIN, policy) is None and warm_plan(MAIN, policy, "demo/main") is None
    assert warm_plan(EMPTY, RoutePolicy(mirror=MIRROR), "demo/main") is None
    assert warm_plan(None, RoutePolicy(mirror=MIRROR), "demo/main") is None
    # a canary backend whose weighted clusters have no endpoint: the general path too
    canary = CanaryRule("demo/cb", "cb", "80", weight=10, backend=CAN_B)
    assert warm_plan(MAIN, RoutePolicy(canaries=(canary,), cluster_weights={"a": 1}), "demo/main") is None


def test_cluster_rows_is_decides_weighted_table() -> None:
    for weights in WEIGHTS.values():
        if weights:
            policy = RoutePolicy(cluster_weights=weights)
            assert cluster_rows(MAIN, policy) == decide.weighted_clusters(MAIN, policy)


# --- over sockets: the warm path is the one taken ----------------------------------------

async def test_warm_path_serves_the_three_policies_without_the_general_plan(fleet_dir, echo_backends,
                                                                            start_gateway, monkeypatch) -> None:
    calls: collections.Counter[bytes] = collections.Counter()
    general_head = DownstreamH1._policy_head

    def counted(self: Any, ex: Any, head: Any, r: Any, has_body: bool) -> None:
        calls[ex.method] += 1
        general_head(self, ex, head, r, has_body)

    monkeypatch.setattr(DownstreamH1, "_policy_head", counted)
    fd = fleet_dir("zone-a", "zone-b")
    main_a = await echo_backends("main-a", host="127.0.14.1")
    main_b = await echo_backends("main-b", host="127.0.14.2", port=main_a.port)
    can_a = await echo_backends("canary-a", host="127.0.14.3")
    shadow = await echo_backends("shadow", host="127.0.14.5")
    fd.member("zone-a", [*served("main", main_a), *served("canary", can_a), *served("shadow", shadow)])
    fd.member("zone-b", [service("main"), endpoint_slice("main", [(main_b.host, main_b.port)])])
    fd.hub([ingress("web", [rule("web.example.com", ("/", "Prefix", "main"))], annotations={
                "fleetgate.io/cluster-weights": "zone-a=50,zone-b=50",
                "higress.io/mirror-target-service": "shadow", "higress.io/mirror-percentage": "100"}),
            ingress("canary", [rule("web.example.com", ("/", "Prefix", "canary"))], annotations={
                f"{NGINX}canary": "true", f"{NGINX}canary-by-header": "x-canary", f"{NGINX}canary-weight": "0"})])
    gw = await start_gateway(fd)
    seen: collections.Counter[str] = collections.Counter()
    async with aiohttp.ClientSession() as s:
        for i in range(40):
            headers = {"Host": "web.example.com", "X-Canary": "always" if i % 2 else "never"}
            async with s.get(gw.url + f"/w{i}", headers=headers) as r:
                assert r.status == 200
                seen[(await r.json())["backend"]] += 1
        async with s.post(gw.url + "/p", data=b"body", headers={"Host": "web.example.com"}) as r:
            assert r.status == 200
    assert calls == {b"POST": 1}, calls  # every GET was resolved on the warm plan
    assert seen["canary-a"] == 20 and seen["main-a"] + seen["main-b"] == 20, seen
    assert seen["main-a"] and seen["main-b"], seen  # both member clusters drawn
    mirrors = gw.gateway.ctx.mirrors
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while (shadow.hits < 41 or any(t.in_flight for t in mirrors.targets.values())) and loop.time() < deadline:
        await asyncio.sleep(0.02)
    assert shadow.hits == 41, shadow.hits  # every request copied (100 %), the POST with its body
    assert {r["headers"]["host"] for r in shadow.requests} == {"web.example.com-shadow"}
    assert {r["path"] for r in shadow.requests} == {f"/w{i}" for i in range(40)} | {"/p"}
