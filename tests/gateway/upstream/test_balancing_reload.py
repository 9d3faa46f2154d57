"""Replica-proportional balancing across member clusters, and config changes under load."""
from __future__ import annotations

import asyncio
import collections

import aiohttp

from gateway_support import endpoint_slice, ingress, rule, service


async def test_traffic_splits_across_clusters_in_proportion_to_ready_endpoints(
        fleet_dir, echo_backends, start_gateway):
    fd = fleet_dir("zone-a", "zone-b")
    # one EndpointSlice port per service: the pods share a port on distinct addresses
    first = await echo_backends("a0", host="127.0.3.1")
    a = [first] + [await echo_backends(f"a{i}", host=f"127.0.3.{i + 1}", port=first.port) for i in (1, 2)]
    b = [await echo_backends("b0", host="127.0.4.1", port=first.port)]
    not_ready = await echo_backends("b-not-ready", host="127.0.4.2", port=first.port)
    fd.member("zone-a", [service("web"), endpoint_slice("web", [(x.host, x.port) for x in a])])
    fd.member("zone-b", [service("web"), endpoint_slice("web", [(x.host, x.port) for x in b]),
                         endpoint_slice("web", [(not_ready.host, not_ready.port)], suffix="2", ready=False)])
    fd.hub([ingress("web", [rule("web.example.com", ("/", "Prefix", "web"))])])
    gw = await start_gateway(fd)
    clusters: collections.Counter[str] = collections.Counter()
    async with aiohttp.ClientSession() as s:
        for _ in range(400):
            async with s.get(gw.url + "/", headers={"Host": "web.example.com"}) as r:
                assert r.status == 200
                clusters[r.headers["x-fleetgate-cluster"]] += 1
    # round robin over 4 ready endpoints: exactly 3:1 by replica count
    assert clusters == {"zone-a": 300, "zone-b": 100}
    assert [x.hits for x in a] == [100, 100, 100]
    assert b[0].hits == 100
    assert not_ready.hits == 0


async def test_endpoint_changes_apply_under_steady_load_with_zero_failed_requests(
        fleet_dir, echo_backends, start_gateway):
    fd = fleet_dir("zone-a", "zone-b")
    old = await echo_backends("old", host="127.0.5.1")
    new = await echo_backends("new", host="127.0.5.2")
    fd.member("zone-a", [service("web"), endpoint_slice("web", [(old.host, old.port)])])
    fd.hub([ingress("web", [rule("web.example.com", ("/", "Prefix", "web"))])])
    gw = await start_gateway(fd)
    stop = asyncio.Event()
    statuses: collections.Counter[int] = collections.Counter()
    seen: collections.Counter[str] = collections.Counter()

    async def client() -> None:
        async with aiohttp.ClientSession() as s:
            for _ in range(5000):  # bounded; stops when told
                if stop.is_set():
                    return
                async with s.get(gw.url + "/", headers={"Host": "web.example.com"}) as r:
                    statuses[r.status] += 1
                    if r.status == 200:
                        seen[(await r.json())["backend"]] += 1

    clients = [asyncio.create_task(client()) for _ in range(8)]
    try:
        await asyncio.sleep(0.2)
        # move the service to another pod in the other cluster, then add a route, then move back
        fd.member("zone-b", [service("web"), endpoint_slice("web", [(new.host, new.port)])])
        await gw.wait_reload()
        fd.member("zone-a", [service("web")])
        await gw.wait_reload()
        await asyncio.sleep(0.2)
        fd.hub([ingress("web", [rule("web.example.com", ("/", "Prefix", "web")),
                                rule("other.example.com", ("/", "Prefix", "web"))])])
        await gw.wait_reload()
        await asyncio.sleep(0.2)
    finally:
        stop.set()
        await asyncio.gather(*clients)
    assert set(statuses) == {200}, statuses
    assert seen["old"] > 0 and seen["new"] > 0
    async with aiohttp.ClientSession() as s:
        async with s.get(gw.url + "/", headers={"Host": "web.example.com"}) as r:
            assert (await r.json())["backend"] == "new"


async def test_broken_manifest_is_reported_and_last_good_config_stays(fleet_dir, echo_backends, start_gateway):
    fd = fleet_dir("zone-a")
    b = await echo_backends("svc", host="127.0.5.3")
    fd.member("zone-a", [service("svc"), endpoint_slice("svc", [(b.host, b.port)])])
    fd.hub([ingress("web", [rule("web.example.com", ("/", "Prefix", "svc"))])])
    gw = await start_gateway(fd)
    version = gw.gateway.table.version
    # an Ingress with an invalid pathType: the file's last good objects stay in force
    broken = ingress("web", [rule("web.example.com", ("/", "Sideways", "svc"))])
    fd.hub([broken])
    await gw.wait_version(version + 1)
    diags = [str(d) for d in gw.fleet.diagnostics()]
    assert any("ingresses.yaml" in d and "Ingress/demo/web" in d and "pathType" in d for d in diags), diags
    async with aiohttp.ClientSession() as s:
        async with s.get(gw.url + "/", headers={"Host": "web.example.com"}) as r:
            assert r.status == 200
    # YAML that does not parse at all: same
    (fd.root / "hub" / "ingresses.yaml").write_text("kind: Ingress\n  bad: [indent\n")
    await gw.wait_version(version + 2)
    assert any("ingresses.yaml" in str(d) for d in gw.fleet.diagnostics())
    async with aiohttp.ClientSession() as s:
        async with s.get(gw.url + "/", headers={"Host": "web.example.com"}) as r:
            assert r.status == 200
    # fixing the file applies the new content and clears the problem
    fd.hub([ingress("web", [rule("fixed.example.com", ("/", "Prefix", "svc"))])])
    await gw.wait_version(version + 3)
    assert not [d for d in gw.fleet.diagnostics() if "ingresses.yaml" in str(d)]
    async with aiohttp.ClientSession() as s:
        async with s.get(gw.url + "/", headers={"Host": "fixed.example.com"}) as r:
            assert r.status == 200


async def test_in_flight_request_finishes_on_the_table_it_started_with(fleet_dir, echo_backends, start_gateway):
    fd = fleet_dir("zone-a")
    release = asyncio.Event()

    async def slow(request):
        from aiohttp import web
        await release.wait()
        return web.Response(text="slow-done")

    b = await echo_backends("slow", host="127.0.5.4", handler=slow)
    fd.member("zone-a", [service("svc"), endpoint_slice("svc", [(b.host, b.port)])])
    fd.hub([ingress("web", [rule("web.example.com", ("/", "Prefix", "svc"))])])
    gw = await start_gateway(fd)
    async with aiohttp.ClientSession() as s:
        pending = asyncio.create_task(s.get(gw.url + "/", headers={"Host": "web.example.com"}))
        while b.hits == 0:
            await asyncio.sleep(0.01)
        fd.hub([ingress("web", [rule("elsewhere.example.com", ("/", "Prefix", "svc"))])])
        await gw.wait_reload()
        release.set()
        r = await pending
        assert r.status == 200 and await r.text() == "slow-done"
        async with s.get(gw.url + "/", headers={"Host": "web.example.com"}) as r2:
            assert r2.status == 404
