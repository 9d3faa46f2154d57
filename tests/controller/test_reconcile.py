"""The pure write planner: what it writes for a member cluster, and that a cluster already
holding what derive_imports wants (as an API server would show it) plans nothing."""
from __future__ import annotations

import copy
from typing import Any

from controller.derive import DerivedFleet, derive_imports
from controller.reconcile import CREATE, DELETE, STATUS, UPDATE, Write, plan_cluster
from controller.render import endpoint_slice_to_dict, service_import_to_dict, service_to_dict
from fleet.objects import parse_object
from fleet.snapshot import ClusterObjects
from tests.controller.mcs_support import cluster, endpoint, endpoint_slice, export, fleet, namespace, service

NOW = "2026-01-01T00:00:00Z"
MANAGED = {"app.kubernetes.io/managed-by": "fleetgate"}


def exporter(*extra: dict[str, Any]) -> ClusterObjects:
    return cluster(namespace("demo"), service("web"), export("web"),
                   endpoint_slice("web", [endpoint("10.1.0.1")], name="web-1"), *extra)


def derive(a: ClusterObjects, b: ClusterObjects) -> DerivedFleet:
    return derive_imports(fleet({"zone-a": a, "zone-b": b}), allocate=False)


def plan(derived: DerivedFleet, name: str, actual: ClusterObjects) -> list[Write]:
    conds = {(ns, n): c for (cl, ns, n), c in derived.export_conditions.items() if cl == name}
    return plan_cluster(derived.per_cluster.get(name), actual, conditions=conds, now=NOW)


def as_stored(raw: dict[str, Any], rv: str, uid: str = "") -> dict[str, Any]:
    """A rendered object as the API server would return it: its uid, rv and defaults."""
    raw = copy.deepcopy(raw)
    raw["metadata"].update(resourceVersion=rv, uid=uid or raw["metadata"].get("uid", "") or f"uid-{rv}")
    if raw["kind"] == "Service":
        spec = raw["spec"]
        spec.setdefault("internalTrafficPolicy", "Cluster")
        if spec.get("clusterIP") != "None":
            spec["clusterIP"], spec["clusterIPs"] = "10.96.0.10", ["10.96.0.10"]
    return raw


def converged(derived: DerivedFleet, name: str, base: list[dict[str, Any]]) -> ClusterObjects:
    dc = derived.per_cluster[name]
    raws = [as_stored(service_import_to_dict(x), "1") for x in dc.service_imports]
    raws += [as_stored(service_to_dict(x), "2") for x in dc.services]
    raws += [as_stored(endpoint_slice_to_dict(x), "3") for x in dc.endpoint_slices]
    return cluster(*base, *raws)


def test_a_missing_import_is_created_first_and_its_dependents_wait_for_its_uid() -> None:
    b = cluster(namespace("demo"))
    writes = plan(derive(exporter(), b), "zone-b", b)
    assert [(w.op, w.kind, w.name) for w in writes] == [(CREATE, "ServiceImport", "web")]
    body = writes[0].body
    assert body is not None and "uid" not in body["metadata"] and "status" not in body
    assert body["metadata"]["labels"] == MANAGED


def test_the_service_is_created_without_a_cluster_ip_and_owned_by_the_real_import() -> None:
    b = cluster(namespace("demo"))
    derived = derive(exporter(), b)
    si = as_stored(service_import_to_dict(derived.per_cluster["zone-b"].service_imports[0]), "5", uid="real-uid")
    b2 = cluster(namespace("demo"), si)
    writes = plan(derive(exporter(), b2), "zone-b", b2)
    assert [(w.op, w.kind) for w in writes] == [(CREATE, "Service"), (CREATE, "EndpointSlice")]
    svc = writes[0].body
    assert svc is not None and "clusterIP" not in svc["spec"] and "clusterIPs" not in svc["spec"]
    assert all(w.body["metadata"]["ownerReferences"][0]["uid"] == "real-uid" for w in writes)  # type: ignore[index]


