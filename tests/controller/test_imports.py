"""The MCS derivation against the mcs-api conformance scenarios (in our words, see mcs.md)."""
from __future__ import annotations

import ipaddress

from controller.derive import (ANNOTATION_DERIVED_SERVICE, LABEL_MANAGED_BY, LABEL_SLICE_MANAGED_BY,
                                DerivedFleet, allocate_ips, amcs_name, derive_imports)
from controller.render import (derived_cluster_to_dict, endpoint_slice_to_dict, export_status_to_dict,
                               service_import_to_dict, service_to_dict)
from fleet.objects import (LABEL_MCS_SERVICE_NAME, LABEL_MCS_SOURCE_CLUSTER, LABEL_SERVICE_NAME, Condition,
                           parse_endpoint_slice, parse_service, parse_service_import)
from tests.controller.mcs_support import (cluster, endpoint, endpoint_slice, export, fleet, namespace,
                                           service)

OLD = "2024-01-01T00:00:00Z"
NEW = "2024-06-01T00:00:00Z"


def conds(derived: DerivedFleet, cl: str, name: str = "web", ns: str = "demo") -> dict[str, Condition]:
    return {c.type: c for c in derived.export_conditions[(cl, ns, name)]}


def imports_of(derived: DerivedFleet, cl: str) -> dict[str, object]:
    return {si.meta.name: si for si in derived.per_cluster[cl].service_imports}


def two_clusters(a: list, b: list) -> object:
    return fleet({"zone-a": cluster(namespace("demo"), *a), "zone-b": cluster(namespace("demo"), *b)})


def test_exported_clusterip_service_is_imported_everywhere_with_a_clustersetip() -> None:
    snap = two_clusters([service("web", sessionAffinity="ClientIP", internalTrafficPolicy="Local",
                                 trafficDistribution="PreferClose"), export("web")], [])
    derived = derive_imports(snap)
    for cl in ("zone-a", "zone-b"):
        si = imports_of(derived, cl)["web"]
        assert si.type == "ClusterSetIP"
        assert len(si.ips) == 1 and ipaddress.ip_address(si.ips[0]) in ipaddress.ip_network("242.0.0.0/16")
        assert si.ip_families == ("IPv4",)
        assert [(p.name, p.port, p.protocol) for p in si.ports] == [("http", 80, "TCP")]
        assert si.session_affinity == "ClientIP"
        assert si.internal_traffic_policy == "Local"
        assert si.traffic_distribution == "PreferClose"
        assert si.meta.annotations[ANNOTATION_DERIVED_SERVICE] == "amcs-web"
        assert si.meta.labels[LABEL_MANAGED_BY] == "fleetgate"
        assert si.clusters == ("zone-a",)
        (svc,) = derived.per_cluster[cl].services
        assert svc.meta.name == "amcs-web" and svc.selector is None
        assert svc.cluster_ips == si.ips
    c = conds(derived, "zone-a")
    assert (c["Valid"].status, c["Valid"].reason) == ("True", "Valid")
    assert (c["Ready"].status, c["Ready"].reason) == ("True", "Exported")
    assert (c["Conflict"].status, c["Conflict"].reason) == ("False", "NoConflicts")
    assert c["Valid"].observed_generation == 1


def test_unexport_removes_the_import_everywhere() -> None:
    snap = two_clusters([service("web")], [])
    derived = derive_imports(snap)
    assert all(not d.service_imports and not d.services and not d.endpoint_slices
               for d in derived.per_cluster.values())
    assert derived.export_conditions == {}


def test_import_stays_while_one_of_two_exports_remains() -> None:
    both = derive_imports(two_clusters([service("web"), export("web")], [service("web"), export("web")]))
    assert imports_of(both, "zone-a")["web"].clusters == ("zone-a", "zone-b")
    one = derive_imports(two_clusters([service("web")], [service("web"), export("web")]))
    assert imports_of(one, "zone-a")["web"].clusters == ("zone-b",)
    # the same name keeps its ClusterSetIP when the set of exporters changes
    assert imports_of(one, "zone-a")["web"].ips == imports_of(both, "zone-a")["web"].ips


def test_cluster_without_the_namespace_gets_no_import() -> None:
    snap = fleet({"zone-a": cluster(service("web"), export("web")), "zone-b": cluster(namespace("other"))})
    derived = derive_imports(snap)
    assert "web" in imports_of(derived, "zone-a")
    assert imports_of(derived, "zone-b") == {}
    assert "1 member cluster" in conds(derived, "zone-a")["Ready"].message


