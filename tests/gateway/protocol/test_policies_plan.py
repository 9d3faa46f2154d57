"""The policies case (issue 13: canary + cluster weights + mirror on one route), resolved
per request without a Python object per header line or a balancer walk per request:
the shortcuts give exactly what the general code gives (header values, cluster draws,
canary draws), and the three policies together work end to end over sockets."""
from __future__ import annotations

import asyncio
import collections
import itertools

import aiohttp
import pytest

from gateway.codec import head_end, parse_request
from gateway.protocol.planning import header_pairs, wanted_headers
from gateway.protocol.policy_hooks import prepare
from gateway.routing.policy import CanaryRule, RoutePolicy
from gateway.routing.select import RequestView, choose_backend
from gateway.routing.table import Route
from gateway.upstream import decide
from gateway.upstream.balancer import BalancerState, choose_endpoint
from gateway_support import backend, endpoint_slice, ingress, rule, served, service

NGINX = "nginx.ingress.kubernetes.io/"


def fields_of(*lines: bytes) -> bytes:
    """The forwarded header lines the codec gives for a head with these lines."""
    raw = b"GET / HTTP/1.1\r\nHost: h\r\n" + b"".join(line + b"\r\n" for line in lines) + b"\r\n"
    return parse_request(raw, 0, head_end(raw, 0, 1 << 16), 8192, 1 << 16).fields


def by_pairs(fields: bytes, want: frozenset[bytes]) -> dict[str, str]:
    """The reference: a Python object per line, as the request path did before."""
    out = {}
    for name, value in header_pairs(fields):
        if name.lower() in want:
            out[name.lower().decode("latin-1")] = value.decode("latin-1")
    return out


HEADS = [
    (),
    (b"X-Canary: always",),
    (b"x-canary:never", b"Accept: */*"),
    (b"X-CANARY:   spaced value \t", b"Cookie: a=1; b=2"),
    (b"x-canary: first", b"X-Canary: second"),  # repeated: the last line wins
    (b"x-canary-extra: no", b"x-canaryx: no", b"my-x-canary: no"),  # names that merely contain it
    (b"Accept: x-canary: in a value", b"Referer: http://x/?x-canary:1"),
    (b"X-Canary:", b"cookie: s=1"),  # an empty value
    (b"X-Zone: zone-b", b"X-Canary: v1", b"User-Agent: wrk"),
]


@pytest.mark.parametrize("lines", HEADS)
@pytest.mark.parametrize("want", [frozenset({b"x-canary"}), frozenset({b"x-canary", b"cookie", b"x-zone"}),
                                  frozenset({b"x-canary", b"cookie"} | {b"h%d" % i for i in range(10)})])
def test_wanted_headers_match_the_line_by_line_reference(lines: tuple[bytes, ...], want: frozenset[bytes]) -> None:
    fields = fields_of(*lines)
    assert wanted_headers(fields, want) == by_pairs(fields, want)


def test_wanted_headers_finds_values_case_insensitively_and_keeps_their_case() -> None:
    fields = fields_of(b"X-Canary: Always", b"COOKIE: Session=AbC")
    assert wanted_headers(fields, frozenset({b"x-canary", b"cookie"})) == {"x-canary": "Always",
                                                                         "cookie": "Session=AbC"}
    assert wanted_headers(fields, frozenset({b"x-other"})) == {}


# --- cluster weights: the memoised draw table against the balancer -----------------------

MAIN = backend("main", a=2, b=3, c=1)
POLICIES = [
    RoutePolicy(cluster_weights={"a": 70, "b": 30}),
    RoutePolicy(cluster_weights={"b": 30, "a": 70}),  # the policy's order is the draw's order
    RoutePolicy(cluster_weights={"a": 0, "b": 100}),  # a zero weight takes nothing
    RoutePolicy(cluster_weights={"zz": 50, "c": 50}),  # a cluster the backend lacks moves its share
    RoutePolicy(cluster_weights={"a": 1, "b": 1, "c": 1}),
    RoutePolicy(cluster_weights={"zz": 100}),  # nothing weighted has endpoints: the balancer's way
    RoutePolicy(cluster_weights={"a": 50, "b": 50}, cluster_priority=("b", "a")),
]
RANDS = [0.0, 0.1, 0.29999, 0.3, 0.5, 0.69999, 0.7, 0.9, 0.99999]


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: ",".join(f"{k}={v}" for k, v in p.cluster_weights.items()))
def test_weighted_pick_is_the_balancers_pick(policy: RoutePolicy) -> None:
    fast, slow = BalancerState(), BalancerState()
    for rand in RANDS * 3:  # three rounds: the round-robin cursor moves the same way in both
        got = decide.pick(MAIN, policy, fast, None, (), 0.0, rand, 0.5)
        want = choose_endpoint(MAIN, policy, slow, None, (), rand, 0.5)
        assert got is want, (rand, got, want)
    assert fast.rr == slow.rr