def test_a_cluster_holding_what_is_derived_plans_nothing() -> None:
    b = cluster(namespace("demo"))
    derived = derive(exporter(), b)
    # the converged cluster: its amcs- Service has an API-allocated IP, which the import shows
    b2 = converged(derived, "zone-b", [namespace("demo")])
    derived2 = derive(exporter(), b2)
    assert derived2.per_cluster["zone-b"].service_imports[0].ips == ("10.96.0.10",)
    b3 = converged(derived2, "zone-b", [namespace("demo")])
    assert plan(derive(exporter(), b3), "zone-b", b3) == []


def test_an_endpoint_change_is_one_slice_update() -> None:
    b = cluster(namespace("demo"))
    derived = derive(exporter(), b)
    b2 = converged(derived, "zone-b", [namespace("demo")])
    moved = cluster(namespace("demo"), service("web"), export("web"),
                    endpoint_slice("web", [endpoint("10.1.0.2")], name="web-1"))
    b3 = converged(derive(exporter(), b2), "zone-b", [namespace("demo")])
    (w,) = plan(derive(moved, b3), "zone-b", b3)
    assert (w.op, w.kind, w.resource_version) == (UPDATE, "EndpointSlice", "3")
    assert w.body is not None and w.body["endpoints"][0]["addresses"] == ["10.1.0.2"]
    assert w.body["metadata"]["resourceVersion"] == "3"  # a stale base is a 409


def test_what_we_no_longer_want_is_deleted_and_others_objects_are_left_alone() -> None:
    b = cluster(namespace("demo"))
    derived = derive(exporter(), b)
    theirs = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "amcs-db", "namespace": "demo"},
              "spec": {"ports": [{"port": 5432}]}}
    b2 = converged(derived, "zone-b", [namespace("demo"), theirs])
    unexported = cluster(namespace("demo"), service("web"))
    writes = plan(derive(unexported, b2), "zone-b", b2)
    assert [(w.op, w.kind, w.name) for w in writes] == [
        (DELETE, "EndpointSlice", "amcs-web-zone-a-ipv4"), (DELETE, "Service", "amcs-web"),
        (DELETE, "ServiceImport", "web")]
    assert all(w.uid and w.resource_version for w in writes)


def test_export_conditions_keep_their_transition_time_while_the_status_holds() -> None:
    a = exporter()
    derived = derive(a, cluster(namespace("demo")))
    (w,) = [w for w in plan(derived, "zone-a", a) if w.kind == "ServiceExport"]
    assert w.op == STATUS and w.body is not None
    rows = w.body["status"]["conditions"]
    assert {r["type"]: r["status"] for r in rows} == {"Valid": "True", "Ready": "True", "Conflict": "False"}
    assert all(r["lastTransitionTime"] == NOW for r in rows)
    # shown as written (but older): nothing to do; a changed message keeps the old time
    for r in rows:
        r["lastTransitionTime"] = "2025-01-01T00:00:00Z"
    shown = export("web")
    shown["status"] = {"conditions": copy.deepcopy(rows)}
    a2 = exporter()
    a2 = ClusterObjects.build([*(o for o in a2.all() if o.kind != "ServiceExport"), parse_object(shown)])
    assert [w for w in plan(derive(a2, cluster(namespace("demo"))), "zone-a", a2) if w.kind == "ServiceExport"] == []
    rows[0]["message"] = "something else"
    shown["status"] = {"conditions": rows}
    a3 = ClusterObjects.build([*(o for o in a2.all() if o.kind != "ServiceExport"), parse_object(shown)])
    (w,) = [w for w in plan(derive(a3, cluster(namespace("demo"))), "zone-a", a3) if w.kind == "ServiceExport"]
    assert w.body is not None
    assert all(r["lastTransitionTime"] == "2025-01-01T00:00:00Z" for r in w.body["status"]["conditions"])