def test_headless_service_imports_as_headless_without_ips() -> None:
    derived = derive_imports(two_clusters([service("db", headless=True), export("db")], []))
    si = imports_of(derived, "zone-b")["db"]
    assert si.type == "Headless" and si.ips == ()
    (svc,) = derived.per_cluster["zone-b"].services
    assert svc.cluster_ip == "None" and svc.cluster_ips == ()


def test_externalname_is_invalid_and_not_imported() -> None:
    derived = derive_imports(two_clusters([service("ext", stype="ExternalName"), export("ext")], []))
    assert imports_of(derived, "zone-a") == {}
    c = conds(derived, "zone-a", "ext")
    assert (c["Valid"].status, c["Valid"].reason) == ("False", "InvalidServiceType")
    assert "spec.type" in c["Valid"].message
    assert (c["Ready"].status, c["Ready"].reason) == ("False", "Pending")
    assert any("ExternalName" in d.message for d in derived.diagnostics)


def test_export_without_service_is_noservice_then_takes_effect_when_it_appears() -> None:
    derived = derive_imports(two_clusters([export("web")], []))
    assert conds(derived, "zone-a")["Valid"].reason == "NoService"
    assert imports_of(derived, "zone-b") == {}
    later = derive_imports(two_clusters([export("web"), service("web")], []))
    assert conds(later, "zone-a")["Valid"].reason == "Valid"
    assert "web" in imports_of(later, "zone-b")


def test_second_cluster_adding_a_port_gives_the_union_and_conflict_on_both() -> None:
    snap = two_clusters(
        [service("web"), export("web", created=OLD)],
        [service("web", ports=(("http", 80, "TCP"), ("metrics", 9090, "TCP"))), export("web", created=NEW)])
    derived = derive_imports(snap)
    si = imports_of(derived, "zone-a")["web"]
    assert [(p.name, p.port) for p in si.ports] == [("http", 80), ("metrics", 9090)]
    for cl in ("zone-a", "zone-b"):
        c = conds(derived, cl)["Conflict"]
        assert (c.status, c.reason) == ("True", "PortConflict")
        assert "spec.ports" in c.message and "zone-b adds metrics 9090/TCP" in c.message


def test_same_port_name_with_another_number_keeps_the_oldest_clusters_port() -> None:
    snap = two_clusters(
        [service("web", ports=(("http", 8080, "TCP"),)), export("web", created=NEW)],
        [service("web", ports=(("http", 80, "TCP"),)), export("web", created=OLD)])
    derived = derive_imports(snap)
    assert [(p.name, p.port) for p in imports_of(derived, "zone-a")["web"].ports] == [("http", 80)]
    for cl in ("zone-a", "zone-b"):
        c = conds(derived, cl)["Conflict"]
        assert c.reason == "PortConflict"
        assert "zone-b's wins" in c.message


def test_clusterip_older_than_headless_wins_with_typeconflict_on_both() -> None:
    snap = two_clusters([service("web"), export("web", created=OLD)],
                        [service("web", headless=True), export("web", created=NEW)])
    derived = derive_imports(snap)
    si = imports_of(derived, "zone-b")["web"]
    assert si.type == "ClusterSetIP" and si.ips
    for cl in ("zone-a", "zone-b"):
        c = conds(derived, cl)["Conflict"]
        assert (c.status, c.reason) == ("True", "TypeConflict")
        assert "spec.type" in c.message and "zone-a" in c.message and "oldest" in c.message


def test_same_age_conflict_is_won_by_cluster_name_and_reasons_are_comma_joined() -> None:
    snap = two_clusters([service("web", sessionAffinity="ClientIP"), export("web")],
                        [service("web", headless=True, ports=(("grpc", 9000, "TCP"),),
                                 internalTrafficPolicy="Local"), export("web")])
    derived = derive_imports(snap)
    si = imports_of(derived, "zone-a")["web"]
    assert si.type == "ClusterSetIP" and si.session_affinity == "ClientIP"
    c = conds(derived, "zone-b")["Conflict"]
    assert c.reason == "PortConflict,TypeConflict,SessionAffinityConflict,InternalTrafficPolicyConflict"
    assert "first by cluster name" in c.message


