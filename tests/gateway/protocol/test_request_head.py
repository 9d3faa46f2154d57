"""The upstream request head as bytes on the wire: order, duplicates and the handled
names as a raw backend receives them, along both the per-header path and the plain-head
path (a long head that arrives whole)."""
from __future__ import annotations

import asyncio

from h1_support import gateway_for, scripted_backend


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def header_lines(head: bytes) -> list[tuple[str, str]]:
    lines = head.decode("latin-1").split("\r\n")[1:]
    return [(n.strip().lower(), v.strip()) for n, v in (line.split(":", 1) for line in lines if line)]


async def test_ordinary_headers_keep_order_and_duplicates_handled_ones_do_not_pass(fleet_dir, start_gateway) -> None:
    heads: list[bytes] = []
    server, port = await scripted_backend("127.0.62.1", [OK], heads=heads)
    gw = await gateway_for(fleet_dir, start_gateway, "127.0.62.1", port)
    reader, writer = await asyncio.open_connection(gw.host, gw.port)
    async with server:
        try:
            writer.write(b"GET /a HTTP/1.1\r\nX-A: 1\r\nHost: web.example.com\r\nX-Dup: one\r\n"
                         b"Via: 1.0 edge\r\nX-Forwarded-For: 10.0.0.1\r\nx-dup: two\r\n"
                         b"Connection: keep-alive, X-Drop\r\nX-Drop: secret\r\nTE: trailers\r\nX-B: 2\r\n\r\n")
            first = await reader.readuntil(b"\r\n\r\n") + await reader.readexactly(2)
            writer.write(b"GET /b HTTP/1.1\r\nhOsT: web.example.com\r\n\r\n")  # Host alone, odd case
            second = await reader.readuntil(b"\r\n\r\n") + await reader.readexactly(2)
        finally:
            writer.close()
    assert first.startswith(b"HTTP/1.1 200") and second.startswith(b"HTTP/1.1 200")
    assert len(heads) == 2
    one = header_lines(heads[0])
    names = [n for n, _ in one]
    ordinary = [(n, v) for n, v in one if n.startswith("x-") and not n.startswith("x-forwarded")
                and n not in ("x-request-id",)]
    assert ordinary == [("x-a", "1"), ("x-dup", "one"), ("x-dup", "two"), ("x-b", "2")]
    assert names.count("host") == 1 and dict(one)["host"] == "web.example.com"
    assert "x-drop" not in names and "te" not in names and "connection" not in names
    assert dict(one)["x-forwarded-for"] == "10.0.0.1, 127.0.0.1"
    assert dict(one)["via"] == "1.0 edge, 1.1 fleetgate"
    two = header_lines(heads[1])
    assert [n for n, _ in two].count("host") == 1 and dict(two)["host"] == "web.example.com"
    assert dict(two)["x-forwarded-for"] == "127.0.0.1"
    assert heads[1].startswith(b"GET /b HTTP/1.1\r\n")


async def test_two_different_hosts_anywhere_in_the_head_are_a_400(fleet_dir, start_gateway) -> None:
    gw = await gateway_for(fleet_dir, start_gateway, "127.0.62.2", 9)
    for head in (b"Host: web.example.com\r\nX-A: 1\r\nHOST: other.example\r\n",
                 b"X-A: 1\r\nHost: web.example.com\r\nHost: other.example\r\n"):
        reader, writer = await asyncio.open_connection(gw.host, gw.port)
        try:
            writer.write(b"GET / HTTP/1.1\r\n" + head + b"\r\n")
            status = await reader.readuntil(b"\r\n")
        finally:
            writer.close()
        assert status.startswith(b"HTTP/1.1 400"), (head, status)


async def test_a_head_in_one_read_and_in_pieces_reach_the_upstream_alike(fleet_dir, start_gateway) -> None:
    """A whole, long head in one read takes the plain parser (header lines as one block), a
    head in pieces the full one (a callback per header): the upstream must see the same."""
    heads: list[bytes] = []
    server, port = await scripted_backend("127.0.62.3", [OK], heads=heads)
    gw = await gateway_for(fleet_dir, start_gateway, "127.0.62.3", port)
    browser = b"".join(b"X-Browser-%d: %s\r\n" % (i, b"v" * 20) for i in range(8))  # past PLAIN_HEAD_MIN
    requests = [
        b"GET /p?q=1 HTTP/1.1\r\nhOsT:   web.example.com\r\nX-Tab:\tv\t\r\nX-Empty:\r\n" + browser
        + b"Accept: */*\r\n\r\n",
        b"GET / HTTP/1.1\r\nUser-Agent: t\r\n" + browser + b"Cookie: a=1; b=2\r\nHost: web.example.com:80\r\n"
        b"X-Last: z\r\n\r\n",
        b"HEAD /h HTTP/1.1\r\nHost: web.example.com\r\n\r\n",
        b"GET /v HTTP/1.1\r\nHost: web.example.com\r\n" + browser + b"Via: 1.0 edge\r\n\r\n",
    ]
    async with server:
        for request in requests:
            for pieces in ([request], [request[:7], request[7:-3], request[-3:]]):
                reader, writer = await asyncio.open_connection(gw.host, gw.port)
                try:
                    for piece in pieces:
                        writer.write(piece)
                        await writer.drain()
                        await asyncio.sleep(0.02)  # separate reads
                    status = await reader.readuntil(b"\r\n")
                finally:
                    writer.close()
                assert status.startswith(b"HTTP/1.1 200"), (request, status)
    assert len(heads) == 2 * len(requests)

    def comparable(head: bytes) -> list[tuple[str, str]]:
        return [(n, v) for n, v in header_lines(head) if n != "x-request-id"]

    for i in range(len(requests)):
        whole, split = heads[2 * i], heads[2 * i + 1]
        assert whole.split(b"\r\n", 1)[0] == split.split(b"\r\n", 1)[0]
        assert comparable(whole) == comparable(split), (whole, split)