def test_a_headless_import_gets_a_headless_service_and_a_type_flip_recreates_it() -> None:
    a = cluster(namespace("demo"), service("web", headless=True), export("web"))
    b = cluster(namespace("demo"))
    derived = derive(a, b)
    si = as_stored(service_import_to_dict(derived.per_cluster["zone-b"].service_imports[0]), "5")
    b2 = cluster(namespace("demo"), si)
    (create,) = [w for w in plan(derive(a, b2), "zone-b", b2) if w.kind == "Service"]
    assert create.op == CREATE and create.body is not None and create.body["spec"]["clusterIP"] == "None"
    b3 = converged(derive(a, b2), "zone-b", [namespace("demo")])
    flipped = exporter()
    (w,) = [w for w in plan(derive(flipped, b3), "zone-b", b3) if w.kind == "Service"]
    assert (w.op, w.name) == (DELETE, "amcs-web")  # spec.clusterIP is immutable



def test_the_memo_skips_only_what_is_unchanged() -> None:
    """With a memo, a converged import is not compared again while its objects are the
    same ones; any new object (a changed slice, a changed export) is planned again."""
    a = exporter()
    b = converged(derive(a, cluster(namespace("demo"))), "zone-b", [namespace("demo")])
    b = converged(derive(a, b), "zone-b", [namespace("demo")])  # the import shows the allocated IP
    derived = derive(a, b)
    conds = {(ns, n): c for (cl, ns, n), c in derived.export_conditions.items() if cl == "zone-b"}
    memo: dict = {}
    assert plan_cluster(derived.per_cluster["zone-b"], b, conditions=conds, now=NOW, memo=memo) == []
    assert ("demo", "web") in memo
    assert plan_cluster(derived.per_cluster["zone-b"], b, conditions=conds, now=NOW, memo=memo) == []
    # someone edits our slice in zone-b: a new object there, so it is compared and put back
    edited = [o for o in b.endpoint_slices.values()][0]
    raw = as_stored(endpoint_slice_to_dict(edited), "9")
    raw["endpoints"] = [endpoint("10.9.9.9")]
    b2 = ClusterObjects.build([*(o for k, o in b.endpoint_slices.items() if o is not edited),
                               *b.services.values(), *b.service_imports.values(), *b.namespaces.values(),
                               parse_object(raw)])
    writes = plan_cluster(derived.per_cluster["zone-b"], b2, conditions=conds, now=NOW, memo=memo)
    assert [(w.op, w.kind) for w in writes] == [(UPDATE, "EndpointSlice")]
    assert ("demo", "web") not in memo  # it needed a write: compared again next time



def test_an_amcs_service_differing_only_in_what_the_api_server_owns_plans_nothing_else_one_update() -> None:
    """The Service comparison's shortcut (equal fields) never hides a difference: the API
    server's ClusterIP and internalTrafficPolicy default are not ours; a port, the session
    affinity or an explicit internalTrafficPolicy are."""
    b = converged(derive(exporter(), cluster(namespace("demo"))), "zone-b", [namespace("demo")])
    b = converged(derive(exporter(), b), "zone-b", [namespace("demo")])  # the import shows the IP
    derived = derive(exporter(), b)
    assert plan(derived, "zone-b", b) == []
    dc = derived.per_cluster["zone-b"]
    for field, value in ((None, None), ("ports", [{"name": "http", "port": 81, "protocol": "TCP"}]),
                         ("sessionAffinity", "ClientIP"), ("internalTrafficPolicy", "Local")):
        svc = as_stored(service_to_dict(dc.services[0]), "2")
        if field is not None:
            svc["spec"][field] = value
        actual = cluster(namespace("demo"), *[as_stored(service_import_to_dict(x), "1") for x in dc.service_imports],
                         svc, *[as_stored(endpoint_slice_to_dict(x), "3") for x in dc.endpoint_slices])
        writes = [(w.op, w.kind) for w in plan(derived, "zone-b", actual)]
        assert writes == ([] if field is None else [(UPDATE, "Service")]), field
