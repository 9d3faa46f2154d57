"""Live mode: the controller writes ServiceImports, `amcs-` Services, MCS EndpointSlices and
ServiceExport status to each member's API server (one test API server per cluster, real
kubernetes_asyncio clients over HTTP), and with --leader-elect only the Lease holder does."""
from __future__ import annotations

from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest
from kubernetes_asyncio import client as k8s

from controller.leader import LeaderOptions
from controller.publisher import DerivedPublisher
from controller.writer import LiveController, start_live_controller
from fleet.config import load_fleet_config
from fleet.fleet import Fleet
from fleet.live import LiveSource
from kubefake import KubeAPIServer
from tests.live_support import LiveFleet, eventually, write_fleet
from tests.controller.mcs_support import endpoint, endpoint_slice, export, namespace, service

Start = Callable[..., Awaitable[KubeAPIServer]]
MANAGED = {"app.kubernetes.io/managed-by": "fleetgate"}
FAST_LEASE = LeaderOptions(lease_duration=1, renew_deadline=0.6, retry_period=0.1)


class Running:
    def __init__(self, fleet: Fleet, publisher: DerivedPublisher, controller: LiveController) -> None:
        self.fleet = fleet
        self.publisher = publisher
        self.controller = controller

    @property
    def writer(self) -> Any:
        return self.controller.writer


@pytest.fixture
async def run_controller() -> AsyncIterator[Callable[..., Awaitable[Running]]]:
    """start(live_fleet, leader_elect=False, options=None) -> a live controller following it."""
    running: list[Running] = []

    async def start(live: LiveFleet, *, leader_elect: bool = False,
                    options: LeaderOptions | None = None) -> Running:
        fleet = Fleet.from_config(load_fleet_config(live.fleet_yaml), live_factory=LiveSource.factory)
        await fleet.start()
        publisher = DerivedPublisher(fleet).start()
        ctl = start_live_controller(fleet, publisher, leader_elect=leader_elect, leader_options=options)
        assert ctl is not None
        run = Running(fleet, publisher, ctl)
        running.append(run)
        return run

    yield start
    for run in running:
        await run.controller.close()
        await run.publisher.close()
        await run.fleet.stop()


def si(server: KubeAPIServer, name: str = "web") -> dict | None:
    return server.get("ServiceImport", name, "demo")


def managed(server: KubeAPIServer, kind: str) -> list[dict]:
    return server.objects(kind, "demo", label_selector="app.kubernetes.io/managed-by=fleetgate")


def conditions(server: KubeAPIServer, name: str = "web") -> dict[str, dict]:
    obj = server.get("ServiceExport", name, "demo") or {}
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or ()}


def imported(server: KubeAPIServer, sources: list[str], ips_of: str = "amcs-web") -> bool:
    """The import is complete here: spec.ips from the API-allocated amcs- ClusterIP, its
    source clusters in status, and one slice per source owned by the import."""
    obj, svc = si(server), server.get("Service", ips_of, "demo")
    if obj is None or svc is None:
        return False
    slices = {s["metadata"]["labels"].get("multicluster.kubernetes.io/source-cluster"): s
              for s in managed(server, "EndpointSlice")}
    return (obj["spec"].get("ips") == [svc["spec"]["clusterIP"]]
            and [c["cluster"] for c in (obj.get("status") or {}).get("clusters") or ()] == sources
            and sorted(slices) == sources
            and all(s["metadata"]["ownerReferences"][0]["uid"] == obj["metadata"]["uid"] for s in slices.values()))


def addresses(server: KubeAPIServer, source: str) -> list[str]:
    return [a for s in managed(server, "EndpointSlice")
            if s["metadata"]["labels"]["multicluster.kubernetes.io/source-cluster"] == source
            for e in s["endpoints"] for a in e["addresses"]]


def versions(*servers: KubeAPIServer) -> dict[tuple[int, str, str], str]:
    return {(i, kind, o["metadata"]["name"]): o["metadata"]["resourceVersion"]
            for i, server in enumerate(servers)
            for kind in ("ServiceImport", "Service", "EndpointSlice", "ServiceExport")
            for o in server.objects(kind, "demo")}


async def two_clusters(api_servers: Start, tmp_path: Path) -> tuple[KubeAPIServer, KubeAPIServer, LiveFleet]:
    a, b = await api_servers(), await api_servers()
    for server in (a, b):
        server.create(namespace("demo"))
    live = write_fleet(tmp_path / "fleet", hub="zone-a", members={"zone-a": a, "zone-b": b})
    return a, b, live


