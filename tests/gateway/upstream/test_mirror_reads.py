"""Mirror copies' responses, read over real sockets: the one-call read of a whole
Content-Length response and httptools for everything else (a head split across reads,
chunked, 1xx first, a close-delimited body, garbage) count the same results and keep or
drop the connection the same way."""
from __future__ import annotations

import asyncio

import pytest

from gateway.upstream.mirror import Mirrors

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"
CASES = {
    "whole": ([OK], True),
    "split-head": ([b"HTTP/1.1 200 OK\r\ncontent-len", b"gth: 5\r\n\r\nhello"], True),
    "split-body": ([b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhel", b"lo"], True),
    "chunked": ([b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"], True),
    "continue-first": ([b"HTTP/1.1 100 Continue\r\n\r\n", OK], True),
    "continue-with-it": ([b"HTTP/1.1 100 Continue\r\n\r\n" + OK], True),
    "close": ([b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 5\r\n\r\nhello"], False),
    "no-content": ([b"HTTP/1.1 204 No Content\r\n\r\n"], True),
    "error-status": ([b"HTTP/1.1 503 Unavailable\r\ncontent-length: 0\r\n\r\n"], True),
}


class Shadow:
    """A mirror target that answers each request head with a scripted list of writes
    (awaiting the client's drain between them) and counts connections and requests."""

    def __init__(self, writes: list[bytes]) -> None:
        self.writes = writes
        self.connections = 0
        self.requests = 0
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                self.requests += 1
                for piece in self.writes:
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(0)  # let each write arrive as its own read when it can
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]


async def settle(mirrors: Mirrors, want: int, key: tuple[str, str]) -> None:
    """Until `want` copies are counted under key, or 5 s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while mirrors.counts.get(key, 0) < want and loop.time() < deadline:
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("case", list(CASES))
async def test_copies_are_counted_and_connections_kept_or_dropped(case: str) -> None:
    writes, keep = CASES[case]
    shadow = Shadow(writes)
    port = await shadow.start()
    mirrors = Mirrors()
    loop = asyncio.get_running_loop()
    n = 6
    try:
        for i in range(n):  # one at a time: each copy finds the last one's connection idle (or closed)
            mirrors.submit("127.0.0.1", port, "zone-x", b"GET /%d HTTP/1.1\r\nhost: h-shadow\r\n\r\n" % i, loop)
            await settle(mirrors, i + 1, ("zone-x", "success"))
        assert mirrors.counts == {("zone-x", "success"): n}, mirrors.counts
        assert shadow.requests == n
        assert shadow.connections == (1 if keep else n), shadow.connections
        target = mirrors.targets[("127.0.0.1", port)]
        assert target.in_flight == 0
    finally:
        mirrors.close()
        assert shadow.server is not None
        shadow.server.close()


async def test_a_garbage_response_is_an_error_and_the_connection_goes() -> None:
    shadow = Shadow([b"NOT HTTP AT ALL\r\n\r\n"])
    port = await shadow.start()
    mirrors = Mirrors()
    loop = asyncio.get_running_loop()
    try:
        for i in range(2):
            mirrors.submit("127.0.0.1", port, "zone-x", b"GET / HTTP/1.1\r\nhost: h\r\n\r\n", loop)
            await settle(mirrors, i + 1, ("zone-x", "error"))
        assert mirrors.counts == {("zone-x", "error"): 2}, mirrors.counts
        assert shadow.connections == 2
    finally:
        mirrors.close()
        assert shadow.server is not None
        shadow.server.close()
