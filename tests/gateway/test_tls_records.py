"""HTTPS data over real sockets with the listener's DirectSSLObject (gateway/tls.py: the TLS
layer's per-record read/write/pending are the C object's): bodies of many records each
way, kept-alive requests, two requests in one TLS write, and the same calls' results as
ssl.SSLObject's on an in-memory handshake."""
from __future__ import annotations

import asyncio
import json
import ssl

from aiohttp import web

from gateway_support import endpoint_slice, ingress, rule, service
from h1_support import read_response
from tls_support import make_ca, tls_entry, tls_secret

from gateway.tls import DirectSSLObject, self_signed, server_context

BIG = 300_000  # ~19 TLS records of 16 KiB


async def _gateway(fleet_dir, echo_backends, start_gateway):
    ca = make_ca()
    fd = fleet_dir("zone-a")

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.path == "/big":
            return web.Response(body=bytes(range(256)) * (BIG // 256))
        return web.json_response({"path": request.path_qs, "body_len": len(await request.read())})

    b = await echo_backends("zone-a", host="127.0.0.2", handler=handler)
    fd.member("zone-a", [service("web"), endpoint_slice("web", [(b.host, b.port)])])
    cert, key = ca.issue("a.example")
    fd.hub([tls_secret("a-tls", cert, key)], name="secrets.yaml")
    fd.hub([ingress("a", [rule("a.example", ("/", "Prefix", "web"))], tls=[tls_entry("a-tls", "a.example")])])
    gw = await start_gateway(fd, https=True)
    return gw, ca, b, gw.gateway.https_address[1]


async def test_bodies_of_many_records_keep_alive_and_two_requests_in_one_write(
        fleet_dir, echo_backends, start_gateway):
    gw, ca, backend, port = await _gateway(fleet_dir, echo_backends, start_gateway)
    reader, writer = await asyncio.wait_for(asyncio.open_connection(
        "127.0.0.1", port, ssl=ca.client_context(), server_hostname="a.example"), 5)
    try:
        # a request body of many records: every byte reaches the backend
        writer.write(b"POST /up HTTP/1.1\r\nHost: a.example\r\nContent-Length: %d\r\n\r\n" % BIG + b"x" * BIG)
        r = await read_response(reader)
        assert r.status == 200 and json.loads(r.body) == {"path": "/up", "body_len": BIG}
        # a response of many records, byte for byte
        writer.write(b"GET /big HTTP/1.1\r\nHost: a.example\r\n\r\n")
        r = await read_response(reader)
        assert r.status == 200 and r.body == bytes(range(256)) * (BIG // 256)
        # kept alive: the common request, one after another on the same connection
        for i in range(30):
            writer.write(b"GET /k?i=%d HTTP/1.1\r\nHost: a.example\r\n\r\n" % i)
            r = await read_response(reader)
            assert r.status == 200 and json.loads(r.body)["path"] == "/k?i=%d" % i
        # two requests in one TLS write (pipelined): both answered, in order
        writer.write(b"GET /p1 HTTP/1.1\r\nHost: a.example\r\n\r\nGET /p2 HTTP/1.1\r\nHost: a.example\r\n\r\n")
        assert json.loads((await read_response(reader)).body)["path"] == "/p1"
        assert json.loads((await read_response(reader)).body)["path"] == "/p2"
    finally:
        writer.close()
    assert backend.hits == 34
    # the listener's context makes the direct objects (certificates chosen by SNI swap
    # only the context of an object already made)
    assert gw.gateway.certs.context.sslobject_class is DirectSSLObject


def _pump(src: ssl.MemoryBIO, dst: ssl.MemoryBIO) -> None:
    data = src.read()
    if data:
        dst.write(data)


def test_direct_calls_give_what_ssl_sslobject_gives() -> None:
    """A handshake in memory between a plain ssl.SSLObject client and a DirectSSLObject
    server: read with a size and into a buffer, write, pending, and the want-read error."""
    server_ctx = server_context(*self_signed("direct.test"))
    client_ctx = ssl.create_default_context()
    client_ctx.check_hostname = False
    client_ctx.verify_mode = ssl.CERT_NONE
    s_in, s_out, c_in, c_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname="direct.test")
    assert type(server) is DirectSSLObject and type(client) is ssl.SSLObject
    for _ in range(10):
        for side in (client, server):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
        _pump(c_out, s_in)
        _pump(s_out, c_in)
        if server.version() and client.version():
            break
    assert server.version() == client.version() == "TLSv1.3"
    assert server.selected_alpn_protocol() is None  # the plain client offered none

    assert client.write(b"hello direct") == 12
    _pump(c_out, s_in)
    assert server.read(5) == b"hello"
    assert server.pending() == 7
    buf = bytearray(16)
    assert server.read(16, buf) == 7 and bytes(buf[:7]) == b" direct"
    try:
        server.read(16)
    except ssl.SSLWantReadError:
        pass
    else:
        raise AssertionError("an empty incoming BIO did not raise SSLWantReadError")
    assert server.write(memoryview(b"back")) == 4
    _pump(s_out, c_in)
    assert client.read(1024) == b"back"
