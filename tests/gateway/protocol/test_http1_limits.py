"""Malformed requests, limits and slowloris: answered with a 4xx/5xx carrying
x-fleetgate-reason and a clean close, after which the gateway still serves."""
from __future__ import annotations

import asyncio

import aiohttp
import pytest

from gateway.context import Limits
from h1_support import HOST, closed_by_server, get, one_service, read_response

H = f"Host: {HOST}\r\n"

MALFORMED = [
    # (id, raw request, accepted statuses)
    ("cl-with-te", f"POST / HTTP/1.1\r\n{H}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "0\r\n\r\nGET /smuggled HTTP/1.1\r\n" + H + "\r\n", {400}),
    ("bad-chunk-size", f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
     {400}),
    ("differing-content-lengths", f"POST / HTTP/1.1\r\n{H}Content-Length: 3\r\nContent-Length: 5\r\n\r\nabcde",
     {400}),
    ("garbage-request-line", "HELLO THERE\x01 WORLD\r\n\r\n", {400}),
    ("tls-hello-on-plain-port", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + "\x00" * 40, {400}),
    ("header-block-over-64k", f"GET / HTTP/1.1\r\n{H}" + "".join(f"X-Pad-{i}: {'a' * 1000}\r\n" for i in range(70))
     + "\r\n", {431}),
    ("one-header-over-64k", f"GET / HTTP/1.1\r\n{H}X-Big: {'b' * 70000}\r\n\r\n", {431}),
    ("request-line-over-8k", f"GET /{'u' * 9000} HTTP/1.1\r\n{H}\r\n", {414}),
    ("http11-without-host", "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", {400}),
    ("connect", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", {405}),
    ("unknown-expectation", f"POST / HTTP/1.1\r\n{H}Expect: teapot\r\nContent-Length: 2\r\n\r\nhi", {417}),
    ("unsupported-transfer-encoding", f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: gzip\r\n\r\nxx", {400, 501}),
]


@pytest.mark.parametrize("raw,statuses", [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
async def test_malformed_request_is_refused_and_closed(fleet_dir, echo_backends, start_gateway, raw, statuses):
    gw, (b,) = await one_service(fleet_dir, echo_backends, start_gateway, {"zone-a": "127.0.51.1"})
    reader, writer = await asyncio.open_connection(gw.host, gw.port)
    try:
        writer.write(raw.encode("latin-1"))
        r = await read_response(reader)
        assert r.status in statuses, r
        assert r.headers.get("x-fleetgate-reason"), r.headers
        assert r.headers.get("connection") == "close"
        assert await closed_by_server(reader)
    finally:
        writer.close()
    assert b.hits == 0  # nothing, smuggled or not, reached the upstream
    await expect_service(gw)


async def expect_service(gw) -> None:
    """The gateway still serves a normal request on a new connection."""
    async with aiohttp.ClientSession() as s:
        async with s.get(gw.url + "/", headers={"Host": HOST}) as r:
            assert r.status == 200


async def test_unterminated_oversized_header_is_refused_before_the_header_timeout(
        fleet_dir, echo_backends, start_gateway):
    """A header that never ends must not be buffered without bound until the timeout."""
    gw, _ = await one_service(fleet_dir, echo_backends, start_gateway, {"zone-a": "127.0.51.2"})
    reader, writer = await asyncio.open_connection(gw.host, gw.port)
    try:
        answer = asyncio.create_task(read_response(reader, timeout=3.0))  # header timeout: 10 s
        writer.write(f"GET / HTTP/1.1\r\n{H}X-Endless: ".encode())
        for _ in range(64):  # up to 256 KiB of header value, in separate reads, never terminated
            if answer.done():
                break
            writer.write(b"v" * 4096)
            await writer.drain()
            await asyncio.sleep(0.001)
        r = await answer
        assert r.status == 431
        assert r.headers["x-fleetgate-reason"]
        assert await closed_by_server(reader, timeout=3.0)
    finally:
        writer.close()
    await expect_service(gw)


async def test_bad_chunk_after_the_head_was_forwarded_is_400_not_a_hang(fleet_dir, echo_backends, start_gateway):
    """The head reached the upstream (which now waits for the body) before the body broke."""
    gw, (b,) = await one_service(fleet_dir, echo_backends, start_gateway, {"zone-a": "127.0.51.3"})
    reader, writer = await asyncio.open_connection(gw.host, gw.port)
    try:
        writer.write(f"POST /upload HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n".encode())
        await writer.drain()
        await wait_for(lambda: any(ds.active is not None and ds.active.upstream is not None
                                   for ds in gw.gateway.ctx.downstreams))
        writer.write(b"zz\r\nbroken\r\n")
        r = await read_response(reader, timeout=3.0)  # the upstream read timeout is 60 s
        assert r.status == 400
        assert r.headers["x-fleetgate-reason"]
        assert await closed_by_server(reader, timeout=3.0)
    finally:
        writer.close()
    assert b.hits == 0  # the upstream never saw a complete request
    await expect_service(gw)


async def test_body_over_the_limit_is_413_whether_announced_or_streamed(fleet_dir, echo_backends, start_gateway):
    gw, (b,) = await one_service(fleet_dir, echo_backends, start_gateway, {"zone-a": "127.0.51.4"},
                                 limits=Limits(max_body_size=1000))
    announced = await raw_exchange(gw, f"POST / HTTP/1.1\r\n{H}Content-Length: 5000\r\n\r\n".encode() + b"x" * 5000)
    assert announced.status == 413 and announced.headers["x-fleetgate-reason"]
    streamed = await raw_exchange(gw, f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n".encode()
                                  + b"200\r\n" + b"y" * 512 + b"\r\n" + b"400\r\n" + b"z" * 1024 + b"\r\n0\r\n\r\n")
    assert streamed.status == 413 and streamed.headers["x-fleetgate-reason"]
    assert b.hits == 0
    async with aiohttp.ClientSession() as s:
        async with s.post(gw.url + "/", data=b"s" * 900, headers={"Host": HOST}) as r:
            assert r.status == 200
            assert (await r.json())["body_len"] == 900


async def raw_exchange(gw, data: bytes):
    reader, writer = await asyncio.open_connection(gw.host, gw.port)
    try:
        writer.write(data)
        r = await read_response(reader, timeout=3.0)
        assert await closed_by_server(reader, timeout=3.0)
        return r
    finally:
        writer.close()


async def wait_for(predicate, timeout: float = 3.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


# --- slowloris -------------------------------------------------------------------------------

async def test_half_sent_request_head_gets_408_after_the_header_timeout(fleet_dir, echo_backends, start_gateway):
    gw, (b,) = await one_service(fleet_dir, echo_backends, start_gateway, {"zone-a": "127.0.51.5"},
                                 limits=Limits(header_timeout=0.3, idle_timeout=30.0))
    reader, writer = await asyncio.open_connection(gw.host, gw.port)
    try:
        writer.write(f"GET /slow HTTP/1.1\r\n{H}X-Partial: ".encode())
        r = await read_response(reader, timeout=5.0)
        assert r.status == 408
        assert r.headers["x-fleetgate-reason"]
        assert await closed_by_server(reader, timeout=5.0)
    finally:
        writer.close()
    assert b.hits == 0
    await expect_service(gw)


async def test_silent_connection_is_closed_after_the_header_timeout(fleet_dir, echo_backends, start_gateway):
    gw, _ = await one_service(fleet_dir, echo_backends, start_gateway, {"zone-a": "127.0.51.6"},
                              limits=Limits(header_timeout=0.3, idle_timeout=30.0))
    reader, writer = await asyncio.open_connection(gw.host, gw.port)
    try:
        assert await closed_by_server(reader, timeout=5.0)
    finally:
        writer.close()


async def test_idle_keep_alive_connection_is_closed_after_the_idle_timeout(fleet_dir, echo_backends, start_gateway):
    gw, _ = await one_service(fleet_dir, echo_backends, start_gateway, {"zone-a": "127.0.51.7"},
                              limits=Limits(header_timeout=5.0, idle_timeout=0.3))
    reader, writer = await asyncio.open_connection(gw.host, gw.port)
    try:
        writer.write(get("/"))
        r = await read_response(reader)
        assert r.status == 200 and r.headers.get("connection") != "close"
        assert await closed_by_server(reader, timeout=5.0)  # well before the 5 s header timeout
    finally:
        writer.close()
    assert not gw.gateway.ctx.downstreams
