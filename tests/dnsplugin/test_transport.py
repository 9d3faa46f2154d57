"""Transport behaviour: EDNS sizes, truncation then TCP, framing, swaps, fuzz, forwarding."""
from __future__ import annotations

import asyncio
import random
import socket
import struct
from typing import AsyncIterator

import pytest
from dnslib import EDNS0, DNSRecord
from prometheus_client import REGISTRY, generate_latest

from dnsplugin.service import DnsService, serve
from dnsplugin.resolver import resolve
from dnsplugin.zone import build_zone
from tests.controller.mcs_support import cluster, export, fleet, namespace, service
from tests.dnsplugin.dnsclient_support import feed, StubFleet, ask, question, rcode, rdatas, tcp_exchange, udp_exchange
from tests.dnsplugin.fleets_support import big_headless_fleet, two_cluster_fleet

Z = "svc.clusterset.local"


@pytest.fixture
async def big() -> AsyncIterator[DnsService]:
    service = await serve(feed(StubFleet(big_headless_fleet())), listen="127.0.0.1:0", idle_timeout=0.3)
    try:
        yield service
    finally:
        await service.close()


def opt_of(reply: DNSRecord) -> object:
    opts = [rr for rr in reply.ar if rr.rtype == 41]
    assert len(opts) == 1
    return opts[0]


async def test_udp_without_edns_is_truncated_at_512_then_tcp_has_everything(big: DnsService) -> None:
    raw = await udp_exchange(big.udp_address, question(f"big.demo.{Z}"))
    reply = DNSRecord.parse(raw)
    assert len(raw) <= 512 and reply.header.tc == 1 and not reply.rr
    full = await ask(big.udp_address, f"big.demo.{Z}", tcp=True)
    assert full.header.tc == 0 and len(rdatas(full, "A")) == 120


async def test_edns_size_is_honoured_capped_at_1232_and_opt_echoed(big: DnsService) -> None:
    for asked, expect_tc in ((4096, True), (1232, True), (100, True)):
        raw = await udp_exchange(big.udp_address, question(f"big.demo.{Z}", edns=asked))
        reply = DNSRecord.parse(raw)
        assert reply.header.tc == int(expect_tc) and len(raw) <= max(512, min(asked, 1232))
        assert opt_of(reply).rclass == 1232  # type: ignore[attr-defined]
    small = await serve(feed(StubFleet(big_headless_fleet(60))), listen="127.0.0.1:0")
    try:  # 60 records: ~1000 bytes, over 512 but within an EDNS 1232 buffer
        plain = DNSRecord.parse(await udp_exchange(small.udp_address, question(f"big.demo.{Z}")))
        edns = DNSRecord.parse(await udp_exchange(small.udp_address, question(f"big.demo.{Z}", edns=4096)))
        assert plain.header.tc == 1 and edns.header.tc == 0 and len(rdatas(edns, "A")) == 60
        assert opt_of(edns).rclass == 1232  # type: ignore[attr-defined]
    finally:
        await small.close()


async def test_edns_with_options_and_on_negative_answers(big: DnsService) -> None:
    from dnslib import EDNSOption
    q = DNSRecord.question(f"nope.demo.{Z}")
    q.add_ar(EDNS0(udp_len=1232, opts=[EDNSOption(10, b"12345678")]))  # a client cookie
    reply = DNSRecord.parse(await udp_exchange(big.udp_address, bytes(q.pack())))
    assert rcode(reply) == "NXDOMAIN" and opt_of(reply).rclass == 1232  # type: ignore[attr-defined]
    refused = DNSRecord.parse(await udp_exchange(big.udp_address, question("example.com", edns=1232)))
    assert rcode(refused) == "REFUSED" and opt_of(refused)


async def test_several_queries_per_tcp_connection_in_order(big: DnsService) -> None:
    names = [f"big.demo.{Z}", "dns-version.clusterset.local", f"nope.demo.{Z}", "example.com"]
    msgs = [question(n, "TXT" if n.startswith("dns-") else "A", qid=1000 + i) for i, n in enumerate(names)]
    replies = [DNSRecord.parse(r) for r in await tcp_exchange(big.tcp_address, *msgs)]
    assert [r.header.id for r in replies] == [1000, 1001, 1002, 1003]
    assert [rcode(r) for r in replies] == ["NOERROR", "NOERROR", "NXDOMAIN", "REFUSED"]


