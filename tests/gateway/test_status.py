"""status.loadBalancer.ingress: which Ingresses get the publish address (pure), and that
a live gateway writes it once, through the status subresource, and not again while it
is unchanged."""
from __future__ import annotations

import asyncio

import copy
from pathlib import Path
from typing import Any, Awaitable, Callable

from kubernetes_asyncio import client as k8s

from fleet.objects import parse_object
from fleet.snapshot import ClusterObjects
from kubefake import KubeAPIServer
from gateway.status import StatusUpdate, load_balancer_value, status_updates
from tests.live_support import INGRESS_CLASS, endpoint_slice, eventually, ingress, rule, service, write_fleet

Start = Callable[..., Awaitable[KubeAPIServer]]
ADDRESS = "127.0.64.100"
OURS = {"ip": ADDRESS}


def hub_of(*raws: dict) -> ClusterObjects:
    return ClusterObjects.build([parse_object(r) for r in raws])


def with_status(raw: dict, *entries: dict, rv: str = "7") -> dict:
    raw = copy.deepcopy(raw)
    raw["metadata"]["resourceVersion"] = rv
    raw["status"] = {"loadBalancer": {"ingress": list(entries)}}
    return raw


def web(name: str = "web", cls: str | None = "fleetgate") -> dict:
    return ingress(name, [rule(f"{name}.example", ("/", "Prefix", "web"))], cls=cls)


def test_served_ingresses_get_the_address_once_and_others_lose_it() -> None:
    hub = hub_of(INGRESS_CLASS, web("new"), with_status(web("done"), OURS),
                 with_status(web("stale"), {"ip": "127.0.64.1"}), with_status(web("theirs", cls="nginx"), OURS),
                 with_status(web("other", cls="nginx"), {"ip": "127.0.64.2"}))
    assert status_updates(hub, address=ADDRESS, classes=("fleetgate",)) == [
        StatusUpdate("demo", "new", (OURS,), ""),
        StatusUpdate("demo", "stale", (OURS,), "7"),
        StatusUpdate("demo", "theirs", (), "7"),  # no longer ours: our address is taken back
    ]


def test_an_address_that_is_a_name_is_published_as_hostname() -> None:
    assert load_balancer_value("lb.example.com") == ({"hostname": "lb.example.com"},)
    assert load_balancer_value("2001:db8::1") == ({"ip": "2001:db8::1"},)
    hub = hub_of(INGRESS_CLASS, with_status(web(), {"hostname": "lb.example.com"}))
    assert status_updates(hub, address="lb.example.com", classes=("fleetgate",)) == []


def status_writes(server: KubeAPIServer) -> list[str]:
    return [r.path for r in server.writes() if r.path.endswith("/status")]


def lb(server: KubeAPIServer, name: str) -> Any:
    obj = server.get("Ingress", name, "demo") or {}
    return ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress")


async def test_the_gateway_writes_status_once_and_not_again_while_unchanged(
        api_servers: Start, run_gateway: Any, kube: Any, tmp_path: Path) -> None:
    hub, zone_a = await api_servers(), await api_servers()
    for obj in (INGRESS_CLASS, web("a"), web("b"), with_status(web("theirs", cls="nginx"), OURS)):
        hub.create(obj)
    zone_a.create(service("web"))
    zone_a.create(endpoint_slice("web", [("127.0.64.1", 8080)]))
    live = write_fleet(tmp_path / "fleet", hub=hub, members={"zone-a": zone_a})
    gw = await run_gateway(live, publish_address=ADDRESS)
    await eventually(lambda: lb(hub, "a") == [OURS] and lb(hub, "b") == [OURS] and lb(hub, "theirs") == [],
                     what="status written")
    assert sorted(status_writes(hub)) == [f"/apis/networking.k8s.io/v1/namespaces/demo/ingresses/{n}/status"
                                          for n in ("a", "b", "theirs")]
    assert all(r.content_type == "application/merge-patch+json" for r in hub.writes())

    # churn that rebuilds snapshots: spec changes, endpoint changes, a dropped watch, a restart
    hub_api = k8s.NetworkingV1Api(await kube(live.kubeconfigs["hub"]))
    await hub_api.patch_namespaced_ingress("a", "demo", {"metadata": {"labels": {"touched": "1"}}})
    zone_a.replace(endpoint_slice("web", [("127.0.64.2", 8080)]))
    hub.drop_watches()
    await hub.restart()
    await eventually(lambda: gw.fleet.snapshot.hub.ingresses[("demo", "a")].meta.labels.get("touched") == "1"
                     and gw.fleet.snapshot.member("zone-a").objects.endpoint_slices[("demo", "web-1")]
                     .endpoints[0].addresses == ("127.0.64.2",), what="the churn followed")
    await eventually(lambda: not gw.fleet.unreachable(), timeout=10, what="the hub reachable again")
    assert len(status_writes(hub)) == 3

    # someone else overwrites the status: written back, once
    await hub_api.patch_namespaced_ingress_status("b", "demo", {"status": {"loadBalancer": {
        "ingress": [{"ip": "127.0.64.9"}]}}}, _content_type="application/merge-patch+json")
    await eventually(lambda: lb(hub, "b") == [OURS] and len(status_writes(hub)) == 5, what="status restored")
    await eventually(lambda: gw.fleet.snapshot.hub.ingresses[("demo", "b")].load_balancer_ingress == (OURS,),
                     what="the restored status seen")
    assert len(status_writes(hub)) == 5  # the overwrite and our one write back


async def test_publish_address_flag_turns_status_writing_on_and_the_run_closes_the_writer(
        api_servers: Start, tmp_path: Path) -> None:
    from fleetgate.cli import build_parser
    from fleetgate.run import run_components

    hub = await api_servers()
    for obj in (INGRESS_CLASS, web("a")):
        hub.create(obj)
    live = write_fleet(tmp_path / "fleet", hub="zone-a", members={"zone-a": hub})
    args = build_parser().parse_args(["gateway", "--fleet", str(live.fleet_yaml), "--publish-address", "lb.example",
                                      "--http", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
    stop, ready = asyncio.Event(), asyncio.Event()
    run = asyncio.create_task(run_components(args, stop, gateway=True, dns=False, controller=False,
                                             on_ready=lambda bound: ready.set()))
    try:
        async with asyncio.timeout(15):
            await ready.wait()
        await eventually(lambda: lb(hub, "a") == [{"hostname": "lb.example"}], what="status written")
        assert len(status_writes(hub)) == 1
    finally:
        stop.set()
        await run
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "gateway-status"]  # the run closed it
    assert build_parser().parse_args(["gateway"]).publish_address is None