def export_web(server: KubeAPIServer, ip: str, *, port: int = 80) -> None:
    server.create(service("web", ports=[("http", port, "TCP")]))
    server.create(endpoint_slice("web", [endpoint(ip)], name="web-1"))
    server.create(export("web"))


async def test_an_export_is_written_everywhere_followed_and_removed_on_unexport(
        api_servers: Start, run_controller: Any, kube: Any, tmp_path: Path) -> None:
    a, b, live = await two_clusters(api_servers, tmp_path)
    export_web(a, "10.1.0.1")
    run = await run_controller(live)

    for server in (a, b):
        await eventually(lambda: imported(server, ["zone-a"]), what="the import written")
        obj = si(server)
        assert obj is not None and obj["metadata"]["labels"] == MANAGED
        assert obj["metadata"]["annotations"] == {"multicluster.kubernetes.io/derived-service": "amcs-web"}
        assert obj["spec"]["type"] == "ClusterSetIP" and obj["spec"]["ports"] == [
            {"port": 80, "protocol": "TCP", "name": "http"}]
        (es,) = managed(server, "EndpointSlice")
        assert es["metadata"]["labels"] == {
            **MANAGED, "kubernetes.io/service-name": "amcs-web", "multicluster.kubernetes.io/service-name": "web",
            "multicluster.kubernetes.io/source-cluster": "zone-a",
            "endpointslice.kubernetes.io/managed-by": "controller.fleetgate.io"}
        assert addresses(server, "zone-a") == ["10.1.0.1"]
        svc = server.get("Service", "amcs-web", "demo")
        assert svc is not None and "selector" not in svc["spec"] and svc["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "fleetgate"
    await eventually(lambda: {t: c["status"] for t, c in conditions(a).items()}
                     == {"Valid": "True", "Ready": "True", "Conflict": "False"}, what="export status")
    assert all(c["lastTransitionTime"] for c in conditions(a).values())

    # converged: nothing more to plan, and churn that rebuilds snapshots writes nothing
    await eventually(lambda: not run.writer.plan("zone-a") and not run.writer.plan("zone-b"), what="a quiet plan")
    # answers that repeat the desired object were stored unparsed (each checked against the parser: CHECK)
    for w in run.writer.workers.values():
        assert set(w.answers_reused) == {"ServiceImport", "Service", "EndpointSlice"}, w.answers_reused
    before, writes = versions(a, b), run.writer.writes
    a.drop_watches()
    b.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "unrelated", "namespace": "demo"}})
    b.create(service("other", ns="elsewhere"))
    await eventually(lambda: ("elsewhere", "other") in run.fleet.snapshot.member("zone-b").objects.services,
                     what="the churn seen")
    await a.wait_for_watches(8)
    assert versions(a, b) == before and run.writer.writes == writes
    assert not run.writer.plan("zone-a") and not run.writer.plan("zone-b")

    # an endpoint change in zone-a is followed everywhere
    api = k8s.DiscoveryV1Api(await kube(live.kubeconfigs["zone-a"]))
    await api.patch_namespaced_endpoint_slice("web-1", "demo", {"endpoints": [
        {"addresses": ["10.1.0.2"], "conditions": {"ready": True}},
        {"addresses": ["10.1.0.3"], "conditions": {"ready": False}}]})
    for server in (a, b):
        await eventually(lambda: addresses(server, "zone-a") == ["10.1.0.2", "10.1.0.3"], what="endpoints followed")

    # unexport: every derived object goes, everywhere
    mcs = k8s.CustomObjectsApi(await kube(live.kubeconfigs["zone-a"]))
    await mcs.delete_namespaced_custom_object("multicluster.x-k8s.io", "v1alpha1", "demo", "serviceexports", "web")
    for server in (a, b):
        await eventually(lambda: si(server) is None and not managed(server, "Service")
                         and not managed(server, "EndpointSlice"), what="the import removed")
    assert a.get("Service", "web", "demo") is not None  # the exported Service itself is not ours


