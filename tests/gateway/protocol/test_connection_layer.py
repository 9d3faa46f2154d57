"""The connection layer's per-request shortcuts, held to real behaviour over real sockets.

- Direct writes (gateway/exchange/sockets.py): in the compiled build a request head and a
  whole response go straight to a plain TCP socket when its transport has nothing
  buffered; whatever the socket does not take, and anything written while the transport
  still holds bytes, goes through the transport. Order and integrity with tiny buffers,
  and which connections qualify (never TLS).
- The generated x-request-id (formatted in C in the compiled build).
- One exchange object per connection: reused only when nothing else holds it, and reset to
  EXCHANGE_DEFAULTS in full."""
from __future__ import annotations

import asyncio
import select
import socket
import ssl
import time
import weakref

from aiohttp import web

from h1_support import HOST, get, one_service

from gateway import exchange
from gateway.exchange.sockets import direct_fd
from gateway.tls import self_signed

BIG = 96 * 1024  # one upstream read (uvloop reads up to 256 KiB), far above the tiny socket buffers


def big_body() -> bytes:
    return bytes(range(251)) * (BIG // 251) + b"end"


async def app(request: web.Request) -> web.StreamResponse:
    if request.path == "/big":
        return web.Response(body=big_body(), content_type="application/octet-stream")
    return web.Response(text="small " + request.path)


async def until(predicate, what: str, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    """Wait (bounded) for a state of the in-process gateway that no socket event reports."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        await asyncio.sleep(0.005)


async def read_head(sock: socket.socket, loop: asyncio.AbstractEventLoop, buf: bytearray) -> bytes:
    """Read until a head ends; the head, with what came after it left in buf."""
    while b"\r\n\r\n" not in buf:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 1024), 10)
        assert chunk, "closed before a response head"
        buf += chunk
    end = buf.index(b"\r\n\r\n") + 4
    head = bytes(buf[:end])
    del buf[:end]
    return head


async def read_exactly(sock: socket.socket, loop: asyncio.AbstractEventLoop, buf: bytearray, n: int) -> bytes:
    while len(buf) < n:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), 10)
        assert chunk, "closed in a body"
        buf += chunk
    out = bytes(buf[:n])
    del buf[:n]
    return out


def content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise AssertionError("no content-length in %r" % head)


async def test_a_response_written_behind_a_buffered_one_keeps_its_place(fleet_dir, echo_backends,
                                                                         start_gateway) -> None:
    """The client reads slowly through tiny buffers: the first (large) response's tail stays
    in the gateway's transport, and the second response, read from the upstream meanwhile,
    must come after it, byte for byte."""
    gw, backends = await one_service(fleet_dir, echo_backends, start_gateway, {"zone-a": "127.0.0.1"},
                                     handler=app)
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: a small window
    sock.setblocking(False)
    await loop.sock_connect(sock, (gw.host, gw.port))
    try:
        port = sock.getsockname()[1]
        ctx = gw.gateway.ctx
        await until(lambda: any(d.transport is not None and d.transport.get_extra_info("peername")[1] == port
                                for d in ctx.downstreams), "the connection's protocol")
        ds = next(d for d in ctx.downstreams if d.transport.get_extra_info("peername")[1] == port)
        ds.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        assert (ds.wfd >= 0) == (exchange.IMPLEMENTATION == "compiled")

        buf = bytearray()
        await loop.sock_sendall(sock, get("/big"))
        head1 = await read_head(sock, loop, buf)
        assert head1.startswith(b"HTTP/1.1 200")
        await until(lambda: ds.active is None, "the first exchange's end")
        # the precondition of the case: the socket took part of the body, the transport holds the rest
        assert ds.transport.get_write_buffer_size() > 0

        await loop.sock_sendall(sock, get("/second"))
        await until(lambda: backends[0].hits == 2 and ds.active is None, "the second exchange's end")
        body1 = await read_exactly(sock, loop, buf, content_length(head1))
        assert body1 == big_body()
        head2 = await read_head(sock, loop, buf)
        assert head2.startswith(b"HTTP/1.1 200")
        assert await read_exactly(sock, loop, buf, content_length(head2)) == b"small /second"
        assert ds.transport.get_write_buffer_size() == 0
    finally:
        sock.close()


async def test_many_keep_alive_requests_arrive_whole(fleet_dir, echo_backends, start_gateway) -> None:
    """Sequential requests on one connection (the common path, direct writes both ways in the
    compiled build): every response whole and in order."""
    gw, backends = await one_service(fleet_dir, echo_backends, start_gateway, {"zone-a": "127.0.0.1"},
                                     handler=app)
    reader, writer = await asyncio.open_connection(gw.host, gw.port)
    try:
        for i in range(40):
            writer.write(get("/n%d" % i))
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 200"), head
            body = await asyncio.wait_for(reader.readexactly(content_length(head)), 10)
            assert body == b"small /n%d" % i
        assert backends[0].hits == 40
    finally:
        writer.close()


async def test_direct_fd_only_for_plain_tcp_transports(tmp_path) -> None:
    """A plain TCP transport names its socket (compiled build); a TLS one never does (its
    socket carries records), nor does anything in the twin."""
    loop = asyncio.get_running_loop()
    cert, key = self_signed(HOST)
    (tmp_path / "c.pem").write_bytes(cert)
    (tmp_path / "k.pem").write_bytes(key)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    client_tls = ssl.create_default_context()
    client_tls.check_hostname = False
    client_tls.verify_mode = ssl.CERT_NONE
    made: list[asyncio.BaseTransport] = []

    class Keep(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            made.append(transport)

    plain = await loop.create_server(Keep, "127.0.0.1", 0)
    tls = await loop.create_server(Keep, "127.0.0.1", 0, ssl=server_tls)
    try:
        t_plain, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", plain.sockets[0].getsockname()[1])
        t_tls, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", tls.sockets[0].getsockname()[1],
                                                ssl=client_tls)
        await until(lambda: len(made) == 2, "both connections accepted")
        if exchange.IMPLEMENTATION == "compiled":
            assert direct_fd(t_plain) == t_plain.get_extra_info("socket").fileno()
            assert all(direct_fd(t) == (-1 if t.get_extra_info("sslcontext") else t.get_extra_info("socket").fileno())
                       for t in made)
        else:
            assert direct_fd(t_plain) == -1 and all(direct_fd(t) == -1 for t in made)
        assert direct_fd(t_tls) == -1
        assert sum(direct_fd(t) == -1 for t in made) == (2 if exchange.IMPLEMENTATION != "compiled" else 1)
        t_plain.close()
        t_tls.close()
    finally:
        plain.close()
        tls.close()


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    """Two connected TCP sockets on loopback (a socketpair is AF_UNIX: not a direct-write kind)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        peer = socket.create_connection(listener.getsockname())
        ours, _ = listener.accept()
    return ours, peer


async def test_a_write_waits_for_what_the_transport_still_holds() -> None:
    """The exact case the direct write must respect: the transport holds bytes the socket
    did not take, and the socket has room again (the peer read some) before the loop
    flushed them. A request head sent then (UpstreamCore.send) goes behind them."""
    loop = asyncio.get_running_loop()
    ours, peer = tcp_pair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    peer.setblocking(False)
    transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, ours)
    try:
        conn = exchange.UpstreamCore()
        conn.transport = transport
        conn.wfd = direct_fd(transport)
        assert (conn.wfd >= 0) == (exchange.IMPLEMENTATION == "compiled")
        first = bytes(range(256)) * 1024  # 256 KiB: most of it stays in the transport
        transport.write(first)
        assert transport.get_write_buffer_size() > 0
        # room in the socket again while the loop does not run (it would flush the transport)
        got = bytearray()
        deadline = time.monotonic() + 10
        while not select.select([], [ours], [], 0.01)[1]:
            assert time.monotonic() < deadline, "the socket never had room again"
            try:
                got += peer.recv(65536)
            except BlockingIOError:
                pass
        assert transport.get_write_buffer_size() > 0
        conn.send(exchange.Exchange(), b"GET /after HTTP/1.1\r\nhost: x\r\n\r\n")
        want = len(first) + len(b"GET /after HTTP/1.1\r\nhost: x\r\n\r\n")
        while len(got) < want:
            got += await asyncio.wait_for(loop.sock_recv(peer, 65536), 10)
        assert bytes(got) == first + b"GET /after HTTP/1.1\r\nhost: x\r\n\r\n"
    finally:
        transport.close()
        peer.close()


async def test_generated_request_ids_are_prefix_and_hex_counter(fleet_dir, echo_backends, start_gateway) -> None:
    """The x-request-id the gateway makes (the compiled core formats it in C): the
    connection-independent prefix, then the counter in lowercase hex, at the edges of
    its digits' range."""
    gw, backends = await one_service(fleet_dir, echo_backends, start_gateway, {"zone-a": "127.0.0.1"},
                                     handler=app)
    ctx = gw.gateway.ctx
    reader, writer = await asyncio.open_connection(gw.host, gw.port)
    try:
        for before in (0, 9, 14, 15, 255, 0xABCDEF, 2**32 - 1, 2**63, 2**64 - 2):
            ctx.rid = before
            writer.write(get("/id"))
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            await asyncio.wait_for(reader.readexactly(content_length(head)), 10)
            seen = backends[0].requests[-1]["headers"]["x-request-id"]
            assert seen == (ctx.rid_prefix + b"%x" % (before + 1)).decode(), (before, seen)
            assert ctx.rid == before + 1
    finally:
        writer.close()


# --- one exchange object per connection (the compiled core reuses a free one) --------------

def test_reset_exchange_restores_every_default() -> None:
    """reset_exchange puts every EXCHANGE_DEFAULTS field back (a field missing from it would
    carry one request's value into the next on a reused exchange), in both builds."""
    from gateway_support import exchange_build

    from gateway.exchange import EXCHANGE_DEFAULTS, Exchange
    builds = [exchange_build("pure")]
    if exchange.IMPLEMENTATION == "compiled":
        builds.append(exchange_build("compiled"))
    for build in builds:
        ex = build.Exchange()
        for i, (name, default) in enumerate(EXCHANGE_DEFAULTS.items()):
            changed = {int: 7 + i, float: 7.5 + i, bool: not default, bytes: b"x%d" % i, str: "x%d" % i,
                       tuple: [b"piece"]}.get(type(default), object())
            setattr(ex, name, changed)
            assert getattr(ex, name) is not default or name == "phase"
        build.reset_exchange(ex)
        assert {name: getattr(ex, name) for name in EXCHANGE_DEFAULTS} == EXCHANGE_DEFAULTS, build.__name__
    assert Exchange is not None


async def test_a_free_exchange_serves_the_next_request_and_a_held_one_does_not(
        fleet_dir, echo_backends, start_gateway) -> None:
    """Compiled build: a keep-alive connection's finished exchange is its next request's
    when nothing else holds it; one still referenced elsewhere (here by the test, as an
    access-log line or a timer would) is left as it was and a new one is made."""
    gw, backends = await one_service(fleet_dir, echo_backends, start_gateway, {"zone-a": "127.0.0.1"},
                                     handler=app)
    ctx = gw.gateway.ctx
    reader, writer = await asyncio.open_connection(gw.host, gw.port)
    port = writer.get_extra_info("sockname")[1]

    async def ask(path: str) -> bytes:
        writer.write(get(path))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        body = await asyncio.wait_for(reader.readexactly(content_length(head)), 10)
        assert head.startswith(b"HTTP/1.1 200") and body == b"small " + path.encode()
        return head

    try:
        await ask("/one")
        ds = next(d for d in ctx.downstreams if d.transport.get_extra_info("peername")[1] == port)
        if exchange.IMPLEMENTATION != "compiled":
            assert ds.spare is None  # the twin makes one per request
            return
        first = ds.spare
        assert first is not None and first.request_id.startswith(ctx.rid_prefix)
        first_id = first.request_id
        watch = weakref.ref(first)  # (the tests' CheckedExchange takes weak references)
        del first
        await ask("/two")
        again = ds.spare
        assert again is watch(), "the free exchange was not reused"
        assert again.request_id != first_id and again.method == b"GET"
        assert again.req.target == b"/two" and again.phase == exchange.DONE
        # held elsewhere: not reused, not reset
        held = again
        del again
        await ask("/three")
        assert ds.spare is not held
        assert held.req.target == b"/two" and held.request_id.decode() == backends[0].requests[1]["headers"]["x-request-id"]
        assert ds.spare.req.target == b"/three"
    finally:
        writer.close()
