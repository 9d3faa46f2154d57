"""derive_imports(previous=...) against a fresh derivation, over random changes."""
from __future__ import annotations

from typing import Any

from controller.derive import DerivedFleet, derive_imports
from fleet.changes import changed_keys
from tests.controller.mcs_support import endpoint, endpoint_slice
from tests.controller.random_fleet_support import CLUSTERS, RandomFleet

SEEDS = range(12)
STEPS = 25


def same(a: DerivedFleet, b: DerivedFleet) -> bool:
    return (a == b and a.diagnostics == b.diagnostics
            and all(dict(a.per_cluster[c].by_service) == dict(b.per_cluster[c].by_service)
                    for c in a.per_cluster))


# file mode (allocated ClusterSetIPs), one consumer, and live mode (each consumer's
# ClusterSetIPs from its own `amcs-` Service, so each consumer's objects are its own)
MODES: dict[str, dict[str, Any]] = {
    "all": {}, "zone-b": {"clusters": ["zone-b"]},
    "live": {"allocate": False, "unallocated": CLUSTERS},
    "live, one allocating": {"unallocated": ("zone-a", "zone-c")},
}


def test_incremental_derivation_equals_a_fresh_one_over_random_changes() -> None:
    for seed in SEEDS:
        world = RandomFleet(seed)
        snap = world.snapshot()
        previous = {mode: derive_imports(snap, **kw) for mode, kw in MODES.items()}
        for step in range(STEPS):
            did = [world.step() for _ in range(1 + step % 3)]
            snap = world.snapshot()
            for mode, kw in MODES.items():
                fresh = derive_imports(snap, **kw)
                incremental = derive_imports(snap, previous=previous[mode], **kw)
                assert same(incremental, fresh), f"seed {seed} step {step} {mode} ({'; '.join(did)})"
                previous[mode] = incremental


def web_exported_by_zone_a(world: RandomFleet) -> RandomFleet:
    """The namespace `demo` in every cluster, and Service `web` exported by zone-a."""
    for cl in CLUSTERS:
        world.put(cl, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}})
    world.put("zone-a", {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "demo"},
                         "spec": {"ports": [{"name": "http", "port": 80}]}})
    world.put("zone-a", {"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceExport",
                         "metadata": {"name": "web", "namespace": "demo"}})
    return world


def test_an_answer_in_one_consumer_rebuilds_only_that_consumers_objects() -> None:
    """Live mode: a consumer's `amcs-` Service getting its ClusterIP (a write's answer)
    changes that consumer's ServiceImport; the other consumers keep their objects."""
    world = web_exported_by_zone_a(RandomFleet(5))
    for cl in CLUSTERS:
        world.drop_named(cl, "Service", "demo", "amcs-web")
        world.drop_named(cl, "ServiceImport", "demo", "web")
    live: dict[str, Any] = {"allocate": False, "unallocated": CLUSTERS}
    first = derive_imports(world.snapshot(), **live)
    world.put("zone-b", {"apiVersion": "v1", "kind": "Service",
                         "metadata": {"name": "amcs-web", "namespace": "demo",
                                      "labels": {"app.kubernetes.io/managed-by": "fleetgate"}},
                         "spec": {"clusterIP": "10.96.7.7", "clusterIPs": ["10.96.7.7"],
                                  "ports": [{"name": "http", "port": 80}]}})
    second = derive_imports(world.snapshot(), previous=first, **live)
    key = ("demo", "web")
    assert second.per_cluster["zone-b"].by_service[key].service_import.ips == ("10.96.7.7",)
    for cl in ("zone-a", "zone-c"):
        assert second.per_cluster[cl].by_service[key] is first.per_cluster[cl].by_service[key]
    assert same(second, derive_imports(world.snapshot(), **live))


def test_an_unchanged_snapshot_reuses_everything() -> None:
    world = RandomFleet(3)
    first = derive_imports(world.snapshot())
    again = derive_imports(world.snapshot(), previous=first)
    assert again == first
    for name, view in first.per_cluster.items():
        assert again.per_cluster[name] is view


def test_a_slice_change_rebuilds_only_its_service() -> None:
    world = RandomFleet(5)
    for ns in ("demo", "shop"):
        for cl in ("zone-a", "zone-b"):
            world.put(cl, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    for name in ("web", "api"):
        world.put("zone-a", {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "demo"},
                             "spec": {"ports": [{"name": "http", "port": 80}]}})
        world.put("zone-a", {"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceExport",
                             "metadata": {"name": name, "namespace": "demo"}})
    first = derive_imports(world.snapshot())
    world.put("zone-a", endpoint_slice("web", [endpoint("10.9.9.9")], "demo", name="web-new"))
    second = derive_imports(world.snapshot(), previous=first)
    before, after = first.per_cluster["zone-b"].by_service, second.per_cluster["zone-b"].by_service
    assert after[("demo", "api")] is before[("demo", "api")]
    assert after[("demo", "web")] is not before[("demo", "web")]
    assert any(ep.addresses == ("10.9.9.9",) for s in after[("demo", "web")].slices for ep in s.endpoints)


def test_changed_keys_by_identity_in_and_out_of_order() -> None:
    a, b, c, b2 = object(), object(), object(), object()
    old = {"a": a, "b": b, "c": c}
    assert changed_keys(old, old) == []
    assert changed_keys(old, dict(old)) == []
    assert changed_keys(old, {"a": a, "b": b2, "c": c}) == ["b"]
    assert sorted(changed_keys(old, {"c": c, "a": a, "b": b2})) == ["b"]  # reordered
    assert sorted(changed_keys(old, {"a": a, "c": c, "d": b})) == ["b", "d"]  # same size, b gone, d new
    assert sorted(changed_keys(old, {"a": a})) == ["b", "c"]
    assert sorted(changed_keys({}, old)) == ["a", "b", "c"]


def test_an_endpoint_change_keeps_each_consumers_import_and_service() -> None:
    """Only the source slices moved: each consumer gets new slices beside the very
    ServiceImport and `amcs-` Service it had (no copies per change), equal to a fresh derivation."""
    world = web_exported_by_zone_a(RandomFleet(7))
    world.put("zone-a", endpoint_slice("web", [endpoint("10.9.9.1")], "demo", name="web-a"))
    for live in ({"allocate": False, "unallocated": CLUSTERS}, {}):
        first = derive_imports(world.snapshot(), **live)
        world.put("zone-a", endpoint_slice("web", [endpoint("10.9.9.2")], "demo", name="web-a"))
        second = derive_imports(world.snapshot(), previous=first, **live)
        key = ("demo", "web")
        for cl in CLUSTERS:
            before, after = first.per_cluster[cl].by_service[key], second.per_cluster[cl].by_service[key]
            assert after.service_import is before.service_import and after.service is before.service
            assert [ep.addresses for s in after.slices for ep in s.endpoints] == [("10.9.9.2",)]
        assert same(second, derive_imports(world.snapshot(), **live))
