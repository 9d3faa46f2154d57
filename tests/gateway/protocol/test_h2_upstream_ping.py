"""PING-based idle checks on the HTTP/2 upstream connections of gRPC routes
(gateway/upstream/h2_connection.py): a quiet connection is PINGed; one whose peer never
answers is dropped and the next call opens a new one; one whose peer answers is kept.
A real grpcio client through the gateway; upstreams: a grpcio server, and an HTTP/2 server
of our own (the h2 library) that goes mute after its first answer."""
from __future__ import annotations

import asyncio
import struct
import time
from concurrent import futures
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest

from gateway_support import endpoint_slice, ingress, rule, service

from gateway.upstream.h2_pool import H2Pools

grpc = pytest.importorskip("grpc", reason="grpcio is a test dependency: pip install grpcio")

GRPC = {"nginx.ingress.kubernetes.io/backend-protocol": "GRPC"}


class MuteAfterOneCall:
    """An HTTP/2 gRPC upstream: answers the first call on each connection, then reads on and
    never writes again (a peer gone silent: no PING ACK, nothing)."""

    def __init__(self) -> None:
        self.connections = 0
        self.pings = 0
        self.server: asyncio.AbstractServer | None = None

    async def start(self, host: str) -> int:
        self.server = await asyncio.start_server(self._serve, host, 0)
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        answered = False
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                for ev in conn.receive_data(data):
                    if isinstance(ev, h2.events.PingReceived):
                        self.pings += 1
                    elif isinstance(ev, h2.events.StreamEnded) and not answered:
                        answered = True
                        msg = b"pong"
                        conn.send_headers(ev.stream_id, [(b":status", b"200"), (b"content-type", b"application/grpc")])
                        conn.send_data(ev.stream_id, b"\x00" + struct.pack(">I", len(msg)) + msg)
                        conn.send_headers(ev.stream_id, [(b"grpc-status", b"0")], end_stream=True)
                        writer.write(conn.data_to_send())
                if not answered:
                    writer.write(conn.data_to_send())  # the handshake's ACKs, until the answer
        except ConnectionError:
            pass
        writer.close()


async def one_route(fleet_dir, start_gateway, host: str, port: int):
    fd = fleet_dir("zone-a")
    fd.member("zone-a", [service("echo"), endpoint_slice("echo", [(host, port)])])
    fd.hub([ingress("echo", [rule("grpc.example", ("/", "Prefix", "echo"))], annotations=GRPC)])
    gw = await start_gateway(fd)
    gw.gateway.ctx.h2_pools = H2Pools(30.0, ping_interval=0.2, ping_timeout=0.3)
    return gw


def unary(target: str) -> bytes:
    with grpc.insecure_channel(target, options=[("grpc.default_authority", "grpc.example")]) as ch:
        return ch.unary_unary("/test.Echo/Unary")(b"ping?", timeout=10)  # type: ignore[no-any-return]


async def wait_for(cond, timeout: float = 10.0) -> bool:
    """Poll cond (no event tells of a dropped connection), bounded in time."""
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return bool(cond())


async def test_a_silent_upstream_connection_is_pinged_then_dropped(fleet_dir, start_gateway):
    mute = MuteAfterOneCall()
    port = await mute.start("127.0.67.1")
    async with mute.server:  # type: ignore[union-attr]
        gw = await one_route(fleet_dir, start_gateway, "127.0.67.1", port)
        target = f"{gw.host}:{gw.port}"
        assert await asyncio.to_thread(unary, target) == b"pong"
        pools = gw.gateway.ctx.h2_pools
        (first,) = [c for p in pools.pools.values() for c in p.conns]
        # quiet for 0.2 s: PINGed; no ACK in 0.3 s: dropped
        assert await wait_for(lambda: first.transport is None)
        assert mute.pings >= 1 and first.pings == 1 and first.pongs == 0
        assert not [c for p in pools.pools.values() for c in p.conns]
        assert await asyncio.to_thread(unary, target) == b"pong"  # a new connection serves the next call
        assert mute.connections == 2


def grpcio_server(host: str) -> tuple[Any, int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Echo", {
        "Unary": grpc.unary_unary_rpc_method_handler(lambda req, ctx: b"pong"),
    }),))
    port = server.add_insecure_port(f"{host}:0")
    server.start()
    return server, port


async def test_an_upstream_that_answers_pings_keeps_its_connection(fleet_dir, start_gateway):
    server, port = grpcio_server("127.0.67.2")
    try:
        gw = await one_route(fleet_dir, start_gateway, "127.0.67.2", port)
        target = f"{gw.host}:{gw.port}"
        assert await asyncio.to_thread(unary, target) == b"pong"
        pools = gw.gateway.ctx.h2_pools
        (conn,) = [c for p in pools.pools.values() for c in p.conns]
        # several PING rounds (0.2 s quiet, then a PING): each one answered, the connection kept
        assert await wait_for(lambda: conn.pongs >= 3 or conn.transport is None)
        assert conn.pongs >= 3 and conn.transport is not None
        assert [c for p in pools.pools.values() for c in p.conns] == [conn]
        assert await asyncio.to_thread(unary, target) == b"pong"
        assert [c for p in pools.pools.values() for c in p.conns] == [conn]  # the same connection served it
    finally:
        server.stop(None).wait(5)
