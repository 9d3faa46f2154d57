"""Derive the MCS objects every member cluster should hold, from the fleet's ServiceExports.

Pure: a FleetSnapshot in, a DerivedFleet out (ServiceImports, `amcs-` Services and MCS
EndpointSlices per consumer cluster, plus the conditions for every ServiceExport). The
MCS controller writes or serves these; the DNS responder builds its zone from them. Rules
and wording follow /shared/spec/mcs.md (KEP-1645 and the mcs-api conformance suite).
"""
from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass, field, replace
from itertools import compress
from operator import is_not
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


class DerivedCluster:
    """What one consumer cluster should hold: imports, their `amcs-` Services and slices.

    An immutable value. derive_imports makes it from `by_service` (exported name -> its
    objects, in name order) and the flat tuples are made on first use: a reader of
    by_service alone (the DNS responder) does not pay for three 10,000-element tuples on
    every change.
    """

    __slots__ = ("by_service", "_tuples")

    def __init__(self, service_imports: tuple[ServiceImport, ...] = (), services: tuple[Service, ...] = (),
                 endpoint_slices: tuple[EndpointSlice, ...] = (), *,
                 by_service: Mapping[tuple[str, str], "ImportObjects"] | None = None) -> None:
        self.by_service: Mapping[tuple[str, str], ImportObjects] = by_service if by_service is not None else {}
        self._tuples: tuple[tuple[ServiceImport, ...], tuple[Service, ...], tuple[EndpointSlice, ...]] | None = \
            None if by_service is not None else (tuple(service_imports), tuple(services), tuple(endpoint_slices))

    def _flat(self) -> tuple[tuple[ServiceImport, ...], tuple[Service, ...], tuple[EndpointSlice, ...]]:
        if self._tuples is None:
            objs = self.by_service.values()
            self._tuples = (tuple([o.service_import for o in objs]), tuple([o.service for o in objs]),
                            tuple([s for o in objs for s in o.slices]))
        return self._tuples

    @property
    def service_imports(self) -> tuple[ServiceImport, ...]:
        return self._flat()[0]

    @property
    def services(self) -> tuple[Service, ...]:
        return self._flat()[1]

    @property
    def endpoint_slices(self) -> tuple[EndpointSlice, ...]:
        return self._flat()[2]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DerivedCluster):
            return NotImplemented
        return self is other or self._flat() == other._flat()

    def __hash__(self) -> int:
        return hash(self._flat())

    def __repr__(self) -> str:
        imports, services, slices = self._flat()
        return (f"DerivedCluster(service_imports={imports!r}, services={services!r}, "
                f"endpoint_slices={slices!r})")


