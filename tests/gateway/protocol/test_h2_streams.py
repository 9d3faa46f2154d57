"""HTTP/2 streams routed and proxied without the HTTP/1.1 engine (gateway/protocol/h2_stream.py):
the route's policies, retries, failures and timeouts behave as on HTTP/1.1, the upstream gets
the same HTTP/1.1 request, and what the HTTP/1.1 parser refused is still refused. Real
clients (httpx over h2c, an h2 library client on a socket) and real backends, both layers."""
from __future__ import annotations

import asyncio
import socket

import h2.config
import h2.connection
import h2.events
import httpx
import pytest

from gateway_support import endpoint_slice, ingress, rule, service
from h2_layer_support import h2_layer  # noqa: F401  (fixture)

NGINX = "nginx.ingress.kubernetes.io/"


@pytest.fixture(autouse=True)
def _both_layers(h2_layer: str) -> str:
    """Every test here runs on libnghttp2 and on the h2 library."""
    return h2_layer


async def raw_backend(host: str, answer) -> tuple[asyncio.AbstractServer, int]:
    """An upstream that reads one request head, then runs answer(writer)."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            await answer(writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    server = await asyncio.start_server(handle, host, 0)
    return server, server.sockets[0].getsockname()[1]


def h2_exchange(port: int, headers: list[tuple[bytes, bytes]]) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """One request from an h2 library client that validates nothing it sends: (response
    headers, body); ([(b"reset", code)], b"") when the stream is reset."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(
        client_side=True, header_encoding=None, validate_outbound_headers=False, normalize_outbound_headers=False))
    conn.initiate_connection()
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn.send_headers(1, headers, end_stream=True)
    sock.sendall(conn.data_to_send())
    got: list[tuple[bytes, bytes]] = []
    body = b""
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return got or [(b"closed", b"")], body
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived):
                    got = list(ev.headers)
                elif isinstance(ev, h2.events.DataReceived):
                    body += ev.data
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    return got, body
                elif isinstance(ev, h2.events.StreamReset):
                    return [(b"reset", b"%d" % ev.error_code)], b""
            sock.sendall(conn.data_to_send())
    finally:
        sock.close()


