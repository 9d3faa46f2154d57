"""HTTP/2 streams relaying HTTP/1.1 upstream responses of every framing: chunked with
trailers, close-delimited, 204, each turned into HEADERS and DATA by H2Stream (from what the
pooled upstream connection queues for it)."""
from __future__ import annotations

import asyncio

import httpx

from gateway_support import endpoint_slice, ingress, rule, service

CHUNKED = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n")
CLOSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nuntil the end"
NO_CONTENT = b"HTTP/1.1 204 No Content\r\nX-Kind: none\r\n\r\n"


async def scripted_backend(host: str) -> tuple[asyncio.AbstractServer, int]:
    """Answers each request by its path with one of the raw responses above."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1]
                raw = {b"/chunked": CHUNKED, b"/close": CLOSE}.get(path, NO_CONTENT)
                writer.write(raw)
                await writer.drain()
                if raw is CLOSE:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    server = await asyncio.start_server(handle, host, 0)
    return server, server.sockets[0].getsockname()[1]


async def test_h2_streams_get_chunked_close_delimited_and_bodiless_responses(fleet_dir, start_gateway) -> None:
    server, port = await scripted_backend("127.0.65.1")
    async with server:
        fd = fleet_dir("zone-a")
        fd.member("zone-a", [service("raw"), endpoint_slice("raw", [("127.0.65.1", port)])])
        fd.hub([ingress("raw", [rule("raw.example", ("/", "Prefix", "raw"))])])
        gw = await start_gateway(fd)
        async with httpx.AsyncClient(http1=False, http2=True, timeout=10) as client:
            hdr = {"host": "raw.example"}
            r = await client.get(f"{gw.url}/chunked", headers=hdr)
            assert (r.status_code, r.http_version, r.content) == (200, "HTTP/2", b"hello world")
            assert "transfer-encoding" not in r.headers and "x-trailer" not in r.headers
            r = await client.get(f"{gw.url}/close", headers=hdr)
            assert (r.status_code, r.content) == (200, b"until the end")
            r = await client.get(f"{gw.url}/none", headers=hdr)
            assert (r.status_code, r.content, r.headers["x-kind"]) == (204, b"", "none")
            # the connection still serves: the streams ended cleanly
            r = await client.get(f"{gw.url}/chunked", headers=hdr)
            assert r.content == b"hello world"
