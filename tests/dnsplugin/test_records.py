"""Every row of dns.md's record and response-code tables, asked over real UDP and TCP."""
from __future__ import annotations

import pytest
from dnslib import QTYPE, DNSRecord

from dnsplugin.service import DnsService, serve
from dnsplugin.zone import zone_to_json
from tests.dnsplugin.dnsclient_support import feed, StubFleet, ask, question, rcode, rdatas, tcp_exchange, udp_exchange
from tests.dnsplugin.fleets_support import two_cluster_fleet

Z = "svc.clusterset.local"


@pytest.fixture(params=[False, True], ids=["udp", "tcp"])
def tcp(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def web_ip(dns: DnsService) -> str:
    zone = dns.zone
    assert zone is not None
    return next(r["data"] for r in zone_to_json(zone)["records"]
                if r["name"] == f"web.demo.{Z}." and r["type"] == "A")


async def test_clusterset_ip_a_record(dns: DnsService, tcp: bool) -> None:
    reply = await ask(dns.udp_address, f"web.demo.{Z}", "A", tcp=tcp)
    assert rcode(reply) == "NOERROR" and reply.header.aa
    (ip,) = rdatas(reply, "A")
    assert ip.startswith("242.0.")
    assert reply.rr[0].ttl == 5


async def test_dual_stack_clusterset_ip_has_a_and_aaaa(dns: DnsService, tcp: bool) -> None:
    a = await ask(dns.udp_address, f"dual.demo.{Z}", "A", tcp=tcp)
    aaaa = await ask(dns.udp_address, f"dual.demo.{Z}", "AAAA", tcp=tcp)
    assert len(rdatas(a, "A")) == 1 and rdatas(aaaa, "AAAA")[0].startswith("fd00:242:")


async def test_aaaa_on_ipv4_only_service_is_nodata_with_soa(dns: DnsService, tcp: bool) -> None:
    reply = await ask(dns.udp_address, f"web.demo.{Z}", "AAAA", tcp=tcp)
    assert rcode(reply) == "NOERROR" and not reply.rr
    assert [QTYPE.get(rr.rtype) for rr in reply.auth] == ["SOA"]


async def test_txt_on_a_service_is_nodata(dns: DnsService) -> None:
    reply = await ask(dns.udp_address, f"web.demo.{Z}", "TXT")
    assert rcode(reply) == "NOERROR" and not reply.rr and reply.auth


async def test_srv_per_named_port_with_address_in_additional(dns: DnsService, tcp: bool) -> None:
    reply = await ask(dns.udp_address, f"_http._tcp.web.demo.{Z}", "SRV", tcp=tcp)
    assert rdatas(reply, "SRV") == [f"0 100 80 web.demo.{Z}."]
    assert [str(rr.rname) for rr in reply.ar] == [f"_http._tcp.web.demo.{Z}."[len("_http._tcp."):]]
    assert str(reply.ar[0].rdata) == web_ip(dns)
    udp = await ask(dns.udp_address, f"_dns._udp.web.demo.{Z}", "SRV", tcp=tcp)
    assert rdatas(udp, "SRV") == [f"0 100 53 web.demo.{Z}."]


async def test_bare_service_srv_is_the_set_of_named_ports(dns: DnsService) -> None:
    reply = await ask(dns.udp_address, f"web.demo.{Z}", "SRV")
    assert rdatas(reply, "SRV") == sorted([f"0 100 80 web.demo.{Z}.", f"0 100 9000 web.demo.{Z}.",
                                           f"0 100 53 web.demo.{Z}."])


async def test_headless_a_is_every_ready_endpoint_across_the_clusterset(dns: DnsService, tcp: bool) -> None:
    reply = await ask(dns.udp_address, f"db.demo.{Z}", "A", tcp=tcp)
    assert rdatas(reply, "A") == ["10.1.0.1", "10.1.0.2", "10.2.0.1"]  # 10.1.0.3 is not ready
    v6 = await ask(dns.udp_address, f"db.demo.{Z}", "AAAA", tcp=tcp)
    assert rdatas(v6, "AAAA") == ["fd00:b::1"]


async def test_hostname_clusterid_names_one_endpoint(dns: DnsService) -> None:
    a = await ask(dns.udp_address, f"mysql-0.zone-a.db.demo.{Z}")
    b = await ask(dns.udp_address, f"mysql-0.zone-b.db.demo.{Z}")
    v6 = await ask(dns.udp_address, f"mysql-1.zone-b.db.demo.{Z}", "AAAA")
    assert (rdatas(a), rdatas(b), rdatas(v6)) == (["10.1.0.1"], ["10.2.0.1"], ["fd00:b::1"])


async def test_ack_one_short_form_resolves_the_hostname_in_any_cluster(dns: DnsService) -> None:
    reply = await ask(dns.udp_address, f"mysql-0.db.demo.{Z}")
    assert rdatas(reply) == ["10.1.0.1", "10.2.0.1"]


async def test_endpoint_without_hostname_is_named_by_dashed_address(dns: DnsService) -> None:
    full = await ask(dns.udp_address, f"10-1-0-2.zone-a.db.demo.{Z}")
    short = await ask(dns.udp_address, f"10-1-0-2.db.demo.{Z}")
    assert rdatas(full) == rdatas(short) == ["10.1.0.2"]


async def test_headless_srv_is_one_record_per_ready_endpoint_and_port(dns: DnsService, tcp: bool) -> None:
    reply = await ask(dns.udp_address, f"_mysql._tcp.db.demo.{Z}", "SRV", tcp=tcp)
    assert rdatas(reply, "SRV") == sorted([
        f"0 100 3306 mysql-0.zone-a.db.demo.{Z}.", f"0 100 3306 10-1-0-2.zone-a.db.demo.{Z}.",
        f"0 100 3306 mysql-0.zone-b.db.demo.{Z}.", f"0 100 3306 mysql-1.zone-b.db.demo.{Z}."])
    additional = sorted((str(rr.rname), str(rr.rdata)) for rr in reply.ar)
    assert (f"mysql-1.zone-b.db.demo.{Z}.", "fd00:b::1") in additional
    assert len(additional) == 4


async def test_schema_version_txt(dns: DnsService, tcp: bool) -> None:
    reply = await ask(dns.udp_address, "dns-version.clusterset.local", "TXT", tcp=tcp)
    assert rdatas(reply, "TXT") == ['"1.0.0"'] and reply.rr[0].ttl == 28800


async def test_zone_apex_soa_and_ns(dns: DnsService) -> None:
    soa = await ask(dns.udp_address, "clusterset.local", "SOA")
    (rr,) = soa.rr
    assert rr.rdata.times[-1] == 5  # SOA minimum = TTL
    assert rr.rdata.times[0] == 1  # serial = snapshot version
    ns = await ask(dns.udp_address, "clusterset.local", "NS")
    assert rdatas(ns, "NS") == ["ns.dns.clusterset.local."]
    assert [str(r.rdata) for r in ns.ar] == ["127.0.0.1"]


async def test_clusterid_right_under_the_service_is_nxdomain(dns: DnsService) -> None:
    reply = await ask(dns.udp_address, f"zone-a.db.demo.{Z}")
    assert rcode(reply) == "NXDOMAIN"
    assert [QTYPE.get(rr.rtype) for rr in reply.auth] == ["SOA"]


async def test_headless_without_ready_endpoints_is_nxdomain(dns: DnsService, tcp: bool) -> None:
    for name in (f"cache.demo.{Z}", f"cache-0.zone-a.cache.demo.{Z}", f"_redis._tcp.cache.demo.{Z}"):
        reply = await ask(dns.udp_address, name, "A", tcp=tcp)
        assert rcode(reply) == "NXDOMAIN", name


async def test_unknown_name_in_zone_is_nxdomain_with_soa(dns: DnsService, tcp: bool) -> None:
    reply = await ask(dns.udp_address, f"nope.demo.{Z}", "A", tcp=tcp)
    assert rcode(reply) == "NXDOMAIN" and reply.auth[0].rdata.mname == "ns.dns.clusterset.local."


async def test_name_outside_the_zone_is_refused(dns: DnsService, tcp: bool) -> None:
    reply = await ask(dns.udp_address, "example.com", "A", tcp=tcp)
    assert rcode(reply) == "REFUSED" and not reply.rr
    # a suffix match that is not on a label boundary is outside too
    assert rcode(await ask(dns.udp_address, "notclusterset.local", "A")) == "REFUSED"


async def test_servfail_before_the_first_snapshot_then_answers() -> None:
    fleet = StubFleet(None)
    service = await serve(feed(fleet), listen="127.0.0.1:0")
    try:
        assert rcode(await ask(service.udp_address, f"web.demo.{Z}")) == "SERVFAIL"
        assert rcode(await ask(service.udp_address, f"web.demo.{Z}", tcp=True)) == "SERVFAIL"
        fleet.publish(two_cluster_fleet())
        assert rcode(await ask(service.udp_address, f"web.demo.{Z}")) == "NOERROR"
    finally:
        await service.close()


async def test_opcode_other_than_query_is_notimp(dns: DnsService) -> None:
    q = DNSRecord.question(f"web.demo.{Z}")
    q.header.opcode = 4  # NOTIFY
    reply = DNSRecord.parse(await udp_exchange(dns.udp_address, bytes(q.pack())))
    assert rcode(reply) == "NOTIMP" and reply.header.opcode == 4


async def test_several_questions_is_formerr(dns: DnsService) -> None:
    q = DNSRecord.question(f"web.demo.{Z}")
    q.add_question(DNSRecord.question(f"db.demo.{Z}").q)
    reply = DNSRecord.parse(await udp_exchange(dns.udp_address, bytes(q.pack())))
    assert rcode(reply) == "FORMERR"


async def test_edns_version_other_than_zero_is_badvers(dns: DnsService) -> None:
    from dnslib import EDNS0
    q = DNSRecord.question(f"web.demo.{Z}")
    q.add_ar(EDNS0(version=1))
    reply = DNSRecord.parse(await udp_exchange(dns.udp_address, bytes(q.pack())))
    (opt,) = [rr for rr in reply.ar if rr.rtype == 41]
    assert (opt.ttl >> 24) & 0xFF == 1  # extended rcode 1 + header rcode 0 = BADVERS (16)


async def test_class_any_is_answered_like_in_and_chaos_is_refused(dns: DnsService) -> None:
    q = DNSRecord.question(f"web.demo.{Z}", "A", "*")
    reply = DNSRecord.parse(await udp_exchange(dns.udp_address, bytes(q.pack())))
    assert rdatas(reply, "A") == [web_ip(dns)]
    ch = DNSRecord.question("version.bind", "TXT", "CH")
    assert rcode(DNSRecord.parse(await udp_exchange(dns.udp_address, bytes(ch.pack())))) == "REFUSED"


async def test_qtype_any_returns_every_rrset_of_the_name(dns: DnsService) -> None:
    reply = await ask(dns.udp_address, f"web.demo.{Z}", "ANY")
    assert {QTYPE.get(rr.rtype) for rr in reply.rr} == {"A", "SRV"}


async def test_answer_echoes_the_question_case(dns: DnsService, tcp: bool) -> None:
    name = "WeB.DeMo.SvC.ClusterSet.LOCAL"
    data = question(name, "A", qid=4242)
    raw = (await tcp_exchange(dns.udp_address, data))[0] if tcp else await udp_exchange(dns.udp_address, data)
    assert raw[:2] == data[:2]
    assert raw[12:12 + len(data) - 12] == data[12:]
    reply = DNSRecord.parse(raw)
    assert str(reply.q.qname) == name + "." and rdatas(reply) == [web_ip(dns)]


async def test_rd_bit_is_copied_and_ra_is_not_set(dns: DnsService) -> None:
    q = DNSRecord.question(f"web.demo.{Z}")
    q.header.rd = 0
    reply = DNSRecord.parse(await udp_exchange(dns.udp_address, bytes(q.pack())))
    assert (reply.header.rd, reply.header.ra, reply.header.aa) == (0, 0, 1)
    assert (await ask(dns.udp_address, f"web.demo.{Z}")).header.rd == 1


async def test_custom_ttl_applies_to_records_and_soa_minimum() -> None:
    service = await serve(feed(StubFleet(two_cluster_fleet())), listen="127.0.0.1:0", ttl=30)
    try:
        a = await ask(service.udp_address, f"web.demo.{Z}")
        nx = await ask(service.udp_address, f"nope.demo.{Z}")
        assert a.rr[0].ttl == 30 and nx.auth[0].rdata.times[-1] == 30 and nx.auth[0].ttl == 30
    finally:
        await service.close()


async def test_cluster_choice_picks_the_view(dns: DnsService) -> None:
    # zone-b holds the namespace too, so it sees the same imports; a cluster without it sees none
    from tests.controller.mcs_support import cluster, fleet, namespace
    snap = two_cluster_fleet()
    lonely = fleet({**{m.name: m.objects for m in snap.members}, "zone-c": cluster(namespace("other"))})
    service = await serve(feed(StubFleet(lonely)), listen="127.0.0.1:0", cluster="zone-c")
    try:
        assert rcode(await ask(service.udp_address, f"web.demo.{Z}")) == "NXDOMAIN"
        assert rcode(await ask(service.udp_address, "dns-version.clusterset.local", "TXT")) == "NOERROR"
    finally:
        await service.close()
    with pytest.raises(ValueError, match="zone-x"):
        await serve(feed(StubFleet(snap)), listen="127.0.0.1:0", cluster="zone-x")