@dataclass(frozen=True, slots=True)
class DerivedFleet:
    per_cluster: Mapping[str, DerivedCluster]
    export_conditions: Mapping[tuple[str, str, str], tuple[Condition, ...]]
    diagnostics: tuple[Diagnostic, ...] = ()
    # (namespace, name) -> the ClusterSetIPs allocated for it (empty for Headless)
    clusterset_ips: Mapping[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    # working state for the next derive_imports(previous=...); not part of the result's meaning
    _state: Any = field(default=None, repr=False, compare=False)


# --- names -------------------------------------------------------------------------


def _short_hash(text: str, n: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def _fit(full: str, limit: int, hashed: str) -> str:
    """full, or when longer than limit its start and a stable hash of `hashed`."""
    if len(full) <= limit:
        return full
    suffix = _short_hash(hashed)
    return f"{full[:limit - len(suffix) - 1].rstrip('-')}-{suffix}"


def amcs_name(name: str) -> str:
    """`amcs-<name>`, shortened with a stable hash suffix when it would pass 63 characters."""
    return _fit(f"amcs-{name}", 63, name)


def slice_name(service: str, cluster: str, family: str) -> str:
    """Stable name of the slice carrying `cluster`'s endpoints of one address family."""
    full = f"{service}-{cluster}-{family.lower()}"
    return _fit(full, 253, full)


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
        out[(ns, n)] = str(ipaddress.IPv6Address(base + slot) if v6 else ipaddress.IPv4Address(base + slot))
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


def _is_source_slice(s: EndpointSlice) -> str | None:
    """The Service a slice feeds, or None (no service-name label, or one of our derived slices)."""
    svc = s.service_name
    if svc is None or s.meta.labels.get(LABEL_SLICE_MANAGED_BY) == SLICE_MANAGED_BY:
        return None  # our own derived slices are never a source
    return svc


Sources = Mapping[tuple[str, str], Mapping[tuple[str, str], EndpointSlice]]  # (ns, svc) -> slices by key


def _slices_index(slices: Mapping[tuple[str, str], EndpointSlice]) -> dict[tuple[str, str], dict[tuple[str, str], EndpointSlice]]:
    index: dict[tuple[str, str], dict[tuple[str, str], EndpointSlice]] = {}
    for key, s in slices.items():
        svc = _is_source_slice(s)
        if svc is not None:
            index.setdefault((key[0], svc), {})[key] = s
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
class ImportObjects:
    """The objects of one import in one consumer (shared by every consumer that adopts none)."""
    service_import: ServiceImport
    service: Service
    slices: tuple[EndpointSlice, ...]


def _build_objects(res: _Resolved, ips: tuple[str, ...], existing: ServiceImport | None,
                   sources_by_cluster: Mapping[str, Sources]) -> ImportObjects:
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
    return ImportObjects(si, svc, _derived_slices(res, owner, derived, sources_by_cluster))


def _allocate(wants: Mapping[tuple[str, str], tuple[str, ...]], ip_range: str,
              diagnostics: list[Diagnostic]) -> dict[tuple[str, str], tuple[str, ...]] | None:
    """ClusterSetIPs for the ClusterSetIP names in `wants` (name -> its ipFamilies).

    None when the range itself is unusable. Depends only on the set of (name, families),
    so an unchanged set keeps every address without running again.
    """
    try:
        nets = parse_ranges(ip_range)
    except ValueError as exc:
        diagnostics.append(Diagnostic("fleet.yaml", "clustersetIPRange", str(exc)))
        return None
    nets_by_family = {("IPv6" if n.version == 6 else "IPv4"): n for n in reversed(nets)}
    first_family = "IPv6" if nets[0].version == 6 else "IPv4"
    wanted: dict[str, list[tuple[str, str]]] = {}
    for key, families in wants.items():
        fams = [f for f in families if f in nets_by_family] or [first_family]
        for fam in fams:
            wanted.setdefault(fam, []).append(key)
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
    for key, ips in got.items():
        if len(ips) > 1:
            order = list(wants[key]) or [first_family]
            ips.sort(key=lambda ip: order.index(_family(ip) or "") if _family(ip) in order else 9)
        out[key] = tuple(ips)
    return out


# --- incremental derivation ----------------------------------------------------------
#
# derive_imports keeps its working state in the DerivedFleet it returns. Given that
# result back (`previous`), it finds what moved by object identity (sources keep the
# same frozen view for an unchanged object across snapshots), marks the exported names
# those objects feed as dirty, and recomputes only them. A from-scratch derivation is
# the same code run from an empty state with every name dirty, so both give the same
# result by construction (tests/controller/test_imports_incremental.py checks it).

GroupKey = tuple[str, str]  # (namespace, name) of an exported Service / its ServiceImport


@dataclass(frozen=True, slots=True)
class _Inputs:
    """The maps of one member cluster that the derivation reads."""
    exports: Mapping[tuple[str, str], ServiceExport]
    services: Mapping[tuple[str, str], Service]
    slices: Mapping[tuple[str, str], EndpointSlice]
    imports: Mapping[tuple[str, str], ServiceImport]
    namespaces: frozenset[str]


_NO_INPUTS = _Inputs(MappingProxyType({}), MappingProxyType({}), MappingProxyType({}),
                     MappingProxyType({}), frozenset())


def _inputs(objs: ClusterObjects) -> _Inputs:
    return _Inputs(objs.service_exports, objs.services, objs.endpoint_slices, objs.service_imports,
                   objs.namespace_names)


@dataclass(frozen=True, slots=True)
class _Group:
    """Everything one exported name contributes to the result."""
    resolved: _Resolved | None                   # None: no valid export anywhere
    invalid: tuple[tuple[int, Diagnostic], ...]  # (member index, diagnostic) of invalid exports
    invalid_conditions: tuple[tuple[tuple[str, str, str], tuple[Condition, ...]], ...]
    conditions: tuple[tuple[tuple[str, str, str], tuple[Condition, ...]], ...]  # all of its exports
    diagnostics: tuple[Diagnostic, ...]          # about consumers' `amcs-` Services
    want: tuple[str, ...] | None                 # ipFamilies to allocate for, None: no allocation


@dataclass(frozen=True, slots=True)
class _State:
    settings: tuple[Any, ...]
    inputs: tuple[_Inputs, ...]
    sources: tuple[Mapping[GroupKey, Mapping[tuple[str, str], EndpointSlice]], ...]  # per member
    groups: Mapping[GroupKey, _Group]
    wants: Mapping[GroupKey, tuple[str, ...]]
    allocation: Mapping[GroupKey, tuple[str, ...]] | None
    alloc_diagnostics: tuple[Diagnostic, ...]
    ips: Mapping[GroupKey, tuple[str, ...]]      # the result's clusterset_ips
    per_consumer: Mapping[str, Mapping[GroupKey, "ImportObjects"]]  # in sorted GroupKey order
    conditions: Mapping[tuple[str, str, str], tuple[Condition, ...]]
    invalid_diagnostics: Mapping[tuple[int, str, str], Diagnostic]
    group_diagnostics: Mapping[GroupKey, tuple[Diagnostic, ...]]


def changed_keys(old: Mapping[Any, Any], new: Mapping[Any, Any]) -> list[Any]:
    """Keys added, removed or bound to another object (identity, not equality).

    For maps whose keys are derived from their values, like ClusterObjects' indexes and
    DerivedCluster.by_service: the same object at the same position has the same key.
    Sources keep an unchanged object's view and its position, so this is usually one
    pairwise pass in C; when keys were added, removed or reordered it costs one lookup per key.
    """
    if old is new:
        return []
    if len(old) == len(new):
        pairs = list(compress(zip(new.keys(), old.keys()), map(is_not, new.values(), old.values())))
        if all(k1 == k2 for k1, k2 in pairs):
            return [k for k, _ in pairs]
    changed = [k for k, v in new.items() if old.get(k, _MISSING) is not v]
    added = sum(1 for k in changed if k not in old) if changed else 0
    if len(new) - added != len(old):  # something was removed
        changed += [k for k in old if k not in new]
    return changed


_MISSING = object()


def _amcs_owners(ns: str, derived: str, groups: Mapping[GroupKey, Any], exported: set[GroupKey]) -> list[GroupKey]:
    """The exported names whose `amcs-` Service is `ns/derived`."""
    if not derived.startswith("amcs-"):
        return []
    if len(derived) < 63:
        return [(ns, derived[5:])]
    return [g for g in (*groups, *exported) if g[0] == ns and amcs_name(g[1]) == derived]


def _derive_group(gkey: GroupKey, members: tuple[str, ...], inputs: tuple[_Inputs, ...]
                  ) -> tuple[_Resolved | None, tuple[tuple[int, Diagnostic], ...],
                             tuple[tuple[tuple[str, str, str], tuple[Condition, ...]], ...]]:
    """Conflict resolution of one exported name across the members that export it."""
    ns, name = gkey
    exps: list[_Export] = []
    invalid: list[tuple[int, Diagnostic]] = []
    conds: list[tuple[tuple[str, str, str], tuple[Condition, ...]]] = []
    for i, (member, inp) in enumerate(zip(members, inputs)):
        export = inp.exports.get(gkey)
        if export is None:
            continue
        svc = inp.services.get(gkey)
        if svc is None or svc.type == "ExternalName":
            if svc is None:
                msg = (f"spec: no Service {ns}/{name} in {member} to export "
                       "(it takes effect when the Service appears)")
                conds.append(((member, ns, name), _invalid_conditions(export, "NoService", msg)))
            else:
                msg = (f"spec.type: Service {ns}/{name} in {member} is ExternalName, "
                       "which cannot be exported")
                conds.append(((member, ns, name), _invalid_conditions(export, "InvalidServiceType", msg)))
            invalid.append((i, Diagnostic(member, f"ServiceExport/{ns}/{name}", msg, "warning")))
            continue
        exps.append(_Export(member, export, svc, _timestamp(export.meta.creation_timestamp)))
    return (_resolve(ns, name, exps) if exps else None), tuple(invalid), tuple(conds)


def _empty_state(settings: tuple[Any, ...], n_members: int, consumers: Iterable[str]) -> _State:
    return _State(settings, (_NO_INPUTS,) * n_members, ({},) * n_members, {}, {}, None, (), {},
                  {c: {} for c in consumers}, {}, {}, {})


def _find_dirty(state: _State, new_inputs: tuple[_Inputs, ...]
                ) -> tuple[set[GroupKey], list[Mapping[GroupKey, Mapping[tuple[str, str], EndpointSlice]]]]:
    """The exported names fed by an object that moved (by identity), and the slice indexes."""
    dirty: set[GroupKey] = set()
    sources = list(state.sources)
    groups = state.groups
    for i, (old, new) in enumerate(zip(state.inputs, new_inputs)):
        dirty.update(changed_keys(old.exports, new.exports))
        dirty.update(changed_keys(old.imports, new.imports))
        for key in changed_keys(old.services, new.services):
            dirty.add(key)
            dirty.update(_amcs_owners(key[0], key[1], groups, dirty))
        moved = changed_keys(old.slices, new.slices)
        if moved:
            index = dict(sources[i])
            copied: dict[GroupKey, dict[tuple[str, str], EndpointSlice]] = {}
            for key in moved:
                for s, add in ((old.slices.get(key), False), (new.slices.get(key), True)):
                    svc = _is_source_slice(s) if s is not None else None
                    if s is None or svc is None:
                        continue
                    gkey = (key[0], svc)
                    mine = copied.get(gkey)
                    if mine is None:
                        mine = copied[gkey] = dict(index.get(gkey, {}))
                    if add:
                        mine[key] = s
                    else:
                        mine.pop(key, None)
            for gkey, mine in copied.items():
                if mine:
                    index[gkey] = mine
                else:
                    index.pop(gkey, None)
            sources[i] = index
            dirty.update(copied)
        if old.namespaces != new.namespaces:
            spaces = old.namespaces ^ new.namespaces
            dirty.update(g for g in groups if g[0] in spaces)
    return dirty, sources


_View = tuple[str, frozenset[str], Mapping[tuple[str, str], ServiceImport], Mapping[tuple[str, str], Service], bool]


def _consumer_objects(res: _Resolved, res_ips: tuple[str, ...], views: list[_View],
                      by_member: Mapping[str, Sources]
                      ) -> tuple[dict[str, ImportObjects], list[Diagnostic], int]:
    """One exported name's objects in each consumer, diagnostics, and how many members import it."""
    gkey = (res.namespace, res.name)
    objects: dict[str, ImportObjects] = {}
    diags: list[Diagnostic] = []
    shared: ImportObjects | None = None
    derived_name = amcs_name(res.name)
    n_consumers = 0
    for cname, namespaces, imports_map, services_map, is_consumer in views:
        if res.namespace not in namespaces:
            continue
        n_consumers += 1
        if not is_consumer:
            continue
        existing = imports_map.get(gkey)
        derived_svc = services_map.get((res.namespace, derived_name))
        own_ips = res_ips
        if derived_svc is not None:
            if res.type == "ClusterSetIP" and derived_svc.cluster_ips and not derived_svc.headless:
                own_ips = tuple(derived_svc.cluster_ips)  # live mode: the API server's ClusterIPs
            if derived_svc.meta.labels.get(LABEL_MANAGED_BY) != MANAGED_BY:
                diags.append(Diagnostic(
                    cname, f"Service/{res.namespace}/{derived_name}",
                    "exists without app.kubernetes.io/managed-by=fleetgate; "
                    "fleetgate will not take it over", "warning"))
        if existing is None and own_ips == res_ips:
            if shared is None:
                shared = _build_objects(res, res_ips, None, by_member)
            objects[cname] = shared
        else:
            objects[cname] = _build_objects(res, own_ips, existing, by_member)
    return objects, diags, n_consumers


class _Step:
    """The maps of the next _State, copied from the last one on first write."""

    def __init__(self, state: _State, consumers: tuple[str, ...]) -> None:
        self.state = state
        self.groups = dict(state.groups)
        self.ips = dict(state.ips)
        self.conditions = dict(state.conditions)
        self.invalid_diagnostics = dict(state.invalid_diagnostics)
        self.group_diagnostics = dict(state.group_diagnostics)
        self.per_consumer: dict[str, Mapping[GroupKey, ImportObjects]] = {
            c: state.per_consumer[c] for c in consumers}
        self.copied: dict[str, dict[GroupKey, ImportObjects]] = {}  # consumers written to
        self.added: set[str] = set()  # consumers with a new name: their order needs sorting

    def forget(self, gkey: GroupKey, old: _Group) -> None:
        for key, _ in old.conditions:
            self.conditions.pop(key, None)
        for i, _ in old.invalid:
            self.invalid_diagnostics.pop((i, *gkey), None)
        self.group_diagnostics.pop(gkey, None)

    def place(self, gkey: GroupKey, objects: Mapping[str, ImportObjects]) -> None:
        """Set (or remove, when absent from `objects`) one name's objects in every consumer."""
        for cname, mine in self.per_consumer.items():
            now = objects.get(cname)
            had = gkey in mine
            if not had and now is None:
                continue
            writable = self.copied.get(cname)
            if writable is None:
                writable = self.copied[cname] = dict(mine)
                self.per_consumer[cname] = writable
            if now is None:
                del writable[gkey]
            else:
                writable[gkey] = now
                if not had:
                    self.added.add(cname)

    def sorted_consumers(self) -> dict[str, Mapping[GroupKey, ImportObjects]]:
        for cname in self.added:
            mine = self.per_consumer[cname]
            self.per_consumer[cname] = {k: mine[k] for k in sorted(mine)}
        return self.per_consumer


def derive_imports(snapshot: FleetSnapshot, *, clusters: Collection[str] | None = None,
                   allocate: bool = True, previous: DerivedFleet | None = None) -> DerivedFleet:
    """Everything the MCS controller should make true, as values.

    `clusters` limits the per-cluster objects to those consumers (the DNS responder needs
    one); export conditions always cover the whole fleet. With `allocate=False` (live mode,
    where each cluster's API server assigns the `amcs-` Service's ClusterIPs) ClusterSetIPs
    come only from existing `amcs-` Services. `previous` (the last result) makes the cost
    proportional to what changed (objects compared by identity), so a change at 10,000
    services stays cheap; the result is the same with or without it.
    """
    members: tuple[str, ...] = tuple(m.name for m in snapshot.members)
    consumers: tuple[str, ...] = tuple(m.name for m in snapshot.members if clusters is None or m.name in clusters)
    settings = (members, consumers, allocate, snapshot.clusterset_ip_range if allocate else None)
    state: _State | None = previous._state if previous is not None else None
    if state is None or state.settings != settings:
        state = _empty_state(settings, len(members), consumers)
        previous = None
    new_inputs = tuple(_inputs(m.objects) for m in snapshot.members)

    # 1. what moved, by identity: the exported names it feeds are dirty
    dirty, sources = _find_dirty(state, new_inputs)
    by_member: dict[str, Sources] = dict(zip(members, sources))

    # 2. conflict resolution of the dirty names
    wants = dict(state.wants)
    resolved: dict[GroupKey, tuple[_Resolved | None, tuple[tuple[int, Diagnostic], ...], tuple[Any, ...]]] = {}
    for gkey in dirty:
        res, invalid, conds = resolved[gkey] = _derive_group(gkey, members, new_inputs)
        if res is not None and res.type == "ClusterSetIP":
            wants[gkey] = res.families
        else:
            wants.pop(gkey, None)

    # 3. ClusterSetIPs: reallocated only when the set of ClusterSetIP names changes
    allocation, alloc_diagnostics = state.allocation, state.alloc_diagnostics
    redo = set(dirty)
    if allocate and (previous is None or wants != state.wants):
        alloc_list: list[Diagnostic] = []
        allocation = _allocate(wants, snapshot.clusterset_ip_range, alloc_list)
        alloc_diagnostics = tuple(alloc_list)
        old_alloc, new_alloc = state.allocation or {}, allocation or {}
        redo.update(g for g in state.groups if old_alloc.get(g, ()) != new_alloc.get(g, ()))
    if previous is not None and not redo:
        new_state = replace(state, inputs=new_inputs, sources=tuple(sources))
        return replace(previous, _state=new_state)
    allocated = allocate and allocation is not None

    # 4. per dirty name: objects in every consumer, conditions, diagnostics
    step = _Step(state, consumers)
    views: list[_View] = [(m.name, m.objects.namespace_names, m.objects.service_imports, m.objects.services,
                           m.name in step.per_consumer) for m in snapshot.members]
    for gkey in redo:
        old_group = step.groups.get(gkey)
        if gkey in resolved:
            res, invalid, invalid_conds = resolved[gkey]
        elif old_group is not None:  # only its ClusterSetIPs moved
            res, invalid, invalid_conds = old_group.resolved, old_group.invalid, old_group.invalid_conditions
        else:
            continue
        if old_group is not None:
            step.forget(gkey, old_group)
        for i, diag in invalid:
            step.invalid_diagnostics[(i, *gkey)] = diag
        objects: dict[str, ImportObjects] = {}
        diags: list[Diagnostic] = []
        conds = invalid_conds
        if res is None:
            step.ips.pop(gkey, None)
        else:
            res_ips = (allocation or {}).get(gkey, ())
            if allocated:
                step.ips[gkey] = res_ips
            objects, diags, n_consumers = _consumer_objects(res, res_ips, views, by_member)
            conds = conds + tuple(((ex.cluster, res.namespace, res.name),
                                   _export_conditions(res, ex, n_consumers)) for ex in res.exports)
        step.place(gkey, objects)
        step.conditions.update(conds)
        if diags:
            step.group_diagnostics[gkey] = tuple(diags)
        if res is None and not invalid:
            step.groups.pop(gkey, None)
        else:
            step.groups[gkey] = _Group(res, invalid, invalid_conds, conds, tuple(diags), wants.get(gkey))

    per_consumer = step.sorted_consumers()
    new_state = _State(settings, new_inputs, tuple(sources), step.groups, wants, allocation, alloc_diagnostics,
                       step.ips if allocated else {}, per_consumer, step.conditions,
                       step.invalid_diagnostics, step.group_diagnostics)
    old_per_cluster = previous.per_cluster if previous is not None else {}
    per_cluster: dict[str, DerivedCluster] = {}
    for cname in consumers:
        before = old_per_cluster.get(cname)
        if before is not None and cname not in step.copied:
            per_cluster[cname] = before
        else:
            per_cluster[cname] = DerivedCluster(by_service=MappingProxyType(per_consumer[cname]))
    invalid_diags, group_diags = step.invalid_diagnostics, step.group_diagnostics
    diagnostics = (tuple(invalid_diags[k] for k in sorted(invalid_diags)) + alloc_diagnostics
                   + tuple(d for k in sorted(group_diags) for d in group_diags[k]))
    return DerivedFleet(per_cluster=MappingProxyType(per_cluster),
                        export_conditions=MappingProxyType(step.conditions),
                        diagnostics=diagnostics,
                        clusterset_ips=MappingProxyType(new_state.ips),
                        _state=new_state)
