"""LiveSource against a real (test) API server: list, watch, coalescing, 410, outages,
MCS versions, absent CRDs, and what it asks of the server in steady state."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Awaitable, Callable

import pytest
from kubernetes_asyncio import client as k8s
from prometheus_client import REGISTRY

from fleet.config import FleetConfigError, SourceSpec
from fleet.live import LiveSource
from kubefake import KubeAPIServer
from kubefake.resources import default_crds
from tests.live_support import endpoint_slice, eventually, ingress, rule, service

Start = Callable[..., Awaitable[KubeAPIServer]]


def lease(name: str) -> dict[str, Any]:
    """An object of a kind LiveSource does not watch: moves the resourceVersion only."""
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": "default"}, "spec": {"holderIdentity": name}}


class Changes:
    """Counts on_change calls."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


@pytest.fixture
async def source(tmp_path: Path) -> Any:
    """make(server, **kw) -> a started LiveSource on that server (stopped after the test)."""
    made: list[LiveSource] = []

    async def make(server: KubeAPIServer, on_change: Callable[[], None] = lambda: None, **kw: Any) -> LiveSource:
        kubeconfig = server.kubeconfig(tmp_path / f"kc-{len(made)}.yaml", context="zone-a")
        src = LiveSource("zone-a", SourceSpec(kubeconfig=kubeconfig, context="zone-a"), **kw)
        made.append(src)
        await src.start(on_change)
        return src

    yield make
    for src in made:
        await src.stop()


def up(name: str) -> float | None:
    return REGISTRY.get_sample_value("fleetgate_source_up", {"source": name})


async def test_lists_every_resource_then_follows_changes_made_through_the_api(
        api_servers: Start, source: Any, kube: Any, tmp_path: Path) -> None:
    server = await api_servers()
    server.create(service("web"))
    server.create(endpoint_slice("web", [("10.0.0.1", 8080)]))
    server.create(ingress("web", [rule("web.example", ("/", "Prefix", "web"))]))
    server.create({"apiVersion": "multicluster.x-k8s.io/v1beta1", "kind": "ServiceExport",
                   "metadata": {"name": "web", "namespace": "demo"}})
    changes = Changes()
    src = await source(server, changes)
    assert src.loaded and src.reachable
    objs = src.objects
    assert set(objs.services) == {("demo", "web")}
    assert objs.endpoint_slices[("demo", "web-1")].endpoints[0].addresses == ("10.0.0.1",)
    assert objs.ingresses[("demo", "web")].rules[0].host == "web.example"
    assert objs.service_exports[("demo", "web")].api_version == "multicluster.x-k8s.io/v1beta1"
    assert objs.has_namespace("demo") and objs.has_namespace("kube-system")

    api = await kube(server.kubeconfig(tmp_path / "user.yaml"))
    discovery = k8s.DiscoveryV1Api(api)
    await discovery.patch_namespaced_endpoint_slice(
        "web-1", "demo", [{"op": "replace", "path": "/endpoints/0/addresses/0", "value": "10.0.0.2"}])
    await eventually(lambda: src.objects.endpoint_slices[("demo", "web-1")].endpoints[0].addresses == ("10.0.0.2",),
                     what="the patched EndpointSlice")
    await k8s.CoreV1Api(api).delete_namespaced_service("web", "demo")
    await eventually(lambda: ("demo", "web") not in src.objects.services, what="the Service deleted")
    assert changes.count >= 2


async def test_a_burst_of_changes_is_one_notification_and_one_build(api_servers: Start, source: Any) -> None:
    server = await api_servers()
    changes = Changes()
    src = await source(server, changes)
    await eventually(lambda: changes.count >= 1, what="the first notification")  # the first load
    before, first = changes.count, src.objects
    for i in range(50):  # one event-loop turn on the server: one write per watch stream
        server.create(service(f"svc-{i}"))
    await eventually(lambda: len(src.objects.services) == 50, what="all 50 Services")
    # 50 events arrive together and make one on_change (two if TCP split the write)
    assert changes.count - before <= 2
    assert src.objects is src.objects and src.objects is not first


async def test_bookmarks_and_replays_do_not_notify(api_servers: Start, source: Any) -> None:
    server = await api_servers(bookmark_interval=0.05)
    server.create(service("web"))
    changes = Changes()
    src = await source(server, changes)
    await eventually(lambda: changes.count >= 1, what="the first notification")
    settled, objects = changes.count, src.objects
    rv = int(server.create(lease("l1"))["metadata"]["resourceVersion"])
    # every reflector hears of the new resourceVersion through bookmarks only
    await eventually(lambda: all(int(r.resource_version or 0) >= rv for r in src.reflectors),
                     what="bookmarks carrying the new resourceVersion")
    server.drop_watches()  # resumes from the bookmarked resourceVersion: nothing replayed
    await server.wait_for_watches(len(src.reflectors))
    server.create(lease("l2"))
    await eventually(lambda: all(int(r.resource_version or 0) > rv for r in src.reflectors),
                     what="more bookmarks")
    assert changes.count == settled
    assert src.objects is objects