def test_weighted_pick_leaves_retries_health_and_header_cluster_to_the_balancer() -> None:
    policy = RoutePolicy(cluster_weights={"a": 100}, cluster_by_header="x-zone")
    state = BalancerState()
    first = decide.pick(MAIN, policy, state, None, (), 0.0, 0.5, 0.5)
    assert first is not None and first.cluster == "a"
    # a retry goes to another member cluster, whatever the weights say
    retry = decide.pick(MAIN, policy, state, None, tuple(e.key for e in MAIN.endpoints if e.cluster == "a"),
                        0.0, 0.5, 0.5)
    assert retry is not None and retry.cluster != "a"
    # a cluster down: its weight moves
    down = {e.key for e in MAIN.endpoints if e.cluster == "a"}
    ep = decide.pick(MAIN, policy, state, lambda k: k not in down, (), 0.0, 0.5, 0.5)
    assert ep is not None and ep.cluster != "a"
    # the header names a healthy cluster: it wins over the weights
    assert decide.pick(MAIN, policy, state, None, (), 0.0, 0.5, 0.5, header_cluster="c").cluster == "c"


def test_weighted_clusters_is_per_policy_and_backend() -> None:
    a_only, b_only = RoutePolicy(cluster_weights={"a": 1}), RoutePolicy(cluster_weights={"b": 1})
    other = backend("other", b=1)
    assert {e.cluster for _, eps in decide.weighted_clusters(MAIN, a_only)[1] for e in eps} == {"a"}
    assert {e.cluster for _, eps in decide.weighted_clusters(MAIN, b_only)[1] for e in eps} == {"b"}
    assert decide.weighted_clusters(other, a_only) is None  # (a new table's backend: its own answer)
    assert decide.weighted_clusters(other, b_only) == (1, ((1, other.endpoints),))


# --- canaries: the draw made as the rules are read ------------------------------------------

CANARY_A, CANARY_B = backend("canary-a", a=1), backend("canary-b", b=1)


def canary_route(*rules: CanaryRule) -> Route:
    return Route("h", "/", "Prefix", "demo/main", MAIN, RoutePolicy(canaries=rules))


def reference_choice(route: Route, req: RequestView, rand: float) -> str:
    """ingress-nginx's canary order written the long way: a deciding rule wins, else the
    undecided weighted ones share rand in order."""
    weighted = []
    for c in route.policy.canaries:
        value = req.headers.get(c.header) if c.header else None
        if c.header_value is None and value == "always" or c.header_value is not None and value == c.header_value:
            return c.ingress
        if c.header_value is None and value == "never":
            continue  # this canary is out; the others still count
        if c.weight > 0:
            weighted.append(c)
    acc = 0.0
    for c in weighted:
        acc += c.weight / c.weight_total
        if rand < acc:
            return c.ingress
    return route.ingress


@pytest.mark.parametrize("headers", [{}, {"x-a": "always"}, {"x-a": "never"}, {"x-b": "v2"}, {"x-b": "v3"},
                                     {"x-a": "never", "x-b": "v2"}])
def test_canary_choice_follows_the_rules_then_the_weights(headers: dict[str, str]) -> None:
    route = canary_route(CanaryRule("demo/ca", "ca", "80", header="x-a", weight=20, backend=CANARY_A),
                         CanaryRule("demo/cb", "cb", "80", header="x-b", header_value="v2", weight=30,
                                    backend=CANARY_B))
    view = RequestView(headers)
    for rand in (0.0, 0.19, 0.2, 0.49, 0.5, 0.9):
        _, label = choose_backend(route, view, rand, lambda b: True)
        assert label == reference_choice(route, view, rand), (headers, rand)


