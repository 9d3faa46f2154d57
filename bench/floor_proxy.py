"""The floor: the fewest Python instructions that do the contract's per-request work.

A deliberately bare pair of protocols, used only by `h1_path_cpu.py --floor`, that does
what the gateway's plain route does on every request and nothing else: llhttp parsing,
each header classified (Host kept, duplicates refused), size limits, a route cache
lookup, round robin, a pooled upstream connection, the upstream head with
X-Forwarded-For/-Proto/-Host, x-request-id and via in one format call, a read deadline,
the response head's hop-by-hop names stripped, x-fleetgate-cluster added, the latency
histogram row, the connection released, one write per response. No error handling, no
bodies, no retries, no policy, no pipelining, one route, one endpoint.

It answers one question with a number: how far can rewriting the gateway's request path
in pure Python go? Whatever the gateway costs above this is structure; the floor itself
is the interpreter doing the contract's work.
"""
from __future__ import annotations

import asyncio
from bisect import bisect_left

import httptools

from gateway.metrics import BUCKETS
from gateway.protocol.http1 import H_HOST, REQUEST_SPECIAL, RESPONSE_HOP

READ_TIMEOUT = 60.0


class Exchange:
    __slots__ = ("ds", "url", "host", "hlines", "start", "status", "cluster", "deadline")


class FloorUpstream(asyncio.Protocol):
    def __init__(self, pool: list["FloorUpstream"], rows: dict) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.pool = pool
        self.rows = rows
        self.head = b""
        self.ex: Exchange | None = None
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.cluster = "a"
        self.cline = b"x-fleetgate-cluster: a\r\n"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        ex = self.ex
        ds = ex.ds  # type: ignore[union-attr]
        self.head = data
        self.parser.feed_data(data)
        if self.ex is ex:
            ex.deadline = ds.now() + READ_TIMEOUT  # type: ignore[union-attr]
        ds.flush()

    def on_headers_complete(self) -> None:
        ex: Exchange = self.ex  # type: ignore[assignment]
        buf = self.head
        head = buf[:buf.find(b"\r\n\r\n") + 2]
        low = head.lower()
        if RESPONSE_HOP.findall(low):
            at = low.find(b"\nconnection: keep-alive\r\n") + 1
            head = head[:at] + head[at + 24:]
        ex.status = self.parser.get_status_code()
        ex.cluster = self.cluster
        ex.ds.out.append(b"".join((head, self.cline, b"\r\n")))

    def on_body(self, body: bytes) -> None:
        self.ex.ds.out.append(body)  # type: ignore[union-attr]

    def on_message_complete(self) -> None:
        ex: Exchange = self.ex  # type: ignore[assignment]
        self.ex = None
        ds = ex.ds
        now = ds.now()
        self.pool.append(self)
        key = ("default/bench", ex.cluster, ex.status)
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = [0.0] * (len(BUCKETS) + 2)
        seconds = now - ex.start
        row[bisect_left(BUCKETS, seconds)] += 1
        row[-1] += seconds
        ds.active = None
        ds.deadline = now + 60.0


class FloorDownstream(asyncio.Protocol):
    def __init__(self, pool: list[FloorUpstream], route: object) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.pool = pool
        self.route = route
        self.routes: dict[tuple[bytes, bytes], object] = {}
        self.rr: dict[str, int] = {}
        self.out: list[bytes] = []
        self.cur: Exchange | None = None
        self.active: Exchange | None = None
        self.deadline = 0.0
        self.rid = 0
        self.now = asyncio.get_event_loop().time
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.forwarded = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.forwarded = b"x-forwarded-for: 127.0.0.1\r\nx-forwarded-proto: http\r\n"

    def flush(self) -> None:
        out = self.out
        if out:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))
            out.clear()

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)
        if self.out:
            self.flush()

    def on_url(self, url: bytes) -> None:
        ex = self.cur = Exchange()
        ex.ds = self
        ex.url = url
        ex.hlines = []
        ex.host = None
        ex.start = self.now()

    def on_header(self, name: bytes, value: bytes) -> None:
        kind = REQUEST_SPECIAL.get(name.lower())
        ex: Exchange = self.cur  # type: ignore[assignment]
        if kind is None:
            ex.hlines += (name, b": ", value, b"\r\n")
        elif kind == H_HOST:
            if ex.host is not None and ex.host != value:
                raise ValueError("duplicate-host")
            ex.host = value

    def on_headers_complete(self) -> None:
        ex: Exchange = self.cur  # type: ignore[assignment]
        method = self.parser.get_method()
        fields = b"".join(ex.hlines)
        url, host = ex.url, ex.host
        if len(url) > 8192 or len(fields) > 65536 or url[0] != 47 or host is None:
            raise ValueError("bad request")
        key = (host, url)
        route = self.routes.get(key)
        if route is None:
            route = self.routes[key] = self.route
        self.rid += 1
        head = (b"%s %s HTTP/1.1\r\nhost: %s\r\n%s%sx-forwarded-host: %s\r\n"
                b"x-request-id: %s%x\r\nvia: 1.1 fleetgate\r\n\r\n") % (
            method, url, host, fields, self.forwarded, host, b"0123456789ab-", self.rid)
        self.cur = None
        n = self.rr.get("backend", 0)
        self.rr["backend"] = n + 1
        self.active = ex
        conn = self.pool.pop()
        ex.deadline = ex.start + READ_TIMEOUT
        conn.ex = ex
        conn.transport.write(head)


async def serve(listen_port: int, backend_port: int, connections: int) -> None:
    """Serve the floor over real sockets (`proxy_vs_nginx.py --floor`): `connections`
    upstream connections are opened first, as many as the benchmark's clients at most."""
    loop = asyncio.get_running_loop()
    pool: list[FloorUpstream] = []
    rows: dict = {}
    for _ in range(connections):
        _, conn = await loop.create_connection(lambda: FloorUpstream(pool, rows), "127.0.0.1", backend_port)
        pool.append(conn)
    route = object()
    server = await loop.create_server(lambda: FloorDownstream(pool, route), "127.0.0.1", listen_port,
                                      backlog=2048)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    import argparse
    import sys
    from pathlib import Path

    import uvloop
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere
    ap = argparse.ArgumentParser(description="serve the floor proxy (bench only)")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--backend-port", type=int, required=True)
    ap.add_argument("--connections", type=int, default=256)
    a = ap.parse_args()
    uvloop.run(serve(a.port, a.backend_port, a.connections))
