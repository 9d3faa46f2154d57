"""The running DNS service: listeners plus the zone built from the published derived objects.

The responder follows a DerivedFeed (controller.derived, the one derivation per snapshot
that the controller publishes): the chosen consumer cluster's objects → build_zone (or
update_zone for the services that changed) → one pointer swap.
"""
from __future__ import annotations

import ipaddress
import logging
import time
from typing import Any, Callable, Mapping

from controller.derived import DerivedCluster, DerivedFeed, DerivedSnapshot, ImportObjects
from fleet.addresses import parse_hostport
from fleet.changes import changed_keys
from fleet.snapshot import FleetSnapshot

from .server import Address, DnsListener, ZoneHolder
from . import reverse
from .zone import ServiceInput, Zone, build_zone, update_zone, wire_text, zone_to_json

ServiceKey = tuple[str, str]

log = logging.getLogger(__name__)

DEFAULT_LISTEN = "127.0.0.1:1053"


def zone_for(snapshot: FleetSnapshot, view: DerivedCluster | None, *, ttl: int = 5,
             zone_name: str | None = None, ns_address: str | None = None, previous_zone: Zone | None = None,
             previous_view: DerivedCluster | None = None) -> Zone:
    """The zone of one consumer cluster's derived objects (`view`; None: it imports nothing).

    With the previous zone and the view it was built from, only the services whose imported
    objects changed (by identity) are rebuilt.
    """
    name = zone_name or snapshot.zone
    if (view is not None and previous_view is not None and previous_zone is not None
            and previous_zone.built_with(zone=name, ttl=ttl, ns_address=ns_address)):
        changes = service_changes(previous_view.by_service, view.by_service)
        return update_zone(previous_zone, changes, serial=snapshot.version)
    imports = view.service_imports if view is not None else ()
    slices = view.endpoint_slices if view is not None else ()
    return build_zone(imports, slices, zone=name, ttl=ttl, serial=snapshot.version,
                      ns_address=ns_address, previous=previous_zone)


def service_changes(before: Mapping[ServiceKey, ImportObjects], after: Mapping[ServiceKey, ImportObjects]
                    ) -> dict[ServiceKey, ServiceInput | None]:
    """The services whose objects are not the same ones any more (None: gone), for update_zone."""
    out: dict[ServiceKey, ServiceInput | None] = {}
    for key in changed_keys(before, after):
        objs = after.get(key)
        out[key] = (objs.service_import, objs.slices) if objs is not None else None
    return out


def with_pointers(zone: Zone, index: reverse.Index) -> dict[str, Any]:
    """zone_to_json plus the PTR records the zone answers under in-addr.arpa / ip6.arpa."""
    body = zone_to_json(zone)
    body["records"] += [{"name": wire_text(name), "type": "PTR", "ttl": zone.ttl, "data": wire_text(target)}
                        for name, targets in sorted(index.items()) for target in targets]
    return body


class DnsService:
    """A running responder: its listeners, the zone it serves, and the derived objects it follows."""

    def __init__(self, feed: DerivedFeed, listener: DnsListener, *, cluster: str | None, ttl: int,
                 zone_name: str | None, ns_address: str | None) -> None:
        self.feed = feed
        self.listener = listener
        self.zone_holder: ZoneHolder = listener.holder
        self.cluster = cluster
        self.ttl = ttl
        self.zone_name = zone_name
        self.ns_address = ns_address
        self._view: DerivedCluster | None = None  # what the served zone was built from
        self._unfollow: Callable[[], None] | None = None
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

    def on_derived(self, current: DerivedSnapshot) -> None:
        """Rebuild and swap; a failed build keeps the last zone in force."""
        snapshot = current.snapshot
        cluster = self.cluster_for(snapshot)
        if cluster is None:
            log.warning("dns: the fleet has no member cluster; serving SERVFAIL")
            return
        started = time.perf_counter()
        view = current.derived.per_cluster.get(cluster)
        try:
            zone = zone_for(snapshot, view, ttl=self.ttl, zone_name=self.zone_name, ns_address=self.ns_address,
                            previous_zone=self.zone_holder.zone, previous_view=self._view)
        except Exception:
            log.exception("dns: zone rebuild for cluster %s failed; keeping the last zone", cluster)
            return
        self._view = view
        self.zone_holder.swap(zone)
        self.last_build_seconds = time.perf_counter() - started
        log.debug("dns: zone for %s serial %d with %d names built in %.1f ms", cluster, zone.serial,
                  zone.name_count, self.last_build_seconds * 1000)

    def debug_zone(self, cluster: str | None = None) -> dict[str, Any] | None:
        """`/debug/zone?cluster=` body; None when that cluster is unknown or nothing is loaded."""
        current = self.feed.current
        snapshot = current.snapshot if current is not None else None
        served = self.cluster_for(snapshot) if snapshot is not None else self.cluster
        if cluster is None or cluster == served:
            zone = self.zone_holder.zone
            return with_pointers(zone, reverse.index_of(zone)) if zone is not None else None
        if current is None or snapshot is None or snapshot.member(cluster) is None:
            return None
        other = zone_for(snapshot, current.derived.per_cluster.get(cluster), ttl=self.ttl, zone_name=self.zone_name)
        return with_pointers(other, reverse.build_index(other))

    async def close(self) -> None:
        if self._unfollow is not None:
            self._unfollow()
            self._unfollow = None
        await self.listener.close()


async def serve(feed: DerivedFeed, *, listen: str = DEFAULT_LISTEN, cluster: str | None = None,
                upstream: str | None = None, ttl: int = 5, zone_name: str | None = None,
                idle_timeout: float = 10.0, forward_timeout: float = 2.0, reuse_port: bool = False) -> DnsService:
    """Start the responder; OSError when a listener cannot bind, ValueError on bad options.

    reuse_port: bind with SO_REUSEPORT, so `fleetgate dns --workers N` processes share the
    address (the kernel spreads datagrams and connections over them).
    """
    host, port = parse_hostport(listen, what="--listen")
    upstream_addr = parse_hostport(upstream, what="--upstream") if upstream else None
    if ttl < 0:
        raise ValueError("--ttl must not be negative")
    current = feed.current
    snapshot = current.snapshot if current is not None else None
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
                           forward_timeout=forward_timeout, reuse_port=reuse_port)
    await listener.start(host, port)
    service = DnsService(feed, listener, cluster=cluster, ttl=ttl, zone_name=zone_name,
                         ns_address=ns_address)
    service._unfollow = feed.follow(service.on_derived)
    return service
