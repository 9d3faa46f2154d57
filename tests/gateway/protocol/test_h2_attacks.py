"""HTTP/2 abuse against the downstream, from a raw h2 client: rapid reset, CONTINUATION
flood, HPACK bomb, PING and SETTINGS floods, a zero-window stall. Each attacking connection
gets GOAWAY and is closed; a well-behaved client on another connection is served meanwhile."""
from __future__ import annotations

import asyncio

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import hpack
import httpx
import pytest
from aiohttp import web
from hyperframe.frame import ContinuationFrame, HeadersFrame, PingFrame, SettingsFrame

from gateway_support import endpoint_slice, ingress, rule, service
from h2_layer_support import h2_layer  # noqa: F401  (fixture)

from gateway.context import Limits

REQUEST = [(":method", "GET"), (":scheme", "http"), (":path", "/big"), (":authority", "h2.example")]
BIG = b"z" * (1 << 20)


async def big(request: web.Request) -> web.StreamResponse:
    return web.Response(body=BIG if request.path == "/big" else b"ok")


async def gateway(fleet_dir, echo_backends, start_gateway, **kw):
    fd = fleet_dir("zone-a")
    b = await echo_backends("zone-a", host="127.0.5.20", handler=big)
    fd.member("zone-a", [service("web"), endpoint_slice("web", [(b.host, b.port)])])
    fd.hub([ingress("web", [rule("h2.example", ("/", "Prefix", "web"))])])
    return await start_gateway(fd, **kw)


class RawClient:
    """An h2 client connection whose frames the test writes itself when it wants to."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, window: int | None) -> None:
        self.reader, self.writer = reader, writer
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        if window is not None:
            self.conn.local_settings = h2.settings.Settings(client=True, initial_values={
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        self.conn.initiate_connection()
        self.send()

    def send(self, extra: bytes = b"") -> None:
        self.writer.write(self.conn.data_to_send() + extra)

    async def goaway(self, timeout: float = 15.0) -> int | None:
        """The error code of the GOAWAY that ends the connection (None: closed without one)."""
        code = None

        async def read() -> None:
            nonlocal code
            while True:
                data = await self.reader.read(65536)
                if not data:
                    return
                try:
                    events = self.conn.receive_data(data)
                except h2.exceptions.ProtocolError:
                    continue
                for ev in events:
                    if isinstance(ev, h2.events.ConnectionTerminated):
                        code = ev.error_code
        await asyncio.wait_for(read(), timeout)  # the gateway closes the connection after it
        return code


async def raw(gw, window: int | None = None) -> RawClient:
    reader, writer = await asyncio.open_connection(gw.host, gw.port)
    return RawClient(reader, writer, window)


async def served(gw) -> None:
    async with httpx.AsyncClient(http1=False, http2=True, timeout=10) as client:
        r = await client.get(f"{gw.url}/small", headers={"host": "h2.example"})
        assert r.status_code == 200 and r.content == b"ok" and r.http_version == "HTTP/2"


async def test_rapid_reset_gets_goaway(fleet_dir, echo_backends, start_gateway):
    gw = await gateway(fleet_dir, echo_backends, start_gateway)
    c = await raw(gw)
    for i in range(300):
        sid = c.conn.get_next_available_stream_id()
        c.conn.send_headers(sid, REQUEST)
        c.conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
    c.send()
    assert await c.goaway() == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    await served(gw)


async def test_continuation_flood_gets_goaway(fleet_dir, echo_backends, start_gateway):
    gw = await gateway(fleet_dir, echo_backends, start_gateway)
    c = await raw(gw)
    block = hpack.Encoder().encode(REQUEST)
    frames = HeadersFrame(1, data=block[:5]).serialize()  # no END_HEADERS: CONTINUATION must follow
    frames += b"".join(ContinuationFrame(1, data=b"").serialize() for _ in range(1000))
    c.send(frames)
    assert await c.goaway() is not None
    await served(gw)


async def test_hpack_bomb_gets_goaway(fleet_dir, echo_backends, start_gateway):
    gw = await gateway(fleet_dir, echo_backends, start_gateway)
    c = await raw(gw)
    # one 4 KB header put in the dynamic table, then referenced by one byte (index 62) 500 times: 2 MB decoded
    block = hpack.Encoder().encode(REQUEST + [("x-bomb", "a" * 4000)]) + b"\xbe" * 500
    c.send(HeadersFrame(1, data=block, flags=["END_HEADERS", "END_STREAM"]).serialize())
    assert await c.goaway() is not None
    await served(gw)


async def test_ping_flood_gets_goaway(fleet_dir, echo_backends, start_gateway):
    gw = await gateway(fleet_dir, echo_backends, start_gateway)
    c = await raw(gw)
    c.send(b"".join(PingFrame(0, opaque_data=b"%08d" % i).serialize() for i in range(2000)))
    assert await c.goaway() == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    await served(gw)


async def test_settings_flood_gets_goaway(fleet_dir, echo_backends, start_gateway):
    gw = await gateway(fleet_dir, echo_backends, start_gateway)
    c = await raw(gw)
    c.send(b"".join(SettingsFrame(0, settings={4: 65535}).serialize() for _ in range(2000)))
    assert await c.goaway() == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    await served(gw)


async def test_zero_window_stall_gets_goaway(fleet_dir, echo_backends, start_gateway):
    gw = await gateway(fleet_dir, echo_backends, start_gateway, limits=Limits(idle_timeout=1.0))
    c = await raw(gw, window=0)  # the client never lets the response's DATA through
    c.conn.send_headers(1, REQUEST, end_stream=True)
    c.send()
    await served(gw)  # served meanwhile
    assert await c.goaway() == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM


@pytest.fixture(autouse=True)
def _both_layers(h2_layer: str) -> str:
    """Every test here runs on libnghttp2 and on the h2 library."""
    return h2_layer
