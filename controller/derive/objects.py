"""The ServiceImport, `amcs-` Service and EndpointSlices of one resolved name in one consumer."""
from __future__ import annotations

from dataclasses import replace
from typing import Mapping

from fleet.objects import (LABEL_MCS_SERVICE_NAME, LABEL_MCS_SOURCE_CLUSTER, LABEL_SERVICE_NAME, Endpoint,
                           EndpointPort, EndpointSlice, Meta, OwnerReference, Service, ServiceImport,
                           ServicePort)
from fleet.rawfields import shared_map

from ..derived import ImportObjects
from .conflicts import Resolved, Export, port_key
from .ipalloc import family_of
from .names import (ANNOTATION_DERIVED_SERVICE, IMPORT_API_VERSION, LABEL_MANAGED_BY, LABEL_SLICE_MANAGED_BY,
                    MANAGED_BY, SLICE_MANAGED_BY, amcs_name, managed_labels, slice_name, synthetic_uid)


def source_slice_service(s: EndpointSlice) -> str | None:
    """The Service a slice feeds, or None (no service-name label, or one of our derived slices)."""
    svc = s.service_name
    if svc is None or s.meta.labels.get(LABEL_SLICE_MANAGED_BY) == SLICE_MANAGED_BY:
        return None  # our own derived slices are never a source
    return svc


Sources = Mapping[tuple[str, str], Mapping[tuple[str, str], EndpointSlice]]  # (ns, svc) -> slices by key


def _slice_ports(res: Resolved, ex: Export, sources: list[EndpointSlice]) -> tuple[EndpointPort, ...]:
    """The import's ports this cluster serves, numbered as its endpoints listen (target ports)."""
    exposed = {(p.name, port_key(p)): p for p in ex.service.ports}
    by_name: dict[tuple[str, str], int | None] = {}
    for s in sources:
        for ep in s.ports:
            by_name.setdefault((ep.name, ep.protocol.upper()), ep.port)
    out = []
    for p in res.ports:
        sp = exposed.get((p.name, port_key(p)))
        if sp is None:
            continue
        number = by_name.get((p.name, p.protocol.upper()))
        if number is None:
            number = sp.target_port if isinstance(sp.target_port, int) else p.port
        out.append(EndpointPort(port=number, name=p.name, protocol=p.protocol, app_protocol=p.app_protocol))
    return tuple(out)


def _derived_slices(res: Resolved, owner: OwnerReference, derived_name: str,
                    sources_by_cluster: Mapping[str, Sources]) -> tuple[EndpointSlice, ...]:
    out = []
    for ex in sorted(res.exports, key=lambda e: e.cluster):
        sources = sources_by_cluster[ex.cluster].get((res.namespace, res.name), {}).values()
        by_family: dict[str, list[Endpoint]] = {}
        fam_sources: dict[str, list[EndpointSlice]] = {}
        for s in sorted(sources, key=lambda s: s.meta.name):
            if s.address_type not in ("IPv4", "IPv6"):
                continue
            eps = by_family.setdefault(s.address_type, [])
            fam_sources.setdefault(s.address_type, []).append(s)
            eps.extend(s.endpoints)
        for fam in sorted(by_family):
            name = slice_name(derived_name, ex.cluster, fam)
            meta = Meta(name=name, namespace=res.namespace,
                        uid=synthetic_uid("EndpointSlice", res.namespace, name),
                        labels=shared_map(managed_labels({
                            LABEL_SERVICE_NAME: derived_name,
                            LABEL_MCS_SERVICE_NAME: res.name,
                            LABEL_MCS_SOURCE_CLUSTER: ex.cluster,
                            LABEL_SLICE_MANAGED_BY: SLICE_MANAGED_BY})),
                        owner_references=(owner,))
            out.append(EndpointSlice(meta=meta, address_type=fam,
                                     ports=_slice_ports(res, ex, fam_sources[fam]),
                                     endpoints=tuple(by_family[fam])))
    return tuple(out)


