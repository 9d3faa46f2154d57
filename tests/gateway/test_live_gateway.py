"""The gateway on a live fleet: it follows Ingress and EndpointSlice changes made through
the Kubernetes API, keeps serving through watch drops, 410s, API server restarts and
outages, routes to live and file members side by side, and reports a member it cannot
reach."""
from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import aiohttp
from kubernetes_asyncio import client as k8s

from kubefake import KubeAPIServer
from tests.live_support import (INGRESS_CLASS, endpoint_slice, eventually, get_json, ingress, rule, service,
                     write_fleet)

Start = Callable[..., Awaitable[KubeAPIServer]]
HOST = "web.example"


async def backend_pair(echo_backends: Any, *hosts: str) -> list[Any]:
    """Echo backends on the given loopback addresses, all on one port (one port per slice)."""
    first = await echo_backends(hosts[0], hosts[0])
    return [first] + [await echo_backends(h, h, first.port) for h in hosts[1:]]


def web_ingress(path: str = "/", host: str = HOST, **kw: Any) -> dict:
    return ingress("web", [rule(host, (path, "Prefix", "web"))], **kw)


async def served_by(session: aiohttp.ClientSession, url: str, backend: str, host: str = HOST) -> bool:
    status, body = await get_json(session, url + "/", host)
    return status == 200 and body.get("backend") == backend


async def test_follows_ingress_and_endpointslice_changes_made_through_the_api(
        api_servers: Start, echo_backends: Any, run_gateway: Any, kube: Any, tmp_path: Path) -> None:
    a1, a2 = await backend_pair(echo_backends, "127.0.60.1", "127.0.60.2")
    hub, zone_a = await api_servers(), await api_servers()
    hub.create(INGRESS_CLASS)
    hub.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}})
    zone_a.create(service("web", port=80))
    zone_a.create(endpoint_slice("web", [(a1.host, a1.port)]))
    live = write_fleet(tmp_path / "fleet", hub=hub, members={"zone-a": zone_a})
    gw = await run_gateway(live)
    hub_api, member_api = await kube(live.kubeconfigs["hub"]), await kube(live.kubeconfigs["zone-a"])
    async with aiohttp.ClientSession() as http:
        assert (await get_json(http, gw.url + "/", HOST))[0] == 404
        await k8s.NetworkingV1Api(hub_api).create_namespaced_ingress("demo", web_ingress())
        await eventually(lambda: served_by(http, gw.url, a1.host), what="the new Ingress routed")

        await k8s.DiscoveryV1Api(member_api).patch_namespaced_endpoint_slice(
            "web-1", "demo", [{"op": "replace", "path": "/endpoints/0/addresses/0", "value": a2.host}])
        await eventually(lambda: served_by(http, gw.url, a2.host), what="the moved endpoint used")

        await k8s.NetworkingV1Api(hub_api).patch_namespaced_ingress(
            "web", "demo", [{"op": "replace", "path": "/spec/rules/0/host", "value": "new.example"}])
        await eventually(lambda: served_by(http, gw.url, a2.host, "new.example"), what="the new host routed")
        assert (await get_json(http, gw.url + "/", HOST))[0] == 404


class Traffic:
    """Requests in a loop (bounded in count and time) until stopped; counts failures."""

    def __init__(self, url: str, *, limit: int = 20000, seconds: float = 60.0) -> None:
        self.url, self.limit, self.seconds = url, limit, seconds
        self.ok = 0
        self.failed: list[str] = []
        self.backends: set[str] = set()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        deadline = time.monotonic() + self.seconds
        async with aiohttp.ClientSession() as http:
            while not self._stop.is_set() and self.ok + len(self.failed) < self.limit \
                    and time.monotonic() < deadline:
                try:
                    async with http.get(self.url + "/", headers={"Host": HOST}) as resp:
                        body = await resp.read()
                        if resp.status == 200:
                            self.ok += 1
                            self.backends.add(json.loads(body)["backend"])
                        else:
                            self.failed.append(f"{resp.status} {resp.headers.get('x-fleetgate-reason')}")
                except aiohttp.ClientError as exc:
                    self.failed.append(repr(exc))
                await asyncio.sleep(0.005)  # pace: ~150 requests a second

    async def stop(self) -> None:
        self._stop.set()
        assert self._task is not None
        await self._task