async def test_a_fleet_mixing_files_and_live_members_writes_only_to_the_live_ones(
        api_servers: Start, run_controller: Any, tmp_path: Path) -> None:
    a = await api_servers()
    a.create(namespace("demo"))
    files = [namespace("demo"), service("web"), endpoint_slice("web", [endpoint("10.2.0.7")], name="web-1"),
             export("web")]
    live = write_fleet(tmp_path / "fleet", hub="zone-a", members={"zone-a": a, "zone-b": files})
    run = await run_controller(live)
    assert set(run.writer.workers) == {"zone-a"}  # a files member has no API server to write to
    # the export in the files member reaches the live one, its API server allocating the ClusterIP
    await eventually(lambda: imported(a, ["zone-b"]), what="the files member's export imported in zone-a")
    assert addresses(a, "zone-b") == ["10.2.0.7"]
    # and a live export joins it
    export_web(a, "10.1.0.5")
    await eventually(lambda: imported(a, ["zone-a", "zone-b"]), what="both sources in zone-a")
    await eventually(lambda: conditions(a).get("Valid", {}).get("status") == "True",
                     what="the live export's Valid condition written")


async def test_a_port_conflict_is_written_to_both_exports(api_servers: Start, run_controller: Any,
                                                        tmp_path: Path) -> None:
    a, b, live = await two_clusters(api_servers, tmp_path)
    export_web(a, "10.1.0.1", port=80)
    export_web(b, "10.2.0.1", port=8080)
    await run_controller(live)
    for server in (a, b):
        await eventually(lambda: conditions(server).get("Conflict", {}).get("reason") == "PortConflict",
                         what="PortConflict on the export")
        cond = conditions(server)["Conflict"]
        assert cond["status"] == "True" and "spec.ports" in cond["message"]
        await eventually(lambda: imported(server, ["zone-a", "zone-b"]), what="the import from both")


async def test_a_user_created_import_is_adopted_and_unlabelled_objects_are_left_alone(
        api_servers: Start, run_controller: Any, tmp_path: Path) -> None:
    a, b, live = await two_clusters(api_servers, tmp_path)
    export_web(a, "10.1.0.1")
    mine = b.create({"apiVersion": "multicluster.x-k8s.io/v1beta1", "kind": "ServiceImport",
                     "metadata": {"name": "web", "namespace": "demo", "labels": {"team": "shop"}},
                     "spec": {"type": "ClusterSetIP", "ports": []}})
    theirs = a.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "amcs-db", "namespace": "demo"},
                       "spec": {"ports": [{"name": "sql", "port": 5432}]}})
    stray = b.create({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                      "metadata": {"name": "amcs-web-zone-a-ipv4", "namespace": "demo",
                                   "labels": {"kubernetes.io/service-name": "amcs-web"}},
                      "addressType": "IPv4", "endpoints": []})
    await run_controller(live)
    await eventually(lambda: imported(a, ["zone-a"]), what="the import in zone-a")
    await eventually(lambda: (si(b) or {}).get("spec", {}).get("ports") == [
        {"port": 80, "protocol": "TCP", "name": "http"}], what="the user's import filled in")
    adopted = si(b)
    assert adopted is not None and adopted["metadata"]["uid"] == mine["metadata"]["uid"]
    assert adopted["metadata"]["labels"] == {"team": "shop", **MANAGED}
    await eventually(lambda: (si(b) or {}).get("spec", {}).get("ips") == [
        b.get("Service", "amcs-web", "demo")["spec"]["clusterIP"]], what="ips on the adopted import")
    # the same-named slice without our label is neither updated nor deleted
    left = b.get("EndpointSlice", "amcs-web-zone-a-ipv4", "demo")
    assert left is not None and left["metadata"]["resourceVersion"] == stray["metadata"]["resourceVersion"]
    kept = a.get("Service", "amcs-db", "demo")
    assert kept is not None and kept["metadata"]["resourceVersion"] == theirs["metadata"]["resourceVersion"]


async def test_only_the_lease_holder_writes_and_a_standby_takes_over(
        api_servers: Start, run_controller: Any, tmp_path: Path) -> None:
    hub = await api_servers()
    a, b = await api_servers(), await api_servers()
    for server in (a, b):
        server.create(namespace("demo"))
    live = write_fleet(tmp_path / "fleet", hub=hub, members={"zone-a": a, "zone-b": b})
    export_web(a, "10.1.0.1")
    first = await run_controller(live, leader_elect=True, options=FAST_LEASE)
    await eventually(lambda: first.controller.elector.is_leader, what="the first controller leads")
    second = await run_controller(live, leader_elect=True, options=FAST_LEASE)
    for server in (a, b):
        await eventually(lambda: imported(server, ["zone-a"]), what="the import written by the leader")
    lease = hub.get("Lease", "fleetgate-controller", "kube-system")
    assert lease is not None and lease["spec"]["holderIdentity"] == first.controller.elector.identity
    assert lease["spec"]["leaseDurationSeconds"] == 1
    assert lease["spec"]["acquireTime"] and lease["spec"]["renewTime"]
    assert not second.controller.elector.is_leader and second.writer.writes == 0

    # the holder stops without releasing (a crash): the standby takes over after the lease duration
    await first.controller.close(release=False)
    await eventually(lambda: second.controller.elector.is_leader, timeout=5, what="the standby leads")
    assert hub.get("Lease", "fleetgate-controller", "kube-system")["spec"]["holderIdentity"] == \
        second.controller.elector.identity
    b.create(service("api"))
    b.create(export("api"))
    await eventually(lambda: si(a, "api") is not None, what="the new leader writes")
    assert second.writer.writes > 0


