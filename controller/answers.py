"""The object an API server's answer to our write describes, without parsing the answer.

Every write's answer goes into the source's store at once (controller/writer.py _learn). A
cold start at 10,000 services is 160,000 answers, and parsing each (fleet/objects.py: checks,
interning, one frozen view per port and endpoint) was ~30 µs of the controller's time. But
an answer mostly repeats an object we hold already: the desired object the write was
planned from (a create, a spec patch) or the object it patched (a status patch). So the
answer's sections are compared, as plain JSON values (one C-level `==` each), with those
objects rendered the way we send them (controller/render.py, whose output parses back into
an equal view); where every section a parser reads equals one of them, the view is made from
theirs, with the answer's own uid, resourceVersion, generation and creationTimestamp.
A Service's answer carries what the API server allocates and defaults (its ClusterIPs, ip
families, traffic policy): those few spec fields go through the parser alone. Anything
else (a field the API server added or changed, another writer's label) is parsed as before.

`CHECK` (set by the tests) parses every answer as well and fails on any difference, so the
whole live-writer suite holds reuse_answer to the parser.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from fleet.objects import EndpointSlice, KubeObject, Meta, ObjectError, Service, ServiceImport, parse_object, parse_service

from .render import (endpoint_slice_body, owner_references_to_list, service_import_clusters, service_import_spec,
                     service_to_dict)

Raw = Mapping[str, Any]

CHECK = False  # tests: parse every answer too and compare (see the module docstring)

_NOTHING: Mapping[str, Any] = {}


def _meta(md: Raw, candidates: Sequence[KubeObject]) -> Meta | None:
    """The answer's metadata as a Meta: the labels, annotations and owners of the first
    candidate that has the same ones (compared as values with the answer's), the API
    server's fields from the answer. Labels and annotations are read-only maps of strings
    (fleet.rawfields.shared_map), which compare equal to the dicts a parser reads them from."""
    first = candidates[0].meta
    if md.get("name") != first.name or (md.get("namespace") or "default") != first.namespace:
        return None
    labels, annotations = md.get("labels") or _NOTHING, md.get("annotations") or _NOTHING
    owners = md.get("ownerReferences") or []
    for obj in candidates:
        meta = obj.meta
        if labels == meta.labels and annotations == meta.annotations \
                and owners == owner_references_to_list(meta.owner_references):
            return Meta(name=meta.name, namespace=meta.namespace, uid=str(md.get("uid") or ""),
                        resource_version=str(md.get("resourceVersion") or ""),
                        generation=int(md.get("generation") or 0),
                        creation_timestamp=str(md.get("creationTimestamp") or ""),
                        labels=meta.labels, annotations=meta.annotations,
                        owner_references=meta.owner_references)
    return None


def _first(section: Any, candidates: Sequence[Any], render: Callable[[Any], Any]) -> Any:
    """The first candidate whose rendering of a section equals the answer's (rendered only
    as far as needed: the desired object, first, usually matches), or None."""
    for c in candidates:
        if section == render(c):
            return c
    return None


def _service_import(raw: Raw, candidates: Sequence[ServiceImport]) -> ServiceImport | None:
    s = _first(raw.get("spec"), candidates, service_import_spec)
    status = raw.get("status") or {}
    if s is None or type(status) is not dict:
        return None
    listed = status.get("clusters") or []
    clustered = _first(listed, candidates, service_import_clusters) if listed else None
    if listed and clustered is None:
        return None
    meta = _meta(raw.get("metadata") or {}, candidates)
    if meta is None:
        return None
    return ServiceImport(meta=meta, api_version=str(raw.get("apiVersion")), type=s.type, ports=s.ports, ips=s.ips,
                         ip_families=s.ip_families, session_affinity=s.session_affinity,
                         session_affinity_config=s.session_affinity_config,
                         internal_traffic_policy=s.internal_traffic_policy,
                         traffic_distribution=s.traffic_distribution,
                         clusters=clustered.clusters if clustered is not None else ())


def _endpoint_slice(raw: Raw, candidates: Sequence[EndpointSlice]) -> EndpointSlice | None:
    body = (raw.get("ports"), raw.get("endpoints"))
    for obj in candidates:
        if raw.get("addressType") == obj.address_type and body == endpoint_slice_body(obj):
            meta = _meta(raw.get("metadata") or {}, candidates)
            if meta is None:
                return None
            return EndpointSlice(meta=meta, address_type=obj.address_type, ports=obj.ports, endpoints=obj.endpoints)
    return None


# what an API server fills in or allocates in a Service's spec (the rest we send is kept)
_SERVER_SPEC = frozenset(("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy", "internalTrafficPolicy"))


def _ours(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k not in _SERVER_SPEC}


def _service(raw: Raw, candidates: Sequence[Service]) -> Service | None:
    """A Service's answer: the spec fields the API server fills in (its ClusterIPs, ip
    families, traffic policy) are parsed by the parser itself, alone; the rest must be a
    candidate's."""
    spec = raw.get("spec")
    if type(spec) is not dict:
        return None
    rest = _ours(spec)
    s = _first(rest, candidates, lambda c: _ours(service_to_dict(c)["spec"]))
    if s is None:
        return None
    meta = _meta(raw.get("metadata") or {}, candidates)
    if meta is None:
        return None
    try:
        server = parse_service({"metadata": {"name": meta.name, "namespace": meta.namespace},
                                "spec": {k: v for k, v in spec.items() if k in _SERVER_SPEC}})
    except ObjectError:
        return None
    return Service(meta=meta, type=s.type, cluster_ip=server.cluster_ip, cluster_ips=server.cluster_ips,
                   ip_families=server.ip_families, ports=s.ports, selector=s.selector,
                   session_affinity=s.session_affinity, session_affinity_config=s.session_affinity_config,
                   internal_traffic_policy=server.internal_traffic_policy,
                   traffic_distribution=s.traffic_distribution, external_name=s.external_name)


_REUSE: dict[str, Callable[[Raw, Any], KubeObject | None]] = {
    "ServiceImport": _service_import, "EndpointSlice": _endpoint_slice, "Service": _service}


def reuse_answer(kind: str, raw: Raw, candidates: Sequence[KubeObject | None]) -> KubeObject | None:
    """parse_object(raw) made from `candidates` (the write's desired object, the object it
    patched), or None when the answer differs from them anywhere the parser reads (then
    parse it). ServiceImports, Services and EndpointSlices; keys the parser ignores are ignored."""
    reuse = _REUSE.get(kind)
    present = [c for c in candidates if c is not None and c.kind == kind]
    if reuse is None or not present or raw.get("kind") != kind:
        return None
    obj = reuse(raw, present)
    if CHECK and obj is not None:
        parsed = parse_object(raw)
        assert obj == parsed, f"reuse_answer: {obj!r} != parsed {parsed!r}"
    return obj

