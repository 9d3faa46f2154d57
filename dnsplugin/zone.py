"""The clusterset.local zone of one consumer cluster, as an immutable value.

build_zone turns ServiceImports and MCS EndpointSlices into a record model (names → rrsets)
following the MCS DNS specification (KEP-1645 specification.md) and dns.md. Answers are
encoded with dnslib the first time a (name, type) is asked and then served as prebuilt wire
bytes; the cache lives and dies with the Zone, so an answer never mixes two snapshots.
Pure: no I/O, no asyncio.
"""
from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from dnslib import AAAA, NS, QTYPE, RR, SOA, SRV, TXT, A, DNSHeader, DNSLabel, DNSQuestion, DNSRecord

from fleet.objects import (LABEL_MCS_SERVICE_NAME, LABEL_MCS_SOURCE_CLUSTER, EndpointSlice,
                           ServiceImport)

from .codec.types import FastEntry  # a learned answer (resolver._learn)

# The MCS DNS specification's schema version (KEP-1645 specification.md, section 1).
SCHEMA_VERSION = "1.0.0"
VERSION_TTL = 28800

T_A, T_NS, T_SOA, T_TXT, T_AAAA, T_SRV, T_ANY = 1, 2, 6, 16, 28, 33, 255
# NODATA answers for these types are cached (glibc asks AAAA beside every A); others are
# built per query so that odd qtypes cannot grow the cache.
_CACHED_NODATA = frozenset({T_A, T_NS, T_SOA, T_TXT, T_AAAA, T_SRV, T_ANY, 5, 12, 15, 64, 65})

Name = bytes  # lowercased wire-format name, root label included
RRsets = Mapping[int, tuple[int, tuple[Any, ...]]]  # qtype -> (ttl, rdatas)


class ZoneError(ValueError):
    """A zone that cannot be built (bad origin)."""


@dataclass(frozen=True, slots=True)
class Srv:
    priority: int
    weight: int
    port: int
    target: Name


@dataclass(frozen=True, slots=True)
class Soa:
    mname: Name
    rname: Name
    serial: int
    refresh: int
    retry: int
    expire: int
    minimum: int


# A prebuilt response tail: (counts, body, counts with OPT, counts without Additional,
# body without Additional, counts without Additional with OPT). `counts` are the 8 bytes
# after the ID and flags (QD=1, AN, NS, AR); `body` follows the question.
Entry = tuple[bytes, bytes, bytes, bytes, bytes, bytes]


def to_wire(labels: Iterable[str | bytes]) -> Name:
    """Wire-format name from labels (lowercased); ValueError when a label or the name is too long."""
    out = bytearray()
    for label in labels:
        raw = label.encode() if isinstance(label, str) else label
        raw = raw.lower()
        if not raw or len(raw) > 63:
            raise ValueError(f"bad DNS label {raw!r}")
        out.append(len(raw))
        out += raw
    out.append(0)
    if len(out) > 255:
        raise ValueError("DNS name longer than 255 bytes")
    return bytes(out)


def wire_labels(name: Name) -> tuple[bytes, ...]:
    labels = []
    i = 0
    while name[i]:
        n = name[i]
        labels.append(name[i + 1:i + 1 + n])
        i += n + 1
    return tuple(labels)


def wire_text(name: Name) -> str:
    return ".".join(label.decode("ascii", "backslashreplace") for label in wire_labels(name)) + "."


def dashed(ip: str) -> str:
    """The DNS label for an endpoint without a hostname: its address with dashes."""
    return ip.replace(".", "-").replace(":", "-")


def _is_v6(ip: str) -> bool:
    return ":" in ip


def _valid_ip(ip: str) -> bool:
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        return False
    return True


