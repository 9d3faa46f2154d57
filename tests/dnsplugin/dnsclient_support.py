"""A small async DNS client and a stand-in fleet for the responder tests."""
from __future__ import annotations

import asyncio
import struct
from typing import Any, Callable

from dnslib import EDNS0, QTYPE, DNSRecord

from controller.publisher import DerivedPublisher
from fleet.snapshot import FleetSnapshot
from fleet.view import LiveCluster


class StubFleet:
    """A FleetView of file members only whose snapshots the test publishes by hand."""

    def __init__(self, snapshot: FleetSnapshot | None = None) -> None:
        self.snapshot = snapshot
        self.callbacks: list[Callable[[FleetSnapshot], None]] = []

    def follow(self, callback: Callable[[FleetSnapshot], None]) -> Callable[[], None]:
        if self.snapshot is not None:
            callback(self.snapshot)
        self.callbacks.append(callback)
        return lambda: self.callbacks.remove(callback)

    def live_members(self) -> dict[str, LiveCluster]:
        return {}

    def publish(self, snapshot: FleetSnapshot) -> None:
        self.snapshot = snapshot
        for callback in list(self.callbacks):
            callback(snapshot)


def feed(fleet: StubFleet) -> DerivedPublisher:
    """The derived objects of `fleet`, as the DNS service follows them in `fleetgate up`."""
    return DerivedPublisher(fleet).start()  # type: ignore[arg-type]  # a partial FleetView


class _Udp(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.replies: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.replies.put_nowait(data)


async def udp_exchange(addr: tuple[str, int], data: bytes, *, timeout: float = 2.0) -> bytes:
    """Send one datagram and return the first reply with the same ID."""
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(_Udp, remote_addr=addr)
    try:
        transport.sendto(data)
        async with asyncio.timeout(timeout):
            while True:
                reply = await proto.replies.get()
                if reply[:2] == data[:2]:
                    return reply
    finally:
        transport.close()


async def tcp_exchange(addr: tuple[str, int], *messages: bytes, timeout: float = 2.0) -> list[bytes]:
    """Send all messages on one connection (pipelined) and read as many answers."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(*addr)
        try:
            writer.write(b"".join(struct.pack("!H", len(m)) + m for m in messages))
            out = []
            for _ in messages:
                size = struct.unpack("!H", await reader.readexactly(2))[0]
                out.append(await reader.readexactly(size))
            return out
        finally:
            writer.close()


def question(name: str, qtype: str = "A", *, edns: int | None = None, qid: int | None = None) -> bytes:
    q = DNSRecord.question(name, qtype)
    if qid is not None:
        q.header.id = qid
    if edns is not None:
        q.add_ar(EDNS0(udp_len=edns))
    return bytes(q.pack())


async def ask(addr: tuple[str, int], name: str, qtype: str = "A", *, tcp: bool = False,
              edns: int | None = None) -> DNSRecord:
    data = question(name, qtype, edns=edns)
    raw = (await tcp_exchange(addr, data))[0] if tcp else await udp_exchange(addr, data)
    return DNSRecord.parse(raw)


def rdatas(reply: DNSRecord, qtype: str | None = None) -> list[str]:
    return sorted(str(rr.rdata) for rr in reply.rr if qtype is None or QTYPE.get(rr.rtype) == qtype)


def rcode(reply: DNSRecord) -> str:
    from dnslib import RCODE
    return str(RCODE.get(reply.header.rcode))
