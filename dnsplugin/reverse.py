"""PTR answers under in-addr.arpa and ip6.arpa for the addresses the zone serves.

As CoreDNS's kubernetes plugin answers them for ClusterIPs and headless endpoints: a
ClusterSetIP points at `<svc>.<ns>.svc.<zone>`, a headless endpoint's address at
`<hostname>.<clusterid>.<svc>.<ns>.svc.<zone>` (the short `<hostname>.<svc>...` form
only for an endpoint without a source cluster). An address that several names carry
(overlapping pod ranges in two clusters) gets one PTR record per name, sorted.

The index is built from the zone's services the first time the zone is asked a reverse
name and kept on that Zone; the next zone's index is derived from it by the services that
changed (index_of). The answers are memoised in the zone like any other. Reverse names we do not own stay outside the zone
(REFUSED, or forwarded to --upstream). Pure: no I/O.
"""
from __future__ import annotations

import ipaddress
from typing import Any, Mapping

from dnslib import PTR, QTYPE, RR, DNSHeader, DNSLabel, DNSQuestion, DNSRecord

from .zone import T_A, T_AAAA, T_ANY, Entry, Name, Node, Zone, to_wire, wire_labels

T_PTR = 12
_IN_ADDR = to_wire(("in-addr", "arpa"))
_IP6 = to_wire(("ip6", "arpa"))

Index = dict[Name, tuple[Name, ...]]  # reverse name -> the names it points at, sorted


def reverse_name(ip: str) -> Name:
    """`d.c.b.a.in-addr.arpa` / the nibbles of `ip6.arpa` for an address, in wire format.

    (The zone holds only valid addresses; IPv4 is reversed by hand: ipaddress costs ~10x.)
    """
    if ":" in ip:
        return to_wire(ipaddress.ip_address(ip).reverse_pointer.split("."))
    a, b, c, d = ip.encode().split(b".")
    return b"%c%s%c%s%c%s%c%s" % (len(d), d, len(c), c, len(b), b, len(a), a) + _IN_ADDR


def _depth(name: Name, base: Name) -> int:
    """Labels of `name` above `base` (name ends with base)."""
    end = len(name) - len(base)
    i = n = 0
    while i < end:
        i += name[i] + 1
        n += 1
    return n


def _addresses(node: Node) -> list[str]:
    out: list[str] = []
    for t in (T_A, T_AAAA):
        if t in node:
            out.extend(node[t][1])
    return out


def _add(into: dict[Name, list[Name]], ip: str, name: Name) -> None:
    key = reverse_name(ip)
    found = into.get(key)
    if found is None:
        into[key] = [name]
    elif name not in found:
        found.append(name)


def _service_pointers(headless: bool, base: Name, names: Mapping[Name, Node], into: dict[Name, list[Name]]) -> None:
    if not headless:
        for ip in _addresses(names.get(base, {})):
            _add(into, ip, base)
        return
    full: set[str] = set()
    short: list[tuple[str, Name]] = []
    for name, node in names.items():
        if name == base or not node:
            continue
        depth = _depth(name, base)
        for ip in _addresses(node):
            if depth == 2:  # <hostname>.<clusterid>.<base>
                _add(into, ip, name)
                full.add(ip)
            elif depth == 1:
                short.append((ip, name))
    for ip, name in short:
        if ip not in full:  # an endpoint without a source cluster has only the short name
            _add(into, ip, name)


def _pointers(base: Name, frag: Any) -> dict[Name, list[Name]]:
    found: dict[Name, list[Name]] = {}
    _service_pointers(frag.headless, base, frag.nodes, found)
    return found


def build_index(zone: Zone) -> Index:
    found: dict[Name, list[Name]] = {}
    for base, frag in zone.services.items():
        _service_pointers(frag.headless, base, frag.nodes, found)
    return {k: (v[0],) if len(v) == 1 else tuple(sorted(v)) for k, v in found.items()}


# The services and index of the zone indexed last: the next zone's index is that one with
# the changed services' pointers replaced (found by fragment identity, as update_zone
# keeps them), not a walk of every service. One responder per process asks, so one slot.
_last: list[tuple[Mapping[Name, Any], Index]] = []


def index_of(zone: Zone) -> Index:
    """The zone's reverse index, built on its first reverse query."""
    if zone.reverse is not None:
        return zone.reverse  # type: ignore[no-any-return]
    services = zone.services
    if _last and len(_last[0][0]) and len(services):
        old_services, old_index = _last[0]
        changed = [b for b, f in services.items() if old_services.get(b) is not f]
        gone = [b for b in old_services if b not in services]
        if len(changed) + len(gone) < len(services) // 4:
            index = dict(old_index)
            for base in changed + gone:
                if base in old_services:
                    for key, names in _pointers(base, old_services[base]).items():
                        left = tuple(n for n in index.get(key, ()) if n not in names)
                        if left:
                            index[key] = left
                        else:
                            index.pop(key, None)
            for base in changed:
                for key, names in _pointers(base, services[base]).items():
                    merged = set(index.get(key, ())) | set(names)
                    index[key] = tuple(sorted(merged))
            zone.reverse = index
    if zone.reverse is None:
        zone.reverse = build_index(zone)
    _last[:] = [(services, zone.reverse)]
    return zone.reverse  # type: ignore[no-any-return]


def is_reverse(qname: Name) -> bool:
    return qname.endswith(_IN_ADDR) or qname.endswith(_IP6)


def lookup(zone: Zone, key: bytes) -> Entry | None:
    """The answer for `key` (qname wire + qtype + class IN) when qname is one of our
    reverse names, else None. PTR and ANY list the pointers; other types get NODATA."""
    qname = key[:-4]
    if not is_reverse(qname):
        return None
    targets = index_of(zone).get(qname)
    if targets is None:
        return None
    qtype = (key[-4] << 8) | key[-3]
    entry = _encode(qname, qtype, targets, zone.ttl)
    if qtype in (T_PTR, T_ANY, T_A, T_AAAA):  # the types asked in practice; others are not memoised
        zone.remember(key, entry)
    return entry


def _encode(qname: Name, qtype: int, targets: tuple[Name, ...], ttl: int) -> Entry:
    label = DNSLabel(wire_labels(qname))
    rec = DNSRecord(DNSHeader(id=0, qr=1, aa=1, ra=0), q=DNSQuestion(label, qtype))
    if qtype in (T_PTR, T_ANY):
        for target in targets:
            rec.add_answer(RR(label, QTYPE.PTR, ttl=ttl, rdata=PTR(DNSLabel(wire_labels(target)))))
    full = rec.pack()
    head = 12 + len(qname) + 4
    counts = full[4:12]
    with_opt = counts[:6] + b"\x00\x01"  # no Additional records of ours: AR = the OPT alone
    return (counts, full[head:], with_opt, counts, full[head:], with_opt)