async def test_tcp_frames_split_across_writes_are_reassembled(big: DnsService) -> None:
    msg = question("dns-version.clusterset.local", "TXT", qid=77)
    framed = struct.pack("!H", len(msg)) + msg
    reader, writer = await asyncio.open_connection(*big.tcp_address)
    try:
        for i in range(len(framed)):
            writer.write(framed[i:i + 1])
            await writer.drain()
        async with asyncio.timeout(2):
            size = struct.unpack("!H", await reader.readexactly(2))[0]
            assert DNSRecord.parse(await reader.readexactly(size)).header.id == 77
    finally:
        writer.close()


async def test_idle_tcp_connection_is_closed(big: DnsService) -> None:
    reader, writer = await asyncio.open_connection(*big.tcp_address)
    try:
        async with asyncio.timeout(3):
            assert await reader.read() == b""  # server closed it after idle_timeout (0.3 s)
    finally:
        writer.close()


async def test_zone_swaps_are_atomic_while_queries_run() -> None:
    fleet_ = StubFleet(big_headless_fleet(40, octet=1, version=1))
    service = await serve(feed(fleet_), listen="127.0.0.1:0")
    seen: set[int] = set()
    answered = asyncio.Event()

    async def querier() -> None:
        for _ in range(60):
            reply = await ask(service.udp_address, f"big.demo.{Z}", edns=1232)
            octets = {a.split(".")[1] for a in rdatas(reply, "A")}
            assert len(octets) == 1 and len(reply.rr) == 40  # one snapshot per answer
            seen.add(int(octets.pop()))
            answered.set()
            serial = await ask(service.udp_address, "clusterset.local", "SOA")
            assert serial.rr[0].rdata.times[0] >= 1

    async def publisher() -> None:
        for version in range(2, 40):
            fleet_.publish(big_headless_fleet(40, octet=version % 200, version=version))
            answered.clear()
            async with asyncio.timeout(5):
                await answered.wait()  # at least one answer per snapshot

    try:
        await asyncio.gather(querier(), querier(), publisher())
        assert len(seen) > 1
        final = await ask(service.udp_address, f"big.demo.{Z}", edns=1232)
        assert {a.split(".")[1] for a in rdatas(final, "A")} == {"39"}
    finally:
        await service.close()


def _mutations(rng: random.Random, seeds: list[bytes], count: int) -> list[bytes]:
    out = []
    for n in range(count):
        if n % 3 == 0:
            out.append(bytes(rng.randrange(256) for _ in range(rng.randrange(0, 80))))
            continue
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randrange(1, 6)):
            op = rng.randrange(4)
            if op == 0 and data:
                data[rng.randrange(len(data))] = rng.randrange(256)
            elif op == 1 and data:
                del data[rng.randrange(len(data)):]
            elif op == 2:
                data.insert(rng.randrange(len(data) + 1), rng.randrange(256))
            else:
                data += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 20)))
        out.append(bytes(data))
    return out


def test_fuzzed_packets_never_raise_and_answers_parse() -> None:
    snap = two_cluster_fleet()
    from controller.derive import derive_imports
    view = derive_imports(snap).per_cluster["zone-a"]
    zone = build_zone(view.service_imports, view.endpoint_slices)
    seeds = [question(f"web.demo.{Z}"), question(f"db.demo.{Z}", "SRV", edns=1232),
             question("dns-version.clusterset.local", "TXT"), question(f"_mysql._tcp.db.demo.{Z}", "SRV")]
    rng = random.Random(1645)
    answered = 0
    for data in _mutations(rng, seeds, 2000):
        try:
            DNSRecord.parse(data)
            parseable = True
        except Exception:  # dnslib rejects some legal names (binary labels) too
            parseable = False
        for tcp in (False, True):
            resp = resolve(zone, data, tcp=tcp)
            if resp is None:
                continue
            assert isinstance(resp, bytes) and resp[:2] == data[:2] and resp[2] & 0x80
            if parseable and resp[3] & 0x0F in (0, 3, 5):  # full answers must be well-formed DNS
                DNSRecord.parse(resp)
                answered += 1
    assert answered > 100


async def test_fuzzed_datagrams_do_not_stop_the_server() -> None:
    service = await serve(feed(StubFleet(two_cluster_fleet())), listen="127.0.0.1:0")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    try:
        seeds = [question(f"web.demo.{Z}"), question(f"db.demo.{Z}", "SRV", edns=1232)]
        for i, data in enumerate(_mutations(random.Random(2149), seeds, 2000)):
            try:
                sock.sendto(data, service.udp_address)
            except BlockingIOError:
                pass
            if i % 100 == 0:
                await asyncio.sleep(0)  # let the server drain
        reply = await ask(service.udp_address, f"web.demo.{Z}")
        assert rcode(reply) == "NOERROR" and rdatas(reply, "A")
        tcp_reply = await ask(service.udp_address, f"web.demo.{Z}", tcp=True)
        assert rdatas(tcp_reply, "A") == rdatas(reply, "A")
    finally:
        sock.close()
        await service.close()


