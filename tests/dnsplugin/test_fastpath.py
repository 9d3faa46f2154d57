"""The UDP fast path answers exactly what the resolver would, and is counted."""
from __future__ import annotations

import struct

from prometheus_client import REGISTRY

from dnsplugin.service import serve
from dnsplugin.resolver import resolve
from tests.dnsplugin.dnsclient_support import feed, StubFleet, question, udp_exchange
from tests.dnsplugin.fleets_support import two_cluster_fleet

Z = "svc.clusterset.local"
NAMES = (f"web.demo.{Z}", f"WEB.Demo.{Z}", f"_http._tcp.web.demo.{Z}", f"db.demo.{Z}",
         f"mysql-0.zone-b.db.demo.{Z}", f"Mysql-0.db.demo.{Z}", f"dual.demo.{Z}", f"nope.demo.{Z}",
         "dns-version.clusterset.local", "clusterset.local", "example.com")
QTYPES = ("A", "AAAA", "SRV", "TXT", "ANY", "NS", "SOA", "HTTPS", "TYPE999")


def with_rd(data: bytes, rd: bool) -> bytes:
    return data[:2] + bytes(((data[2] & 0xFE) | int(rd),)) + data[3:]


async def test_fast_path_answers_are_the_resolvers_bytes() -> None:
    service = await serve(feed(StubFleet(two_cluster_fleet())), listen="127.0.0.1:0", cluster="zone-a")
    try:
        zone = service.zone
        qid = 0
        for name in NAMES:
            for qtype in QTYPES:
                for rd in (False, True):
                    for edns in (None, 1232):
                        qid += 1
                        q = with_rd(question(name, qtype, edns=edns, qid=qid), rd)
                        first = await udp_exchange(service.udp_address, q)   # resolver; fills the memo
                        second = await udp_exchange(service.udp_address, q)  # fast path when memoised
                        assert first == second == resolve(zone, q), (name, qtype, rd, edns)
        assert len(zone.fast) > 40  # the fast path had learned answers to serve from
        assert any(cut is None for _, _, cut, _, _ in zone.fast.values())  # plain queries
        assert any(cut == -11 for _, _, cut, _, _ in zone.fast.values())  # EDNS without options
    finally:
        await service.close()


async def test_fast_path_is_counted_and_skips_odd_headers() -> None:
    service = await serve(feed(StubFleet(two_cluster_fleet())), listen="127.0.0.1:0", cluster="zone-a")

    def answered() -> float:
        return REGISTRY.get_sample_value("fleetgate_dns_queries_total",
                                        {"qtype": "SRV", "rcode": "NOERROR", "transport": "udp"}) or 0.0

    try:
        q = question(f"_http._tcp.web.demo.{Z}", "SRV", qid=7)
        before = answered()
        for _ in range(3):
            await udp_exchange(service.udp_address, q)
        assert answered() - before == 3
        # Near misses of a memoised query take the resolver and get its answer.
        odd = [q + b"\x00",                                     # a trailing byte
               q[:-2] + b"\x00\x03",                           # class CH
               q[:3] + b"\x20" + q[4:],                         # AD set
               q[:4] + struct.pack("!H", 2) + q[6:] + q[12:]]  # two questions
        for packet in odd:
            assert await udp_exchange(service.udp_address, packet) == resolve(service.zone, packet)
        # An OPT whose UDP size has a letter byte (0x0441, 1089: 'A') is never learned: folded
        # to lowercase it would be another size (0x0461, 1121) with maybe another truncation.
        lettered = question(f"web.demo.{Z}", edns=0x0441, qid=9)
        for _ in range(2):
            assert await udp_exchange(service.udp_address, lettered) == resolve(service.zone, lettered)
        assert lettered[2:].lower() not in service.zone.fast and q[2:].lower() in service.zone.fast
    finally:
        await service.close()