def _build_import(res: Resolved, ips: tuple[str, ...], existing: ServiceImport | None,
                  adopt: bool) -> ServiceImport:
    """The ServiceImport of build_objects (see there)."""
    ws = res.exports[0].service
    derived = amcs_name(res.name)
    if existing is not None:  # adopt: keep its identity (uid) and the user's labels/annotations;
        # not its resourceVersion, generation or creationTimestamp, which are the API server's
        # and move with every write (derive/incremental.py _same_import_input relies on it)
        labels = dict(existing.meta.labels)
        if adopt:
            labels[LABEL_MANAGED_BY] = MANAGED_BY
        annotations = dict(existing.meta.annotations)
        annotations[ANNOTATION_DERIVED_SERVICE] = derived
        meta = Meta(name=res.name, namespace=res.namespace,
                    uid=existing.meta.uid or synthetic_uid("ServiceImport", res.namespace, res.name),
                    labels=shared_map(labels), annotations=shared_map(annotations),
                    owner_references=existing.meta.owner_references)
    else:
        meta = Meta(name=res.name, namespace=res.namespace,
                    uid=synthetic_uid("ServiceImport", res.namespace, res.name),
                    labels=shared_map(managed_labels()),
                    annotations=shared_map({ANNOTATION_DERIVED_SERVICE: derived}))
    families = tuple(f for f in (family_of(ip) for ip in ips) if f) if ips else res.families
    return ServiceImport(
        meta=meta, api_version=IMPORT_API_VERSION, type=res.type, ports=res.ports, ips=ips,
        ip_families=families, session_affinity=ws.session_affinity,
        session_affinity_config=ws.session_affinity_config,
        internal_traffic_policy=ws.internal_traffic_policy,
        traffic_distribution=ws.traffic_distribution,
        clusters=tuple(sorted(e.cluster for e in res.exports)))


def build_objects(res: Resolved, ips: tuple[str, ...], existing: ServiceImport | None,
                   sources_by_cluster: Mapping[str, Sources], *, adopt: bool = True) -> ImportObjects:
    """One import's objects in one consumer. An `existing` user-created ServiceImport keeps
    its identity, labels and annotations; with `adopt` (importMode all) it also takes our
    managed-by label, without it (importMode explicit) it stays the user's."""
    derived = amcs_name(res.name)
    si = _build_import(res, ips, existing, adopt)
    owner = OwnerReference(api_version=IMPORT_API_VERSION, kind="ServiceImport", name=res.name,
                           uid=si.meta.uid, controller=False)
    return ImportObjects(si, _build_service(res, ips, si.ip_families, owner),
                         _derived_slices(res, owner, derived, sources_by_cluster))


def _build_service(res: Resolved, ips: tuple[str, ...], families: tuple[str, ...], owner: OwnerReference) -> Service:
    """The `amcs-` Service of build_objects (see there)."""
    ws = res.exports[0].service
    derived = amcs_name(res.name)
    return Service(
        meta=Meta(name=derived, namespace=res.namespace,
                  uid=synthetic_uid("Service", res.namespace, derived),
                  labels=shared_map(managed_labels({LABEL_MCS_SERVICE_NAME: res.name})),
                  owner_references=(owner,)),
        type="ClusterIP",
        cluster_ip="None" if res.type == "Headless" else (ips[0] if ips else None),
        cluster_ips=() if res.type == "Headless" else ips,
        ip_families=families,
        ports=tuple(ServicePort(port=p.port, name=p.name, protocol=p.protocol, target_port=p.port,
                                app_protocol=p.app_protocol) for p in res.ports),
        selector=None, session_affinity=ws.session_affinity,
        session_affinity_config=ws.session_affinity_config,
        internal_traffic_policy=ws.internal_traffic_policy,
        traffic_distribution=ws.traffic_distribution)


def with_import(objs: ImportObjects, res: Resolved, ips: tuple[str, ...], existing: ServiceImport | None,
                *, adopt: bool = True, ips_moved: bool = False) -> ImportObjects:
    """`objs` (built from the same res, adopt and sources, and unless `ips_moved` the same
    ips) with the ServiceImport made from this `existing` one and these ips: what
    build_objects gives when only the consumer's import moved (the answers to our writes of
    it: the first one gives it its uid) or its `amcs-` Service's ClusterIPs did (the answer
    to our create of it). The `amcs-` Service and slices depend on the import only through
    its uid (their owner), the Service on the ips too: those fields are replaced, the rest
    (ports, endpoints, labels) is kept."""
    si = _build_import(res, ips, existing, adopt)
    svc, slices = objs.service, objs.slices
    if si.meta.uid != objs.service_import.meta.uid:
        owners = (OwnerReference(api_version=IMPORT_API_VERSION, kind="ServiceImport", name=res.name,
                                 uid=si.meta.uid, controller=False),)
        svc = replace(svc, meta=replace(svc.meta, owner_references=owners))
        slices = tuple(replace(s, meta=replace(s.meta, owner_references=owners)) for s in slices)
    if ips_moved:  # as _build_service sets them
        headless = res.type == "Headless"
        svc = replace(svc, cluster_ip="None" if headless else (ips[0] if ips else None),
                      cluster_ips=() if headless else ips, ip_families=si.ip_families)
    return ImportObjects(si, svc, slices)


def with_sources(objs: ImportObjects, res: Resolved, sources_by_cluster: Mapping[str, Sources]) -> ImportObjects:
    """`objs` with its slices made from these sources: what build_objects gives when only the
    source slices moved (the ServiceImport and `amcs-` Service are kept, and their owner)."""
    svc_meta = objs.service.meta
    return ImportObjects(objs.service_import, objs.service,
                         _derived_slices(res, svc_meta.owner_references[0], svc_meta.name, sources_by_cluster))
