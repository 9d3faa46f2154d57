"""controller/answers.py: a write's answer made from the objects it repeats, or parsed."""
from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

from controller.answers import reuse_answer
from controller.derive import derive_imports
from controller.render import endpoint_slice_to_dict, service_import_to_dict, service_to_dict
from fleet.objects import parse_object
from tests.controller.mcs_support import cluster, endpoint, endpoint_slice, export, fleet, namespace, service

SERVER = {"uid": "u-1", "resourceVersion": "42", "generation": 3, "creationTimestamp": "2026-01-01T00:00:00Z"}


def import_raw(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceImport",
            "metadata": {"name": "web", "namespace": "demo", "labels": {"app.kubernetes.io/managed-by": "fleetgate"},
                         "annotations": {"multicluster.kubernetes.io/derived-service": "amcs-web"}},
            "spec": {"type": "ClusterSetIP", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
                     "sessionAffinity": "None", **spec},
            "status": {"clusters": [{"cluster": "zone-a"}]}}


def answer(raw: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """`raw` as an API server answers it: its fields plus the server's metadata."""
    out = copy.deepcopy(raw)
    out["metadata"].update(SERVER)
    out.update(changes)
    return out


def test_an_answer_repeating_the_desired_import_is_the_parsed_one_from_its_values() -> None:
    desired = parse_object(import_raw(ips=["10.96.0.9"], ipFamilies=["IPv4"]))
    got = reuse_answer("ServiceImport", answer(service_import_to_dict(desired)), (desired, None))
    assert got == parse_object(answer(service_import_to_dict(desired)))
    assert got is not None and got.meta.resource_version == "42" and got.meta.uid == "u-1"
    assert got.ports is desired.ports and got.meta.labels is desired.meta.labels  # reused, not parsed


def test_a_status_answer_takes_its_spec_from_the_patched_object_and_its_status_from_the_desired() -> None:
    base = parse_object(answer(import_raw(ips=["10.96.0.1"]), status={}))
    desired = replace(parse_object(import_raw(ips=["10.96.0.9"])), clusters=("zone-a", "zone-b"))
    raw = answer(service_import_to_dict(base), status={"clusters": [{"cluster": "zone-a"}, {"cluster": "zone-b"}]})
    got = reuse_answer("ServiceImport", raw, (desired, base))
    assert got == parse_object(raw) and got is not None
    assert got.ips == ("10.96.0.1",) and got.clusters == ("zone-a", "zone-b")


def test_a_create_answer_without_status_has_no_clusters() -> None:
    desired = parse_object(import_raw())
    raw = answer(service_import_to_dict(desired))
    del raw["status"]
    got = reuse_answer("ServiceImport", raw, (desired, None))
    assert got == parse_object(raw) and got is not None and got.clusters == ()


def test_an_answer_differing_anywhere_the_parser_reads_is_left_to_the_parser() -> None:
    desired = parse_object(import_raw())
    rendered = service_import_to_dict(desired)
    other_label = answer(rendered)
    other_label["metadata"]["labels"]["team"] = "x"  # another writer's label, kept by a merge patch
    defaulted = answer(rendered)
    defaulted["spec"]["ipFamilies"] = ["IPv4"]  # a field the API server filled in
    owners = answer(rendered)
    owners["metadata"]["ownerReferences"] = [{"apiVersion": "v1", "kind": "X", "name": "x", "uid": "1"}]
    renamed = answer(rendered)
    renamed["metadata"]["name"] = "api"
    for raw in (other_label, defaulted, owners, renamed):
        assert reuse_answer("ServiceImport", raw, (desired, None)) is None
    # what the parser ignores changes nothing: managedFields, unknown top-level keys
    ignored = answer(rendered)
    ignored["metadata"]["managedFields"] = [{"manager": "kubectl"}]
    ignored["extra"] = 1
    assert reuse_answer("ServiceImport", ignored, (desired, None)) == parse_object(ignored)


def test_a_slice_answer_is_reused_and_any_endpoint_difference_is_parsed() -> None:
    desired = parse_object(endpoint_slice("amcs-web", [endpoint("10.1.0.1"), endpoint("10.1.0.2", ready=False)],
                                          name="amcs-web-zone-a-ipv4"))
    raw = answer(endpoint_slice_to_dict(desired))
    got = reuse_answer("EndpointSlice", raw, (desired, None))
    assert got == parse_object(raw) and got is not None and got.endpoints is desired.endpoints
    moved = copy.deepcopy(raw)
    moved["endpoints"][1]["conditions"]["ready"] = True
    assert reuse_answer("EndpointSlice", moved, (desired, None)) is None
    assert reuse_answer("Service", raw, (desired, None)) is None  # a slice is no Service: parsed


def test_a_service_answer_takes_what_the_api_server_allocates_from_the_answer() -> None:
    desired = parse_object({"apiVersion": "v1", "kind": "Service",
                            "metadata": {"name": "amcs-web", "namespace": "demo",
                                         "labels": {"app.kubernetes.io/managed-by": "fleetgate"}},
                            "spec": {"type": "ClusterIP", "ports": [{"name": "http", "port": 80, "protocol": "TCP",
                                                                     "targetPort": 80}],
                                     "ipFamilies": ["IPv4"], "sessionAffinity": "None"}})
    raw = answer(service_to_dict(desired))
    raw["spec"].update(clusterIP="10.96.0.7", clusterIPs=["10.96.0.7"], ipFamilyPolicy="SingleStack",
                       internalTrafficPolicy="Cluster")
    got = reuse_answer("Service", raw, (desired, None))
    assert got == parse_object(raw) and got is not None
    assert got.cluster_ips == ("10.96.0.7",) and got.ports is desired.ports
    bad_ip = copy.deepcopy(raw)
    bad_ip["spec"]["clusterIP"] = "not-an-ip"  # the parser's rule holds: left to it (a diagnostic)
    assert reuse_answer("Service", bad_ip, (desired, None)) is None
    node_port = copy.deepcopy(raw)
    node_port["spec"]["ports"][0]["nodePort"] = 30080  # not ours: parsed
    assert reuse_answer("Service", node_port, (desired, None)) is None


def test_a_source_spelling_unset_fields_as_empty_strings_gives_answers_whose_reuse_is_the_parse() -> None:
    """A source Service port with appProtocol "", trafficDistribution "", an endpoint with zone
    and nodeName "": the renders omit them (as Kubernetes does), so the API server's answer
    lacks them; the view reused from the desired object must still equal parse_object's."""
    svc = service("web", trafficDistribution="", internalTrafficPolicy="")
    svc["spec"]["ports"][0]["appProtocol"] = ""
    ep = endpoint("10.0.0.1")
    ep.update(zone="", nodeName="")
    source_slice = endpoint_slice("web", [ep])
    source_slice["ports"][0]["appProtocol"] = ""
    snap = fleet({"zone-a": cluster(namespace("demo"), svc, export("web"), source_slice),
                  "zone-b": cluster(namespace("demo"))})
    objs = derive_imports(snap, allocate=False, unallocated=("zone-a", "zone-b")).per_cluster["zone-b"] \
        .by_service[("demo", "web")]
    cases = [("EndpointSlice", objs.slices[0], endpoint_slice_to_dict(objs.slices[0])),
             ("ServiceImport", objs.service_import, service_import_to_dict(objs.service_import)),
             ("Service", objs.service, service_to_dict(objs.service))]
    for kind, desired, raw in cases:
        got = reuse_answer(kind, answer(raw), (desired, None))
        assert got is not None, f"{kind}: reused"
        assert got == parse_object(answer(raw)), kind
    endpoint_view, = objs.slices[0].endpoints
    assert endpoint_view.zone is None and endpoint_view.node_name is None
    assert objs.service_import.ports[0].app_protocol is None and objs.service_import.traffic_distribution is None
