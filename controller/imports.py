"""Derive the MCS objects every member cluster should hold, from the fleet's ServiceExports.

Pure: a FleetSnapshot in, a DerivedFleet out (ServiceImports, `amcs-` Services and MCS
EndpointSlices per consumer cluster, plus the conditions for every ServiceExport). The
MCS controller writes or serves these; the DNS responder builds its zone from them. Rules
and wording follow /shared/spec/mcs.md (KEP-1645 and the mcs-api conformance suite).
"""
from __future__ import annotations

import hashlib
import ipaddress
import socket
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any, Collection, Iterable, Mapping

from fleet.objects import (LABEL_MCS_SERVICE_NAME, LABEL_MCS_SOURCE_CLUSTER, LABEL_SERVICE_NAME,
                           MCS_GROUP, Condition, Endpoint, EndpointPort, EndpointSlice, Meta,
                           OwnerReference, Service, ServiceExport, ServiceImport, ServicePort)
from fleet.snapshot import ClusterObjects, Diagnostic, FleetSnapshot

LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "fleetgate"
LABEL_SLICE_MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
SLICE_MANAGED_BY = "controller.fleetgate.io"
ANNOTATION_DERIVED_SERVICE = "multicluster.kubernetes.io/derived-service"
IMPORT_API_VERSION = f"{MCS_GROUP}/v1beta1"

# Conflict reasons in the order the spec lists them; joined with "," when several apply.
CONFLICT_REASONS = ("PortConflict", "TypeConflict", "SessionAffinityConflict",
                    "SessionAffinityConfigConflict", "InternalTrafficPolicyConflict",
                    "TrafficDistributionConflict", "IPFamilyConflict")


@dataclass(frozen=True, slots=True)
class DerivedCluster:
    """What one consumer cluster should hold: imports, their `amcs-` Services and slices."""
    service_imports: tuple[ServiceImport, ...] = ()
    services: tuple[Service, ...] = ()
    endpoint_slices: tuple[EndpointSlice, ...] = ()