class _Builder:
    """Collects rrsets per name; ENTs (names with no records) become empty dicts."""

    def __init__(self, ttl: int) -> None:
        self.ttl = ttl
        self.nodes: dict[Name, dict[int, list[Any]]] = {}

    def add(self, name: Name, qtype: int, rdata: Any) -> None:
        rrs = self.nodes.setdefault(name, {}).setdefault(qtype, [])
        if rdata not in rrs:
            rrs.append(rdata)

    def ent(self, name: Name) -> None:
        self.nodes.setdefault(name, {})

    def freeze(self, ttl: int) -> dict[Name, dict[int, tuple[int, tuple[Any, ...]]]]:
        return {n: {t: (ttl, tuple(v)) for t, v in rrs.items()} for n, rrs in self.nodes.items()}


def _service_fragment(si: ServiceImport, slices: tuple[EndpointSlice, ...], origin: tuple[str, ...],
                      ttl: int) -> dict[Name, dict[int, tuple[int, tuple[Any, ...]]]]:
    """Every name one ServiceImport contributes (dns.md's table rows for it)."""
    b = _Builder(ttl)
    try:
        svc_labels = (si.meta.name, si.meta.namespace, "svc") + origin
        base = to_wire(svc_labels)
    except ValueError:
        return {}
    named = [p for p in si.ports if p.name]

    def port_name(p_name: str, proto: str) -> Name | None:
        try:
            return to_wire((f"_{p_name}", f"_{proto.lower()}") + svc_labels)
        except ValueError:
            return None

    if si.type != "Headless":
        for ip in si.ips:
            if _valid_ip(ip):
                b.add(base, T_AAAA if _is_v6(ip) else T_A, ip)
        b.ent(base)
        for p in named:
            srv = Srv(0, 100, p.port, base)
            b.add(base, T_SRV, srv)
            pn = port_name(p.name, p.protocol)
            if pn is not None:
                b.add(pn, T_SRV, srv)
                b.ent(pn[pn[0] + 1:])  # _<proto>.<svc>... is an empty non-terminal
        return b.freeze(ttl)

    any_ready = False
    for es in slices:
        cluster = es.meta.labels.get(LABEL_MCS_SOURCE_CLUSTER, "")
        ports = {(p.name, p.protocol.upper()): p.port for p in es.ports if p.port is not None}
        for ep in es.endpoints:
            if not ep.is_ready:
                continue
            addrs = [ip for ip in ep.addresses if _valid_ip(ip)]
            if not addrs:
                continue
            any_ready = True
            host = (ep.hostname or dashed(addrs[0])).lower()
            for ip in addrs:
                b.add(base, T_AAAA if _is_v6(ip) else T_A, ip)
            try:
                short = to_wire((host,) + svc_labels)
                full = to_wire((host, cluster) + svc_labels) if cluster else None
            except ValueError:
                continue
            for ip in addrs:
                b.add(short, T_AAAA if _is_v6(ip) else T_A, ip)
                if full is not None:
                    b.add(full, T_AAAA if _is_v6(ip) else T_A, ip)
            if full is None:
                continue
            for p in named:
                number = ports.get((p.name, p.protocol.upper()))
                if number is None:
                    continue  # this cluster does not serve that port
                srv = Srv(0, 100, number, full)
                b.add(base, T_SRV, srv)
                pn = port_name(p.name, p.protocol)
                if pn is not None:
                    b.add(pn, T_SRV, srv)
                    b.ent(pn[pn[0] + 1:])
    if not any_ready:
        return {}  # headless with no ready endpoint: the name does not exist (NXDOMAIN)
    return b.freeze(ttl)


Node = Mapping[int, tuple[int, tuple[Any, ...]]]  # qtype -> (ttl, rdatas); {} for an ENT
ServiceInput = tuple[ServiceImport, Sequence[EndpointSlice]]  # an import and its MCS slices


@dataclass(frozen=True, slots=True)
class _Fragment:
    """The names one ServiceImport contributes, all under its `<svc>.<ns>.svc.<zone>` base."""
    key: tuple[Any, ...]                # (ServiceImport, slices) it was built from
    base: Name | None                   # None when the import's names are not valid DNS
    nodes: Mapping[Name, Node]

    @property
    def headless(self) -> bool:
        return bool(self.key[0].type == "Headless")


