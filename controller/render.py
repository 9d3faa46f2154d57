"""Render derived MCS views as Kubernetes JSON (for `/debug/imports` and for API writes).

The inverse of fleet/objects.py's parsers for the kinds the controller writes: the output
parses back into an equal view, which the tests check.
"""
from __future__ import annotations

from typing import Any

from fleet.objects import (Condition, EndpointSlice, Meta, OwnerReference, Service, ServiceImport,
                           ServicePort)

from .derived import DerivedCluster, DerivedFleet


def owner_references_to_list(refs: tuple[OwnerReference, ...]) -> list[dict[str, Any]]:
    """metadata.ownerReferences as the API writes it (for /debug/imports and for patches)."""
    return [{"apiVersion": o.api_version, "kind": o.kind, "name": o.name, "uid": o.uid,
             "controller": o.controller} for o in refs]


def meta_to_dict(meta: Meta) -> dict[str, Any]:
    out: dict[str, Any] = {"name": meta.name}
    if meta.namespace:
        out["namespace"] = meta.namespace
    if meta.uid:
        out["uid"] = meta.uid
    if meta.resource_version:
        out["resourceVersion"] = meta.resource_version
    if meta.generation:
        out["generation"] = meta.generation
    if meta.creation_timestamp:
        out["creationTimestamp"] = meta.creation_timestamp
    if meta.labels:
        out["labels"] = dict(meta.labels)
    if meta.annotations:
        out["annotations"] = dict(meta.annotations)
    if meta.owner_references:
        out["ownerReferences"] = owner_references_to_list(meta.owner_references)
    return out


def _port(p: ServicePort, *, target: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"port": p.port, "protocol": p.protocol}
    if p.name:
        out["name"] = p.name
    if p.app_protocol:
        out["appProtocol"] = p.app_protocol
    if target and p.target_port is not None:
        out["targetPort"] = p.target_port
    return out


def _common_spec(obj: ServiceImport | Service) -> dict[str, Any]:
    spec: dict[str, Any] = {"sessionAffinity": obj.session_affinity}
    if obj.session_affinity_config:
        spec["sessionAffinityConfig"] = dict(obj.session_affinity_config)
    if obj.internal_traffic_policy:
        spec["internalTrafficPolicy"] = obj.internal_traffic_policy
    if obj.traffic_distribution:
        spec["trafficDistribution"] = obj.traffic_distribution
    return spec


def service_import_spec(si: ServiceImport) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": si.type, "ports": [_port(p, target=False) for p in si.ports]}
    if si.ips:
        spec["ips"] = list(si.ips)
    if si.ip_families:
        spec["ipFamilies"] = list(si.ip_families)
    spec.update(_common_spec(si))
    return spec


def service_import_clusters(si: ServiceImport) -> list[dict[str, str]]:
    """status.clusters."""
    return [{"cluster": c} for c in si.clusters]


def service_import_to_dict(si: ServiceImport) -> dict[str, Any]:
    return {"apiVersion": si.api_version, "kind": "ServiceImport", "metadata": meta_to_dict(si.meta),
            "spec": service_import_spec(si), "status": {"clusters": service_import_clusters(si)}}


def service_to_dict(svc: Service) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": svc.type, "ports": [_port(p, target=True) for p in svc.ports]}
    if svc.cluster_ip:
        spec["clusterIP"] = svc.cluster_ip
    if svc.cluster_ips:
        spec["clusterIPs"] = list(svc.cluster_ips)
    if svc.ip_families:
        spec["ipFamilies"] = list(svc.ip_families)
    if svc.selector is not None:
        spec["selector"] = dict(svc.selector)
    if svc.external_name:
        spec["externalName"] = svc.external_name
    spec.update(_common_spec(svc))
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta_to_dict(svc.meta), "spec": spec}


def endpoint_slice_to_dict(es: EndpointSlice) -> dict[str, Any]:
    ports, endpoints = endpoint_slice_body(es)
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": meta_to_dict(es.meta), "addressType": es.address_type,
            "ports": ports, "endpoints": endpoints}


def endpoint_slice_body(es: EndpointSlice) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The slice's ports and endpoints."""
    endpoints = []
    for e in es.endpoints:
        conditions = {k: v for k, v in (("ready", e.ready), ("serving", e.serving),
                                        ("terminating", e.terminating)) if v is not None}
        item: dict[str, Any] = {"addresses": list(e.addresses), "conditions": conditions}
        if e.hostname:
            item["hostname"] = e.hostname
        if e.zone:
            item["zone"] = e.zone
        if e.node_name:
            item["nodeName"] = e.node_name
        endpoints.append(item)
    ports = []
    for p in es.ports:
        port: dict[str, Any] = {"name": p.name, "protocol": p.protocol}
        if p.port is not None:
            port["port"] = p.port
        if p.app_protocol:
            port["appProtocol"] = p.app_protocol
        ports.append(port)
    return ports, endpoints


def condition_to_dict(c: Condition) -> dict[str, Any]:
    out: dict[str, Any] = {"type": c.type, "status": c.status, "reason": c.reason,
                           "message": c.message, "observedGeneration": c.observed_generation}
    if c.last_transition_time:
        out["lastTransitionTime"] = c.last_transition_time
    return out


def derived_cluster_to_dict(dc: DerivedCluster) -> dict[str, Any]:
    """The `/debug/imports?cluster=` body for one consumer cluster."""
    return {"serviceImports": [service_import_to_dict(x) for x in dc.service_imports],
            "services": [service_to_dict(x) for x in dc.services],
            "endpointSlices": [endpoint_slice_to_dict(x) for x in dc.endpoint_slices]}


def export_status_to_dict(derived: DerivedFleet) -> list[dict[str, Any]]:
    """Every ServiceExport's conditions, as `{cluster, namespace, name, conditions}` rows."""
    return [{"cluster": c, "namespace": ns, "name": n,
             "conditions": [condition_to_dict(x) for x in conds]}
            for (c, ns, n), conds in sorted(derived.export_conditions.items())]