async def test_a_released_lease_is_taken_at_once(api_servers: Start, run_controller: Any, tmp_path: Path) -> None:
    a, b, live = await two_clusters(api_servers, tmp_path)
    slow = LeaderOptions(lease_duration=30, renew_deadline=20, retry_period=0.1)
    first = await run_controller(live, leader_elect=True, options=slow)
    await eventually(lambda: first.controller.elector.is_leader, what="the first controller leads")
    second = await run_controller(live, leader_elect=True, options=slow)
    await first.controller.close()  # releases the Lease: no 30 s wait
    await eventually(lambda: second.controller.elector.is_leader, timeout=5, what="the standby leads")


async def test_a_dead_api_server_does_not_stop_the_controller_and_converges_when_back(
        api_servers: Start, run_controller: Any, tmp_path: Path) -> None:
    a, b, live = await two_clusters(api_servers, tmp_path)
    export_web(a, "10.1.0.1")
    run = await run_controller(live)
    await eventually(lambda: imported(b, ["zone-a"]), what="the import in zone-b")
    host, port = b.host, b.port
    await b.stop()
    a.create(service("api"))
    a.create(export("api"))
    await eventually(lambda: si(a, "api") is not None, what="zone-a keeps being written")
    await eventually(lambda: "zone-b" in run.fleet.unreachable(), what="zone-b seen down")
    await b.start(host, port)
    await eventually(lambda: si(b, "api") is not None, timeout=15, what="zone-b converges when back")
    await eventually(lambda: imported(b, ["zone-a"], ips_of="amcs-web"), what="zone-b complete")


def test_up_and_controller_take_leader_elect() -> None:
    from fleetgate.cli import build_parser
    assert build_parser().parse_args(["up", "--leader-elect"]).leader_elect
    assert build_parser().parse_args(["controller", "--leader-elect"]).leader_elect
    assert not build_parser().parse_args(["up"]).leader_elect


async def test_each_live_member_publishes_its_cluster_id_when_the_crd_is_served(
        api_servers: Start, run_controller: Any, tmp_path: Path) -> None:
    a, b = await api_servers(), await api_servers(install_crds=False)
    for crd in _mcs_crds():  # the MCS CRDs but not the ClusterProperty one
        b.create(crd)
    a.create({"apiVersion": "about.k8s.io/v1alpha1", "kind": "ClusterProperty",
              "metadata": {"name": "cluster.clusterset.k8s.io"}, "spec": {"value": "zone-a"}})
    live = write_fleet(tmp_path / "fleet", hub="zone-a", members={"zone-a": a, "zone-b": b})
    run = await run_controller(live)
    await eventually(lambda: run.writer.workers["zone-a"].cluster_id == "present"
                     and run.writer.workers["zone-b"].cluster_id == "not-served", what="cluster IDs looked at")
    prop = a.get("ClusterProperty", "cluster.clusterset.k8s.io")
    assert prop is not None and "labels" not in prop["metadata"]  # the existing one is left as it was


async def test_a_missing_cluster_id_property_is_created(api_servers: Start, run_controller: Any,
                                                       tmp_path: Path) -> None:
    a, b, live = await two_clusters(api_servers, tmp_path)
    await run_controller(live)
    for server, name in ((a, "zone-a"), (b, "zone-b")):
        await eventually(lambda: (server.get("ClusterProperty", "cluster.clusterset.k8s.io") or {})
                         .get("spec", {}).get("value") == name, what="the cluster ID published")


def _mcs_crds() -> list[dict]:
    from kubefake.resources import default_crds
    return [c for c in default_crds() if c["spec"]["group"] != "about.k8s.io"]
