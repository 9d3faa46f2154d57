"""Multi-cluster traffic policies through a real gateway: canary, cluster weights and
priority, failover, retries, outlier ejection, active checks, mirroring, affinity and the
other annotations. Statistical checks use enough samples and wide bounds not to flake."""
from __future__ import annotations

import asyncio
import collections

import aiohttp
import pytest
from aiohttp import web

from gateway_support import endpoint_slice, ingress, rule, served, service

NGINX = "nginx.ingress.kubernetes.io/"


async def pods(echo_backends, prefix: str, names: list[str]):
    """Echo backends on 127.0.<prefix>.N sharing one port (one EndpointSlice port)."""
    first = await echo_backends(names[0], host=f"{prefix}.1")
    out = [first]
    for i, name in enumerate(names[1:], start=2):
        out.append(await echo_backends(name, host=f"{prefix}.{i}", port=first.port))
    return out


async def get_many(url: str, n: int, host: str, headers: dict | None = None, method: str = "GET"):
    statuses: collections.Counter[int] = collections.Counter()
    backends: collections.Counter[str] = collections.Counter()
    clusters: collections.Counter[str] = collections.Counter()
    async with aiohttp.ClientSession() as s:
        for _ in range(n):
            async with s.request(method, url, headers={"Host": host, **(headers or {})}) as r:
                statuses[r.status] += 1
                clusters[r.headers.get("x-fleetgate-cluster", "")] += 1
                if r.status == 200 and r.content_type == "application/json":
                    backends[(await r.json())["backend"]] += 1
    return statuses, backends, clusters


@pytest.fixture
def two_cluster_fleet(fleet_dir, echo_backends, start_gateway):
    async def make(annotations: dict, a: int = 2, b: int = 2, extra_hub: list | None = None, zones=None):
        fd = fleet_dir("zone-a", "zone-b", zones=zones)
        pa = await pods(echo_backends, "127.0.8", [f"a{i}" for i in range(a)])
        pb = await pods(echo_backends, "127.0.9", [f"b{i}" for i in range(b)])
        fd.member("zone-a", [service("web"), endpoint_slice("web", [(p.host, p.port) for p in pa])])
        fd.member("zone-b", [service("web"), endpoint_slice("web", [(p.host, p.port) for p in pb])])
        fd.hub([ingress("web", [rule("web.example.com", ("/", "Prefix", "web"))], annotations=annotations),
                *(extra_hub or [])])
        gw = await start_gateway(fd)
        return gw, pa, pb, fd
    return make


async def test_cluster_weights_split_traffic(two_cluster_fleet):
    gw, *_ = await two_cluster_fleet({"fleetgate.io/cluster-weights": "zone-a=80,zone-b=20"})
    statuses, _, clusters = await get_many(gw.url, 500, "web.example.com")
    assert statuses == {200: 500}
    assert 330 <= clusters["zone-a"] <= 460, clusters  # expected 400; ±7 sigma


async def test_cluster_priority_sends_everything_to_the_first_healthy_cluster(two_cluster_fleet):
    gw, *_ = await two_cluster_fleet({"fleetgate.io/cluster-priority": "zone-b,zone-a"})
    _, _, clusters = await get_many(gw.url, 100, "web.example.com")
    assert clusters == {"zone-b": 100}


async def test_cluster_by_header_picks_the_named_cluster(two_cluster_fleet):
    gw, *_ = await two_cluster_fleet({"fleetgate.io/cluster-by-header": "x-fleet-cluster"})
    _, _, clusters = await get_many(gw.url, 30, "web.example.com", {"x-fleet-cluster": "zone-b"})
    assert clusters == {"zone-b": 30}
    _, _, clusters = await get_many(gw.url, 40, "web.example.com", {"x-fleet-cluster": "nowhere"})
    assert set(clusters) == {"zone-a", "zone-b"}


async def test_local_zone_flag_prefers_the_gateways_zone(fleet_dir, echo_backends, start_gateway):
    fd = fleet_dir("zone-a", "zone-b", zones={"zone-a": "az-1", "zone-b": "az-2"})
    pa = await pods(echo_backends, "127.0.8", ["a0"])
    pb = await pods(echo_backends, "127.0.9", ["b0"])
    fd.member("zone-a", [service("web"), endpoint_slice("web", [(pa[0].host, pa[0].port)])])
    fd.member("zone-b", [service("web"), endpoint_slice("web", [(pb[0].host, pb[0].port)])])
    fd.hub([ingress("web", [rule("web.example.com", ("/", "Prefix", "web"))],
                    annotations={"fleetgate.io/local-zone": "az-2"})])
    gw = await start_gateway(fd)
    _, _, clusters = await get_many(gw.url, 40, "web.example.com")
    assert clusters == {"zone-b": 40}


