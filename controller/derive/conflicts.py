"""Conflict resolution of one exported name across its exporting clusters, and the
ServiceExport conditions that say the outcome (mcs.md: the oldest export wins)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from fleet.objects import Condition, Service, ServiceExport, ServicePort

from .ipalloc import family_of

# Conflict reasons in the order the spec lists them; joined with "," when several apply.
CONFLICT_REASONS = ("PortConflict", "TypeConflict", "SessionAffinityConflict",
                    "SessionAffinityConfigConflict", "InternalTrafficPolicyConflict",
                    "TrafficDistributionConflict", "IPFamilyConflict")


def condition(ctype: str, status: bool, reason: str, message: str, generation: int) -> Condition:
    return Condition(type=ctype, status="True" if status else "False", reason=reason,
                     message=message, observed_generation=generation)


def parse_timestamp(text: str) -> datetime | None:
    if not text:
        return None
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)


@dataclass(frozen=True, slots=True)
class Export:
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


def service_families(svc: Service) -> tuple[str, ...]:
    if svc.ip_families:
        return tuple(svc.ip_families)
    fams = []
    for ip in svc.cluster_ips:
        fam = family_of(ip)
        if fam and fam not in fams:
            fams.append(fam)
    return tuple(fams)


def import_type(svc: Service) -> str:
    return "Headless" if svc.headless else "ClusterSetIP"


def _why(winner: Export, other: Export) -> str:
    if winner.created is not None and (other.created is None or winner.created < other.created):
        return f"{winner.cluster}'s export is the oldest"
    return f"{winner.cluster} comes first by cluster name among exports of the same age"


def port_key(p: ServicePort) -> tuple[str, int]:
    return (p.protocol.upper(), p.port)


def _port_text(p: ServicePort) -> str:
    return f"{p.name or '(unnamed)'} {p.port}/{p.protocol}"


def _merge_ports(exports: list[Export]) -> tuple[tuple[ServicePort, ...], list[str]]:
    """Union of ports by name, then by (protocol, port); the oldest export's definition wins."""
    by_name: dict[str, ServicePort] = {}
    by_key: dict[tuple[str, int], ServicePort] = {}
    owner: dict[str, str] = {}
    merged: list[ServicePort] = []
    problems: list[str] = []
    base = {(p.name, port_key(p)) for p in exports[0].service.ports}
    for ex in exports:
        mine = {(p.name, port_key(p)) for p in ex.service.ports}
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
            key = port_key(p)
            have = by_name.get(p.name)
            if have is not None:
                if port_key(have) != key:
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
class Resolved:
    """One exported name after conflict resolution."""
    namespace: str
    name: str
    exports: tuple[Export, ...]   # valid exports, winner first
    type: str
    ports: tuple[ServicePort, ...]
    families: tuple[str, ...]
    conflicts: tuple[str, ...]     # reasons in CONFLICT_REASONS order
    conflict_message: str


def resolve(namespace: str, name: str, exports: list[Export]) -> Resolved:
    exports.sort(key=lambda e: e.order)
    winner = exports[0]
    ws = winner.service
    found: dict[str, list[str]] = {}

    ports, port_problems = _merge_ports(exports)
    if port_problems:
        found["PortConflict"] = [f"spec.ports: {p}" for p in port_problems]

    fields: list[tuple[str, str, Any]] = [
        ("TypeConflict", "spec.type", import_type),
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
    wf = service_families(ws)
    for ex in exports[1:]:
        of = service_families(ex.service)
        if wf and of and set(of) != set(wf):
            found.setdefault("IPFamilyConflict", []).append(
                f"spec.ipFamilies: {winner.cluster}'s {list(wf)} wins over {ex.cluster}'s {list(of)} "
                f"({_why(winner, ex)})")
    if not wf:
        for ex in exports[1:]:
            wf = service_families(ex.service)
            if wf:
                break
    reasons = tuple(r for r in CONFLICT_REASONS if r in found)
    message = "; ".join(m for r in reasons for m in found[r])
    return Resolved(namespace, name, tuple(exports), import_type(ws), ports, wf, reasons, message)


def export_conditions(res: Resolved, ex: Export, consumers: int) -> tuple[Condition, ...]:
    gen = ex.export.meta.generation
    valid = condition("Valid", True, "Valid",
                  f"Service {res.namespace}/{res.name} in {ex.cluster} is exportable "
                  f"(type {ex.service.type}, imported as {import_type(ex.service)})", gen)
    ready = condition("Ready", True, "Exported",
                  f"exported as {res.type} ServiceImport {res.namespace}/{res.name} to {consumers} "
                  f"member cluster(s) from {len(res.exports)} exporting cluster(s)", gen)
    if res.conflicts:
        conflict = condition("Conflict", True, ",".join(res.conflicts), res.conflict_message, gen)
    else:
        conflict = condition("Conflict", False, "NoConflicts",
                         f"all {len(res.exports)} export(s) of {res.namespace}/{res.name} agree", gen)
    return (valid, ready, conflict)


def invalid_conditions(ex: ServiceExport, reason: str, message: str) -> tuple[Condition, ...]:
    gen = ex.meta.generation
    return (condition("Valid", False, reason, message, gen),
            condition("Ready", False, "Pending", f"not exported: {message}", gen),
            condition("Conflict", False, "NoConflicts",
                  "not valid, so it takes no part in conflict resolution", gen))
