"""update_zone (via zone_for with the previous zone) against a fresh build, over random changes.

The previous zone's answer memo is warmed before each change, so the answers carried over
into the updated zone are checked too, byte for byte.
"""
from __future__ import annotations

import functools
import gc
import struct

from controller.derive import derive_imports
from controller.publisher import DerivedPublisher
from fleetgate.process import frozen_after_rebuild
from dnsplugin import service as dns_service
from dnsplugin.service import zone_for
from dnsplugin.resolver import resolve
from dnsplugin.zone import Zone, build_zone, update_zone, wire_text, zone_to_json
from tests.controller.random_fleet_support import RandomFleet
from tests.dnsplugin.dnsclient_support import StubFleet, question
from tests.dnsplugin.fleets_support import two_cluster_fleet

SEEDS = range(5)
STEPS = 12
QTYPES = (1, 28, 33, 16, 255, 999)  # A AAAA SRV TXT ANY and an odd one


def query_names(*zones: Zone) -> list[str]:
    names = {"nope.clusterset.local.", "x.nope.demo.svc.clusterset.local.", "demo.svc.clusterset.local.",
             "shop.svc.clusterset.local.", "svc.clusterset.local.", "clusterset.local."}
    for zone in zones:
        for name in zone.nodes:
            text = wire_text(name)
            names.add(text)
            names.add("zz." + text)
    return sorted(names)


@functools.lru_cache(maxsize=None)
def packet(name: str, qtype: int, edns: bool, qid: int) -> bytes:
    """A query as a stub resolver sends it (built by hand: dnslib is slow for thousands)."""
    qname = b"".join(bytes((len(label),)) + label.encode() for label in name.rstrip(".").split(".")) + b"\0"
    head = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 1 if edns else 0)
    opt = b"\0\0\x29\x04\xd0\0\0\0\0\0\0" if edns else b""
    return head + qname + struct.pack("!HH", qtype, 1) + opt


def answers(zone: Zone, names: list[str]) -> list[bytes | None]:
    out = []
    for i, name in enumerate(names):
        for j, qtype in enumerate(QTYPES):
            variant = name.upper() if (i + j) % 3 == 0 else name
            for edns in (False, True):
                reply = resolve(zone, packet(variant, qtype, edns, (i * 16 + j) & 0xFFFF))
                assert reply is None or isinstance(reply, bytes)
                out.append(reply)
    return out


def test_updated_zone_answers_exactly_as_a_fresh_one_over_random_changes() -> None:
    for seed in SEEDS:
        world = RandomFleet(100 + seed)
        first = world.snapshot()
        derived = derive_imports(first)
        zone = zone_for(first, derived.per_cluster.get("zone-b"))
        for step in range(STEPS):
            answers(zone, query_names(zone))  # warm the memo that update_zone carries over
            did = [world.step() for _ in range(1 + step % 2)]
            snap = world.snapshot()
            before = derived.per_cluster.get("zone-b")
            derived = derive_imports(snap, previous=derived)
            zone = zone_for(snap, derived.per_cluster.get("zone-b"), previous_zone=zone, previous_view=before)
            fresh = zone_for(snap, derive_imports(snap).per_cluster.get("zone-b"))
            where = f"seed {seed} step {step} ({'; '.join(did)})"
            assert zone_to_json(zone) == zone_to_json(fresh), where
            names = query_names(zone, fresh)
            assert answers(zone, names) == answers(fresh, names), where
            assert zone.name_count == len(fresh.nodes), where


def test_update_keeps_unchanged_answers_and_drops_serial_bound_ones() -> None:
    d = derive_imports(two_cluster_fleet()).per_cluster["zone-a"]
    zone = build_zone(d.service_imports, d.endpoint_slices, serial=1)
    web, soa, nodata = (question("web.demo.svc.clusterset.local"), question("clusterset.local", "SOA"),
                        question("web.demo.svc.clusterset.local", "TXT"))
    for q in (web, soa, nodata):
        resolve(zone, q)
    assert len(zone.wire) == 3
    newer = update_zone(zone, {}, serial=2)
    assert list(newer.wire) == [web[12:]]  # the positive answer; SOA and NODATA carry serial 1
    assert resolve(newer, soa) != resolve(zone, soa)  # the new serial
    gone = update_zone(newer, {("demo", "web"): None}, serial=3)
    assert not gone.wire and gone.node(b"\x03web\x04demo\x03svc\x0aclusterset\x05local\x00") is None
    assert resolve(gone, web)[3] & 0x0F == 3  # NXDOMAIN


async def test_service_swaps_an_incrementally_updated_zone_and_the_root_freezes_gc() -> None:
    first = two_cluster_fleet(version=1)
    fleet = StubFleet(first)
    gc.unfreeze()
    publisher = DerivedPublisher(fleet, guard=frozen_after_rebuild).start()  # type: ignore[arg-type]
    service = await dns_service.serve(publisher, listen="127.0.0.1:0", cluster="zone-a")
    try:
        old = service.zone
        assert old is not None and gc.get_freeze_count() > 0 and gc.isenabled()
        fleet.publish(two_cluster_fleet(version=2))  # new views: every service rebuilt, same answers
        assert service.zone is not old and service.zone.serial == 2
        assert zone_to_json(service.zone)["records"] == [
            r if r["type"] != "SOA" else {**r, "data": r["data"].replace(" 1 7200", " 2 7200")}
            for r in zone_to_json(old)["records"]]
    finally:
        await service.close()
        gc.unfreeze()