def test_plan_with_a_header_canary_reads_the_header_and_keeps_its_view() -> None:
    route = canary_route(CanaryRule("demo/ca", "ca", "80", header="x-canary", weight=10, backend=CANARY_A))
    plans = [prepare(route, b"GET", b"h.example:8080", b"/p?q=1", headers, peer=b"10.0.0.1", tls=False,
                     https_port=443, usable=lambda b: True, rand_backend=rand, rand_mirror=0.5)
             for headers, rand in itertools.product(({"x-canary": "always"}, {}), (0.05, 0.5))]
    assert [p.label for p in plans] == ["demo/ca", "demo/ca", "demo/ca", "demo/main"]
    view = plans[0].view
    assert (view.query_string, view.remote_addr, view.host, view.uri) == ("q=1", "10.0.0.1", "h.example:8080",
                                                                         "/p?q=1")
    assert view == RequestView({"x-canary": "always"}, "q=1", "10.0.0.1", "h.example:8080", "/p?q=1")


# --- the three together, over sockets -------------------------------------------------------

async def test_canary_cluster_weights_and_mirror_together(fleet_dir, echo_backends, start_gateway) -> None:
    fd = fleet_dir("zone-a", "zone-b")
    main_a = await echo_backends("main-a", host="127.0.13.1")
    main_b = await echo_backends("main-b", host="127.0.13.2", port=main_a.port)
    can_a = await echo_backends("canary-a", host="127.0.13.3")
    can_b = await echo_backends("canary-b", host="127.0.13.4", port=can_a.port)
    shadow = await echo_backends("shadow", host="127.0.13.5")
    fd.member("zone-a", [*served("main", main_a), *served("canary", can_a), *served("shadow", shadow)])
    fd.member("zone-b", [service("main"), endpoint_slice("main", [(main_b.host, main_b.port)]),
                         service("canary"), endpoint_slice("canary", [(can_b.host, can_b.port)])])
    fd.hub([ingress("web", [rule("web.example.com", ("/", "Prefix", "main"))], annotations={
                "fleetgate.io/cluster-weights": "zone-a=70,zone-b=30",
                "higress.io/mirror-target-service": "shadow", "higress.io/mirror-percentage": "50"}),
            ingress("canary", [rule("web.example.com", ("/", "Prefix", "canary"))], annotations={
                f"{NGINX}canary": "true", f"{NGINX}canary-by-header": "x-canary", f"{NGINX}canary-weight": "20"})])
    gw = await start_gateway(fd)
    n = 400
    seen: collections.Counter[tuple[str, str]] = collections.Counter()
    async with aiohttp.ClientSession() as s:
        for i in range(n):
            headers = {"Host": "web.example.com", "X-Canary": "always" if i % 4 == 0 else "not-a-rule"}
            async with s.get(gw.url + f"/r{i}", headers=headers) as r:
                assert r.status == 200
                body = await r.json()
                seen[(body["backend"], r.headers["x-fleetgate-cluster"])] += 1
                if i % 4 == 0:
                    assert body["backend"].startswith("canary"), body
    # the response's cluster header names the member cluster that answered
    assert set(seen) <= {("main-a", "zone-a"), ("main-b", "zone-b"), ("canary-a", "zone-a"),
                         ("canary-b", "zone-b")}, seen
    canary = seen[("canary-a", "zone-a")] + seen[("canary-b", "zone-b")]
    assert 100 + 25 <= canary <= 100 + 95, seen  # 100 forced + 20 % of 300 (expected 60; ±5 sigma)
    zone_a = seen[("main-a", "zone-a")] + seen[("canary-a", "zone-a")]
    assert 230 <= zone_a <= 330, seen  # expected 280 of 400 (70 %)
    # half of the requests are copied to the shadow, Host marked: wait until no copy is
    # in flight (each is counted when the shadow's answer comes back)
    loop = asyncio.get_running_loop()
    mirrors = gw.gateway.ctx.mirrors
    deadline = loop.time() + 5
    while any(t.in_flight for t in mirrors.targets.values()) and loop.time() < deadline:
        await asyncio.sleep(0.02)
    assert mirrors.counts.get(("zone-a", "success"), 0) == shadow.hits, mirrors.counts
    assert 150 <= shadow.hits <= 250, shadow.hits  # expected 200 (50 %; ±5 sigma)
    assert {r["headers"]["host"] for r in shadow.requests} == {"web.example.com-shadow"}
    assert {r["path"] for r in shadow.requests} <= {f"/r{i}" for i in range(n)}
