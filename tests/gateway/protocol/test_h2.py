"""HTTP/2 downstream over real sockets: h2c with prior knowledge and h2 over TLS (ALPN),
many streams on one connection, bodies both ways past the flow-control windows, and
malformed input (bad frames, a header that would split the HTTP/1.1 head, a reset stream)."""
from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time

import h2.config
import h2.connection
import h2.events
import httpx
import pytest
from aiohttp import web

from gateway_support import endpoint_slice, ingress, rule, service
from h2_layer_support import h2_layer  # noqa: F401  (fixture)
from tls_support import make_ca, tls_entry, tls_secret

from gateway.protocol.h2 import DownstreamH2
from tests.tools import require_tool

BIG = bytes(range(256)) * 12_288  # 3 MiB: far past HTTP/2's default 64 KiB windows


async def big_or_echo(request: web.Request) -> web.StreamResponse:
    if request.path == "/big":
        return web.Response(body=BIG, content_type="application/octet-stream")
    if request.path == "/slow":
        await asyncio.sleep(2)
    return web.json_response({"path": request.path_qs, "method": request.method,
                              "headers": {k.lower(): v for k, v in request.headers.items()},
                              "body_len": len(await request.read())})


async def two_clusters(fleet_dir, echo_backends, start_gateway, **options):
    """Service `web` with a pod in zone-a and in zone-b, routed from h2.example; returns
    (backends, running gateway)."""
    fd = fleet_dir("zone-a", "zone-b")
    backends = []
    for cluster, addr in (("zone-a", "127.0.3.1"), ("zone-b", "127.0.3.2")):
        b = await echo_backends(cluster, host=addr, handler=big_or_echo)
        backends.append(b)
        fd.member(cluster, [service("web"), endpoint_slice("web", [(b.host, b.port)])])
    extra = options.pop("hub", [])
    fd.hub([ingress("web", [rule("h2.example", ("/", "Prefix", "web"))]), *extra])
    return backends, await start_gateway(fd, **options)


async def test_h2c_prior_knowledge_runs_many_streams_on_one_connection(fleet_dir, echo_backends, start_gateway):
    _, gw = await two_clusters(fleet_dir, echo_backends, start_gateway)
    async with httpx.AsyncClient(http1=False, http2=True, timeout=10) as client:
        url = f"{gw.url}/q?x=1"
        responses = await asyncio.gather(*(client.get(url, headers={"host": "h2.example", "cookie": "a=1"})
                                           for _ in range(60)))
        assert {r.status_code for r in responses} == {200}
        assert {r.http_version for r in responses} == {"HTTP/2"}
        assert {r.headers["x-fleetgate-cluster"] for r in responses} == {"zone-a", "zone-b"}
        seen = responses[0].json()
        assert seen["path"] == "/q?x=1" and seen["method"] == "GET"
        assert seen["headers"]["host"] == "h2.example"
        assert seen["headers"]["x-forwarded-proto"] == "http"
        assert seen["headers"]["cookie"] == "a=1"
        assert "x-request-id" in seen["headers"] and "via" in seen["headers"]
        assert all("connection" not in r.headers and "keep-alive" not in r.headers for r in responses)
        # all of them on one HTTP/2 connection
        assert sum(isinstance(d, DownstreamH2) for d in gw.gateway.ctx.downstreams) == 1

        r = await client.get(f"{gw.url}/", headers={"host": "nowhere.example"})
        assert r.status_code == 404 and r.headers["x-fleetgate-reason"] == "no-route"
        r = await client.head(f"{gw.url}/big", headers={"host": "h2.example"})
        assert r.status_code == 200 and r.content == b"" and r.headers["content-length"] == str(len(BIG))