def test_ip_family_conflict_is_reported() -> None:
    snap = two_clusters([service("web", ipFamilies=["IPv4"]), export("web", created=OLD)],
                        [service("web", ipFamilies=["IPv6"]), export("web", created=NEW)])
    c = conds(derive_imports(snap), "zone-b")["Conflict"]
    assert c.reason == "IPFamilyConflict" and "spec.ipFamilies" in c.message


def test_slices_one_per_source_cluster_and_family_with_mcs_labels() -> None:
    a = [service("web"), export("web"),
         endpoint_slice("web", [endpoint("10.1.0.1", zone="az-1", node="n1"),
                                endpoint("10.1.0.2", ready=False, serving=True, terminating=True)]),
         endpoint_slice("web", [endpoint("fd00::1")], family="IPv6")]
    b = [service("web"), export("web"), endpoint_slice("web", [endpoint("10.2.0.1", hostname="web-0")])]
    derived = derive_imports(two_clusters(a, b))
    slices = derived.per_cluster["zone-b"].endpoint_slices
    assert sorted((s.meta.labels[LABEL_MCS_SOURCE_CLUSTER], s.address_type) for s in slices) == [
        ("zone-a", "IPv4"), ("zone-a", "IPv6"), ("zone-b", "IPv4")]
    si = imports_of(derived, "zone-b")["web"]
    for s in slices:
        assert s.meta.labels[LABEL_SERVICE_NAME] == "amcs-web"
        assert s.meta.labels[LABEL_MCS_SERVICE_NAME] == "web"
        assert s.meta.labels[LABEL_SLICE_MANAGED_BY] == "controller.fleetgate.io"
        assert s.meta.labels[LABEL_MANAGED_BY] == "fleetgate"
        (owner,) = s.meta.owner_references
        assert (owner.kind, owner.name, owner.uid, owner.controller) == ("ServiceImport", "web", si.meta.uid, False)
        assert [(p.name, p.port) for p in s.ports] == [("http", 8080)]  # the endpoints' target port
    a4 = next(s for s in slices if s.meta.labels[LABEL_MCS_SOURCE_CLUSTER] == "zone-a" and s.address_type == "IPv4")
    first, second = a4.endpoints
    assert (first.zone, first.node_name, first.hostname) == ("az-1", "n1", None)
    assert (second.ready, second.serving, second.terminating) == (False, True, True)
    b4 = next(s for s in slices if s.meta.labels[LABEL_MCS_SOURCE_CLUSTER] == "zone-b")
    assert b4.endpoints[0].hostname == "web-0"


def test_unexport_in_one_cluster_removes_its_slices_everywhere() -> None:
    a = [service("web"), endpoint_slice("web", [endpoint("10.1.0.1")])]
    b = [service("web"), export("web"), endpoint_slice("web", [endpoint("10.2.0.1")])]
    derived = derive_imports(two_clusters(a, b))
    for cl in ("zone-a", "zone-b"):
        assert {s.meta.labels[LABEL_MCS_SOURCE_CLUSTER] for s in derived.per_cluster[cl].endpoint_slices} == {"zone-b"}


def test_slice_ports_only_for_ports_the_source_cluster_exposes() -> None:
    a = [service("web"), export("web", created=OLD), endpoint_slice("web", [endpoint("10.1.0.1")])]
    b = [service("web", ports=(("http", 80, "TCP"), ("metrics", 9090, "TCP"))), export("web", created=NEW),
         endpoint_slice("web", [endpoint("10.2.0.1")], ports=(("http", 8080, "TCP"), ("metrics", 9100, "TCP")))]
    slices = derive_imports(two_clusters(a, b)).per_cluster["zone-a"].endpoint_slices
    by_cluster = {s.meta.labels[LABEL_MCS_SOURCE_CLUSTER]: [(p.name, p.port) for p in s.ports] for s in slices}
    assert by_cluster == {"zone-a": [("http", 8080)], "zone-b": [("http", 8080), ("metrics", 9100)]}


def test_clusterset_ips_are_deterministic_distinct_and_in_range() -> None:
    names = [("demo", f"svc-{i}") for i in range(250)]
    net = ipaddress.ip_network("10.9.0.0/24")
    first = allocate_ips(names, net)
    again = allocate_ips(list(reversed(names)), net)
    assert first == again
    assert len(set(first.values())) == 250
    assert all(ipaddress.ip_address(ip) in net and ip not in ("10.9.0.0", "10.9.0.255") for ip in first.values())


