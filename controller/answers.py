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
Anything else (a Service, whose answer carries its allocated ClusterIPs; a field the
API server added or changed; another writer's label) is parsed as before.

`CHECK` (set by the tests) parses every answer as well and fails on any difference, so the
whole live-writer suite holds reuse_answer to the parser.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from fleet.objects import EndpointSlice, KubeObject, Meta, ServiceImport, parse_object

from .render import endpoint_slice_to_dict, service_import_to_dict

Raw = Mapping[str, Any]

CHECK = False  # tests: parse every answer too and compare (see the module docstring)

_META_SECTIONS: tuple[tuple[str, Any], ...] = (("labels", {}), ("annotations", {}), ("ownerReferences", []))


def _meta(md: Raw, candidates: Sequence[KubeObject], rendered: Sequence[Raw]) -> Meta | None:
    """The answer's metadata as a Meta: the labels, annotations and owners of the first
    candidate whose rendering has the same ones, the API server's fields from the answer."""
    for obj, raw in zip(candidates, rendered):
        mine = raw["metadata"]
        if md.get("name") != mine.get("name") or (md.get("namespace") or "default") != mine.get("namespace"):
            return None
        if all((md.get(k) or empty) == (mine.get(k) or empty) for k, empty in _META_SECTIONS):
            meta = obj.meta
            return Meta(name=meta.name, namespace=meta.namespace, uid=str(md.get("uid") or ""),
                        resource_version=str(md.get("resourceVersion") or ""),
                        generation=int(md.get("generation") or 0),
                        creation_timestamp=str(md.get("creationTimestamp") or ""),
                        labels=meta.labels, annotations=meta.annotations,
                        owner_references=meta.owner_references)
    return None


def _first(section: Any, rendered: Sequence[Any]) -> int:
    for i, mine in enumerate(rendered):
        if section == mine:
            return i
    return -1


def _service_import(raw: Raw, candidates: Sequence[ServiceImport]) -> ServiceImport | None:
    rendered = [service_import_to_dict(c) for c in candidates]
    spec = _first(raw.get("spec"), [r["spec"] for r in rendered])
    status = raw.get("status") or {}
    if spec < 0 or type(status) is not dict:
        return None
    listed = status.get("clusters") or []
    clusters = _first(listed, [r["status"]["clusters"] for r in rendered]) if listed else -1
    if listed and clusters < 0:
        return None
    meta = _meta(raw.get("metadata") or {}, candidates, rendered)
    if meta is None:
        return None
    s = candidates[spec]
    return ServiceImport(meta=meta, api_version=str(raw.get("apiVersion")), type=s.type, ports=s.ports, ips=s.ips,
                         ip_families=s.ip_families, session_affinity=s.session_affinity,
                         session_affinity_config=s.session_affinity_config,
                         internal_traffic_policy=s.internal_traffic_policy,
                         traffic_distribution=s.traffic_distribution,
                         clusters=candidates[clusters].clusters if listed else ())


def _endpoint_slice(raw: Raw, candidates: Sequence[EndpointSlice]) -> EndpointSlice | None:
    rendered = [endpoint_slice_to_dict(c) for c in candidates]
    for obj, mine in zip(candidates, rendered):
        if (raw.get("addressType") == mine["addressType"] and raw.get("ports") == mine["ports"]
                and raw.get("endpoints") == mine["endpoints"]):
            meta = _meta(raw.get("metadata") or {}, candidates, rendered)
            if meta is None:
                return None
            return EndpointSlice(meta=meta, address_type=obj.address_type, ports=obj.ports, endpoints=obj.endpoints)
    return None


_REUSE: dict[str, Callable[[Raw, Any], KubeObject | None]] = {
    "ServiceImport": _service_import, "EndpointSlice": _endpoint_slice}


def reuse_answer(kind: str, raw: Raw, candidates: Sequence[KubeObject | None]) -> KubeObject | None:
    """parse_object(raw) made from `candidates` (the write's desired object, the object it
    patched), or None when the answer differs from them anywhere the parser reads (then
    parse it). Only ServiceImports and EndpointSlices; only keys the parser reads."""
    reuse = _REUSE.get(kind)
    present = [c for c in candidates if c is not None and c.kind == kind]
    if reuse is None or not present or raw.get("kind") != kind:
        return None
    obj = reuse(raw, present)
    if CHECK:
        parsed = parse_object(raw)
        assert obj is None or obj == parsed, f"reuse_answer: {obj!r} != parsed {parsed!r}"
    return obj

