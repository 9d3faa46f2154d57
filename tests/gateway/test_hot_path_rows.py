"""The common request's own accounting, over real sockets, in the build in use (the suite
runs once more with FLEETGATE_PURE_PYTHON=1 for the twin, whose response_complete counts
the request inline rather than through RequestCounts.done). One kept-alive raw client
connection sends plain GETs that move between two routes and several statuses (2xx, 3xx,
a bodiless 204: the one-call path; a 404: the general one): each metrics row must hold
exactly its requests, the bytes the client read for them and the request bytes as the
core defines them, and every answer must have come over one reused upstream connection."""
from __future__ import annotations

import asyncio
from collections import Counter
from typing import Awaitable, Callable

from aiohttp import web

from gateway.codec import head_end, parse_request
from gateway.metrics import RECV, SENT, SUM
from gateway_support import ingress, rule, served

HOST = "rows.example.com"
# (path, the status the backend answers): two routes (/a and /b go to different Services)
PLAN = [("/a/200", 200), ("/a/200", 200), ("/b/201", 201), ("/a/302", 302), ("/a/204", 204), ("/b/201", 201),
        ("/a/200", 200), ("/b/204", 204), ("/a/404", 404), ("/a/200", 200), ("/b/201", 201)]


def _answering(peers: list[int]) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A handler answering the status the path names, with a body unless it is a 204, that
    notes the gateway's port of each request's upstream connection in `peers`."""
    async def answer(request: web.Request) -> web.StreamResponse:
        code = int(request.path.rsplit("/", 1)[1])
        peers.append(request.transport.get_extra_info("peername")[1])
        if code == 204:
            return web.Response(status=204)
        headers = {"Location": "/elsewhere"} if code == 302 else None
        return web.Response(status=code, body=b"x" * (10 + len(peers)), headers=headers)
    return answer


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One whole response (Content-Length framed, or bodiless): its status and raw bytes."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = await asyncio.wait_for(reader.readexactly(length), 10) if length else b""
    return status, head + body


async def test_each_row_counts_its_requests_and_their_exact_bytes(fleet_dir, echo_backends, start_gateway):
    fd = fleet_dir("zone-a")
    peers: list[int] = []
    backends = {}
    for name, address in (("alpha", "127.0.9.41"), ("beta", "127.0.9.42")):
        backends[name] = await echo_backends(name, host=address, handler=_answering(peers))
    fd.member("zone-a", served("alpha", backends["alpha"]) + served("beta", backends["beta"]))
    fd.hub([ingress("rows", [rule(HOST, ("/a", "Prefix", "alpha"), ("/b", "Prefix", "beta"))])])
    gw = await start_gateway(fd)
    reader, writer = await asyncio.open_connection(gw.host, gw.port)
    want_count: Counter[tuple[str, int]] = Counter()
    want_sent: Counter[tuple[str, int]] = Counter()
    want_recv: Counter[tuple[str, int]] = Counter()
    try:
        for i, (path, code) in enumerate(PLAN):
            raw = b"GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: rows/%d\r\nAccept: */*\r\n\r\n" % (
                path.encode(), HOST.encode(), i)
            writer.write(raw)
            status, answer = await _read_response(reader)
            assert status == code, (path, answer[:80])
            svc = "demo/alpha:80" if path.startswith("/a") else "demo/beta:80"
            h = parse_request(raw, 0, head_end(raw, 0, 65536), 8192, 65536)
            want_count[(svc, code)] += 1
            want_sent[(svc, code)] += len(answer)
            # the core's request bytes: target, Host, the forwarded header lines, 30 for the rest
            want_recv[(svc, code)] += len(h.target) + len(h.host) + len(h.fields) + 30
    finally:
        writer.close()
    got_count, got_sent, got_recv = Counter(), Counter(), Counter()
    for (label, ing, svc, cluster, method, status), row in gw.gateway.ctx.metrics.rows.items():
        assert (label, ing, cluster, method) == ("demo/rows", "demo/rows", "zone-a", b"GET")
        got_count[(svc, status)] += int(sum(row[:SUM]))
        got_sent[(svc, status)] += int(row[SENT])
        got_recv[(svc, status)] += int(row[RECV])
        assert 0 < row[SUM] < 10  # seconds, from the monotonic clock at both ends
    assert got_count == want_count
    assert got_sent == want_sent
    assert got_recv == want_recv
    # one upstream connection per backend answered all of its requests (released to the pool
    # and taken again each time): two client ports in all, one per endpoint
    assert len(peers) == len(PLAN) and len(set(peers)) == 2