async def test_h2_bodies_both_ways_past_the_flow_control_windows(fleet_dir, echo_backends, start_gateway):
    _, gw = await two_clusters(fleet_dir, echo_backends, start_gateway)
    async with httpx.AsyncClient(http1=False, http2=True, timeout=20) as client:
        hdr = {"host": "h2.example"}
        downloads = await asyncio.gather(*(client.get(f"{gw.url}/big", headers=hdr) for _ in range(3)))
        assert all(r.status_code == 200 and r.content == BIG for r in downloads)

        async def chunks():
            for i in range(0, len(BIG), 100_000):
                yield BIG[i:i + 100_000]

        r = await client.post(f"{gw.url}/up", headers=hdr, content=chunks())  # no length: chunked upstream
        assert r.status_code == 200 and r.json()["body_len"] == len(BIG)
        assert r.json()["headers"].get("transfer-encoding") == "chunked"
        r = await client.post(f"{gw.url}/up", headers=hdr, content=BIG)  # with content-length
        assert r.status_code == 200 and r.json()["body_len"] == len(BIG)
        assert r.json()["headers"]["content-length"] == str(len(BIG))


async def test_h2_over_tls_is_chosen_by_alpn(fleet_dir, echo_backends, start_gateway, tmp_path):
    require_tool("curl")
    ca = make_ca()
    cert, key = ca.issue("h2.example")
    _, gw = await two_clusters(fleet_dir, echo_backends, start_gateway, https=True, hub=[
        tls_secret("h2-tls", cert, key),
        ingress("tls", [rule("h2.example", ("/tls", "Prefix", "web"))], tls=[tls_entry("h2-tls", "h2.example")])])
    port = gw.gateway.https_address[1]
    cafile = tmp_path / "ca.pem"
    cafile.write_bytes(ca.pem)
    out = await asyncio.to_thread(subprocess.run, [
        "curl", "-sS", "--http2", "--cacert", str(cafile), "--resolve", f"h2.example:{port}:127.0.0.1",
        "-w", "\n%{http_version} %{http_code}\n", f"https://h2.example:{port}/tls/a", f"https://h2.example:{port}/tls/b"],
        capture_output=True, timeout=30, text=True)
    assert out.returncode == 0, out.stderr
    bodies = out.stdout.split("\n")
    assert bodies[1] == "2 200" and bodies[3] == "2 200", out.stdout
    assert json.loads(bodies[0])["headers"]["x-forwarded-proto"] == "https"
    # clients that do not offer h2 still get HTTP/1.1 on the same listener
    out = await asyncio.to_thread(subprocess.run, [
        "curl", "-sS", "--http1.1", "--cacert", str(cafile), "--resolve", f"h2.example:{port}:127.0.0.1",
        "-o", "/dev/null", "-w", "%{http_version} %{http_code}", f"https://h2.example:{port}/tls/c"],
        capture_output=True, timeout=30, text=True)
    assert out.stdout == "1.1 200", out.stdout + out.stderr


class RawH2:
    """A real HTTP/2 client on a plain socket (the h2 library), for what httpx will not send."""

    def __init__(self, port: int, *, validate: bool = True) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding=None, validate_outbound_headers=validate,
            normalize_outbound_headers=validate))
        self.conn.initiate_connection()
        self.flush()

    def flush(self) -> None:
        self.sock.sendall(self.conn.data_to_send())

    def request(self, path: bytes, *extra: tuple[bytes, bytes]) -> int:
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, [(b":method", b"GET"), (b":scheme", b"http"), (b":path", path),
                                     (b":authority", b"h2.example"), *extra], end_stream=True)
        self.flush()
        return sid

    def events_until(self, done) -> list:
        seen: list = []
        while not done(seen):
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                seen.append("closed")
                break
            seen += self.conn.receive_data(data)
            try:
                self.flush()
            except (BrokenPipeError, ConnectionResetError):  # the server has closed: read what is left
                pass
        return seen


