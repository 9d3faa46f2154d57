"""fleet.yaml `mcs: {importMode: all | explicit}`: with explicit, only a member holding a
user-created ServiceImport gets the derived `amcs-` Service, slices and DNS names, and
deleting that ServiceImport removes them. Files (load_fleet_once, the DNS zone) and live
(the controller against test API servers)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest
import yaml

from controller.derive import derive_imports
from controller.publisher import DerivedPublisher
from controller.writer import LiveController, start_live_controller
from dnsplugin.service import zone_for
from dnsplugin.zone import zone_to_json
from fleet.config import FleetConfigError, load_fleet_config
from fleet.fleet import Fleet, load_fleet_once
from fleet.live import LiveSource
from kubefake import KubeAPIServer
from tests.controller.mcs_support import endpoint, endpoint_slice, export, namespace, service
from tests.live_support import LiveFleet, eventually, write_fleet

Start = Callable[..., Awaitable[KubeAPIServer]]
USER_IMPORT = {"apiVersion": "multicluster.x-k8s.io/v1beta1", "kind": "ServiceImport",
               "metadata": {"name": "web", "namespace": "demo", "labels": {"team": "shop"}},
               "spec": {"type": "ClusterSetIP", "ports": []}}


def exporter() -> list[dict[str, Any]]:
    return [namespace("demo"), service("web"), endpoint_slice("web", [endpoint("10.1.0.1")], name="web-1"),
            export("web")]


def files_fleet(root: Path, mode: str | None) -> Path:
    members = {"zone-a": exporter(), "zone-b": [namespace("demo"), USER_IMPORT], "zone-c": [namespace("demo")]}
    clusters = []
    for name, objs in members.items():
        (root / name).mkdir(parents=True)
        (root / name / "objects.yaml").write_text(yaml.safe_dump_all(objs, sort_keys=False))
        clusters.append({"name": name, "manifests": name})
    doc: dict[str, Any] = {"clusters": clusters}
    if mode is not None:
        doc["mcs"] = {"importMode": mode}
    (root / "fleet.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return root / "fleet.yaml"


def names(snapshot: Any, derived: Any, cluster: str) -> set[str]:
    zone = zone_for(snapshot, derived.per_cluster.get(cluster))
    return {r["name"] for r in zone_to_json(zone)["records"] if r["type"] in ("A", "AAAA")}


def test_the_import_mode_is_read_from_fleet_yaml(tmp_path: Path) -> None:
    assert load_fleet_config(files_fleet(tmp_path / "default", None)).import_mode == "all"
    assert load_fleet_config(files_fleet(tmp_path / "explicit", "explicit")).import_mode == "explicit"
    bad = files_fleet(tmp_path / "bad", "some")
    with pytest.raises(FleetConfigError, match=r"mcs.importMode: 'some' is not one of: all, explicit"):
        load_fleet_config(bad)
    (tmp_path / "bad" / "fleet.yaml").write_text("mcs: {mode: all}\nclusters: [{name: a, manifests: zone-a}]\n")
    with pytest.raises(FleetConfigError, match=r"mcs.mode: unknown key"):
        load_fleet_config(tmp_path / "bad")


def test_files_all_imports_everywhere_explicit_only_where_a_user_asked(tmp_path: Path) -> None:
    everywhere = load_fleet_once(load_fleet_config(files_fleet(tmp_path / "all", None)))
    derived = derive_imports(everywhere)
    assert all(("demo", "web") in derived.per_cluster[c].by_service for c in ("zone-a", "zone-b", "zone-c"))
    assert "web.demo.svc.clusterset.local." in names(everywhere, derived, "zone-c")

    snap = load_fleet_once(load_fleet_config(files_fleet(tmp_path / "explicit", "explicit")))
    assert snap.import_mode == "explicit"
    derived = derive_imports(snap)
    assert set(derived.per_cluster["zone-b"].by_service) == {("demo", "web")}
    assert not derived.per_cluster["zone-a"].by_service and not derived.per_cluster["zone-c"].by_service
    objs = derived.per_cluster["zone-b"].by_service[("demo", "web")]
    assert objs.service.meta.name == "amcs-web" and [s.meta.name for s in objs.slices] == ["amcs-web-zone-a-ipv4"]
    assert dict(objs.service_import.meta.labels) == {"team": "shop"}, "the user's import stays the user's"
    assert names(snap, derived, "zone-b") == {"web.demo.svc.clusterset.local."}
    assert names(snap, derived, "zone-c") == set()

    # the user deletes the ServiceImport: the import and its names go
    (tmp_path / "explicit" / "zone-b" / "objects.yaml").write_text(yaml.safe_dump(namespace("demo")))
    after = load_fleet_once(load_fleet_config(tmp_path / "explicit"))
    gone = derive_imports(after, previous=derived)
    assert not gone.per_cluster["zone-b"].by_service and gone.changed == {("demo", "web")}
    assert names(after, gone, "zone-b") == set()


# --- live -----------------------------------------------------------------------------------


@pytest.fixture
async def controllers() -> AsyncIterator[Callable[..., Awaitable[tuple[Fleet, LiveController]]]]:
    running: list[tuple[Fleet, DerivedPublisher, LiveController]] = []

    async def start(live: LiveFleet, **options: Any) -> tuple[Fleet, LiveController]:
        fleet = Fleet.from_config(load_fleet_config(live.fleet_yaml), live_factory=LiveSource.factory)
        await fleet.start()
        publisher = DerivedPublisher(fleet).start()
        ctl = start_live_controller(fleet, publisher, **options)
        assert ctl is not None
        running.append((fleet, publisher, ctl))
        return fleet, ctl

    yield start
    for fleet, publisher, ctl in running:
        await ctl.close()
        await publisher.close()
        await fleet.stop()


def with_mode(live: LiveFleet, mode: str) -> LiveFleet:
    doc = yaml.safe_load(live.fleet_yaml.read_text())
    doc["mcs"] = {"importMode": mode}
    live.fleet_yaml.write_text(yaml.safe_dump(doc, sort_keys=False))
    return live


def ours(server: KubeAPIServer, kind: str) -> list[str]:
    return sorted(o["metadata"]["name"] for o in server.objects(
        kind, "demo", label_selector="app.kubernetes.io/managed-by=fleetgate"))


async def test_live_explicit_writes_only_where_a_user_made_the_import_and_removes_it_after(
        api_servers: Start, controllers: Any, tmp_path: Path) -> None:
    a, b, c = await api_servers(), await api_servers(), await api_servers()
    for server in (a, b, c):
        server.create(namespace("demo"))
    for obj in exporter()[1:]:
        a.create(obj)
    mine = b.create(USER_IMPORT)
    live = with_mode(write_fleet(tmp_path / "fleet", hub="zone-a", members={"zone-a": a, "zone-b": b, "zone-c": c}),
                     "explicit")
    fleet, ctl = await controllers(live)
    await eventually(lambda: ours(b, "EndpointSlice") == ["amcs-web-zone-a-ipv4"] and ours(b, "Service") == ["amcs-web"],
                     what="zone-b imports web")
    si = b.get("ServiceImport", "web", "demo")
    assert si is not None and si["metadata"]["uid"] == mine["metadata"]["uid"]
    assert si["metadata"]["labels"] == {"team": "shop"}
    await eventually(lambda: (b.get("ServiceImport", "web", "demo") or {}).get("spec", {}).get("ips") == [
        b.get("Service", "amcs-web", "demo")["spec"]["clusterIP"]], what="the user's import filled in")
    await eventually(lambda: ctl.writer.idle and not any(ctl.writer.plan(m) for m in ("zone-a", "zone-b", "zone-c")),
                     what="converged")
    for other in (a, c):  # no user import there: nothing of ours at all
        assert other.objects("ServiceImport", "demo") == [] and ours(other, "Service") == []
        assert ours(other, "EndpointSlice") == []

    b.delete("ServiceImport", "web", "demo", propagation="Orphan")  # the user takes it back
    await eventually(lambda: ours(b, "Service") == [] and ours(b, "EndpointSlice") == [],
                     what="the amcs- Service and slices removed")
    assert b.get("ServiceImport", "web", "demo") is None


async def test_live_all_is_the_default_and_imports_everywhere(api_servers: Start, controllers: Any,
                                                              tmp_path: Path) -> None:
    a, c = await api_servers(), await api_servers()
    for server in (a, c):
        server.create(namespace("demo"))
    for obj in exporter()[1:]:
        a.create(obj)
    live = write_fleet(tmp_path / "fleet", hub="zone-a", members={"zone-a": a, "zone-c": c})
    fleet, ctl = await controllers(live)
    assert fleet.config.import_mode == "all"
    for server in (a, c):
        await eventually(lambda: ours(server, "EndpointSlice") == ["amcs-web-zone-a-ipv4"]
                         and ours(server, "ServiceImport") == ["web"], what="imported everywhere")