@dataclass(frozen=True, slots=True)
class DerivedFleet:
    per_cluster: Mapping[str, DerivedCluster]
    export_conditions: Mapping[tuple[str, str, str], tuple[Condition, ...]]
    diagnostics: tuple[Diagnostic, ...] = ()
    # (namespace, name) -> the ClusterSetIPs allocated for it (empty for Headless)
    clusterset_ips: Mapping[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    # memo for the next derive_imports(previous=...); not part of the result's meaning
    _memo: Mapping[tuple[str, str], Any] = field(default_factory=dict, repr=False, compare=False)
    _alloc_key: Any = field(default=None, repr=False, compare=False)


# --- names -------------------------------------------------------------------------


def _short_hash(text: str, n: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def amcs_name(name: str) -> str:
    """`amcs-<name>`, shortened with a stable hash suffix when it would pass 63 characters."""
    full = f"amcs-{name}"
    if len(full) <= 63:
        return full
    suffix = _short_hash(name)
    return f"{full[:63 - len(suffix) - 1].rstrip('-')}-{suffix}"


def slice_name(service: str, cluster: str, family: str) -> str:
    """Stable name of the slice carrying `cluster`'s endpoints of one address family."""
    full = f"{service}-{cluster}-{family.lower()}"
    if len(full) <= 253:
        return full
    suffix = _short_hash(full)
    return f"{full[:253 - len(suffix) - 1].rstrip('-')}-{suffix}"


def synthetic_uid(kind: str, namespace: str, name: str) -> str:
    """A deterministic uid (UUID-shaped) for objects that only live in memory (file mode)."""
    h = hashlib.sha1(f"fleetgate/{kind}/{namespace}/{name}".encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{h[16:20]}-{h[20:32]}"


# --- ClusterSetIP allocation ----------------------------------------------------------


def _family(ip: str) -> str | None:
    if ":" in ip:
        return "IPv6"
    return "IPv4" if ip.count(".") == 3 else None


def parse_ranges(text: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """`clustersetIPRange`: one CIDR, or two comma-separated (one per family) for dual stack."""
    nets = []
    for part in text.split(","):
        part = part.strip()
        if part:
            nets.append(ipaddress.ip_network(part, strict=False))
    if not nets:
        raise ValueError("clustersetIPRange: no CIDR given")
    return nets


def allocate_ips(names: Iterable[tuple[str, str]],
                 net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> dict[tuple[str, str], str]:
    """Hash each `ns/name` into `net`, linear probing in (slot, name) order.

    Deterministic: the same set of names always gets the same addresses, and a name keeps
    its address when others come and go unless they collide with it in the probe chain.
    """
    first = 1 if net.num_addresses > 2 else 0  # skip network and broadcast addresses
    size = net.num_addresses - 2 * first
    base = int(net.network_address) + first
    wanted = sorted(set(names))
    if len(wanted) > size:
        raise ValueError(f"clustersetIPRange {net}: {len(wanted)} services do not fit")
    v6 = net.version == 6
    slots = sorted((int.from_bytes(hashlib.sha256(f"{ns}/{n}".encode()).digest()[:8], "big") % size,
                    ns, n) for ns, n in wanted)
    taken: set[int] = set()
    out: dict[tuple[str, str], str] = {}
    for slot, ns, n in slots:
        while slot in taken:
            slot = (slot + 1) % size
        taken.add(slot)
        out[(ns, n)] = str(ipaddress.ip_address(base + slot)) if v6 else socket.inet_ntoa((base + slot).to_bytes(4, "big"))
    return out


# --- conditions ---------------------------------------------------------------------


def _cond(ctype: str, status: bool, reason: str, message: str, generation: int) -> Condition:
    return Condition(type=ctype, status="True" if status else "False", reason=reason,
                     message=message, observed_generation=generation)


def _timestamp(text: str) -> datetime | None:
    if not text:
        return None
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)


@dataclass(frozen=True, slots=True)
class _Export:
    cluster: str
    export: ServiceExport
    service: Service
    created: datetime | None

    @property
    def order(self) -> tuple[int, float, str]:
        # Oldest creationTimestamp first; an export without one sorts after dated ones
        # (its age is unknown); ties and unknowns go by cluster name.
        if self.created is None:
            return (1, 0.0, self.cluster)
        return (0, self.created.timestamp(), self.cluster)


def _service_families(svc: Service) -> tuple[str, ...]:
    if svc.ip_families:
        return tuple(svc.ip_families)
    fams = []
    for ip in svc.cluster_ips:
        fam = _family(ip)
        if fam and fam not in fams:
            fams.append(fam)
    return tuple(fams)


def _import_type(svc: Service) -> str:
    return "Headless" if svc.headless else "ClusterSetIP"


def _why(winner: _Export, other: _Export) -> str:
    if winner.created is not None and (other.created is None or winner.created < other.created):
        return f"{winner.cluster}'s export is the oldest"
    return f"{winner.cluster} comes first by cluster name among exports of the same age"


def _port_key(p: ServicePort) -> tuple[str, int]:
    return (p.protocol.upper(), p.port)


def _port_text(p: ServicePort) -> str:
    return f"{p.name or '(unnamed)'} {p.port}/{p.protocol}"


def _merge_ports(exports: list[_Export]) -> tuple[tuple[ServicePort, ...], list[str]]:
    """Union of ports by name, then by (protocol, port); the oldest export's definition wins."""
    by_name: dict[str, ServicePort] = {}
    by_key: dict[tuple[str, int], ServicePort] = {}
    owner: dict[str, str] = {}
    merged: list[ServicePort] = []
    problems: list[str] = []
    base = {(p.name, _port_key(p)) for p in exports[0].service.ports}
    for ex in exports:
        mine = {(p.name, _port_key(p)) for p in ex.service.ports}
        if ex is not exports[0] and mine != base:
            added = sorted(f"{n or '(unnamed)'} {k[1]}/{k[0]}" for n, k in mine - base)
            missing = sorted(f"{n or '(unnamed)'} {k[1]}/{k[0]}" for n, k in base - mine)
            parts = []
            if added:
                parts.append(f"{ex.cluster} adds {', '.join(added)}")
            if missing:
                parts.append(f"{ex.cluster} lacks {', '.join(missing)}")
            problems.append("; ".join(parts))
        for p in ex.service.ports:
            key = _port_key(p)
            have = by_name.get(p.name)
            if have is not None:
                if _port_key(have) != key:
                    problems.append(f"port {p.name!r} is {_port_text(have)} in {owner[p.name]} but "
                                    f"{p.port}/{p.protocol} in {ex.cluster}; {owner[p.name]}'s wins")
                continue
            clash = by_key.get(key)
            if clash is not None:
                problems.append(f"{key[1]}/{key[0]} is named {clash.name or '(unnamed)'!r} in "
                                f"{owner[clash.name]} but {p.name or '(unnamed)'!r} in {ex.cluster}; "
                                f"{owner[clash.name]}'s wins")
                continue
            imported = ServicePort(port=p.port, name=p.name, protocol=p.protocol,
                                   app_protocol=p.app_protocol)
            by_name[p.name] = imported
            by_key[key] = imported
            owner[p.name] = ex.cluster
            merged.append(imported)
    return tuple(merged), problems


@dataclass(frozen=True, slots=True)
class _Resolved:
    """One exported name after conflict resolution."""
    namespace: str
    name: str
    exports: tuple[_Export, ...]   # valid exports, winner first
    type: str
    ports: tuple[ServicePort, ...]
    families: tuple[str, ...]
    conflicts: tuple[str, ...]     # reasons in CONFLICT_REASONS order
    conflict_message: str


def _resolve(namespace: str, name: str, exports: list[_Export]) -> _Resolved:
    exports.sort(key=lambda e: e.order)
    winner = exports[0]
    ws = winner.service
    found: dict[str, list[str]] = {}

    ports, port_problems = _merge_ports(exports)
    if port_problems:
        found["PortConflict"] = [f"spec.ports: {p}" for p in port_problems]

    fields: list[tuple[str, str, Any]] = [
        ("TypeConflict", "spec.type", _import_type),
        ("SessionAffinityConflict", "spec.sessionAffinity", lambda s: s.session_affinity),
        ("SessionAffinityConfigConflict", "spec.sessionAffinityConfig",
         lambda s: dict(s.session_affinity_config) if s.session_affinity_config else None),
        ("InternalTrafficPolicyConflict", "spec.internalTrafficPolicy", lambda s: s.internal_traffic_policy),
        ("TrafficDistributionConflict", "spec.trafficDistribution", lambda s: s.traffic_distribution),
    ]
    for reason, path, get in fields:
        wv = get(ws)
        for ex in exports[1:]:
            ov = get(ex.service)
            if ov != wv:
                found.setdefault(reason, []).append(
                    f"{path}: {winner.cluster}'s {wv!r} wins over {ex.cluster}'s {ov!r} ({_why(winner, ex)})")
    wf = _service_families(ws)
    for ex in exports[1:]:
        of = _service_families(ex.service)
        if wf and of and set(of) != set(wf):
            found.setdefault("IPFamilyConflict", []).append(
                f"spec.ipFamilies: {winner.cluster}'s {list(wf)} wins over {ex.cluster}'s {list(of)} "
                f"({_why(winner, ex)})")
    if not wf:
        for ex in exports[1:]:
            wf = _service_families(ex.service)
            if wf:
                break
    reasons = tuple(r for r in CONFLICT_REASONS if r in found)
    message = "; ".join(m for r in reasons for m in found[r])
    return _Resolved(namespace, name, tuple(exports), _import_type(ws), ports, wf, reasons, message)


def _export_conditions(res: _Resolved, ex: _Export, consumers: int) -> tuple[Condition, ...]:
    gen = ex.export.meta.generation
    valid = _cond("Valid", True, "Valid",
                  f"Service {res.namespace}/{res.name} in {ex.cluster} is exportable "
                  f"(type {ex.service.type}, imported as {_import_type(ex.service)})", gen)
    ready = _cond("Ready", True, "Exported",
                  f"exported as {res.type} ServiceImport {res.namespace}/{res.name} to {consumers} "
                  f"member cluster(s) from {len(res.exports)} exporting cluster(s)", gen)
    if res.conflicts:
        conflict = _cond("Conflict", True, ",".join(res.conflicts), res.conflict_message, gen)
    else:
        conflict = _cond("Conflict", False, "NoConflicts",
                         f"all {len(res.exports)} export(s) of {res.namespace}/{res.name} agree", gen)
    return (valid, ready, conflict)


def _invalid_conditions(ex: ServiceExport, reason: str, message: str) -> tuple[Condition, ...]:
    gen = ex.meta.generation
    return (_cond("Valid", False, reason, message, gen),
            _cond("Ready", False, "Pending", f"not exported: {message}", gen),
            _cond("Conflict", False, "NoConflicts",
                  "not valid, so it takes no part in conflict resolution", gen))


# --- object building ---------------------------------------------------------------


def _managed_labels(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    labels = {LABEL_MANAGED_BY: MANAGED_BY}
    if extra:
        labels.update(extra)
    return labels


def _slices_index(objects: ClusterObjects) -> dict[tuple[str, str], list[EndpointSlice]]:
    index: dict[tuple[str, str], list[EndpointSlice]] = {}
    for (ns, _), s in objects.endpoint_slices.items():
        svc = s.service_name
        if svc is None or s.meta.labels.get(LABEL_SLICE_MANAGED_BY) == SLICE_MANAGED_BY:
            continue  # our own derived slices are never a source
        index.setdefault((ns, svc), []).append(s)
    return index


def _slice_ports(res: _Resolved, ex: _Export, sources: list[EndpointSlice]) -> tuple[EndpointPort, ...]:
    """The import's ports this cluster serves, numbered as its endpoints listen (target ports)."""
    exposed = {(p.name, _port_key(p)): p for p in ex.service.ports}
    by_name: dict[tuple[str, str], int | None] = {}
    for s in sources:
        for ep in s.ports:
            by_name.setdefault((ep.name, ep.protocol.upper()), ep.port)
    out = []
    for p in res.ports:
        sp = exposed.get((p.name, _port_key(p)))
        if sp is None:
            continue
        number = by_name.get((p.name, p.protocol.upper()))
        if number is None:
            number = sp.target_port if isinstance(sp.target_port, int) else p.port
        out.append(EndpointPort(port=number, name=p.name, protocol=p.protocol, app_protocol=p.app_protocol))
    return tuple(out)


def _derived_slices(res: _Resolved, owner: OwnerReference, derived_name: str,
                    sources_by_cluster: Mapping[str, dict[tuple[str, str], list[EndpointSlice]]]
                    ) -> tuple[EndpointSlice, ...]:
    out = []
    for ex in sorted(res.exports, key=lambda e: e.cluster):
        sources = sources_by_cluster[ex.cluster].get((res.namespace, res.name), [])
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
                        labels=MappingProxyType(_managed_labels({
                            LABEL_SERVICE_NAME: derived_name,
                            LABEL_MCS_SERVICE_NAME: res.name,
                            LABEL_MCS_SOURCE_CLUSTER: ex.cluster,
                            LABEL_SLICE_MANAGED_BY: SLICE_MANAGED_BY})),
                        owner_references=(owner,))
            out.append(EndpointSlice(meta=meta, address_type=fam,
                                     ports=_slice_ports(res, ex, fam_sources[fam]),
                                     endpoints=tuple(by_family[fam])))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class _Shared:
    """The objects of one import, identical in every consumer that does not adopt one."""
    service_import: ServiceImport
    service: Service
    slices: tuple[EndpointSlice, ...]


def _build_objects(res: _Resolved, ips: tuple[str, ...], existing: ServiceImport | None,
                   sources_by_cluster: Mapping[str, dict[tuple[str, str], list[EndpointSlice]]]
                   ) -> _Shared:
    ws = res.exports[0].service
    derived = amcs_name(res.name)
    if existing is not None:  # adopt: keep its identity and the user's labels/annotations
        labels = dict(existing.meta.labels)
        labels[LABEL_MANAGED_BY] = MANAGED_BY
        annotations = dict(existing.meta.annotations)
        annotations[ANNOTATION_DERIVED_SERVICE] = derived
        meta = Meta(name=res.name, namespace=res.namespace,
                    uid=existing.meta.uid or synthetic_uid("ServiceImport", res.namespace, res.name),
                    resource_version=existing.meta.resource_version,
                    generation=existing.meta.generation,
                    creation_timestamp=existing.meta.creation_timestamp,
                    labels=MappingProxyType(labels), annotations=MappingProxyType(annotations),
                    owner_references=existing.meta.owner_references)
    else:
        meta = Meta(name=res.name, namespace=res.namespace,
                    uid=synthetic_uid("ServiceImport", res.namespace, res.name),
                    labels=MappingProxyType(_managed_labels()),
                    annotations=MappingProxyType({ANNOTATION_DERIVED_SERVICE: derived}))
    families = tuple(f for f in (_family(ip) for ip in ips) if f) if ips else res.families
    si = ServiceImport(
        meta=meta, api_version=IMPORT_API_VERSION, type=res.type, ports=res.ports, ips=ips,
        ip_families=families, session_affinity=ws.session_affinity,
        session_affinity_config=ws.session_affinity_config,
        internal_traffic_policy=ws.internal_traffic_policy,
        traffic_distribution=ws.traffic_distribution,
        clusters=tuple(sorted(e.cluster for e in res.exports)))
    owner = OwnerReference(api_version=IMPORT_API_VERSION, kind="ServiceImport", name=res.name,
                           uid=meta.uid, controller=False)
    svc = Service(
        meta=Meta(name=derived, namespace=res.namespace,
                  uid=synthetic_uid("Service", res.namespace, derived),
                  labels=MappingProxyType(_managed_labels({LABEL_MCS_SERVICE_NAME: res.name})),
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
    return _Shared(si, svc, _derived_slices(res, owner, derived, sources_by_cluster))


def _allocate(resolved: list[_Resolved], ip_range: str,
              diagnostics: list[Diagnostic]) -> dict[tuple[str, str], tuple[str, ...]]:
    try:
        nets = parse_ranges(ip_range)
    except ValueError as exc:
        diagnostics.append(Diagnostic("fleet.yaml", "clustersetIPRange", str(exc)))
        return {}
    nets_by_family = {("IPv6" if n.version == 6 else "IPv4"): n for n in reversed(nets)}
    first_family = "IPv6" if nets[0].version == 6 else "IPv4"
    wanted: dict[str, list[tuple[str, str]]] = {}
    for r in resolved:
        if r.type != "ClusterSetIP":
            continue
        fams = [f for f in r.families if f in nets_by_family] or [first_family]
        for fam in fams:
            wanted.setdefault(fam, []).append((r.namespace, r.name))
    got: dict[tuple[str, str], list[str]] = {}
    for fam, names in sorted(wanted.items()):
        try:
            allocated = allocate_ips(names, nets_by_family[fam])
        except ValueError as exc:
            diagnostics.append(Diagnostic("fleet.yaml", "clustersetIPRange", str(exc)))
            continue
        for key, ip in allocated.items():
            got.setdefault(key, []).append(ip)
    # order ips as the winner's ipFamilies (first family first)
    out = {}
    for r in resolved:
        ips = got.get((r.namespace, r.name), [])
        if len(ips) > 1:
            order = list(r.families) or [first_family]
            ips.sort(key=lambda ip: order.index(_family(ip) or "") if _family(ip) in order else 9)
        out[(r.namespace, r.name)] = tuple(ips)
    return out


@dataclass(frozen=True, slots=True)
class _Memo:
    """One exported name's inputs and results, kept so the next derivation can reuse them."""
    key: tuple[Any, ...]
    resolved: _Resolved
    n_consumers: int
    conditions: tuple[tuple[tuple[str, str, str], tuple[Condition, ...]], ...]
    ips: tuple[str, ...]
    shared: _Shared | None


def _group_key(exports: list[tuple[str, ServiceExport, Service]],
               sources: Mapping[str, dict[tuple[str, str], list[EndpointSlice]]],
               ns: str, name: str) -> tuple[Any, ...]:
    return tuple((cl, ex, svc, tuple(sources[cl].get((ns, name), ()))) for cl, ex, svc in exports)


def derive_imports(snapshot: FleetSnapshot, *, clusters: Collection[str] | None = None,
                   allocate: bool = True, previous: DerivedFleet | None = None) -> DerivedFleet:
    """Everything the MCS controller should make true, as values.

    `clusters` limits the per-cluster objects to those consumers (the DNS responder needs
    one); export conditions always cover the whole fleet. With `allocate=False` (live mode,
    where each cluster's API server assigns the `amcs-` Service's ClusterIPs) ClusterSetIPs
    come only from existing `amcs-` Services. `previous` (the last result) lets names whose
    inputs are unchanged reuse their objects, so a change at 10,000 services stays cheap;
    the result is the same with or without it.
    """
    memo_in: Mapping[tuple[str, str], _Memo] = previous._memo if previous is not None else {}
    diagnostics: list[Diagnostic] = []
    conditions: dict[tuple[str, str, str], tuple[Condition, ...]] = {}
    groups: dict[tuple[str, str], list[tuple[str, ServiceExport, Service]]] = {}
    sources: dict[str, dict[tuple[str, str], list[EndpointSlice]]] = {}
    for member in snapshot.members:
        objs = member.objects
        sources[member.name] = _slices_index(objs) if objs.service_exports else {}
        services = objs.services
        for (ns, name), export in objs.service_exports.items():
            svc = services.get((ns, name))
            if svc is None or svc.type == "ExternalName":
                key = (member.name, ns, name)
                where = f"ServiceExport/{ns}/{name}"
                if svc is None:
                    msg = (f"spec: no Service {ns}/{name} in {member.name} to export "
                           "(it takes effect when the Service appears)")
                    conditions[key] = _invalid_conditions(export, "NoService", msg)
                else:
                    msg = (f"spec.type: Service {ns}/{name} in {member.name} is ExternalName, "
                           "which cannot be exported")
                    conditions[key] = _invalid_conditions(export, "InvalidServiceType", msg)
                diagnostics.append(Diagnostic(member.name, where, msg, "warning"))
                continue
            groups.setdefault((ns, name), []).append((member.name, export, svc))

    keys: dict[tuple[str, str], tuple[Any, ...]] = {}
    resolved: list[_Resolved] = []
    reused: dict[tuple[str, str], _Memo] = {}
    for gkey in sorted(groups):
        ns, name = gkey
        key = keys[gkey] = _group_key(groups[gkey], sources, ns, name)
        prev = memo_in.get(gkey)
        if prev is not None and prev.key == key:
            reused[gkey] = prev
            resolved.append(prev.resolved)
        else:
            exps = [_Export(cl, ex, svc, _timestamp(ex.meta.creation_timestamp))
                    for cl, ex, svc in groups[gkey]]
            resolved.append(_resolve(ns, name, exps))

    ips: Mapping[tuple[str, str], tuple[str, ...]] = {}
    alloc_key = tuple((r.namespace, r.name, r.families) for r in resolved if r.type == "ClusterSetIP")
    if allocate:
        if previous is not None and previous._alloc_key == (snapshot.clusterset_ip_range, alloc_key):
            ips = previous.clusterset_ips
        else:
            ips = _allocate(resolved, snapshot.clusterset_ip_range, diagnostics)

    consumers = [m for m in snapshot.members if clusters is None or m.name in clusters]
    acc: dict[str, tuple[list[ServiceImport], list[Service], list[EndpointSlice]]] = {
        m.name: ([], [], []) for m in consumers}
    # (name, namespaces, imports, services, accumulator or None), hoisted out of the hot loop
    views = [(m.name, m.objects.namespace_names, m.objects.service_imports, m.objects.services,
              acc.get(m.name)) for m in snapshot.members]
    memo_out: dict[tuple[str, str], _Memo] = {}
    for res in resolved:
        gkey = (res.namespace, res.name)
        prev = reused.get(gkey)
        res_ips = ips.get(gkey, ())
        shared = prev.shared if prev is not None and prev.ips == res_ips else None
        derived_name = amcs_name(res.name)
        n_consumers = 0
        for cname, namespaces, imports_map, services_map, into in views:
            if res.namespace not in namespaces:
                continue
            n_consumers += 1
            if into is None:
                continue
            existing = imports_map.get(gkey)
            derived_svc = services_map.get((res.namespace, derived_name))
            own_ips = res_ips
            if derived_svc is not None:
                if res.type == "ClusterSetIP" and derived_svc.cluster_ips and not derived_svc.headless:
                    own_ips = tuple(derived_svc.cluster_ips)  # live mode: the API server's ClusterIPs
                if derived_svc.meta.labels.get(LABEL_MANAGED_BY) != MANAGED_BY:
                    diagnostics.append(Diagnostic(
                        cname, f"Service/{res.namespace}/{derived_name}",
                        "exists without app.kubernetes.io/managed-by=fleetgate; "
                        "fleetgate will not take it over", "warning"))
            if existing is None and own_ips == res_ips:
                if shared is None:
                    shared = _build_objects(res, res_ips, None, sources)
                objects = shared
            else:
                objects = _build_objects(res, own_ips, existing, sources)
            into[0].append(objects.service_import)
            into[1].append(objects.service)
            into[2].extend(objects.slices)
        if prev is not None and prev.n_consumers == n_consumers:
            conds = prev.conditions
        else:
            conds = tuple(((ex.cluster, res.namespace, res.name), _export_conditions(res, ex, n_consumers))
                          for ex in res.exports)
        conditions.update(conds)
        if prev is not None and prev.conditions is conds and prev.shared is shared:
            memo_out[gkey] = prev
        else:
            memo_out[gkey] = _Memo(keys[gkey], res, n_consumers, conds, res_ips, shared)
    per_cluster: dict[str, DerivedCluster] = {m.name: DerivedCluster(tuple(acc[m.name][0]), tuple(acc[m.name][1]), tuple(acc[m.name][2]))
                   for m in consumers}
    return DerivedFleet(per_cluster=MappingProxyType(per_cluster),
                        export_conditions=MappingProxyType(conditions),
                        diagnostics=tuple(diagnostics),
                        clusterset_ips=MappingProxyType(dict(ips)),
                        _memo=MappingProxyType(memo_out),
                        _alloc_key=(snapshot.clusterset_ip_range, alloc_key))
