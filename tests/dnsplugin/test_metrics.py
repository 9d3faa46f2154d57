"""DNS metrics over real sockets: queries by qtype, rcode and transport, and answer latency.

Queries go out with dnspython (UDP and TCP) to a running responder; the counts are read
by scraping /metrics over HTTP from an admin listener in the same process (the default
registry the responder exports through).
"""
from __future__ import annotations

import asyncio
import socket
from types import ModuleType
from typing import Any, AsyncIterator, Iterator

import aiohttp
import dns.asyncquery
import dns.message
import dns.rcode
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dnsplugin.codec.types import LATENCY_BOUNDS
from dnsplugin.resolver import resolve
from dnsplugin.server import ZoneHolder
from dnsplugin.service import DnsService, serve
from fleet.admin import AdminServer
from tests.dnsplugin.codec_support import PURE, compiled_or_skip, learned_zone
from tests.dnsplugin.dnsclient_support import StubFleet, feed, question
from tests.dnsplugin.fleets_support import two_cluster_fleet

Z = "svc.clusterset.local"
Key = tuple[str, tuple[tuple[str, str], ...]]


@pytest.fixture
async def service() -> AsyncIterator[DnsService]:
    svc = await serve(feed(StubFleet(two_cluster_fleet())), listen="127.0.0.1:0", cluster="zone-a")
    try:
        yield svc
    finally:
        await svc.close()


@pytest.fixture
async def scrape() -> AsyncIterator[Any]:
    """() -> {(sample name, sorted labels): value} from GET /metrics on a real admin listener."""
    admin = AdminServer()
    host, port = await admin.start("127.0.0.1", 0)
    async with aiohttp.ClientSession() as s:
        async def get() -> dict[Key, float]:
            async with s.get(f"http://{host}:{port}/metrics") as r:
                assert r.status == 200
                text = await r.text()
            return {(smp.name, tuple(sorted(smp.labels.items()))): smp.value
                    for f in text_string_to_metric_families(text) for smp in f.samples}
        try:
            yield get
        finally:
            await admin.close()


def q(qtype: str, rcode: str, transport: str) -> Key:
    return ("fleetgate_dns_queries_total", (("qtype", qtype), ("rcode", rcode), ("transport", transport)))


def answered(transport: str) -> Key:
    return ("fleetgate_dns_answer_seconds_count", (("transport", transport),))


def bucket(transport: str, le: str) -> Key:
    return ("fleetgate_dns_answer_seconds_bucket", (("le", le), ("transport", transport)))


def delta(before: dict[Key, float], after: dict[Key, float], key: Key) -> float:
    return after.get(key, 0.0) - before.get(key, 0.0)


async def test_queries_are_counted_by_qtype_rcode_and_transport_with_their_latency(service, scrape) -> None:
    host, port = service.udp_address
    udp = [(f"web.demo.{Z}", "A"), (f"web.demo.{Z}", "A"),  # the second from the learned answers
           (f"_http._tcp.web.demo.{Z}", "SRV"), (f"nope.demo.{Z}", "AAAA"), ("example.com.", "A")]
    tcp = [(f"web.demo.{Z}", "A"), (f"web.demo.{Z}", "A"), (f"nope.demo.{Z}", "AAAA")]
    before = await scrape()
    rcodes = []
    for name, qtype in udp:
        r = await dns.asyncquery.udp(dns.message.make_query(name, qtype), host, port=port, timeout=5)
        rcodes.append(dns.rcode.to_text(r.rcode()))
    for name, qtype in tcp:
        r = await dns.asyncquery.tcp(dns.message.make_query(name, qtype), host, port=port, timeout=5)
        rcodes.append(dns.rcode.to_text(r.rcode()))
    after = await scrape()
    assert rcodes == ["NOERROR", "NOERROR", "NOERROR", "NXDOMAIN", "REFUSED", "NOERROR", "NOERROR", "NXDOMAIN"]
    assert delta(before, after, q("A", "NOERROR", "udp")) == 2
    assert delta(before, after, q("SRV", "NOERROR", "udp")) == 1
    assert delta(before, after, q("AAAA", "NXDOMAIN", "udp")) == 1
    assert delta(before, after, q("A", "REFUSED", "udp")) == 1
    assert delta(before, after, q("A", "NOERROR", "tcp")) == 2
    assert delta(before, after, q("AAAA", "NXDOMAIN", "tcp")) == 1
    assert delta(before, after, answered("udp")) == len(udp)
    assert delta(before, after, answered("tcp")) == len(tcp)
    for transport in ("udp", "tcp"):
        assert delta(before, after, ("fleetgate_dns_answer_seconds_sum", (("transport", transport),))) > 0
        cumulative = [after[bucket(transport, str(b))] for b in (*LATENCY_BOUNDS, "+Inf")]
        assert cumulative == sorted(cumulative) and cumulative[-1] == after[answered(transport)]