@dataclass(frozen=True, slots=True)
class _Params:
    """What every answer of a zone depends on besides its services (and the serial)."""
    origin: tuple[str, ...]
    origin_wire: Name
    ttl: int
    ns_wire: Name
    rname: Name
    ns_address: str | None


def _params(zone: str, ttl: int, ns_name: str | None, ns_address: str | None,
            hostmaster: str | None) -> _Params:
    try:
        origin = tuple(label.lower() for label in zone.strip(".").split("."))
        origin_wire = to_wire(origin)
        ns_wire = to_wire(ns_name.strip(".").split(".")) if ns_name else to_wire(("ns", "dns") + origin)
        rname = to_wire(hostmaster.strip(".").split(".")) if hostmaster else to_wire(("hostmaster",) + origin)
    except ValueError as exc:
        raise ZoneError(f"zone {zone!r}: {exc}") from None
    return _Params(origin, origin_wire, ttl, ns_wire, rname, ns_address)


def _sorted_slices(found: Sequence[EndpointSlice]) -> tuple[EndpointSlice, ...]:
    if len(found) < 2:
        return tuple(found)
    return tuple(sorted(found, key=lambda s: (s.meta.labels.get(LABEL_MCS_SOURCE_CLUSTER, ""), s.meta.name)))


def _fragment(si: ServiceImport, slices: tuple[EndpointSlice, ...], p: _Params) -> _Fragment:
    nodes = _service_fragment(si, slices, p.origin, p.ttl)
    base = None
    if nodes:
        base = to_wire((si.meta.name, si.meta.namespace, "svc") + p.origin)
    return _Fragment((si, slices), base, nodes)


def _static_nodes(p: _Params, soa: Soa, ns_ents: Iterable[Name]) -> dict[Name, Node]:
    """The zone's own names: apex, dns-version, the NS name, and the ENTs above services."""
    nodes: dict[Name, Node] = {}
    any_ent = False
    for ent in ns_ents:
        nodes[ent] = {}
        any_ent = True
    if any_ent:
        nodes[to_wire(("svc",) + p.origin)] = {}
    ttl = p.ttl
    nodes[p.origin_wire] = {T_SOA: (ttl, (soa,)), T_NS: (ttl, (p.ns_wire,))}
    nodes[to_wire(("dns-version",) + p.origin)] = {T_TXT: (VERSION_TTL, (SCHEMA_VERSION,))}
    ns_wire = p.ns_wire
    if ns_wire.endswith(p.origin_wire) and ns_wire != p.origin_wire:
        ns_node: dict[int, tuple[int, tuple[Any, ...]]] = {}
        if p.ns_address and _valid_ip(p.ns_address):
            ns_node[T_AAAA if _is_v6(p.ns_address) else T_A] = (ttl, (p.ns_address,))
        nodes[ns_wire] = {**nodes.get(ns_wire, {}), **ns_node}
        parent = ns_wire[ns_wire[0] + 1:]
        while parent != p.origin_wire and parent:
            nodes.setdefault(parent, {})
            parent = parent[parent[0] + 1:]
    return nodes


def _ns_ent(base: Name) -> Name:
    """`<ns>.svc.<zone>` from a service's `<svc>.<ns>.svc.<zone>`."""
    return base[base[0] + 1:]