async def test_traffic_flows_through_watch_drops_a_410_a_restart_and_an_outage(
        api_servers: Start, echo_backends: Any, run_gateway: Any, kube: Any, tmp_path: Path) -> None:
    a1, a2 = await backend_pair(echo_backends, "127.0.61.1", "127.0.61.2")
    hub, zone_a = await api_servers(bookmark_interval=30), await api_servers(bookmark_interval=30)
    hub.create(INGRESS_CLASS)
    hub.create(web_ingress())
    zone_a.create(service("web", port=80))
    zone_a.create(endpoint_slice("web", [(a1.host, a1.port)]))
    live = write_fleet(tmp_path / "fleet", hub=hub, members={"zone-a": zone_a})
    gw = await run_gateway(live)
    member_api = k8s.DiscoveryV1Api(await kube(live.kubeconfigs["zone-a"]))
    hub_api = k8s.NetworkingV1Api(await kube(live.kubeconfigs["hub"]))
    traffic = Traffic(gw.url)
    traffic.start()
    await eventually(lambda: traffic.ok > 0, what="traffic")
    generation = 0

    async def change_and_follow() -> None:
        """A change on each server that the gateway must pick up (so its watches work)."""
        nonlocal generation
        generation += 1
        target = (a1, a2)[generation % 2]
        await member_api.patch_namespaced_endpoint_slice(
            "web-1", "demo", [{"op": "replace", "path": "/endpoints/0/addresses/0", "value": target.host}])
        await hub_api.patch_namespaced_ingress(
            "web", "demo", {"metadata": {"annotations": {"generation": str(generation)}}})

        def followed() -> bool:
            routes = gw.gateway.table.routes
            ing = gw.fleet.snapshot.hub.ingresses[("demo", "web")]
            return (ing.meta.annotations.get("generation") == str(generation)
                    and [e.address for e in routes[0].backend.endpoints] == [target.host])
        await eventually(followed, timeout=10, what=f"change {generation} followed")

    servers = (hub, zone_a)
    for s in servers:  # 1. every watch dropped
        s.drop_watches()
    await change_and_follow()

    for s in servers:  # 2. history compacted past what the watches saw: 410 Gone, relist
        s.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "tick", "namespace": "default"}})
        s.compact()
        s.drop_watches()
    await change_and_follow()
    await eventually(lambda: all(r.lists >= 2 for s in gw.fleet.sources for r in s.reflectors),
                     what="every resource relisted")

    for s in servers:  # 3. restart: every connection aborted
        await s.restart()
    await change_and_follow()

    await zone_a.stop()  # 4. the member's API server is down for 10 s (the drill)
    await eventually(lambda: gw.fleet.unreachable() == ["zone-a"], what="zone-a reported unreachable")
    ok_before = traffic.ok
    await asyncio.sleep(10)  # the outage itself: traffic keeps flowing on the last known endpoints
    assert traffic.ok > ok_before
    await zone_a.start(zone_a.host, zone_a.port)
    await change_and_follow()
    await eventually(lambda: gw.fleet.unreachable() == [], timeout=10, what="zone-a reachable again")

    await traffic.stop()
    assert traffic.failed == []
    assert traffic.backends == {a1.host, a2.host}


async def test_a_mixed_fleet_routes_to_the_live_member_and_the_files_member(
        api_servers: Start, echo_backends: Any, run_gateway: Any, tmp_path: Path) -> None:
    a1 = await echo_backends("127.0.62.1", "127.0.62.1")
    b1 = await echo_backends("127.0.62.2", "127.0.62.2", a1.port)
    zone_a = await api_servers()
    for obj in (INGRESS_CLASS, web_ingress(), service("web"), endpoint_slice("web", [(a1.host, a1.port)])):
        zone_a.create(obj)
    files_member = [service("web"), endpoint_slice("web", [(b1.host, b1.port)])]
    live = write_fleet(tmp_path / "fleet", hub="zone-a", members={"zone-a": zone_a, "zone-b": files_member})
    gw = await run_gateway(live)
    clusters: dict[str, str] = {}
    async with aiohttp.ClientSession() as http:
        for _ in range(20):
            async with http.get(gw.url + "/", headers={"Host": HOST}) as resp:
                assert resp.status == 200
                clusters[resp.headers["x-fleetgate-cluster"]] = (await resp.json())["backend"]
            if len(clusters) == 2:
                break
    assert clusters == {"zone-a": a1.host, "zone-b": b1.host}


async def test_readyz_and_metrics_report_an_unreachable_member_that_never_blocks_the_others(
        api_servers: Start, echo_backends: Any, run_gateway: Any, tmp_path: Path) -> None:
    a1 = await echo_backends("127.0.63.1", "127.0.63.1")
    zone_a, zone_b = await api_servers(), await api_servers()
    for obj in (INGRESS_CLASS, web_ingress(), service("web"), endpoint_slice("web", [(a1.host, a1.port)])):
        zone_a.create(obj)
    zone_b.create(service("web"))
    await zone_b.stop()  # down before the gateway starts
    live = write_fleet(tmp_path / "fleet", hub="zone-a", members={"zone-a": zone_a, "zone-b": zone_b})
    gw = await run_gateway(live, admin=True)
    async with aiohttp.ClientSession() as http:
        assert await served_by(http, gw.url, a1.host)  # zone-a serves although zone-b is down
        async with http.get(gw.admin_url + "/readyz") as resp:
            assert resp.status == 503
            assert await resp.json() == {"ready": False, "missing": ["source zone-b not loaded"],
                                         "unreachable": ["zone-b"]}
        async with http.get(gw.admin_url + "/metrics") as resp:
            metrics = await resp.text()
        assert 'fleetgate_source_up{source="zone-b"} 0.0' in metrics
        assert 'fleetgate_source_up{source="zone-a"} 1.0' in metrics

        await zone_b.start(zone_b.host, zone_b.port)
        await eventually(lambda: gw.fleet.ready, timeout=10, what="zone-b loaded")
        # ready means every source has listed; the snapshot with zone-b's objects may
        # still be on its way (bursts are coalesced): wait for it before taking zone-b down
        await eventually(lambda: ("demo", "web") in gw.fleet.snapshot.member("zone-b").objects.services,
                         timeout=10, what="zone-b's objects in the snapshot")
        async with http.get(gw.admin_url + "/readyz") as resp:
            assert (resp.status, await resp.json()) == (200, {"ready": True, "missing": []})

        await zone_b.stop()  # down again after loading: ready stays, unreachable is reported
        await eventually(lambda: gw.fleet.unreachable() == ["zone-b"], what="zone-b unreachable")
        async with http.get(gw.admin_url + "/readyz") as resp:
            assert (resp.status, await resp.json()) == (200, {"ready": True, "missing": [],
                                                              "unreachable": ["zone-b"]})
        assert ("demo", "web") in gw.fleet.snapshot.member("zone-b").objects.services  # last known
