"""Bodies and connection handling through the gateway: big uploads and downloads both
framings, flow control, 100-continue, HEAD/204/304, keep-alive, pipelining, HTTP/1.0."""
from __future__ import annotations

import asyncio
import hashlib
import json
import os

import aiohttp
import pytest
from aiohttp import web

from h1_support import HOST, closed_by_server, get, one_service, read_response
from tests.tools import require_tool

PIECE = 64 * 1024


def piece(i: int) -> bytes:
    return bytes([i % 251]) * PIECE


def stream_digest(n_pieces: int) -> str:
    h = hashlib.sha256()
    for i in range(n_pieces):
        h.update(piece(i))
    return h.hexdigest()


async def app(request: web.Request) -> web.StreamResponse:
    """/digest: hash of the body; /stream?pieces=N: N*64 KiB without content-length;
    /status/N: an empty N; /peer: the gateway's port as the backend sees it; /slow...: late."""
    path = request.path
    body = await request.read()
    if path == "/digest":
        return web.json_response({"sha256": hashlib.sha256(body).hexdigest(), "len": len(body),
                                  "te": request.headers.get("Transfer-Encoding")})
    if path == "/stream":
        resp = web.StreamResponse()
        await resp.prepare(request)
        for i in range(int(request.query["pieces"])):
            await resp.write(piece(i))
        await resp.write_eof()
        return resp
    if path.startswith("/status/"):
        return web.Response(status=int(path[8:]), headers={"ETag": '"v1"'})
    if path == "/peer":
        return web.json_response({"port": request.transport.get_extra_info("peername")[1]})
    if path.startswith("/slow"):
        await asyncio.sleep(0.1)
    return web.json_response({"path": request.path_qs, "body_len": len(body)})


@pytest.fixture
async def gw(fleet_dir, echo_backends, start_gateway):
    gw, _ = await one_service(fleet_dir, echo_backends, start_gateway, {"zone-a": "127.0.52.1"}, handler=app)
    return gw


HEADERS = {"Host": HOST}


async def test_large_upload_with_content_length_arrives_intact(gw):
    data = os.urandom(8 << 20)
    async with aiohttp.ClientSession() as s:
        async with s.post(gw.url + "/digest", data=data, headers=HEADERS) as r:
            assert r.status == 200
            got = await r.json()
    assert got == {"sha256": hashlib.sha256(data).hexdigest(), "len": len(data), "te": None}


async def test_large_chunked_upload_arrives_intact(gw):
    async def body():
        for i in range(128):  # 8 MiB
            yield piece(i)
    async with aiohttp.ClientSession() as s:
        async with s.post(gw.url + "/digest", data=body(), headers=HEADERS) as r:
            assert r.status == 200
            got = await r.json()
    assert got == {"sha256": stream_digest(128), "len": 128 * PIECE, "te": "chunked"}


async def test_large_chunked_download_arrives_intact(gw):
    async with aiohttp.ClientSession() as s:
        async with s.get(gw.url + "/stream?pieces=128", headers=HEADERS) as r:
            assert r.status == 200
            assert r.headers["Transfer-Encoding"] == "chunked"
            assert "Content-Length" not in r.headers
            data = await r.read()
    assert len(data) == 128 * PIECE
    assert hashlib.sha256(data).hexdigest() == stream_digest(128)


async def test_slow_reader_is_flow_controlled_and_gets_everything(gw):
    """32 MiB read in small pieces with pauses: the gateway must stop reading the upstream
    rather than buffer what the client has not taken (its write buffers stay small)."""
    n = 512  # 32 MiB
    h = hashlib.sha256()
    total = 0
    buffered = 0
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout, read_bufsize=PIECE) as s:
        async with s.get(gw.url + f"/stream?pieces={n}", headers=HEADERS) as r:
            assert r.status == 200
            reads = 0
            while True:
                chunk = await r.content.read(16 * 1024)
                if not chunk:
                    break
                h.update(chunk)
                total += len(chunk)
                reads += 1
                if reads % 128 == 0:  # a pause every 2 MiB
                    await asyncio.sleep(0.03)
                    buffered = max(buffered, max((ds.transport.get_write_buffer_size()
                                                  for ds in gw.gateway.ctx.downstreams
                                                  if ds.transport is not None), default=0))
    assert total == n * PIECE
    assert h.hexdigest() == stream_digest(n)
    assert buffered < 4 << 20, buffered