async def test_whole_cluster_dying_under_load_fails_no_get(two_cluster_fleet):
    gw, pa, pb, _ = await two_cluster_fleet({}, a=3, b=3)
    stop = asyncio.Event()
    statuses: collections.Counter[int] = collections.Counter()
    after_kill: collections.Counter[str] = collections.Counter()
    killed = asyncio.Event()

    async def client():
        async with aiohttp.ClientSession() as s:
            for _ in range(3000):
                if stop.is_set():
                    return
                started_after_kill = killed.is_set()
                async with s.get(gw.url + "/", headers={"Host": "web.example.com"}) as r:
                    statuses[r.status] += 1
                    if started_after_kill:
                        after_kill[r.headers.get("x-fleetgate-cluster", "")] += 1

    clients = [asyncio.create_task(client()) for _ in range(6)]
    await asyncio.sleep(0.3)
    # kill every pod of zone-a at once: their listeners close, connects are refused
    for p in pa:
        await p.stop()
    killed.set()
    await asyncio.sleep(0.5)
    stop.set()
    await asyncio.gather(*clients)
    assert set(statuses) == {200}, statuses
    assert after_kill["zone-b"] > 0 and after_kill["zone-a"] == 0
    health = gw.gateway.debug_routes()["routes"][0]["backend"]["clusters"]
    down = {e["address"] for c in health for e in c["endpoints"] if not e["healthy"]}
    assert down == {p.host for p in pa}


async def test_canary_by_header_and_weight(fleet_dir, echo_backends, start_gateway):
    fd = fleet_dir("zone-a")
    main = await echo_backends("main", host="127.0.8.1")
    can = await echo_backends("canary", host="127.0.8.2")
    fd.member("zone-a", served("main", main) + served("canary", can))
    fd.hub([ingress("main", [rule("web.example.com", ("/", "Prefix", "main"))]),
            ingress("canary", [rule("web.example.com", ("/", "Prefix", "canary"))],
                    annotations={f"{NGINX}canary": "true", f"{NGINX}canary-by-header": "x-canary",
                                 f"{NGINX}canary-weight": "30"})])
    gw = await start_gateway(fd)
    _, backends, _ = await get_many(gw.url, 20, "web.example.com", {"x-canary": "always"})
    assert backends == {"canary": 20}
    _, backends, _ = await get_many(gw.url, 20, "web.example.com", {"x-canary": "never"})
    assert backends == {"main": 20}
    _, backends, _ = await get_many(gw.url, 600, "web.example.com")
    assert 110 <= backends["canary"] <= 250, backends  # expected 180


async def test_canary_with_no_endpoint_falls_back_to_main(fleet_dir, echo_backends, start_gateway):
    fd = fleet_dir("zone-a")
    main = await echo_backends("main", host="127.0.8.3")
    fd.member("zone-a", [*served("main", main), service("canary")])
    fd.hub([ingress("main", [rule("web.example.com", ("/", "Prefix", "main"))]),
            ingress("canary", [rule("web.example.com", ("/", "Prefix", "canary"))],
                    annotations={f"{NGINX}canary": "true", f"{NGINX}canary-by-header": "x-canary"})])
    gw = await start_gateway(fd)
    _, backends, _ = await get_many(gw.url, 10, "web.example.com", {"x-canary": "always"})
    assert backends == {"main": 10}


async def test_retry_on_503_moves_to_another_cluster(fleet_dir, echo_backends, start_gateway):
    async def unavailable(request):
        return web.Response(status=503, text="down")

    fd = fleet_dir("zone-a", "zone-b")
    bad = await echo_backends("bad", host="127.0.8.4", handler=unavailable)
    good = await echo_backends("good", host="127.0.9.4")
    fd.member("zone-a", served("web", bad))
    fd.member("zone-b", served("web", good))
    fd.hub([ingress("web", [rule("web.example.com", ("/", "Prefix", "web"))],
                    annotations={f"{NGINX}proxy-next-upstream": "error timeout http_503",
                                 "fleetgate.io/consecutive-5xx": "1000"})])
    gw = await start_gateway(fd)
    statuses, _, clusters = await get_many(gw.url, 20, "web.example.com")
    assert statuses == {200: 20} and clusters == {"zone-b": 20}
    assert bad.hits >= 5  # round robin still tried zone-a first about half the time


