"""pump over real UDP sockets: batches bounded by the limit, the resolver's bytes for every
datagram in order, misses handed to the slow path with the peer's address; and the
listener keeps TCP and zone swaps served during a UDP flood."""
from __future__ import annotations

import asyncio
import socket
import sys
from types import ModuleType
from typing import Any, Iterator

import pytest
from dnslib import DNSRecord

from dnsplugin.resolver import resolve
from dnsplugin.server import ZoneHolder
from dnsplugin.service import serve
from tests.controller.mcs_support import cluster, export, fleet, namespace, service
from tests.dnsplugin.codec_support import PURE, compiled_or_skip, corpus, learned_zone
from tests.dnsplugin.dnsclient_support import StubFleet, feed, question, rdatas, tcp_exchange, udp_exchange
from tests.dnsplugin.fleets_support import two_cluster_fleet

ZONE = learned_zone()


@pytest.fixture(params=["compiled", "pure"])
def fastpath(request: pytest.FixtureRequest) -> ModuleType:
    return compiled_or_skip() if request.param == "compiled" else PURE


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(server, client) UDP sockets on 127.0.0.1; the server non-blocking, as the listener's."""
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        server.bind(("127.0.0.1", 0))
        server.setblocking(False)
        client.bind(("127.0.0.1", 0))
        client.settimeout(2.0)
        yield server, client
    finally:
        server.close()
        client.close()


def slow_resolver(seen: list[Any]) -> Any:
    def slow(data: bytes, addr: Any) -> bytes | None:
        seen.append(addr)
        return resolve(ZONE, data)  # type: ignore[return-value]
    return slow


def replies(client: socket.socket, count: int) -> list[bytes]:
    return [client.recv(65535) for _ in range(count)]


def test_pump_answers_every_datagram_in_order_with_the_resolvers_bytes(
        fastpath: ModuleType, pair: tuple[socket.socket, socket.socket]) -> None:
    server, client = pair
    holder = ZoneHolder(ZONE)
    sent = [q for q in corpus() if len(q) >= 12 and not q[2] & 0x80][:150]  # (no reply to responses)
    expected = [resolve(ZONE, q) for q in sent]
    assert all(isinstance(e, bytes) for e in expected)
    for q in sent:
        client.sendto(q, server.getsockname())
    seen: list[Any] = []
    counts = [0] * 256
    done = 0
    for _ in range(100):  # bounded: 150 datagrams in batches of at most 64
        n = fastpath.pump(server, holder, counts, slow_resolver(seen), 64)
        assert 0 <= n <= 64
        if n == 0 and done == len(sent):
            break
        done += n
    assert done == len(sent)
    assert replies(client, len(sent)) == expected
    assert sum(counts) > 50 and sum(counts) + len(seen) == len(sent)  # fast hits and misses
    assert set(seen) == {client.getsockname()}


def test_pump_reads_at_most_its_limit_and_zero_when_idle(fastpath: ModuleType,
                                                         pair: tuple[socket.socket, socket.socket]) -> None:
    server, client = pair
    q = question("web.demo.svc.clusterset.local")
    for _ in range(10):
        client.sendto(q, server.getsockname())
    counts = [0] * 256
    slow = slow_resolver([])
    assert fastpath.pump(server, ZoneHolder(ZONE), counts, slow, 3) == 3
    assert len(replies(client, 3)) == 3
    got = 0
    for _ in range(10):
        got += fastpath.pump(server, ZoneHolder(ZONE), counts, slow, 3)
    assert got == 7 and fastpath.pump(server, ZoneHolder(ZONE), counts, slow, 3) == 0


def test_pump_drops_oversized_datagrams_and_slow_none(fastpath: ModuleType,
                                                      pair: tuple[socket.socket, socket.socket]) -> None:
    server, client = pair
    q = question("web.demo.svc.clusterset.local", qid=77)
    client.sendto(q + b"\x00" * 5000, server.getsockname())  # over MAX_QUERY: dropped
    client.sendto(q[:5] + b"\x02" + q[6:], server.getsockname())  # two questions: slow says None
    client.sendto(q, server.getsockname())
    n = fastpath.pump(server, ZoneHolder(ZONE), [0] * 256, lambda data, addr: None, 10)
    assert n == 3
    # only the learned query was answered (the fast path), nothing for the other two
    assert DNSRecord.parse(client.recv(4096)).header.id == 77
    client.settimeout(0.2)
    with pytest.raises(socket.timeout):
        client.recv(4096)