async def test_pipelined_tcp_queries_are_each_an_answer(service, scrape) -> None:
    from tests.dnsplugin.dnsclient_support import tcp_exchange

    before = await scrape()
    replies = await tcp_exchange(service.tcp_address, *[question(f"web.demo.{Z}", qid=i) for i in range(1, 7)],
                                 timeout=5)
    after = await scrape()
    assert len(replies) == 6
    assert delta(before, after, answered("tcp")) == 6 and delta(before, after, q("A", "NOERROR", "tcp")) == 6


class _SlowUpstream(asyncio.DatagramProtocol):
    """Answers every query NOERROR, empty, after `delay` seconds."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        reply = dns.message.make_response(dns.message.from_wire(data)).to_wire()
        asyncio.get_running_loop().call_later(self.delay, self.transport.sendto, reply, addr)


async def test_a_forwarded_answer_is_timed_from_the_query_to_the_upstreams_reply(scrape) -> None:
    loop = asyncio.get_running_loop()
    upstream, _ = await loop.create_datagram_endpoint(lambda: _SlowUpstream(0.06), local_addr=("127.0.0.1", 0))
    up_host, up_port = upstream.get_extra_info("sockname")[:2]
    svc = await serve(feed(StubFleet(two_cluster_fleet())), listen="127.0.0.1:0", cluster="zone-a",
                      upstream=f"{up_host}:{up_port}")
    try:
        before = await scrape()
        host, port = svc.udp_address
        r = await dns.asyncquery.udp(dns.message.make_query("example.com.", "A"), host, port=port, timeout=5)
        after = await scrape()
    finally:
        await svc.close()
        upstream.close()
    assert r.rcode() == dns.rcode.NOERROR
    assert delta(before, after, q("A", "NOERROR", "udp")) == 1
    assert delta(before, after, answered("udp")) == 1
    # the upstream took at least 60 ms: the answer is not in any bucket below 50 ms
    assert delta(before, after, bucket("udp", "0.05")) == 0 and delta(before, after, bucket("udp", "+Inf")) == 1
    assert delta(before, after, ("fleetgate_dns_answer_seconds_sum", (("transport", "udp"),))) >= 0.06


@pytest.fixture(params=["compiled", "pure"])
def fastpath(request: pytest.FixtureRequest) -> ModuleType:
    return compiled_or_skip() if request.param == "compiled" else PURE


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        server.bind(("127.0.0.1", 0))
        server.setblocking(False)
        client.bind(("127.0.0.1", 0))
        client.settimeout(2.0)
        yield server, client
    finally:
        server.close()
        client.close()


def test_pump_observes_each_reply_it_sends_and_none_it_drops(fastpath: ModuleType,
                                                            pair: tuple[socket.socket, socket.socket]) -> None:
    server, client = pair
    zone = learned_zone()
    learned = question(f"web.demo.{Z}", qid=5)
    other = question(f"cache.demo.{Z}", qid=6)  # not among the learned names: the slow path
    for data in (learned, learned, other, other):
        client.sendto(data, server.getsockname())
    before = fastpath.pumped_latency()
    calls: list[bytes] = []

    def slow(data: bytes, addr: Any) -> bytes | None:  # answers the first miss, drops the second
        calls.append(data)
        return resolve(zone, data) if len(calls) == 1 else None  # type: ignore[return-value]
    done = 0
    for _ in range(20):  # bounded
        done += fastpath.pump(server, ZoneHolder(zone), [0] * 256, slow, 64)
        if done == 4:
            break
    assert done == 4
    assert len([client.recv(4096) for _ in range(3)]) == 3
    row = [b - a for a, b in zip(before, fastpath.pumped_latency())]
    assert sum(row[:-1]) == 3 and row[-1] > 0  # three replies observed, the dropped one not
    assert fastpath.pump(server, ZoneHolder(zone), [0] * 256, slow, 64) == 0
    assert sum(fastpath.pumped_latency()[:-1]) - sum(before[:-1]) == 3
