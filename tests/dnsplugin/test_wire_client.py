"""The responder as dnspython sees it over real UDP and TCP: what test_dig.py checks
with dig, checked again where dig is not installed.

The responder encodes with dnslib and the other DNS tests parse with dnslib too, so a
mistake both sides of dnslib agree on would pass them; dig was the independent reader.
dnspython is another: its own encoder for the queries, its own strict parser for the
answers (it rejects a reply whose ID or question does not match), and, like dig, its own
retry over TCP when a UDP answer comes back truncated.
"""
from __future__ import annotations

from typing import AsyncIterator

import pytest
from dns import asyncquery, flags, message, rcode, rdatatype

from dnsplugin.service import DnsService, serve
from tests.dnsplugin.dnsclient_support import feed, StubFleet
from tests.dnsplugin.fleets_support import big_headless_fleet

Z = "svc.clusterset.local"


@pytest.fixture(params=[False, True], ids=["udp", "tcp"])
def tcp(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


async def query(service: DnsService, name: str, qtype: str, *, tcp: bool = False,
                payload: int | None = None) -> message.Message:
    """One question from dnspython's own encoder; the answer through its own parser."""
    q = message.make_query(name, qtype, use_edns=0 if payload else False, payload=payload or 1232)
    host, port = service.udp_address
    if tcp:
        return await asyncquery.tcp(q, host, port=port, timeout=2)
    return await asyncquery.udp(q, host, port=port, timeout=2)


def answers(reply: message.Message, qtype: str) -> list[str]:
    """The answer section's rdata of one type, as text, sorted."""
    wanted = rdatatype.from_text(qtype)
    return sorted(rd.to_text() for rrset in reply.answer if rrset.rdtype == wanted for rd in rrset)


@pytest.fixture
async def big() -> AsyncIterator[DnsService]:
    service = await serve(feed(StubFleet(big_headless_fleet(120))), listen="127.0.0.1:0")
    try:
        yield service
    finally:
        await service.close()


async def test_clusterset_ip_headless_and_schema_version_answers(dns: DnsService, tcp: bool) -> None:
    web = await query(dns, f"web.demo.{Z}", "A", tcp=tcp)
    (ip,) = answers(web, "A")
    assert web.rcode() == rcode.NOERROR and ip.startswith("242.0.")
    db = await query(dns, f"db.demo.{Z}", "A", tcp=tcp)
    assert answers(db, "A") == ["10.1.0.1", "10.1.0.2", "10.2.0.1"]  # 10.1.0.3 is not ready
    version = await query(dns, "dns-version.clusterset.local", "TXT", tcp=tcp)
    assert answers(version, "TXT") == ['"1.0.0"']


async def test_headless_srv_names_each_pod_by_hostname_and_cluster(dns: DnsService, tcp: bool) -> None:
    reply = await query(dns, f"_mysql._tcp.db.demo.{Z}", "SRV", tcp=tcp)
    assert answers(reply, "SRV") == sorted([
        f"0 100 3306 mysql-0.zone-a.db.demo.{Z}.", f"0 100 3306 10-1-0-2.zone-a.db.demo.{Z}.",
        f"0 100 3306 mysql-0.zone-b.db.demo.{Z}.", f"0 100 3306 mysql-1.zone-b.db.demo.{Z}."])
    glue = {(rrset.name.to_text(), rd.to_text()) for rrset in reply.additional for rd in rrset}
    assert (f"mysql-0.zone-b.db.demo.{Z}.", "10.2.0.1") in glue
    assert (f"mysql-1.zone-b.db.demo.{Z}.", "fd00:b::1") in glue
    pod = await query(dns, f"mysql-0.zone-b.db.demo.{Z}", "A", tcp=tcp)
    assert answers(pod, "A") == ["10.2.0.1"]


async def test_short_pod_name_over_tcp_is_authoritative_with_no_recursion(dns: DnsService) -> None:
    reply = await query(dns, f"mysql-0.db.demo.{Z}", "A", tcp=True)
    assert reply.rcode() == rcode.NOERROR
    assert reply.flags == flags.QR | flags.AA | flags.RD  # dig's "flags: qr aa rd;": no RA, no TC
    assert answers(reply, "A") == ["10.1.0.1", "10.2.0.1"]  # mysql-0 in both clusters


async def test_nxdomain_carries_the_soa_and_other_zones_are_refused(dns: DnsService, tcp: bool) -> None:
    nx = await query(dns, f"zone-a.db.demo.{Z}", "A", tcp=tcp)
    assert nx.rcode() == rcode.NXDOMAIN and not nx.answer
    assert [(r.name.to_text(), r.rdtype) for r in nx.authority] == [("clusterset.local.", rdatatype.SOA)]
    refused = await query(dns, "example.com", "A", tcp=tcp)
    assert refused.rcode() == rcode.REFUSED and not refused.answer


async def test_edns_buffer_size_is_capped_at_1232_and_echoed(dns: DnsService) -> None:
    reply = await query(dns, f"web.demo.{Z}", "SRV", payload=4096)
    assert reply.edns == 0 and reply.payload == 1232  # capped, not the client's 4096
    assert answers(reply, "SRV") == sorted([f"0 100 80 web.demo.{Z}.", f"0 100 9000 web.demo.{Z}.",
                                            f"0 100 53 web.demo.{Z}."])
    plain = await query(dns, f"web.demo.{Z}", "A")
    assert plain.edns == -1  # no OPT in the answer to a query without one


async def test_truncated_udp_answer_is_retried_over_tcp_by_the_client(big: DnsService) -> None:
    host, port = big.udp_address
    q = message.make_query(f"big.demo.{Z}", "A", use_edns=False)
    with pytest.raises(message.Truncated):  # 120 records do not fit in 512 bytes: TC is set
        await asyncquery.udp(q, host, port=port, timeout=2, raise_on_truncation=True)
    reply, used_tcp = await asyncquery.udp_with_fallback(q, host, port=port, timeout=2)
    assert used_tcp and not reply.flags & flags.TC
    assert len(answers(reply, "A")) == 120


async def test_question_case_is_echoed_in_question_and_answer(dns: DnsService, tcp: bool) -> None:
    name = f"WEB.Demo.{Z}."
    reply = await query(dns, name, "A", tcp=tcp)
    assert [r.name.to_text() for r in reply.question] == [name]
    assert [r.name.to_text() for r in reply.answer] == [name]