def test_pump_sends_to_ipv6_peers(fastpath: ModuleType) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    server = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    client = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        try:
            server.bind(("::1", 0))
        except OSError:
            pytest.skip("no ::1 on this machine")
        server.setblocking(False)
        client.bind(("::1", 0))
        client.settimeout(2.0)
        learned = question("web.demo.svc.clusterset.local", qid=5)
        unknown = question("nope.demo.svc.clusterset.local", qid=6)
        client.sendto(learned, server.getsockname())
        client.sendto(unknown, server.getsockname())
        seen: list[Any] = []
        assert fastpath.pump(server, ZoneHolder(ZONE), [0] * 256, slow_resolver(seen), 10) == 2
        assert [client.recv(4096), client.recv(4096)] == [resolve(ZONE, learned), resolve(ZONE, unknown)]
        assert seen and seen[0][:2] == client.getsockname()[:2]
    finally:
        server.close()
        client.close()


def _web_fleet(ip_range: str, version: int) -> Any:
    return fleet({"zone-a": cluster(namespace("demo"), service("web"), export("web"))},
                 version=version, ip_range=ip_range)


FLOOD = """
import socket, sys, time
host, port, query = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)  # replies never read: dropped
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    for _ in range(200):
        s.sendto(query, (host, port))
"""


async def test_udp_flood_does_not_starve_tcp_or_the_zone_swap() -> None:
    """Another process floods the UDP port (bounded: 20 s) while TCP queries on a kept-open
    connection and a zone swap are served; the flood is still running when they are done,
    and no readiness callback took more than its batch."""
    stub = StubFleet(_web_fleet("242.1.0.0/16", 1))
    svc = await serve(feed(stub), listen="127.0.0.1:0", cluster="zone-a")
    listener = svc.listener.udp
    assert listener is not None
    q = question("web.demo.svc.clusterset.local")
    host, port = svc.udp_address
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", FLOOD, host, str(port), q.hex())
    try:
        for _ in range(500):  # bounded: wait until the flood is being answered
            if listener.datagrams > 2000:
                break
            await asyncio.sleep(0.01)
        assert listener.datagrams > 2000
        before = listener.datagrams
        answers = await tcp_exchange(svc.tcp_address, *(question("web.demo.svc.clusterset.local", qid=i)
                                                         for i in range(20)), timeout=5.0)
        assert len(answers) == 20
        stub.publish(_web_fleet("242.9.0.0/16", 2))  # the swap happens in this callback...
        (after_swap,) = await tcp_exchange(svc.tcp_address, question("web.demo.svc.clusterset.local"), timeout=5.0)
        assert rdatas(DNSRecord.parse(after_swap), "A")[0].startswith("242.9.")  # ...and is served
        assert proc.returncode is None and listener.datagrams > before  # the flood went on meanwhile
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        await svc.close()
    assert listener.largest <= listener.batch_limit and (listener.batches > 1 or not listener.batched)


def test_the_stdlib_loop_serves_through_the_pump() -> None:
    """On asyncio's own loop (not uvloop) the listener reads in batches with either
    implementation's pump, and answers what the resolver answers."""
    async def main() -> None:
        svc = await serve(feed(StubFleet(two_cluster_fleet())), listen="127.0.0.1:0", cluster="zone-a")
        try:
            listener = svc.listener.udp
            assert listener is not None and listener.batched
            for qid, name in enumerate(("web.demo.svc.clusterset.local", "WEB.demo.svc.clusterset.local",
                                        "nope.demo.svc.clusterset.local", "1.0.1.10.in-addr.arpa")):
                q = question(name, "PTR" if "arpa" in name else "A", qid=qid)
                for _ in range(2):
                    assert await udp_exchange(svc.udp_address, q) == resolve(svc.zone, q)
            assert listener.datagrams == 8 and listener.batches >= 1
        finally:
            await svc.close()

    asyncio.run(main())