async def test_post_is_not_retried_after_a_reset_unless_non_idempotent(fleet_dir, start_gateway, echo_backends):
    hits = {"n": 0}

    async def reset(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        hits["n"] += 1
        writer.transport.abort()

    server = await asyncio.start_server(reset, "127.0.8.5", 0)
    port = server.sockets[0].getsockname()[1]
    good = await echo_backends("good", host="127.0.8.6", port=port)
    for annotations, expect in (({}, 502), ({f"{NGINX}proxy-next-upstream": "error timeout non_idempotent"}, 200)):
        fd = fleet_dir("zone-a")
        fd.root = fd.root.parent / f"fleet-{expect}"
        from gateway_support import make_fleet_dir
        fd = make_fleet_dir(fd.root, ["zone-a"])
        fd.member("zone-a", [service("web"), endpoint_slice("web", [("127.0.8.5", port), (good.host, port)])])
        fd.hub([ingress("web", [rule("web.example.com", ("/", "Prefix", "web"))], annotations=annotations)])
        gw = await start_gateway(fd)
        codes = []
        async with aiohttp.ClientSession() as s:
            for _ in range(4):
                async with s.post(gw.url + "/", data=b"x", headers={"Host": "web.example.com"}) as r:
                    codes.append(r.status)
        assert expect in codes and set(codes) <= {200, expect}, codes
    server.close()


async def test_consecutive_5xx_eject_an_endpoint(fleet_dir, echo_backends, start_gateway):
    async def broken(request):
        return web.Response(status=500)

    fd = fleet_dir("zone-a")
    first = await echo_backends("broken", host="127.0.8.7", handler=broken)
    ok = await echo_backends("ok", host="127.0.8.8", port=first.port)
    fd.member("zone-a", [service("web"), endpoint_slice("web", [(first.host, first.port), (ok.host, ok.port)])])
    fd.hub([ingress("web", [rule("web.example.com", ("/", "Prefix", "web"))],
                    annotations={"fleetgate.io/consecutive-5xx": "3"})])
    gw = await start_gateway(fd)
    statuses, _, _ = await get_many(gw.url, 60, "web.example.com")
    assert statuses[500] == 3 and statuses[200] == 57
    assert first.hits == 3


async def test_active_http_check_takes_an_unhealthy_endpoint_out(fleet_dir, echo_backends, start_gateway):
    async def sick_health(request):
        return web.Response(status=503 if request.path == "/healthz" else 200, text="sick")

    fd = fleet_dir("zone-a")
    sick = await echo_backends("sick", host="127.0.8.9", handler=sick_health)
    well = await echo_backends("well", host="127.0.8.10", port=sick.port)
    fd.member("zone-a", [service("web"), endpoint_slice("web", [(sick.host, sick.port), (well.host, well.port)])])
    fd.hub([ingress("web", [rule("web.example.com", ("/", "Prefix", "web"))],
                    annotations={"fleetgate.io/health-check-path": "/healthz",
                                 "fleetgate.io/health-check-interval": "0.05"})])
    gw = await start_gateway(fd)
    deadline = asyncio.get_running_loop().time() + 5
    while gw.gateway.ctx.healthy(f"{sick.host}:{sick.port}", asyncio.get_running_loop().time()):
        assert asyncio.get_running_loop().time() < deadline, "active check never marked the endpoint down"
        await asyncio.sleep(0.02)
    before = sick.hits
    statuses, backends, _ = await get_many(gw.url, 20, "web.example.com")
    assert statuses == {200: 20} and backends == {"well": 20}
    assert all(r["path"] == "/healthz" for r in sick.requests[before:])


async def test_mirror_copies_requests_and_a_dead_mirror_changes_nothing(fleet_dir, echo_backends, start_gateway):
    fd = fleet_dir("zone-a")
    main = await echo_backends("main", host="127.0.8.11")
    shadow = await echo_backends("shadow", host="127.0.8.12")
    fd.member("zone-a", [*served("main", main),
                         *served("shadow", shadow),
                         service("dead"), endpoint_slice("dead", [("127.0.8.13", 9)])])
    fd.hub([ingress("web", [rule("web.example.com", ("/", "Prefix", "main"))],
                    annotations={"higress.io/mirror-target-service": "shadow"}),
            ingress("web2", [rule("dead.example.com", ("/", "Prefix", "main"))],
                    annotations={"higress.io/mirror-target-service": "dead"})])
    gw = await start_gateway(fd)
    async with aiohttp.ClientSession() as s:
        for i in range(10):
            async with s.post(gw.url + f"/m{i}", data=b"body!", headers={"Host": "web.example.com"}) as r:
                assert r.status == 200
    deadline = asyncio.get_running_loop().time() + 5
    while shadow.hits < 10 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)
    assert shadow.hits == 10
    assert {r["headers"]["host"] for r in shadow.requests} == {"web.example.com-shadow"}
    assert {r["body_len"] for r in shadow.requests} == {5}
    statuses, backends, _ = await get_many(gw.url, 20, "dead.example.com")
    assert statuses == {200: 20} and backends == {"main": 20}
    counts = gw.gateway.ctx.mirrors.counts
    assert counts[("zone-a", "success")] == 10 and counts[("zone-a", "error")] >= 1