class Zone:
    """An immutable zone of one consumer cluster, with a memo of encoded answers.

    Names live in per-service fragments (found from a query name by its last three labels
    above the origin) plus a few static names, so `update_zone` replaces only the services
    that changed and keeps the memo of every other service's answers.
    """

    __slots__ = ("origin", "origin_wire", "ttl", "serial", "soa", "soa_rr", "wire", "fast", "name_count",
                 "_params", "_fragments", "_by_base", "_ns_counts", "_static", "_volatile", "_nodes",
                 "_service_names", "reverse")

    def __init__(self, params: _Params, serial: int, fragments: dict[tuple[str, str], _Fragment],
                 by_base: dict[Name, _Fragment], ns_counts: dict[Name, int],
                 static: dict[Name, Node] | None = None, wire: dict[bytes, Entry] | None = None,
                 service_names: int | None = None) -> None:
        self._params = params
        self.origin = ".".join(params.origin)
        self.origin_wire = params.origin_wire
        self.ttl = params.ttl
        self.serial = serial
        self.soa = Soa(params.ns_wire, params.rname, serial & 0xFFFFFFFF, 7200, 1800, 86400, params.ttl)
        self._fragments = fragments
        self._by_base = by_base
        self._ns_counts = ns_counts
        self._static = static if static is not None else _static_nodes(params, self.soa, ns_counts)
        # key: lowercased qname wire + qtype + qclass(IN) -> Entry; filled on first ask
        self.wire: dict[bytes, Entry] = wire if wire is not None else {}
        # key: lowercased query from byte 2 on -> FastEntry; learned by the UDP listener
        self.fast: dict[bytes, FastEntry] = {}
        # memo keys that depend on the serial (SOA in them) or on static names: not carried over
        self._volatile: list[bytes] = []
        self._nodes: dict[Name, Node] | None = None
        self.reverse: Any = None  # dnsplugin.reverse's PTR index, built on the first reverse query
        self.soa_rr = self._soa_rr()
        if service_names is None:
            service_names = sum(len(f.nodes) for f in by_base.values())
        self._service_names = service_names
        self.name_count = len(self._static) + service_names

    @property
    def nodes(self) -> Mapping[Name, Node]:
        """Every name of the zone (for /debug/zone and tests; the resolver does not use it)."""
        if self._nodes is None:
            merged: dict[Name, Node] = {}
            for frag in self._by_base.values():
                merged.update(frag.nodes)
            merged.update(self._static)
            self._nodes = merged
        return self._nodes

    @property
    def services(self) -> Mapping[Name, "_Fragment"]:
        """Every service served, by base name; a service unchanged by update_zone keeps its
        fragment object (the reverse index is updated by identity)."""
        return self._by_base

    def remember(self, key: bytes, entry: Entry) -> None:
        """Memoise an answer built from outside the zone's names (PTR); dropped by update_zone."""
        self.wire[key] = entry
        self._volatile.append(key)

    def _soa_rr(self) -> bytes:
        s = self.soa
        rdata = s.mname + s.rname + struct.pack("!IIIII", s.serial, s.refresh, s.retry, s.expire, s.minimum)
        return self.origin_wire + struct.pack("!HHIH", T_SOA, 1, self.ttl, len(rdata)) + rdata

    def built_with(self, *, zone: str = "clusterset.local", ttl: int = 5, ns_name: str | None = None,
                   ns_address: str | None = None, hostmaster: str | None = None) -> bool:
        """True when build_zone with these options would give this zone's origin, TTL and NS."""
        try:
            return _params(zone, ttl, ns_name, ns_address, hostmaster) == self._params
        except ZoneError:
            return False

    def contains(self, qname: Name) -> bool:
        """True when qname is the origin or below it (label-boundary suffix match)."""
        n = len(self.origin_wire)
        if not qname.endswith(self.origin_wire):
            return False
        start = len(qname) - n
        i = 0
        while i < start:
            i += qname[i] + 1
        return i == start

    def node(self, qname: Name) -> Node | None:
        """The records of one name ({} for an empty non-terminal), None when it does not exist."""
        node = self._static.get(qname)
        if node is not None:
            return node
        end = len(qname) - len(self.origin_wire)
        if end <= 0 or not qname.endswith(self.origin_wire):
            return None
        starts = []
        i = 0
        while i < end:
            starts.append(i)
            i += qname[i] + 1
        if i != end or len(starts) < 3:
            return None
        frag = self._by_base.get(qname[starts[-3]:])
        return frag.nodes.get(qname) if frag is not None else None

    def lookup(self, key: bytes) -> Entry | int:
        """The entry for `key` (qname wire + qtype + class IN), or an rcode: 3 NXDOMAIN, -1 outside."""
        entry = self.wire.get(key)
        if entry is not None:
            return entry
        qname, qtype = key[:-4], (key[-4] << 8) | key[-3]
        node = self.node(qname)
        if node is None:
            return 3 if self.contains(qname) else -1
        entry = self._encode(qname, qtype, node)
        positive = bool(node) and (qtype in node or qtype == T_ANY)
        if positive or qtype in _CACHED_NODATA:
            self.wire[key] = entry
            if not positive or qname in self._static:
                self._volatile.append(key)
        return entry

    def _rr(self, label: DNSLabel, qtype: int, ttl: int, rd: Any) -> RR:
        if qtype == T_A:
            data: Any = A(rd)
        elif qtype == T_AAAA:
            data = AAAA(rd)
        elif qtype == T_SRV:
            data = SRV(rd.priority, rd.weight, rd.port, DNSLabel(wire_labels(rd.target)))
        elif qtype == T_TXT:
            data = TXT(rd)
        elif qtype == T_NS:
            data = NS(DNSLabel(wire_labels(rd)))
        elif qtype == T_SOA:
            data = SOA(DNSLabel(wire_labels(rd.mname)), DNSLabel(wire_labels(rd.rname)),
                       (rd.serial, rd.refresh, rd.retry, rd.expire, rd.minimum))
        else:  # pragma: no cover - the builder makes no other types
            raise ValueError(qtype)
        return RR(label, qtype, ttl=ttl, rdata=data)

    def _encode(self, qname: Name, qtype: int, node: Node) -> Entry:
        label = DNSLabel(wire_labels(qname))
        rec = DNSRecord(DNSHeader(id=0, qr=1, aa=1, ra=0), q=DNSQuestion(label, qtype))
        types = sorted(node) if qtype == T_ANY else ([qtype] if qtype in node else [])
        targets: list[Name] = []
        for t in types:
            ttl, rdatas = node[t]
            for rd in rdatas:
                rec.add_answer(self._rr(label, t, ttl, rd))
                if t == T_SRV and rd.target not in targets:
                    targets.append(rd.target)
                elif t == T_NS and rd not in targets:
                    targets.append(rd)
        if not types:  # NODATA: SOA in Authority
            rec.add_auth(self._rr(DNSLabel(wire_labels(self.origin_wire)), T_SOA, self.ttl, self.soa))
        head = 12 + len(qname) + 4
        noadd = rec.pack()
        for target in targets:
            tnode = self.node(target) or {}
            tlabel = DNSLabel(wire_labels(target))
            for t in (T_A, T_AAAA):
                if t in tnode:
                    ttl, rdatas = tnode[t]
                    for rd in rdatas:
                        rec.add_ar(self._rr(tlabel, t, ttl, rd))
        full = rec.pack() if rec.ar else noadd
        return (full[4:12], full[head:], _plus_one_ar(full[4:12]),
                noadd[4:12], noadd[head:], _plus_one_ar(noadd[4:12]))