async def test_route_policies_answer_as_on_http1(fleet_dir, echo_backends, start_gateway):
    fd = fleet_dir("zone-a")
    b = await echo_backends("svc", host="127.0.66.1")
    fd.member("zone-a", [service("svc"), endpoint_slice("svc", [(b.host, b.port)])])
    fd.hub([
        ingress("rw", [rule("rw.example", ("/api(/|$)(.*)", "ImplementationSpecific", "svc"))],
                annotations={f"{NGINX}use-regex": "true", f"{NGINX}rewrite-target": "/$2",
                             f"{NGINX}upstream-vhost": "internal.svc"}),
        ingress("root", [rule("root.example", ("/", "Prefix", "svc"))],
                annotations={f"{NGINX}app-root": "/app", f"{NGINX}enable-cors": "true",
                             f"{NGINX}cors-allow-origin": "https://ok.example"}),
        ingress("deny", [rule("deny.example", ("/", "Prefix", "svc"))],
                annotations={f"{NGINX}whitelist-source-range": "10.0.0.0/8"}),
        ingress("small", [rule("small.example", ("/", "Prefix", "svc"))],
                annotations={f"{NGINX}proxy-body-size": "1k"}),
    ])
    gw = await start_gateway(fd)
    async with httpx.AsyncClient(http1=False, http2=True, timeout=10) as c:
        r = await c.get(gw.url + "/api/users/7?x=1", headers={"host": "rw.example"})
        assert r.http_version == "HTTP/2"
        assert r.json()["path"] == "/users/7?x=1" and r.json()["headers"]["host"] == "internal.svc"
        r = await c.get(gw.url + "/", headers={"host": "root.example"})
        assert r.status_code == 302 and r.headers["location"] == "/app"
        r = await c.options(gw.url + "/x", headers={"host": "root.example", "origin": "https://ok.example",
                                                    "access-control-request-method": "PUT"})
        assert r.status_code == 204 and r.headers["access-control-allow-origin"] == "https://ok.example"
        r = await c.get(gw.url + "/x", headers={"host": "root.example", "origin": "https://ok.example"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://ok.example"
        r = await c.get(gw.url + "/", headers={"host": "deny.example"})
        assert r.status_code == 403 and r.headers["x-fleetgate-reason"] == "source-not-allowed"
        r = await c.post(gw.url + "/", content=b"x" * 2048, headers={"host": "small.example"})  # content-length
        assert r.status_code == 413 and r.headers["x-fleetgate-reason"] == "request-too-large"

        async def chunks():
            for _ in range(4):
                yield b"y" * 512

        r = await c.post(gw.url + "/", content=chunks(), headers={"host": "small.example"})  # no length
        assert r.status_code == 413
        r = await c.post(gw.url + "/", content=b"z" * 100, headers={"host": "small.example"})
        assert r.status_code == 200 and r.json()["body_len"] == 100
        r = await c.head(gw.url + "/", headers={"host": "nowhere.example"})  # a generated answer to HEAD
        assert r.status_code == 404 and r.content == b"" and int(r.headers["content-length"]) > 0
    assert not any(req["path"].startswith("/x") and req["headers"].get("access-control-request-method")
                   for req in b.requests)  # the preflight was answered by the gateway


async def test_the_upstream_gets_the_same_http1_request(fleet_dir, echo_backends, start_gateway):
    fd = fleet_dir("zone-a")
    b = await echo_backends("svc", host="127.0.66.2")
    fd.member("zone-a", [service("svc"), endpoint_slice("svc", [(b.host, b.port)])])
    fd.hub([ingress("web", [rule("h2.example", ("/", "Prefix", "svc"))])])
    gw = await start_gateway(fd)
    headers = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/p?q=1"), (b":authority", b"h2.example"),
               (b"cookie", b"a=1"), (b"x-forwarded-for", b"10.1.1.1"), (b"x-request-id", b"abc-1"),
               (b"via", b"1.1 edge"), (b"te", b"trailers"), (b"accept", b"*/*"), (b"cookie", b"b=2")]
    got, body = await asyncio.to_thread(h2_exchange, gw.port, headers)
    assert dict(got)[b":status"] == b"200", got
    seen = b.requests[-1]["headers"]
    assert seen["host"] == "h2.example" and seen["cookie"] == "a=1; b=2" and seen["accept"] == "*/*"
    assert seen["x-forwarded-for"] == "10.1.1.1, 127.0.0.1" and seen["x-forwarded-proto"] == "http"
    assert seen["x-request-id"] == "abc-1" and seen["via"] == "1.1 edge, 1.1 fleetgate"
    assert "te" not in seen and "transfer-encoding" not in seen and "content-length" not in seen
    assert b.requests[-1]["path"] == "/p?q=1"


@pytest.mark.parametrize("bad, status", [
    ((b"x-ctl", b"a\x01b"), b"400"),  # a control character the HTTP/2 layers let through
    ((b":path", b"/a b"), b"400"),
    ((b":method", b"get"), b"400"),
    ((b":authority", b"h2.example/evil"), b"400"),
    ((b"content-length", b"12x"), b"400"),
    ((b"expect", b"something-else"), b"417"),
])
async def test_what_the_http1_parser_refused_is_refused(fleet_dir, echo_backends, start_gateway, bad, status):
    fd = fleet_dir("zone-a")
    b = await echo_backends("svc", host="127.0.66.3")
    fd.member("zone-a", [service("svc"), endpoint_slice("svc", [(b.host, b.port)])])
    fd.hub([ingress("web", [rule(None, ("/", "Prefix", "svc"))])])
    gw = await start_gateway(fd)
    headers = dict([(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/ok"), (b":authority", b"h2.example")])
    headers[bad[0]] = bad[1]
    got, _ = await asyncio.to_thread(h2_exchange, gw.port, list(headers.items()))
    fields = dict(got)
    # the HTTP/2 layer may refuse some of these itself (a reset, or GOAWAY and close); ours
    # answers the rest as the HTTP/1.1 parser did
    assert fields.get(b":status", status) == status and (b"reset" in fields or b"closed" in fields
                                                          or b"x-fleetgate-reason" in fields), got
    assert b.hits == 0
    got, _ = await asyncio.to_thread(h2_exchange, gw.port, [(b":method", b"GET"), (b":scheme", b"http"),
                                                            (b":path", b"/ok"), (b":authority", b"h2.example")])
    assert dict(got)[b":status"] == b"200" and b.hits == 1


async def test_failures_are_retried_answered_or_reset(fleet_dir, echo_backends, start_gateway):
    async def never(writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)

    async def die(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
        await writer.drain()
        writer.transport.abort()

    alive = await echo_backends("alive", host="127.0.66.4")
    slow, slow_port = await raw_backend("127.0.66.6", never)
    dying, dying_port = await raw_backend("127.0.66.7", die)
    fd = fleet_dir("zone-a")
    fd.member("zone-a", [service("svc"), endpoint_slice("svc", [("127.0.66.5", alive.port), (alive.host, alive.port)]),
                         service("dead"), endpoint_slice("dead", [("127.0.66.5", 9)]),
                         service("slow"), endpoint_slice("slow", [("127.0.66.6", slow_port)]),
                         service("dying"), endpoint_slice("dying", [("127.0.66.7", dying_port)])])
    fd.hub([ingress("web", [rule("web.example", ("/", "Prefix", "svc")), rule("dead.example", ("/", "Prefix", "dead")),
                            rule("dying.example", ("/", "Prefix", "dying"))]),
            ingress("slow", [rule("slow.example", ("/", "Prefix", "slow"))],
                    annotations={f"{NGINX}proxy-read-timeout": "0.3"})])
    gw = await start_gateway(fd)
    async with slow, dying, httpx.AsyncClient(http1=False, http2=True, timeout=10) as c:
        for _ in range(6):  # .5 refuses: every call goes (or is retried) to the live endpoint, its body replayed
            r = await c.post(gw.url + "/", content=b"payload", headers={"host": "web.example"})
            assert r.status_code == 200 and r.json()["body_len"] == 7
        assert alive.hits == 6
        r = await c.get(gw.url + "/", headers={"host": "dead.example"})
        assert r.status_code == 502 and r.headers["x-fleetgate-reason"] == "upstream-connect-error"
        r = await c.get(gw.url + "/", headers={"host": "slow.example"})
        assert r.status_code == 504 and r.headers["x-fleetgate-reason"] == "upstream-timeout"
        with pytest.raises(httpx.RemoteProtocolError):  # the stream is reset: the client sees it incomplete
            r = await c.get(gw.url + "/", headers={"host": "dying.example"})
        r = await c.get(gw.url + "/", headers={"host": "web.example"})  # the connection still serves
        assert r.status_code == 200 and r.http_version == "HTTP/2"
    health = gw.gateway.debug_routes()["routes"]
    eps = {e["address"]: e["healthy"] for rt in health if rt["host"] == "web.example"
           for cl in rt["backend"]["clusters"] for e in cl["endpoints"]}
    assert eps == {"127.0.66.5": False, "127.0.66.4": True}