async def test_garbage_without_header_is_dropped_and_over_tcp_closes_the_connection() -> None:
    service = await serve(feed(StubFleet(two_cluster_fleet())), listen="127.0.0.1:0")
    try:
        with pytest.raises(TimeoutError):
            await udp_exchange(service.udp_address, b"\x01\x02\x03", timeout=0.3)
        reader, writer = await asyncio.open_connection(*service.tcp_address)
        writer.write(b"\x00\x03abc")
        async with asyncio.timeout(2):
            assert await reader.read() == b""
        writer.close()
    finally:
        await service.close()


async def test_forwarding_names_outside_the_zone_to_an_upstream_responder() -> None:
    upstream_fleet = StubFleet(fleet({"far": cluster(namespace("demo"), service("far"), export("far"))},
                                     zone="upstream.test"))
    upstream = await serve(feed(upstream_fleet), listen="127.0.0.1:0")
    host, port = upstream.udp_address
    front = await serve(feed(StubFleet(two_cluster_fleet())), listen="127.0.0.1:0", upstream=f"{host}:{port}")
    try:
        for tcp in (False, True):
            reply = await ask(front.udp_address, "far.demo.svc.upstream.test", tcp=tcp)
            assert rcode(reply) == "NOERROR" and rdatas(reply, "A")[0].startswith("242.0.")
            nx = await ask(front.udp_address, "nope.upstream.test", tcp=tcp)
            assert rcode(nx) == "NXDOMAIN"
            # the front's own zone is still answered locally
            assert rdatas(await ask(front.udp_address, f"web.demo.{Z}", tcp=tcp), "A")
            refused = await ask(front.udp_address, "example.com", tcp=tcp)  # refused by the upstream
            assert rcode(refused) == "REFUSED"
    finally:
        await front.close()
        await upstream.close()


async def test_silent_upstream_gives_servfail_after_the_timeout() -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    port = silent.getsockname()[1]
    front = await serve(feed(StubFleet(two_cluster_fleet())), listen="127.0.0.1:0", upstream=f"127.0.0.1:{port}",
                        forward_timeout=0.2)
    try:
        assert rcode(await ask(front.udp_address, "example.com")) == "SERVFAIL"
        assert rcode(await ask(front.udp_address, "example.com", tcp=True)) == "SERVFAIL"  # nothing listens on TCP
    finally:
        silent.close()
        await front.close()


async def test_metrics_count_queries_by_qtype_and_rcode() -> None:
    service = await serve(feed(StubFleet(two_cluster_fleet())), listen="127.0.0.1:0")

    def value(qtype: str, code: str, transport: str = "udp") -> float:
        v = REGISTRY.get_sample_value("fleetgate_dns_queries_total", {"qtype": qtype, "rcode": code, "transport": transport})
        return v or 0.0

    try:
        before = (value("A", "NOERROR"), value("AAAA", "NXDOMAIN", "tcp"), value("A", "REFUSED"))
        await ask(service.udp_address, f"web.demo.{Z}")
        await ask(service.udp_address, f"nope.demo.{Z}", "AAAA", tcp=True)
        await ask(service.udp_address, "example.com")
        after = (value("A", "NOERROR"), value("AAAA", "NXDOMAIN", "tcp"), value("A", "REFUSED"))
        assert [b - a for a, b in zip(before, after)] == [1, 1, 1]
        assert b"fleetgate_dns_queries_total{" in generate_latest(REGISTRY)
    finally:
        await service.close()


async def test_listener_that_cannot_bind_raises_oserror() -> None:
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))
    try:
        with pytest.raises(OSError):
            await serve(feed(StubFleet(two_cluster_fleet())), listen=f"127.0.0.1:{taken.getsockname()[1]}")
    finally:
        taken.close()


async def test_debug_zone_json_lists_the_records_for_a_cluster() -> None:
    service = await serve(feed(StubFleet(two_cluster_fleet())), listen="127.0.0.1:0", cluster="zone-a")
    try:
        body = service.debug_zone()
        assert body is not None and body["zone"] == "clusterset.local" and body["serial"] == 1
        names = {(r["name"], r["type"]) for r in body["records"]}
        assert (f"mysql-0.zone-b.db.demo.{Z}.", "A") in names
        assert ("dns-version.clusterset.local.", "TXT") in names
        other = service.debug_zone("zone-b")
        assert other is not None and (f"web.demo.{Z}.", "A") in {(r["name"], r["type"]) for r in other["records"]}
        assert service.debug_zone("zone-x") is None
    finally:
        await service.close()