async def test_a_410_after_compaction_relists_and_catches_up_on_what_was_missed(
        api_servers: Start, source: Any) -> None:
    server = await api_servers(bookmark_interval=60)
    server.create(service("gone-while-away"))
    server.create(service("kept"))
    src = await source(server)
    lists = {r.resource.kind: r.lists for r in src.reflectors}
    seen = len(server.requests)
    server.delay(30)  # holds the watches that follow the drop until we are done below
    server.drop_watches()
    await eventually(lambda: len(server.requests) >= seen + len(src.reflectors), what="the watches again")
    server.delete("Service", "gone-while-away", "demo")  # no watch is open to see these
    server.create(service("new-while-away"))
    server.compact()
    server.delay(0)
    await eventually(lambda: set(src.objects.services) == {("demo", "kept"), ("demo", "new-while-away")},
                     what="the relisted Services")
    # every resource was too old after the compaction: each listed exactly once more
    await eventually(lambda: all(r.lists == lists[r.resource.kind] + 1 for r in src.reflectors),
                     what="one relist per resource")
    assert src.reachable


async def test_start_returns_while_the_api_server_is_down_and_loads_when_it_comes_up(
        api_servers: Start, source: Any) -> None:
    server = await api_servers()
    server.create(service("web"))
    await server.stop()
    changes = Changes()
    src = await source(server, changes)
    assert not src.loaded and not src.reachable
    assert len(src.objects) == 0
    assert up("zone-a") == 0
    await server.start(server.host, server.port)
    await eventually(lambda: src.loaded and src.reachable, timeout=10, what="loaded after the server came up")
    assert ("demo", "web") in src.objects.services
    assert up("zone-a") == 1
    assert changes.count >= 1


async def test_an_unreachable_cluster_keeps_its_last_known_objects(api_servers: Start, source: Any) -> None:
    server = await api_servers()
    server.create(service("web"))
    src = await source(server)
    objects = src.objects
    await server.stop()
    await eventually(lambda: not src.reachable, what="unreachable")
    assert src.objects is objects and ("demo", "web") in objects.services
    assert up("zone-a") == 0
    assert [d.severity for d in src.diagnostics] == ["warning"]
    await server.start(server.host, server.port)
    await eventually(lambda: src.reachable, timeout=10, what="reachable again")
    assert src.diagnostics == () and src.objects is objects  # nothing changed meanwhile


async def test_steady_state_is_watches_only(api_servers: Start, source: Any) -> None:
    server = await api_servers(bookmark_interval=0.05)
    src = await source(server)
    await server.wait_for_watches(len(src.reflectors))
    seen = len(server.requests)
    for i in range(5):
        server.create(service(f"svc-{i}"))
    await eventually(lambda: len(src.objects.services) == 5, what="the new Services")
    server.create(lease("tick"))
    await eventually(lambda: all(r.resource_version == server.store.resource_version.__str__()
                                 for r in src.reflectors), what="bookmarks")
    assert server.requests[seen:] == []
    assert all(r.is_watch for r in server.requests if "watch" in r.query)


async def test_serviceexports_fall_back_to_v1alpha1_when_v1beta1_is_not_served(
        api_servers: Start, source: Any) -> None:
    server = await api_servers(install_crds=False)
    for crd in default_crds():
        crd = copy.deepcopy(crd)
        crd["spec"]["versions"] = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
        for v in crd["spec"]["versions"]:
            v["storage"] = True
        server.create(crd)
    server.create({"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceExport",
                   "metadata": {"name": "web", "namespace": "demo"}})
    src = await source(server)
    assert src.loaded
    assert src.objects.service_exports[("demo", "web")].api_version == "multicluster.x-k8s.io/v1alpha1"
    exports = next(r for r in src.reflectors if r.resource.kind == "ServiceExport")
    assert exports.version == "v1alpha1"


async def test_a_cluster_without_the_mcs_crds_loads_with_none(api_servers: Start, source: Any) -> None:
    server = await api_servers(install_crds=False)
    server.create(service("web"))
    src = await source(server)
    assert src.loaded and src.reachable
    assert ("demo", "web") in src.objects.services
    assert len(src.objects.service_exports) == 0 and len(src.objects.service_imports) == 0


async def test_a_malformed_object_is_a_diagnostic_and_its_last_good_view_stays(
        api_servers: Start, source: Any) -> None:
    server = await api_servers()
    good = ingress("web", [rule("web.example", ("/", "Prefix", "web"))])
    server.create(good)
    src = await source(server)
    bad = copy.deepcopy(good)
    bad["spec"]["rules"][0]["http"]["paths"][0]["pathType"] = "Sideways"
    server.replace(bad)
    await eventually(lambda: src.diagnostics, what="a diagnostic")
    assert "pathType" in src.diagnostics[0].message and "Ingress/demo/web" in src.diagnostics[0].object
    assert src.objects.ingresses[("demo", "web")].rules[0].paths[0].path_type == "Prefix"
    server.replace(good)
    await eventually(lambda: not src.diagnostics, what="the diagnostic gone")


async def test_factory_rejects_a_context_the_kubeconfig_does_not_have(api_servers: Start, tmp_path: Path) -> None:
    server = await api_servers()
    kubeconfig = server.kubeconfig(tmp_path / "kc.yaml", context="zone-a")
    with pytest.raises(FleetConfigError, match="context 'zone-b' not found"):
        LiveSource.factory("zone-b", SourceSpec(kubeconfig=kubeconfig, context="zone-b"))
    assert isinstance(LiveSource.factory("zone-a", SourceSpec(kubeconfig=kubeconfig)), LiveSource)
