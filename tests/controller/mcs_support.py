"""Builders for small fleets in code, named by scenario, shared by the MCS and DNS tests."""
from __future__ import annotations

from typing import Any, Iterable

from fleet.objects import KubeObject, parse_object
from fleet.snapshot import ClusterName, ClusterObjects, FleetSnapshot, MemberCluster


def service(name: str, ns: str = "demo", *, ports: Iterable[tuple[str, int, str]] = (("http", 80, "TCP"),),
            headless: bool = False, stype: str = "ClusterIP", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"type": stype, "ports": [{"name": n, "port": p, "protocol": proto}
                                                    for n, p, proto in ports]}
    if headless:
        body["clusterIP"] = "None"
    if stype == "ExternalName":
        body = {"type": stype, "externalName": "example.com"}
    body.update(spec)
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns}, "spec": body}


def export(name: str, ns: str = "demo", *, created: str = "", generation: int = 1) -> dict[str, Any]:
    md: dict[str, Any] = {"name": name, "namespace": ns, "generation": generation}
    if created:
        md["creationTimestamp"] = created
    return {"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceExport", "metadata": md}


def endpoint(ip: str, *, hostname: str | None = None, ready: bool | None = True, zone: str | None = None,
             node: str | None = None, serving: bool | None = None,
             terminating: bool | None = None) -> dict[str, Any]:
    conditions = {k: v for k, v in (("ready", ready), ("serving", serving), ("terminating", terminating))
                  if v is not None}
    ep: dict[str, Any] = {"addresses": [ip], "conditions": conditions}
    if hostname:
        ep["hostname"] = hostname
    if zone:
        ep["zone"] = zone
    if node:
        ep["nodeName"] = node
    return ep


def endpoint_slice(service_name: str, endpoints: list[dict[str, Any]], ns: str = "demo", *,
                   name: str | None = None, family: str = "IPv4",
                   ports: Iterable[tuple[str, int, str]] = (("http", 8080, "TCP"),)) -> dict[str, Any]:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name or f"{service_name}-{family.lower()}", "namespace": ns,
                         "labels": {"kubernetes.io/service-name": service_name}},
            "addressType": family,
            "ports": [{"name": n, "port": p, "protocol": proto} for n, p, proto in ports],
            "endpoints": endpoints}


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def cluster(*raws: dict[str, Any]) -> ClusterObjects:
    objs: list[KubeObject] = [parse_object(r) for r in raws]
    return ClusterObjects.build(objs)


def fleet(members: dict[str, ClusterObjects], *, version: int = 1, zone: str = "clusterset.local",
          ip_range: str = "242.0.0.0/16") -> FleetSnapshot:
    return FleetSnapshot(hub=ClusterObjects(),
                         members=tuple(MemberCluster(ClusterName(n), None, objs) for n, objs in members.items()),
                         zone=zone, clusterset_ip_range=ip_range, version=version)
