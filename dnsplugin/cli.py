"""Wire the responder to a fleet: `fleetgate dns` options and the running service.

serve() listens, then rebuilds the zone from every new FleetSnapshot: the MCS derivation
(controller.imports) for the chosen consumer cluster → build_zone → one pointer swap.
"""
from __future__ import annotations

import argparse
import gc
import ipaddress
import logging
import time
from typing import Any, Callable, Mapping, Protocol

from controller.imports import DerivedFleet, ImportObjects, changed_keys, derive_imports
from fleet.snapshot import FleetSnapshot

from .server import Address, DnsListener, ZoneHolder
from .zone import ServiceInput, Zone, build_zone, update_zone, zone_to_json

ServiceKey = tuple[str, str]

log = logging.getLogger(__name__)

DEFAULT_LISTEN = "127.0.0.1:1053"

# After each swap, move every object alive (the zone, the derivation state, the fleet's
# views: ~700k objects at 10,000 services) out of the cyclic GC's reach. A full collection
# over them took 0.4-0.8 s here (bench/dns_vs_knot.py) and would stall answers and the next
# zone change whenever allocation counts trigger one; frozen, it takes ~0. They are acyclic
# and freed by reference counting when replaced (600 swaps: no growth). The collector is
# also paused during a rebuild (collections there scan the growing heap: about half of a
# from-scratch build). Process-wide; bench/ turns it off to measure the difference.
FREEZE_GC = True


class FleetLike(Protocol):
    snapshot: FleetSnapshot | None

    def subscribe(self, callback: Callable[[FleetSnapshot], None]) -> Callable[[], None]: ...


def parse_hostport(text: str, *, what: str = "address") -> Address:
    """`HOST:PORT` or `[V6]:PORT` → (host, port); ValueError with the text otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"{what} {text!r}: expected HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    number = int(port)
    if not 0 <= number <= 65535:
        raise ValueError(f"{what} {text!r}: port out of range")
    return host, number


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `fleetgate dns` options (`up` shares --cluster; the lead adds --admin/--fleet)."""
    parser.add_argument("--listen", default=DEFAULT_LISTEN, metavar="HOST:PORT",
                        help="UDP and TCP address of the responder (default %(default)s)")
    parser.add_argument("--cluster", default=None, metavar="NAME",
                        help="member cluster whose view is served (default: the first)")
    parser.add_argument("--upstream", default=None, metavar="HOST:PORT",
                        help="forward names outside the zone here (default: answer REFUSED)")
    parser.add_argument("--ttl", type=int, default=5, help="TTL of the records, seconds (default %(default)s)")


def zone_for(snapshot: FleetSnapshot, cluster: str, *, ttl: int = 5, zone_name: str | None = None,
             ns_address: str | None = None, previous_zone: Zone | None = None,
             previous_derived: DerivedFleet | None = None) -> tuple[Zone, DerivedFleet]:
    """The zone served for `cluster` (also what `/debug/zone?cluster=` shows for any cluster).

    With the previous zone and derivation (built together for the same cluster), only the
    services whose imported objects changed (by identity) are rebuilt.
    """
    derived = derive_imports(snapshot, clusters=[cluster], previous=previous_derived)
    view = derived.per_cluster.get(cluster)
    before = previous_derived.per_cluster.get(cluster) if previous_derived is not None else None
    name = zone_name or snapshot.zone
    if (view is not None and before is not None and previous_zone is not None
            and previous_zone.built_with(zone=name, ttl=ttl, ns_address=ns_address)):
        changes = service_changes(before.by_service, view.by_service)
        return update_zone(previous_zone, changes, serial=snapshot.version), derived
    imports = view.service_imports if view is not None else ()
    slices = view.endpoint_slices if view is not None else ()
    zone = build_zone(imports, slices, zone=name, ttl=ttl, serial=snapshot.version,
                      ns_address=ns_address, previous=previous_zone)
    return zone, derived


def service_changes(before: Mapping[ServiceKey, ImportObjects], after: Mapping[ServiceKey, ImportObjects]
                    ) -> dict[ServiceKey, ServiceInput | None]:
    """The services whose objects are not the same ones any more (None: gone), for update_zone."""
    out: dict[ServiceKey, ServiceInput | None] = {}
    for key in changed_keys(before, after):
        objs = after.get(key)
        out[key] = (objs.service_import, objs.slices) if objs is not None else None
    return out


