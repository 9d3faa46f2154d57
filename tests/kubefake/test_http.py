"""The server's own HTTP/1.1 layer (kubefake/httpserver.py), over raw sockets: what clients
other than aiohttp's may send (pipelining, chunked bodies, HTTP/1.0, garbage)."""
from __future__ import annotations

import asyncio
import json

from kubefake import KubeAPIServer

CM = b"/api/v1/namespaces/default/configmaps"


async def _exchange(server: KubeAPIServer, data: bytes) -> bytes:
    """Send `data`, read until the server closes the connection."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(data)
        async with asyncio.timeout(5):
            return await reader.read()
    finally:
        writer.close()


async def _response(reader: asyncio.StreamReader) -> tuple[bytes, dict[str, str], bytes]:
    """One Content-Length response: status line, headers (lower-case names), body."""
    status = await reader.readline()
    headers = {}
    while (line := await reader.readline()) != b"\r\n":
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, await reader.readexactly(int(headers["content-length"]))


def _post(name: str, *, close: bool = False) -> bytes:
    body = json.dumps({"metadata": {"name": name}}).encode()
    return (b"POST %s HTTP/1.1\r\nHost: kube\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n%s"
            % (CM, b"Connection: close\r\n" if close else b"", len(body), body))


async def test_pipelined_requests_are_answered_in_order(server: KubeAPIServer) -> None:
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(_post("one") + _post("two") + b"GET %s/one HTTP/1.1\r\nHost: kube\r\n\r\n" % CM)
        async with asyncio.timeout(5):
            answers = [await _response(reader) for _ in range(3)]
    finally:
        writer.close()
    assert [a[0].split()[1] for a in answers] == [b"201", b"201", b"200"]
    assert [json.loads(a[2])["metadata"]["name"] for a in answers] == ["one", "two", "one"]
    assert answers[2][1]["content-type"] == "application/json"
    assert "date" in answers[2][1]


async def test_chunked_request_body_is_read_whole(server: KubeAPIServer) -> None:
    body = json.dumps({"metadata": {"name": "chunked", "labels": {"a": "b"}}}).encode()
    half = len(body) // 2
    chunks = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (half, body[:half], len(body) - half, body[half:])
    raw = await _exchange(server, b"POST %s HTTP/1.1\r\nHost: kube\r\nContent-Type: application/json\r\n"
                                  b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n%s" % (CM, chunks))
    assert raw.startswith(b"HTTP/1.1 201 ")
    assert server.get("configmaps", "chunked", "default")["metadata"]["labels"] == {"a": "b"}


async def test_connection_close_and_http_1_0_end_the_connection(server: KubeAPIServer) -> None:
    raw = await _exchange(server, _post("closing", close=True))  # returns only because the server closed
    assert raw.startswith(b"HTTP/1.1 201 ") and b"\r\nConnection: close\r\n" in raw
    raw = await _exchange(server, b"GET /version HTTP/1.0\r\n\r\n")
    assert raw.startswith(b"HTTP/1.0 200 ")
    assert json.loads(raw.partition(b"\r\n\r\n")[2])["major"] == "1"


async def test_malformed_request_is_400_and_closed(server: KubeAPIServer) -> None:
    raw = await _exchange(server, b"NOT HTTP AT ALL\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 400 ")


async def test_head_gets_the_length_without_the_body(server: KubeAPIServer) -> None:
    raw = await _exchange(server, b"HEAD /version HTTP/1.1\r\nHost: kube\r\nConnection: close\r\n\r\n")
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0]) > 0
    assert rest == b""


async def test_watch_client_going_away_ends_the_watch(server: KubeAPIServer) -> None:
    """A watcher that disconnects while nothing happens is unsubscribed at once (no write
    needed to notice)."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(b"GET %s?watch=1 HTTP/1.1\r\nHost: kube\r\n\r\n" % CM)
    async with asyncio.timeout(5):
        assert (await reader.readline()).startswith(b"HTTP/1.1 200 ")
    await server.wait_for_watches(1)
    writer.close()
    await writer.wait_closed()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while server.open_watches and loop.time() < deadline:  # bounded: the server sees the FIN soon
        await asyncio.sleep(0.01)
    assert server.open_watches == 0
    assert not any(server.store._subs.values())


async def test_repeated_header_values_are_joined(server: KubeAPIServer) -> None:
    """Accept sent twice counts as one list of media types (RFC 9110 5.3): the Table wins."""
    raw = await _exchange(server, b"GET %s HTTP/1.1\r\nHost: kube\r\nAccept: application/json\r\n"
                                  b"accept: application/json;as=Table;v=v1;g=meta.k8s.io\r\n"
                                  b"Connection: close\r\n\r\n" % CM)
    assert raw.startswith(b"HTTP/1.1 200 ")
    assert json.loads(raw.partition(b"\r\n\r\n")[2])["kind"] == "Table"