async def test_expect_100_continue_upload_with_curl(gw, tmp_path):
    require_tool("curl")
    data = os.urandom(3 << 20)
    path = tmp_path / "upload.bin"
    path.write_bytes(data)
    proc = await asyncio.create_subprocess_exec(
        "curl", "-sS", "-v", "--max-time", "10", "-H", "Expect: 100-continue", "-H", f"Host: {HOST}",
        "--data-binary", f"@{path}", gw.url + "/digest",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 0, err.decode()
    assert b"< HTTP/1.1 100 Continue" in err  # the gateway said go on, curl did not just time out
    got = json.loads(out)
    assert got["len"] == len(data)
    assert got["sha256"] == hashlib.sha256(data).hexdigest()


async def test_head_gets_headers_without_body_and_the_connection_goes_on(gw):
    reader, writer = await asyncio.open_connection(gw.host, gw.port)
    try:
        writer.write(f"HEAD /resource HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        head = await read_response(reader, head_request=True)
        assert head.status == 200
        assert int(head.headers["content-length"]) > 0
        writer.write(get("/next"))
        nxt = await read_response(reader)  # stray body bytes from the HEAD would break this
        assert nxt.status == 200
        assert json.loads(nxt.body)["path"] == "/next"
    finally:
        writer.close()


async def test_204_and_304_have_no_body_and_keep_the_connection(gw):
    reader, writer = await asyncio.open_connection(gw.host, gw.port)
    try:
        for code in (204, 304):
            writer.write(get(f"/status/{code}"))
            r = await read_response(reader)
            assert r.status == code
            assert r.headers["etag"] == '"v1"'
            assert "transfer-encoding" not in r.headers
        writer.write(get("/after"))
        r = await read_response(reader)
        assert r.status == 200 and json.loads(r.body)["path"] == "/after"
    finally:
        writer.close()


async def test_keep_alive_requests_reuse_upstream_connections(gw):
    ports = set()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as s:
        for _ in range(50):
            async with s.get(gw.url + "/peer", headers=HEADERS) as r:
                assert r.status == 200
                ports.add((await r.json())["port"])
        assert len(gw.gateway.ctx.downstreams) == 1  # one client connection throughout
    assert len(ports) <= 2, ports


async def test_pipelined_requests_are_answered_in_order(gw):
    reader, writer = await asyncio.open_connection(gw.host, gw.port)
    try:
        writer.write(get("/slow/1")  # the first is the slowest
                     + f"POST /pipe/2 HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 3\r\n\r\nabc".encode()
                     + get("/pipe/3"))
        answers = [await read_response(reader) for _ in range(3)]
    finally:
        writer.close()
    assert [r.status for r in answers] == [200, 200, 200]
    assert [json.loads(r.body) for r in answers] == [
        {"path": "/slow/1", "body_len": 0}, {"path": "/pipe/2", "body_len": 3}, {"path": "/pipe/3", "body_len": 0}]


# --- HTTP/1.0 clients ------------------------------------------------------------------------

async def test_http10_request_is_answered_and_closed(gw):
    reader, writer = await asyncio.open_connection(gw.host, gw.port)
    try:
        writer.write(get("/ten", version="1.0"))
        r = await read_response(reader)
        assert r.status == 200
        assert json.loads(r.body)["path"] == "/ten"
        assert await closed_by_server(reader)
    finally:
        writer.close()


async def test_http10_keep_alive_connection_stays_open(gw):
    reader, writer = await asyncio.open_connection(gw.host, gw.port)
    try:
        for path in ("/one", "/two"):
            writer.write(get(path, version="1.0", extra="Connection: keep-alive\r\n"))
            r = await read_response(reader)
            assert r.status == 200
            assert r.headers["connection"].lower() == "keep-alive"
            assert json.loads(r.body)["path"] == path
    finally:
        writer.close()


async def test_http10_client_gets_a_chunked_upstream_response_close_delimited(gw):
    reader, writer = await asyncio.open_connection(gw.host, gw.port)
    try:
        writer.write(get("/stream?pieces=8", version="1.0", extra="Connection: keep-alive\r\n"))
        r = await read_response(reader)  # no length, no chunking: the body ends at the close
    finally:
        writer.close()
    assert r.status == 200
    assert "transfer-encoding" not in r.headers and "content-length" not in r.headers
    assert hashlib.sha256(r.body).hexdigest() == stream_digest(8)


async def test_http10_keep_alive_survives_a_generated_error(gw):
    """A 404 the gateway writes itself must say keep-alive too, or a 1.0 client waits for a close."""
    reader, writer = await asyncio.open_connection(gw.host, gw.port)
    try:
        writer.write(get("/", host="unknown.example", version="1.0", extra="Connection: keep-alive\r\n"))
        r = await read_response(reader)
        assert r.status == 404 and r.headers["x-fleetgate-reason"] == "no-route"
        assert r.headers.get("connection", "").lower() == "keep-alive"
        writer.write(get("/again", version="1.0", extra="Connection: keep-alive\r\n"))
        r = await read_response(reader)
        assert r.status == 200 and json.loads(r.body)["path"] == "/again"
    finally:
        writer.close()


async def test_http11_connection_close_is_honoured(gw):
    reader, writer = await asyncio.open_connection(gw.host, gw.port)
    try:
        writer.write(get("/bye", extra="Connection: close\r\n"))
        r = await read_response(reader)
        assert r.status == 200 and r.headers["connection"] == "close"
        assert await closed_by_server(reader)
    finally:
        writer.close()