def _plus_one_ar(counts: bytes) -> bytes:
    return counts[:6] + struct.pack("!H", struct.unpack("!H", counts[6:8])[0] + 1)


def build_zone(imports: Iterable[ServiceImport], slices: Iterable[EndpointSlice], *,
               zone: str = "clusterset.local", ttl: int = 5, serial: int = 1,
               ns_name: str | None = None, ns_address: str | None = None,
               hostmaster: str | None = None, previous: Zone | None = None) -> Zone:
    """The zone for one consumer cluster's ServiceImports and MCS EndpointSlices.

    `previous` lets services whose ServiceImport and slices are unchanged reuse their
    records (compared by value, which is cheap when the views are the same objects).
    For a change that is known service by service, update_zone is cheaper.
    """
    p = _params(zone, ttl, ns_name, ns_address, hostmaster)
    by_service: dict[tuple[str, str], list[EndpointSlice]] = {}
    for es in slices:
        svc = es.meta.labels.get(LABEL_MCS_SERVICE_NAME)
        if svc:
            by_service.setdefault((es.meta.namespace, svc), []).append(es)
    old = previous._fragments if previous is not None and previous._params == p else {}
    fragments: dict[tuple[str, str], _Fragment] = {}
    for si in imports:
        skey = (si.meta.namespace, si.meta.name)
        mine = _sorted_slices(by_service.get(skey, ()))
        frag = old.get(skey)
        if frag is None or frag.key != (si, mine):
            frag = _fragment(si, mine, p)
        fragments[skey] = frag
    by_base: dict[Name, _Fragment] = {}
    ns_counts: dict[Name, int] = {}
    for frag in fragments.values():
        if frag.base is not None:
            by_base[frag.base] = frag
    for base in by_base:
        ent = _ns_ent(base)
        ns_counts[ent] = ns_counts.get(ent, 0) + 1
    return Zone(p, serial, fragments, by_base, ns_counts)