async def test_hash_by_header_and_cookie_affinity_are_sticky(two_cluster_fleet):
    gw, *_ = await two_cluster_fleet({f"{NGINX}upstream-hash-by": "$http_x_user"}, a=2, b=2)
    for user in ("alice", "bob", "carol"):
        _, backends, _ = await get_many(gw.url, 8, "web.example.com", {"x-user": user})
        assert len(backends) == 1, backends
    gw2, *_ = await two_cluster_fleet({f"{NGINX}affinity": "cookie", f"{NGINX}session-cookie-name": "route"})
    async with aiohttp.ClientSession() as s:
        async with s.get(gw2.url + "/", headers={"Host": "web.example.com"}) as r:
            first = (await r.json())["backend"]
            cookie = r.cookies["route"].value
        seen = set()
        for _ in range(10):
            async with s.get(gw2.url + "/", headers={"Host": "web.example.com", "Cookie": f"route={cookie}"}) as r:
                seen.add((await r.json())["backend"])
        assert seen == {first}


async def test_rewrite_vhost_app_root_cors_whitelist_and_body_size(fleet_dir, echo_backends, start_gateway):
    fd = fleet_dir("zone-a")
    b = await echo_backends("svc", host="127.0.8.14")
    fd.member("zone-a", served("svc", b))
    fd.hub([
        ingress("rw", [rule("rw.example.com", ("/api(/|$)(.*)", "ImplementationSpecific", "svc"))],
                annotations={f"{NGINX}use-regex": "true", f"{NGINX}rewrite-target": "/$2",
                             f"{NGINX}upstream-vhost": "internal.svc"}),
        ingress("root", [rule("root.example.com", ("/", "Prefix", "svc"))],
                annotations={f"{NGINX}app-root": "/app", f"{NGINX}enable-cors": "true",
                             f"{NGINX}cors-allow-origin": "https://ok.example"}),
        ingress("deny", [rule("deny.example.com", ("/", "Prefix", "svc"))],
                annotations={f"{NGINX}whitelist-source-range": "10.0.0.0/8"}),
        ingress("small", [rule("small.example.com", ("/", "Prefix", "svc"))],
                annotations={f"{NGINX}proxy-body-size": "1k"}),
    ])
    gw = await start_gateway(fd)
    async with aiohttp.ClientSession() as s:
        async with s.get(gw.url + "/api/users/7?x=1", headers={"Host": "rw.example.com"}) as r:
            body = await r.json()
        assert body["path"] == "/users/7?x=1" and body["headers"]["host"] == "internal.svc"
        async with s.get(gw.url + "/", headers={"Host": "root.example.com"}, allow_redirects=False) as r:
            assert r.status == 302 and r.headers["location"] == "/app"
        async with s.options(gw.url + "/x", headers={"Host": "root.example.com", "Origin": "https://ok.example",
                                                     "Access-Control-Request-Method": "PUT"}) as r:
            assert r.status == 204
            assert r.headers["access-control-allow-origin"] == "https://ok.example"
            assert "PUT" in r.headers["access-control-allow-methods"]
        async with s.get(gw.url + "/x", headers={"Host": "root.example.com", "Origin": "https://ok.example"}) as r:
            assert r.status == 200 and r.headers["access-control-allow-origin"] == "https://ok.example"
        async with s.get(gw.url + "/x", headers={"Host": "root.example.com", "Origin": "https://evil.example"}) as r:
            assert "access-control-allow-origin" not in r.headers
        async with s.get(gw.url + "/", headers={"Host": "deny.example.com"}) as r:
            assert r.status == 403
        async with s.post(gw.url + "/", data=b"x" * 2048, headers={"Host": "small.example.com"}) as r:
            assert r.status == 413


async def test_invalid_annotation_values_are_diagnostics_and_the_route_still_serves(fleet_dir, echo_backends,
                                                                                   start_gateway):
    fd = fleet_dir("zone-a")
    b = await echo_backends("svc", host="127.0.8.15")
    fd.member("zone-a", served("svc", b))
    fd.hub([ingress("web", [rule("web.example.com", ("/", "Prefix", "svc"))],
                    annotations={"fleetgate.io/cluster-weights": "zone-a=lots", f"{NGINX}load-balance": "fastest",
                                 "mse.ingress.kubernetes.io/destination": "60% a.demo.svc:80\n30% b.demo.svc:80",
                                 f"{NGINX}proxy-read-timeout": "soon", "fleetgate.io/no-such-thing": "1"})])
    gw = await start_gateway(fd)
    msgs = "\n".join(str(d) for d in gw.gateway.diagnostics)
    for needle in ("cluster-weights", "load-balance", "destination", "weights sum to 90", "proxy-read-timeout",
                   "no-such-thing"):
        assert needle in msgs, msgs
    statuses, _, _ = await get_many(gw.url, 5, "web.example.com")
    assert statuses == {200: 5}
    assert "diagnostics" in gw.gateway.debug_routes()
