"""The pure zone builder: incremental rebuilds equal fresh ones, and the answer memo."""
from __future__ import annotations

from controller.derive import derive_imports
from dnsplugin.resolver import resolve
from dnsplugin.zone import build_zone, dashed, zone_to_json
from tests.controller.mcs_support import cluster, endpoint, endpoint_slice, export, fleet, namespace, service
from tests.dnsplugin.dnsclient_support import question
from tests.dnsplugin.fleets_support import two_cluster_fleet


def test_incremental_rebuild_equals_a_fresh_build_and_reuses_unchanged_services() -> None:
    first = two_cluster_fleet(version=1)
    d1 = derive_imports(first, clusters=["zone-a"])
    z1 = build_zone(d1.per_cluster["zone-a"].service_imports, d1.per_cluster["zone-a"].endpoint_slices, serial=1)
    # zone-b's db endpoint changes; everything else is the same objects
    changed_b = cluster(namespace("demo"), service("db", headless=True, ports=(("mysql", 3306, "TCP"),)),
                        export("db"), endpoint_slice("db", [endpoint("10.2.0.7", hostname="mysql-0")],
                                                     ports=(("mysql", 3306, "TCP"),)))
    second = fleet({"zone-a": first.members[0].objects, "zone-b": changed_b}, version=2,
                   ip_range=first.clusterset_ip_range)
    d2 = derive_imports(second, clusters=["zone-a"], previous=d1)
    fresh = derive_imports(second, clusters=["zone-a"])
    assert d2.per_cluster == fresh.per_cluster and d2.export_conditions == fresh.export_conditions
    view = d2.per_cluster["zone-a"]
    web_before = next(s for s in d1.per_cluster["zone-a"].service_imports if s.meta.name == "web")
    assert next(s for s in view.service_imports if s.meta.name == "web") is web_before
    z2 = build_zone(view.service_imports, view.endpoint_slices, serial=2, previous=z1)
    z2_fresh = build_zone(view.service_imports, view.endpoint_slices, serial=2)
    assert zone_to_json(z2) == zone_to_json(z2_fresh)
    assert z2._fragments[("demo", "web")] is z1._fragments[("demo", "web")]
    assert z2._fragments[("demo", "db")] is not z1._fragments[("demo", "db")]
    assert any(r["data"] == "10.2.0.7" for r in zone_to_json(z2)["records"])


def test_answers_are_memoised_per_zone_and_not_for_unknown_names() -> None:
    d = derive_imports(two_cluster_fleet()).per_cluster["zone-a"]
    zone = build_zone(d.service_imports, d.endpoint_slices)
    q = question("web.demo.svc.clusterset.local")
    assert resolve(zone, q) == resolve(zone, q)
    assert len(zone.wire) == 1
    for i in range(50):
        resolve(zone, question(f"n{i}.demo.svc.clusterset.local"))
        resolve(zone, question("web.demo.svc.clusterset.local", "TYPE999"))
    assert len(zone.wire) == 1  # NXDOMAIN and odd-type NODATA answers are built per query


def test_dashed_names_for_both_families() -> None:
    assert dashed("10.244.0.5") == "10-244-0-5"
    assert dashed("fd00::5") == "fd00--5"


def test_custom_zone_name_and_ns() -> None:
    zone = build_zone((), (), zone="Fleet.Example.", ns_name="ns1.fleet.example", ns_address="127.0.0.9")
    body = zone_to_json(zone)
    assert body["zone"] == "fleet.example"
    assert {"name": "ns1.fleet.example.", "type": "A", "ttl": 5, "data": "127.0.0.9"} in body["records"]
    assert {"name": "dns-version.fleet.example.", "type": "TXT", "ttl": 28800, "data": "1.0.0"} in body["records"]