def test_same_fleet_gives_same_ips_across_restarts() -> None:
    raws = [service(f"s{i}") for i in range(20)] + [export(f"s{i}") for i in range(20)]
    one = derive_imports(two_clusters(raws, []))
    two = derive_imports(two_clusters(list(reversed(raws)), []))
    assert dict(one.clusterset_ips) == dict(two.clusterset_ips)


def test_dual_stack_range_gives_both_families() -> None:
    snap = fleet({"zone-a": cluster(service("web", ipFamilies=["IPv6", "IPv4"]), export("web"))},
                 ip_range="242.0.0.0/16,fd00:242::/64")
    si = imports_of(derive_imports(snap), "zone-a")["web"]
    assert si.ip_families == ("IPv6", "IPv4")
    assert ipaddress.ip_address(si.ips[0]).version == 6 and ipaddress.ip_address(si.ips[1]).version == 4


def test_user_created_serviceimport_is_adopted() -> None:
    user = {"apiVersion": "multicluster.x-k8s.io/v1beta1", "kind": "ServiceImport",
            "metadata": {"name": "web", "namespace": "demo", "uid": "u-1", "labels": {"team": "x"}},
            "spec": {"type": "ClusterSetIP"}}
    derived = derive_imports(two_clusters([service("web"), export("web")], [user]))
    si = imports_of(derived, "zone-b")["web"]
    assert si.meta.uid == "u-1" and si.meta.labels["team"] == "x" and si.meta.labels[LABEL_MANAGED_BY] == "fleetgate"
    assert len(derived.per_cluster["zone-b"].service_imports) == 1
    assert all(s.meta.owner_references[0].uid == "u-1" for s in derived.per_cluster["zone-b"].endpoint_slices)


def test_live_mode_uses_the_amcs_services_cluster_ips() -> None:
    amcs = service("amcs-web", clusterIP="10.96.0.7", clusterIPs=["10.96.0.7"])
    amcs["metadata"]["labels"] = {LABEL_MANAGED_BY: "fleetgate"}
    derived = derive_imports(two_clusters([service("web"), export("web")], [amcs]), allocate=False)
    assert imports_of(derived, "zone-b")["web"].ips == ("10.96.0.7",)
    assert imports_of(derived, "zone-a")["web"].ips == ()


def test_long_names_are_shortened_stably() -> None:
    name = "x" * 63
    assert len(amcs_name(name)) == 63 and amcs_name(name) == amcs_name(name)
    assert amcs_name(name) != amcs_name("x" * 62 + "y")
    assert amcs_name("web") == "amcs-web"


def test_clusters_filter_limits_per_cluster_objects_but_not_conditions() -> None:
    derived = derive_imports(two_clusters([service("web"), export("web")], [service("web"), export("web")]),
                             clusters=["zone-b"])
    assert set(derived.per_cluster) == {"zone-b"}
    assert ("zone-a", "demo", "web") in derived.export_conditions


def test_rendered_objects_are_kubernetes_json_that_parses_back() -> None:
    a = [service("web"), export("web"), endpoint_slice("web", [endpoint("10.1.0.1", hostname="web-0", zone="az")])]
    derived = derive_imports(two_clusters(a, []))
    dc = derived.per_cluster["zone-b"]
    body = derived_cluster_to_dict(dc)
    assert body["serviceImports"][0]["kind"] == "ServiceImport"
    assert body["serviceImports"][0]["metadata"]["annotations"][ANNOTATION_DERIVED_SERVICE] == "amcs-web"
    si_back = parse_service_import(service_import_to_dict(dc.service_imports[0]))
    assert (si_back.ips, si_back.ports, si_back.type, si_back.clusters) == (
        dc.service_imports[0].ips, dc.service_imports[0].ports, "ClusterSetIP", ("zone-a",))
    assert parse_service(service_to_dict(dc.services[0])) == dc.services[0]
    assert parse_endpoint_slice(endpoint_slice_to_dict(dc.endpoint_slices[0])) == dc.endpoint_slices[0]
    rows = export_status_to_dict(derived)
    assert rows[0]["cluster"] == "zone-a" and {c["type"] for c in rows[0]["conditions"]} == {"Valid", "Ready", "Conflict"}