async def test_malformed_h2_input_is_refused_without_harming_other_streams(fleet_dir, echo_backends, start_gateway):
    backends, gw = await two_clusters(fleet_dir, echo_backends, start_gateway)

    def scenario() -> None:
        # a header value that would split the HTTP/1.1 head: the stream is reset (or, when the
        # h2 library finds it first, the connection is closed); nothing reaches a backend
        c = RawH2(gw.port, validate=False)
        bad = c.request(b"/inject", (b"x-a", b"1\r\nx-injected: yes"))
        ev = c.events_until(lambda s: any(isinstance(e, h2.events.StreamReset) and e.stream_id == bad for e in s)
                            or "closed" in s)
        assert any(isinstance(e, h2.events.StreamReset) for e in ev) or "closed" in ev
        # a client reset mid-response (the upstream is slow): the same connection goes on
        c = RawH2(gw.port)
        slow = c.request(b"/slow")
        c.conn.reset_stream(slow)
        c.flush()
        ok = c.request(b"/after")
        ev = c.events_until(lambda s: any(isinstance(e, h2.events.StreamEnded) and e.stream_id == ok for e in s))
        status = [dict(e.headers)[b":status"] for e in ev
                  if isinstance(e, h2.events.ResponseReceived) and e.stream_id == ok]
        assert status == [b"200"]
        # garbage after the preface: GOAWAY, then the connection closes
        s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x04\x09\x00\x00\x00\x00\x01junk")
        got = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        s.close()
        assert b"\x07" in got  # a GOAWAY frame (type 7) was sent before the close

    await asyncio.to_thread(scenario)
    assert not any(r["path"].startswith("/inject") for b in backends for r in b.requests)
    async with httpx.AsyncClient(http1=False, http2=True, timeout=10) as client:
        r = await client.get(f"{gw.url}/fine", headers={"host": "h2.example"})
        assert r.status_code == 200 and "x-injected" not in r.json()["headers"]


async def test_drain_finishes_open_streams_and_sends_goaway(fleet_dir, echo_backends, start_gateway):
    require_tool("curl")
    _, gw = await two_clusters(fleet_dir, echo_backends, start_gateway)
    # curl (nghttp2) as the client: it finishes a stream the GOAWAY lets through, where the
    # h2 library and httpcore treat any GOAWAY as the end of every stream
    curl = await asyncio.create_subprocess_exec(
        "curl", "-sS", "--http2-prior-knowledge", "-v", "-H", "host: h2.example", f"{gw.url}/slow",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    deadline = asyncio.get_running_loop().time() + 5
    while not any(isinstance(d, DownstreamH2) and d.streams for d in gw.gateway.ctx.downstreams):
        assert asyncio.get_running_loop().time() < deadline, "the stream never opened"
        await asyncio.sleep(0.02)
    await gw.gateway.drain(timeout=5)
    out, err = await asyncio.wait_for(curl.communicate(), 10)
    assert curl.returncode == 0, err
    assert json.loads(out)["path"] == "/slow"
    assert b"< HTTP/2 200" in err
    assert not gw.gateway.ctx.downstreams  # closed once its stream was done


async def test_a_preface_split_across_reads_still_starts_http2(fleet_dir, echo_backends, start_gateway):
    _, gw = await two_clusters(fleet_dir, echo_backends, start_gateway)

    def scenario(cut: int) -> list[bytes]:
        c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        c.initiate_connection()
        c.send_headers(1, [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/split"),
                           (b":authority", b"h2.example")], end_stream=True)
        data = c.data_to_send()
        s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(data[:cut])
        time.sleep(0.1)  # the gateway reads the first piece on its own
        s.sendall(data[cut:])
        statuses: list[bytes] = []
        while not statuses:
            chunk = s.recv(65536)
            assert chunk, "closed before a response"
            for e in c.receive_data(chunk):
                if isinstance(e, h2.events.ResponseReceived):
                    statuses.append(dict(e.headers)[b":status"])
            s.sendall(c.data_to_send())
        s.close()
        return statuses

    for cut in (5, 16, 18, 20, 24):  # in "PRI * HTTP/2.0\r\n\r\n", after it, in "SM\r\n\r\n", after the preface
        assert await asyncio.to_thread(scenario, cut) == [b"200"], cut


@pytest.fixture(autouse=True)
def _both_layers(h2_layer: str) -> str:
    """Every test here runs on libnghttp2 and on the h2 library."""
    return h2_layer
