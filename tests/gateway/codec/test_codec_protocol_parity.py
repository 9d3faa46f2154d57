"""The codec writes the bytes today's protocol code writes: upstream_head() equals the
request head DownstreamH1 (httptools callbacks) sends upstream, and parse_response().head
is the start of the head UpstreamH1 sends downstream, for the same requests and responses.
The protocol objects run with in-memory transports (as bench/h1_path_cpu.py does), so the
comparison is byte for byte with nothing else in between."""
from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))

from h1_path_cpu import snapshot  # noqa: E402

from h1codec_support import request, response  # noqa: E402
from gateway.context import GatewayContext  # noqa: E402
from gateway.protocol.downstream import DownstreamH1  # noqa: E402
from gateway.routing.build import build  # noqa: E402
from gateway.upstream.connection import UpstreamH1  # noqa: E402

HOST = b"Host: bench.local\r\n"
BROWSER = (b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n"
           b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
           b"Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n"
           b"Cookie: session=abc123\r\nUpgrade-Insecure-Requests: 1\r\nSec-Fetch-Dest: document\r\n")
REQUESTS = {
    "wrk": b"GET /index.html HTTP/1.1\r\n" + HOST + b"User-Agent: wrk\r\nAccept: */*\r\n\r\n",
    "browser-plain-path": b"GET /index.html?q=1 HTTP/1.1\r\n" + HOST + BROWSER + b"\r\n",
    "forwarding-headers": b"GET / HTTP/1.1\r\n" + HOST + b"X-Forwarded-For: 9.9.9.9\r\nVia: 1.0 edge\r\n"
                          b"X-Request-Id: client-7\r\nX-Forwarded-Proto: https\r\nAccept: */*\r\n\r\n",
    "connection-named": b"GET / HTTP/1.1\r\n" + HOST + b"Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\n"
                        b"Keep-Alive: 5\r\nX-Kept: 2\r\n\r\n",
    "post-content-length": b"POST /form HTTP/1.1\r\n" + HOST + b"Content-Type: text/plain\r\n"
                           b"Content-Length: 5\r\n\r\nhello",
    "post-chunked": b"POST /up HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "absolute-form": b"GET http://bench.local/abs?x HTTP/1.1\r\n" + HOST + b"Accept: */*\r\n\r\n",
    "http10": b"GET / HTTP/1.0\r\n" + HOST + b"Connection: keep-alive\r\n\r\n",
}
CL2 = b"Content-Length: 2\r\n"
RESPONSES = {
    "nginx": b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sun, 22 Nov 2026 00:00:00 GMT\r\n"
             b"Content-Type: text/plain\r\n" + CL2 + b"Connection: keep-alive\r\n\r\nok",
    "chunked": b"HTTP/1.1 200 OK\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    "connection-named": b"HTTP/1.1 200 OK\r\nConnection: X-Up\r\nX-Up: 1\r\nX-Stay: 2\r\n" + CL2 + b"\r\nok",
    "http10-upstream": b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n" + CL2 + b"\r\nok",
    "hop-by-hop": b"HTTP/1.1 404 Not Found\r\nKeep-Alive: timeout=5\r\nTrailer: x\r\nProxy-Authenticate: b\r\n"
                  + CL2 + b"\r\nno",
}


class Recording(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:  # type: ignore[override]
        self.writes.append(bytes(data))

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _today(raw_request: bytes, raw_response: bytes) -> tuple[bytes, bytes, bytes]:
    """(upstream request head, downstream bytes, the cluster line) as today's code writes them."""
    ctx = GatewayContext()
    table, _ = build(snapshot())
    ctx.swap_table(table)
    ds = DownstreamH1(ctx)
    ds_t = Recording()
    ds.connection_made(ds_t)
    ep = table.routes[0].backend.endpoints[0]  # type: ignore[union-attr]
    pool = ctx.pools.get(ep.key)
    up = UpstreamH1(pool)
    up_t = Recording()
    up.connection_made(up_t)
    pool.release(up, 0.0)
    ds.data_received(raw_request)
    assert up_t.writes, "the request was not forwarded"
    up.data_received(raw_response)
    return up_t.writes[0], b"".join(ds_t.writes), ctx.cluster_line(up.cluster)


def _run(raw_request: bytes, raw_response: bytes) -> tuple[bytes, bytes, bytes]:
    return asyncio.run(_today(raw_request, raw_response))


@pytest.mark.parametrize("name", list(REQUESTS))
def test_upstream_head_is_todays(codec: ModuleType, name: str) -> None:
    raw = REQUESTS[name]
    sent, _, _ = _run(raw, RESPONSES["nginx"])
    head = request(codec, raw)
    rid = re.search(rb"\r\nx-request-id: ([^\r]*)\r\n", sent).group(1)  # type: ignore[union-attr]
    ours = codec.upstream_head(head, target=head.target, host=head.host, peer=b"127.0.0.1", scheme=b"http",
                               request_id=rid)
    assert sent[:len(ours)] == ours


@pytest.mark.parametrize("name", list(RESPONSES))
def test_response_head_is_todays(codec: ModuleType, name: str) -> None:
    raw = RESPONSES[name]
    _, written, cline = _run(REQUESTS["wrk"], raw)
    head = response(codec, raw)
    assert written.startswith(head.head + cline), (written, head.head)