def update_zone(previous: Zone, changes: Mapping[tuple[str, str], ServiceInput | None], *,
                serial: int) -> Zone:
    """`previous` with the services in `changes` replaced (None: removed), at `serial`.

    Costs what changed: unchanged services keep their fragments and their encoded
    answers; answers that carry the serial (SOA) or touch a changed service are dropped
    from the memo. Gives the same answers as build_zone over the whole new set.
    """
    p = previous._params
    fragments = dict(previous._fragments)
    by_base = dict(previous._by_base)
    ns_counts = dict(previous._ns_counts)
    wire = dict(previous.wire)
    service_names = previous._service_names
    for key in previous._volatile:
        wire.pop(key, None)
    for skey, new in changes.items():
        old = fragments.get(skey)
        frag = None
        if new is not None:
            si, slices = new
            mine = _sorted_slices(slices)
            frag = old if old is not None and old.key == (si, mine) else _fragment(si, mine, p)
            if frag is old:
                continue
        if old is not None:
            del fragments[skey]
        if old is not None and old.base is not None:
            for name in old.nodes:
                for t in _CACHED_NODATA:
                    wire.pop(name + _QTYPE_IN[t], None)
            if by_base.get(old.base) is old:  # (two imports differing only in case share a base)
                del by_base[old.base]
                service_names -= len(old.nodes)
                ent = _ns_ent(old.base)
                ns_counts[ent] -= 1
                if not ns_counts[ent]:
                    del ns_counts[ent]
        if frag is None:
            continue
        fragments[skey] = frag
        if frag.base is not None:
            displaced = by_base.get(frag.base)
            by_base[frag.base] = frag
            service_names += len(frag.nodes) - (len(displaced.nodes) if displaced is not None else 0)
            if displaced is None:
                ent = _ns_ent(frag.base)
                ns_counts[ent] = ns_counts.get(ent, 0) + 1
    static = None
    if ns_counts.keys() == previous._ns_counts.keys() and serial == previous.serial:
        static = previous._static
    return Zone(p, serial, fragments, by_base, ns_counts, static, wire, service_names)


_QTYPE_IN = {t: struct.pack("!H", t) + b"\x00\x01" for t in _CACHED_NODATA}


def zone_to_json(zone: Zone) -> dict[str, Any]:
    """The `/debug/zone?cluster=` body: every record served, sorted by name and type."""
    records = []
    for name in sorted(zone.nodes, key=lambda n: tuple(reversed(wire_labels(n)))):
        for qtype, (ttl, rdatas) in sorted(zone.nodes[name].items()):
            for rd in rdatas:
                if isinstance(rd, Srv):
                    data = f"{rd.priority} {rd.weight} {rd.port} {wire_text(rd.target)}"
                elif isinstance(rd, Soa):
                    data = (f"{wire_text(rd.mname)} {wire_text(rd.rname)} {rd.serial} {rd.refresh} "
                            f"{rd.retry} {rd.expire} {rd.minimum}")
                elif isinstance(rd, bytes):
                    data = wire_text(rd)
                else:
                    data = str(rd)
                records.append({"name": wire_text(name), "type": QTYPE.get(qtype), "ttl": ttl, "data": data})
    return {"zone": zone.origin, "serial": zone.serial, "ttl": zone.ttl, "records": records}
