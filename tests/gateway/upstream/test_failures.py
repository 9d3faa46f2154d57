"""Upstream failures: dead endpoints, resets mid-response, slow and broken upstreams, and
WebSocket tunnelling."""
from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from gateway_support import endpoint_slice, ingress, rule, service


async def raw_backend(host: str, respond) -> tuple[asyncio.AbstractServer, int]:
    """A TCP server whose handler writes whatever misbehaviour the test wants."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await respond(writer)

    server = await asyncio.start_server(handle, host, 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.fixture
def single_route(fleet_dir, start_gateway):
    async def make(endpoints: list[tuple[str, int]], annotations: dict | None = None):
        fd = fleet_dir("zone-a")
        fd.member("zone-a", [service("svc"), endpoint_slice("svc", endpoints)])
        fd.hub([ingress("web", [rule("web.example.com", ("/", "Prefix", "svc"))], annotations=annotations)])
        return await start_gateway(fd)
    return make


async def test_connect_failure_is_retried_on_another_endpoint(echo_backends, single_route):
    alive = await echo_backends("alive", host="127.0.6.1")
    gw = await single_route([("127.0.6.2", alive.port), (alive.host, alive.port)])  # .2 refuses
    async with aiohttp.ClientSession() as s:
        for _ in range(20):
            async with s.post(gw.url + "/", data=b"payload", headers={"Host": "web.example.com"}) as r:
                assert r.status == 200
                assert (await r.json())["body_len"] == 7
    assert alive.hits == 20
    health = gw.gateway.debug_routes()["routes"][0]["backend"]["clusters"][0]["endpoints"]
    assert {e["address"]: e["healthy"] for e in health} == {"127.0.6.2": False, "127.0.6.1": True}


async def test_every_endpoint_refusing_gives_502(single_route):
    gw = await single_route([("127.0.6.3", 9), ("127.0.6.4", 9)])
    async with aiohttp.ClientSession() as s:
        async with s.get(gw.url + "/", headers={"Host": "web.example.com"}) as r:
            assert r.status == 502
            assert r.headers["x-fleetgate-reason"] == "upstream-connect-error"


async def test_backend_without_ready_endpoints_gives_503(fleet_dir, start_gateway):
    fd = fleet_dir("zone-a")
    fd.member("zone-a", [service("svc"), endpoint_slice("svc", [("127.0.6.5", 80)], ready=False)])
    fd.hub([ingress("web", [rule("web.example.com", ("/", "Prefix", "svc")),
                            rule("ghost.example.com", ("/", "Prefix", "no-such-service"))])])
    gw = await start_gateway(fd)
    async with aiohttp.ClientSession() as s:
        for host in ("web.example.com", "ghost.example.com"):
            async with s.get(gw.url + "/", headers={"Host": host}) as r:
                assert r.status == 503
                assert r.headers["x-fleetgate-reason"] == "no-healthy-upstream"
                assert "no-healthy-upstream" in await r.text()
    assert any("no-such-service" in str(d) for d in gw.gateway.diagnostics)


async def test_upstream_dying_mid_response_cuts_the_client_connection(single_route):
    async def die(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
        await writer.drain()
        writer.transport.abort()

    server, port = await raw_backend("127.0.6.6", die)
    gw = await single_route([("127.0.6.6", port)])
    async with server, aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.ClientPayloadError):
            async with s.get(gw.url + "/", headers={"Host": "web.example.com"}) as r:
                assert r.status == 200
                await r.read()
    # the gateway is fine afterwards
    async with aiohttp.ClientSession() as s:
        async with s.get(gw.url + "/", headers={"Host": "nope"}) as r:
            assert r.status == 404


async def test_slow_upstream_gives_504_after_the_read_timeout(single_route):
    async def never(writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)

    server, port = await raw_backend("127.0.6.7", never)
    gw = await single_route([("127.0.6.7", port)],
                            annotations={"nginx.ingress.kubernetes.io/proxy-read-timeout": "0.3"})
    async with server, aiohttp.ClientSession() as s:
        async with s.get(gw.url + "/", headers={"Host": "web.example.com"},
                         timeout=aiohttp.ClientTimeout(total=10)) as r:
            assert r.status == 504
            assert r.headers["x-fleetgate-reason"] == "upstream-timeout"


async def test_upstream_protocol_error_gives_502(single_route):
    async def garbage(writer: asyncio.StreamWriter) -> None:
        writer.write(b"this is not HTTP at all\r\n\r\n")
        await writer.drain()

    server, port = await raw_backend("127.0.6.8", garbage)
    gw = await single_route([("127.0.6.8", port)])
    async with server, aiohttp.ClientSession() as s:
        async with s.get(gw.url + "/", headers={"Host": "web.example.com"}) as r:
            assert r.status == 502
            assert r.headers["x-fleetgate-reason"] == "upstream-error"


async def test_websocket_echo_through_the_gateway(echo_backends, single_route):
    async def ws_echo(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                await ws.send_str("echo:" + msg.data)
            elif msg.type == aiohttp.WSMsgType.BINARY:
                await ws.send_bytes(msg.data[::-1])
        return ws

    b = await echo_backends("ws", host="127.0.6.9", handler=ws_echo)
    gw = await single_route([(b.host, b.port)])
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(gw.url + "/chat", headers={"Host": "web.example.com"}) as ws:
            for i in range(20):
                await ws.send_str(f"hello {i}")
                assert (await ws.receive_str(timeout=5)) == f"echo:hello {i}"
            big = bytes(range(256)) * 1024
            await ws.send_bytes(big)
            assert (await ws.receive_bytes(timeout=5)) == big[::-1]
    assert b.requests[0]["headers"]["upgrade"].lower() == "websocket"
