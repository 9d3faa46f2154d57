"""ClusterSetIP allocation (file mode): hash each name into `clustersetIPRange`.

Depends only on the set of names and their families, so an unchanged set keeps every
address and a restart gives the same ones."""
from __future__ import annotations

import hashlib
import ipaddress
from typing import Iterable, Mapping

from fleet.snapshot import Diagnostic


def family_of(ip: str) -> str | None:
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


def allocate_clusterset_ips(wants: Mapping[tuple[str, str], tuple[str, ...]], ip_range: str,
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
            ips.sort(key=lambda ip: order.index(family_of(ip) or "") if family_of(ip) in order else 9)
        out[key] = tuple(ips)
    return out
