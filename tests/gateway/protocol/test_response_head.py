"""The upstream response head is rewritten whole from its raw bytes (no per-header
callbacks): hop-by-hop removal as the codec's parse_response does it (pure; the active
implementation, so the pure-Python run checks the twin), and over real sockets the heads
that arrive in pieces, after interim responses, as HTTP/1.0, or never end."""
from __future__ import annotations

import asyncio

import aiohttp

from gateway.codec import parse_response
from h1_support import gateway_for, scripted_backend


def strip(block: bytes, code: int = 200) -> tuple[bytes, bool]:
    """The header lines the gateway passes downstream from `block` (CRLF-led lines after a
    status line), and whether the body is chunked."""
    status = b"HTTP/1.1 %d X" % code
    raw = status + block + b"\r\n"
    head = parse_response(raw, 0, len(raw), False)
    assert head.head.startswith(status)
    return head.head[len(status):], head.chunked


def test_strip_removes_connection_and_the_names_it_lists() -> None:
    fields, chunked = strip(b"\r\nX-App: 1\r\nConnection: keep-alive, X-Hop\r\nX-Hop: secret\r\n"
                            b"Keep-Alive: timeout=5\r\nContent-Length: 2\r\n")
    assert fields == b"\r\nX-App: 1\r\nContent-Length: 2\r\n"
    assert chunked is False


def test_strip_transfer_encoding_wins_over_content_length() -> None:
    fields, chunked = strip(b"\r\nContent-Length: 10\r\nTransfer-Encoding: chunked\r\nX-App: 1\r\n")
    assert chunked is True
    assert fields == b"\r\nX-App: 1\r\n"


def test_strip_keeps_upgrade_only_in_a_101() -> None:
    block = b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n"
    assert strip(block, 101)[0] == b"\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: x\r\n"
    assert strip(block, 200)[0] == b"\r\nSec-WebSocket-Accept: x\r\n"


def test_strip_does_not_touch_names_that_only_start_like_hop_headers() -> None:
    block = b"\r\nTE-Info: 1\r\nTrailer-Ish: 2\r\nConnection-Id: 3\r\nTE: trailers\r\n"
    assert strip(block)[0] == b"\r\nTE-Info: 1\r\nTrailer-Ish: 2\r\nConnection-Id: 3\r\n"


async def test_head_in_many_reads_after_an_interim_response(fleet_dir, start_gateway) -> None:
    raw = (b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
           b"HTTP/1.1 200 OK\r\nX-App: split\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n"
           b"Content-Length: 5\r\n\r\nhello")
    pieces = [raw[i:i + 7] for i in range(0, len(raw), 7)]
    server, port = await scripted_backend("127.0.61.1", pieces, pause=0.002)
    gw = await gateway_for(fleet_dir, start_gateway, "127.0.61.1", port)
    async with server, aiohttp.ClientSession() as s:
        for _ in range(2):  # the same pooled connection serves the second request
            async with s.get(gw.url + "/", headers={"Host": "web.example.com"}) as r:
                assert r.status == 200
                assert await r.read() == b"hello"
                assert r.headers["x-app"] == "split"
                assert "x-hop" not in r.headers and "link" not in r.headers
                assert r.headers["x-fleetgate-cluster"] == "zone-a"


async def test_http10_upstream_status_line_is_answered_as_http11(fleet_dir, start_gateway) -> None:
    server, port = await scripted_backend(
        "127.0.61.2", [b"HTTP/1.0 201 Made\r\nContent-Length: 2\r\nX-App: old\r\n\r\nok"])
    gw = await gateway_for(fleet_dir, start_gateway, "127.0.61.2", port)
    reader, writer = await asyncio.open_connection(gw.host, gw.port)
    async with server:
        try:
            writer.write(b"GET / HTTP/1.1\r\nHost: web.example.com\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            body = await reader.readexactly(2)
        finally:
            writer.close()
    assert head.startswith(b"HTTP/1.1 201 Made\r\n")
    assert b"\r\nX-App: old\r\n" in head and body == b"ok"


async def test_a_response_head_that_never_ends_is_a_502(fleet_dir, start_gateway) -> None:
    endless = [b"HTTP/1.1 200 OK\r\n"] + [b"X-Filler: " + b"a" * 1000 + b"\r\n"] * 80
    server, port = await scripted_backend("127.0.61.3", endless)
    gw = await gateway_for(fleet_dir, start_gateway, "127.0.61.3", port)
    async with server, aiohttp.ClientSession() as s:
        async with s.get(gw.url + "/", headers={"Host": "web.example.com"},
                         timeout=aiohttp.ClientTimeout(total=10)) as r:
            assert r.status == 502
            assert r.headers["x-fleetgate-reason"] == "upstream-error"


async def test_close_delimited_and_connection_close_responses(fleet_dir, start_gateway) -> None:
    """No Content-Length and no chunking: the body ends with the connection, so the client's
    connection closes too; `Connection: close` with a length closes only the upstream."""
    server, port = await scripted_backend(
        "127.0.61.4", [b"HTTP/1.1 200 OK\r\nX-App: eof\r\n\r\nuntil ", b"the end"], close=True)
    gw = await gateway_for(fleet_dir, start_gateway, "127.0.61.4", port)
    async with server:
        reader, writer = await asyncio.open_connection(gw.host, gw.port)
        try:
            writer.write(b"GET / HTTP/1.1\r\nHost: web.example.com\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            body = await asyncio.wait_for(reader.read(), 5)  # to the close
        finally:
            writer.close()
    assert head.startswith(b"HTTP/1.1 200") and b"\r\nconnection: close\r\n" in head.lower()
    assert body == b"until the end"

    server, port = await scripted_backend(
        "127.0.61.5", [b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"], close=True)
    gw2 = await gateway_for(fleet_dir, start_gateway, "127.0.61.5", port)
    async with server, aiohttp.ClientSession() as s:
        for _ in range(3):  # each on a new upstream connection; the client's stays open
            async with s.get(gw2.url + "/", headers={"Host": "web.example.com"}) as r:
                assert r.status == 200 and await r.read() == b"ok"
                assert "connection" not in r.headers


async def test_bytes_after_a_complete_response_retire_the_connection(fleet_dir, start_gateway) -> None:
    """An upstream that sends a second, unasked-for response behind the first: the client
    gets the first, the connection is not reused, and the endpoint is not taken for broken."""
    server, port = await scripted_backend(
        "127.0.61.6", [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                       b"HTTP/1.1 500 Unasked\r\nContent-Length: 0\r\n\r\n"])
    gw = await gateway_for(fleet_dir, start_gateway, "127.0.61.6", port)
    async with server, aiohttp.ClientSession() as s:
        for _ in range(4):
            async with s.get(gw.url + "/", headers={"Host": "web.example.com"}) as r:
                assert r.status == 200 and await r.read() == b"ok"