class DnsService:
    """A running responder: its listeners, the zone it serves, and the fleet subscription."""

    def __init__(self, fleet: FleetLike, listener: DnsListener, *, cluster: str | None, ttl: int,
                 zone_name: str | None, ns_address: str | None) -> None:
        self.fleet = fleet
        self.listener = listener
        self.zone_holder: ZoneHolder = listener.holder
        self.cluster = cluster
        self.ttl = ttl
        self.zone_name = zone_name
        self.ns_address = ns_address
        self._derived: DerivedFleet | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self.last_build_seconds: float | None = None

    @property
    def udp_address(self) -> Address:
        assert self.listener.udp_address is not None
        return self.listener.udp_address

    @property
    def tcp_address(self) -> Address:
        assert self.listener.tcp_address is not None
        return self.listener.tcp_address

    @property
    def zone(self) -> Zone | None:
        return self.zone_holder.zone

    def cluster_for(self, snapshot: FleetSnapshot) -> str | None:
        if self.cluster is not None:
            return self.cluster
        return snapshot.members[0].name if snapshot.members else None

    def on_snapshot(self, snapshot: FleetSnapshot) -> None:
        """Rebuild and swap; a failed build keeps the last zone in force."""
        cluster = self.cluster_for(snapshot)
        if cluster is None:
            log.warning("dns: the fleet has no member cluster; serving SERVFAIL")
            return
        started = time.perf_counter()
        paused = FREEZE_GC and gc.isenabled()
        if paused:
            gc.disable()  # collections during a full build would scan its ever-growing heap
        try:
            zone, derived = zone_for(snapshot, cluster, ttl=self.ttl, zone_name=self.zone_name,
                                     ns_address=self.ns_address, previous_zone=self.zone_holder.zone,
                                     previous_derived=self._derived)
        except Exception:
            if paused:
                gc.enable()
            log.exception("dns: zone rebuild for cluster %s failed; keeping the last zone", cluster)
            return
        self._derived = derived
        self.zone_holder.swap(zone)
        if FREEZE_GC:
            gc.freeze()  # before enable: the build's objects leave the young generation unscanned
        if paused:
            gc.enable()
        self.last_build_seconds = time.perf_counter() - started
        log.debug("dns: zone for %s serial %d with %d names built in %.1f ms", cluster, zone.serial,
                  zone.name_count, self.last_build_seconds * 1000)

    def debug_zone(self, cluster: str | None = None) -> dict[str, Any] | None:
        """`/debug/zone?cluster=` body; None when that cluster is unknown or nothing is loaded."""
        snapshot = self.fleet.snapshot
        current = self.cluster_for(snapshot) if snapshot is not None else self.cluster
        if cluster is None or cluster == current:
            zone = self.zone_holder.zone
            return zone_to_json(zone) if zone is not None else None
        if snapshot is None or snapshot.member(cluster) is None:
            return None
        zone, _ = zone_for(snapshot, cluster, ttl=self.ttl, zone_name=self.zone_name)
        return zone_to_json(zone)

    async def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        await self.listener.close()


async def serve(fleet: FleetLike, *, listen: str = DEFAULT_LISTEN, cluster: str | None = None,
                upstream: str | None = None, ttl: int = 5, zone_name: str | None = None,
                idle_timeout: float = 10.0, forward_timeout: float = 2.0) -> DnsService:
    """Start the responder; OSError when a listener cannot bind, ValueError on bad options."""
    host, port = parse_hostport(listen, what="--listen")
    upstream_addr = parse_hostport(upstream, what="--upstream") if upstream else None
    if ttl < 0:
        raise ValueError("--ttl must not be negative")
    snapshot = fleet.snapshot
    if cluster is not None and snapshot is not None and snapshot.member(cluster) is None:
        raise ValueError(f"--cluster {cluster!r}: not a member cluster "
                         f"(members: {', '.join(snapshot.member_names) or 'none'})")
    ns_address = None
    try:
        if not ipaddress.ip_address(host).is_unspecified:
            ns_address = host
    except ValueError:
        pass
    listener = DnsListener(ZoneHolder(), upstream=upstream_addr, idle_timeout=idle_timeout,
                           forward_timeout=forward_timeout)
    await listener.start(host, port)
    service = DnsService(fleet, listener, cluster=cluster, ttl=ttl, zone_name=zone_name,
                         ns_address=ns_address)
    if snapshot is not None:
        service.on_snapshot(snapshot)
    service._unsubscribe = fleet.subscribe(service.on_snapshot)
    return service
