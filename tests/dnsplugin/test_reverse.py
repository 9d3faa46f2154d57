"""PTR answers for ClusterSetIPs and headless endpoints' addresses, asked as clients ask
them (dnspython's reversename, dnslib, dig -x), over UDP and TCP; reverse names we do not
own are REFUSED or forwarded; a zone change moves the pointers."""
from __future__ import annotations

import asyncio

import pytest
from dns import asyncquery, message, rcode, rdatatype, reversename
from dnslib import DNSRecord

from dnsplugin import reverse
from dnsplugin.service import DnsService, serve
from dnsplugin.zone import build_zone, wire_text, zone_to_json
from controller.derive import derive_imports
from tests.controller.mcs_support import cluster, endpoint, endpoint_slice, export, fleet, namespace, service
from tests.dnsplugin.dnsclient_support import StubFleet, feed, question, rcode as rcode_of, udp_exchange
from tests.dnsplugin.fleets_support import two_cluster_fleet
from tests.tools import require_tool

Z = "svc.clusterset.local"


@pytest.fixture(params=[False, True], ids=["udp", "tcp"])
def tcp(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def address_of(dns: DnsService, name: str, qtype: str = "A") -> str:
    zone = dns.zone
    assert zone is not None
    return next(r["data"] for r in zone_to_json(zone)["records"] if r["name"] == name and r["type"] == qtype)


async def ptr(dns: DnsService, ip: str, *, tcp: bool = False) -> message.Message:
    """A PTR query as dnspython builds it (reversename.from_address), over UDP or TCP."""
    q = message.make_query(reversename.from_address(ip), rdatatype.PTR)
    host, port = dns.udp_address
    if tcp:
        return await asyncquery.tcp(q, host, port=port, timeout=2.0)
    return await asyncquery.udp(q, host, port=port, timeout=2.0)


def targets(reply: message.Message) -> list[str]:
    return sorted(str(rd.target) for rrset in reply.answer for rd in rrset if rrset.rdtype == rdatatype.PTR)


async def test_clusterset_ips_point_at_the_service(dns: DnsService, tcp: bool) -> None:
    web = address_of(dns, f"web.demo.{Z}.")
    reply = await ptr(dns, web, tcp=tcp)
    assert reply.rcode() == rcode.NOERROR and targets(reply) == [f"web.demo.{Z}."]
    v6 = address_of(dns, f"dual.demo.{Z}.", "AAAA")
    assert targets(await ptr(dns, v6, tcp=tcp)) == [f"dual.demo.{Z}."]


async def test_headless_endpoints_point_at_their_cluster_qualified_names(dns: DnsService, tcp: bool) -> None:
    assert targets(await ptr(dns, "10.1.0.1", tcp=tcp)) == [f"mysql-0.zone-a.db.demo.{Z}."]
    assert targets(await ptr(dns, "10.1.0.2", tcp=tcp)) == [f"10-1-0-2.zone-a.db.demo.{Z}."]  # no hostname
    assert targets(await ptr(dns, "10.2.0.1", tcp=tcp)) == [f"mysql-0.zone-b.db.demo.{Z}."]
    assert targets(await ptr(dns, "fd00:b::1", tcp=tcp)) == [f"mysql-1.zone-b.db.demo.{Z}."]
    reply = await ptr(dns, "10.1.0.3", tcp=tcp)  # mysql-9: not ready, so not served
    assert reply.rcode() == rcode.REFUSED and not reply.answer


async def test_reverse_names_we_do_not_own_are_refused(dns: DnsService, tcp: bool) -> None:
    for ip in ("10.9.9.9", "192.0.2.1", "2001:db8::1"):
        reply = await ptr(dns, ip, tcp=tcp)
        assert reply.rcode() == rcode.REFUSED and not reply.answer, ip
    # an address's other record types: NODATA, not a refusal (the name is ours)
    q = message.make_query(reversename.from_address("10.1.0.1"), rdatatype.A)
    reply = await asyncquery.udp(q, dns.udp_address[0], port=dns.udp_address[1], timeout=2.0)
    assert reply.rcode() == rcode.NOERROR and not reply.answer


async def test_ptr_with_dnslib_edns_and_case(dns: DnsService) -> None:
    name = "1.0.1.10.IN-ADDR.Arpa"
    for edns in (None, 1232):
        for _ in range(2):  # the second answer comes from the learned fast path
            raw = await udp_exchange(dns.udp_address, question(name, "PTR", edns=edns))
            reply = DNSRecord.parse(raw)
            assert rcode_of(reply) == "NOERROR" and reply.header.aa
            assert [str(rr.rdata) for rr in reply.rr] == [f"mysql-0.zone-a.db.demo.{Z}."]
            assert str(reply.q.qname) == name + "."  # the question's case is echoed
    assert dns.zone is not None and question(name, "PTR", edns=1232)[2:].lower() in dns.zone.fast


async def test_unowned_reverse_names_go_to_the_upstream(tcp: bool) -> None:
    upstream = await serve(feed(StubFleet(_db_fleet("10.5.0.1", 1))), listen="127.0.0.1:0", cluster="zone-a")
    host, port = upstream.udp_address
    front = await serve(feed(StubFleet(two_cluster_fleet())), listen="127.0.0.1:0", cluster="zone-a",
                        upstream=f"{host}:{port}")
    try:
        own = await ptr(front, "10.1.0.1", tcp=tcp)  # the front's own: answered there
        assert targets(own) == [f"mysql-0.zone-a.db.demo.{Z}."]
        theirs = await ptr(front, "10.5.0.1", tcp=tcp)  # only the upstream's: forwarded, relayed
        assert targets(theirs) == [f"db-0.zone-a.db.demo.{Z}."]
        nobody = await ptr(front, "10.9.9.9", tcp=tcp)  # nobody's: the upstream refuses it
        assert nobody.rcode() == rcode.REFUSED
    finally:
        await front.close()
        await upstream.close()


def _db_fleet(ip: str, version: int):  # type: ignore[no-untyped-def]
    return fleet({"zone-a": cluster(namespace("demo"), service("db", headless=True), export("db"),
                                    endpoint_slice("db", [endpoint(ip, hostname="db-0")]),
                                    service("web"), export("web"))}, version=version)


async def test_a_zone_change_moves_the_pointers() -> None:
    stub = StubFleet(_db_fleet("10.5.0.1", 1))
    dns = await serve(feed(stub), listen="127.0.0.1:0", cluster="zone-a")
    try:
        assert targets(await ptr(dns, "10.5.0.1")) == [f"db-0.zone-a.db.demo.{Z}."]
        stub.publish(_db_fleet("10.5.0.2", 2))
        assert (await ptr(dns, "10.5.0.1")).rcode() == rcode.REFUSED
        assert targets(await ptr(dns, "10.5.0.2")) == [f"db-0.zone-a.db.demo.{Z}."]
        web = address_of(dns, f"web.demo.{Z}.")
        assert targets(await ptr(dns, web)) == [f"web.demo.{Z}."]  # an unchanged service keeps its pointer
    finally:
        await dns.close()


def test_the_incremental_index_equals_a_fresh_one() -> None:
    first = derive_imports(_db_fleet("10.5.0.1", 1), clusters=["zone-a"]).per_cluster["zone-a"]
    z1 = build_zone(first.service_imports, first.endpoint_slices, serial=1)
    reverse.index_of(z1)
    second = derive_imports(_db_fleet("10.5.0.7", 2), clusters=["zone-a"]).per_cluster["zone-a"]
    from dnsplugin.service import service_changes
    from dnsplugin.zone import update_zone
    z2 = update_zone(z1, service_changes(first.by_service, second.by_service), serial=2)
    assert reverse.index_of(z2) == reverse.build_index(z2)
    assert [wire_text(k) for k in reverse.index_of(z2) if b"10" in k and b"5" in k] == ["7.0.5.10.in-addr.arpa."]


async def test_dig_x(dns: DnsService) -> None:
    exe = require_tool("dig")
    host, port = dns.udp_address
    for extra in ((), ("+tcp",)):
        proc = await asyncio.create_subprocess_exec(
            exe, f"@{host}", "-p", str(port), "+time=2", "+tries=1", *extra, "+short", "-x", "10.2.0.1",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        async with asyncio.timeout(10):
            out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        assert out.decode().split() == [f"mysql-0.zone-b.db.demo.{Z}."]


async def test_debug_zone_lists_the_pointers(dns: DnsService) -> None:
    body = dns.debug_zone()
    assert body is not None
    ptrs = {r["name"]: r["data"] for r in body["records"] if r["type"] == "PTR"}
    assert ptrs["1.0.2.10.in-addr.arpa."] == f"mysql-0.zone-b.db.demo.{Z}."
    web = address_of(dns, f"web.demo.{Z}.")
    assert ptrs[".".join(reversed(web.split("."))) + ".in-addr.arpa."] == f"web.demo.{Z}."
    other = dns.debug_zone("zone-b")
    assert other is not None and any(r["type"] == "PTR" for r in other["records"])
