"""`--http2 on|off`: off, the TLS listener offers ALPN http/1.1 only and an h2c preface is
refused, while HTTP/1.1 keeps working; on (the default) both speak HTTP/2."""
from __future__ import annotations

import argparse
import asyncio

import httpx

from gateway_support import echo_backends, endpoint_slice, ingress, rule, service  # noqa: F401
from tls_support import make_ca, tls_entry, tls_secret

from gateway.cli import add_arguments, options_from
from gateway.protocol.h2 import set_http2


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    parser.add_argument("--drain-timeout", type=float, default=1.0)
    return parser.parse_args(list(argv))


async def alpn(port: int, ca) -> str | None:
    ctx = ca.client_context()
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="sw.example")
    chosen = writer.get_extra_info("ssl_object").selected_alpn_protocol()
    writer.close()
    return chosen


async def test_http2_off_then_on(fleet_dir, echo_backends, start_gateway):  # noqa: F811
    ca = make_ca()
    cert, key = ca.issue("sw.example")
    fd = fleet_dir("zone-a")
    b = await echo_backends("zone-a", host="127.0.5.9")
    fd.member("zone-a", [service("web"), endpoint_slice("web", [(b.host, b.port)])])
    fd.hub([tls_secret("sw", cert, key),
            ingress("web", [rule("sw.example", ("/", "Prefix", "web"))], tls=[tls_entry("sw", "sw.example")],
                    annotations={"nginx.ingress.kubernetes.io/ssl-redirect": "false"})])
    try:
        options_from(parse("--http2", "off"), ("127.0.0.1", 0))  # what `fleetgate gateway --http2 off` applies
        gw = await start_gateway(fd, https=True)
        assert await alpn(gw.gateway.https_address[1], ca) == "http/1.1"
        async with httpx.AsyncClient(http1=False, http2=True, timeout=5) as client:  # h2c prior knowledge
            try:
                r = await client.get(f"{gw.url}/", headers={"host": "sw.example"})
                refused = r.status_code == 400
            except httpx.HTTPError:
                refused = True
            assert refused
        async with httpx.AsyncClient(timeout=5) as client:
            r = await client.get(f"{gw.url}/", headers={"host": "sw.example"})
            assert r.status_code == 200 and r.http_version == "HTTP/1.1"
    finally:
        options_from(parse(), ("127.0.0.1", 0))  # the default: on
    gw2 = await start_gateway(fd, https=True)
    assert await alpn(gw2.gateway.https_address[1], ca) == "h2"
    async with httpx.AsyncClient(http1=False, http2=True, timeout=5) as client:
        r = await client.get(f"{gw2.url}/", headers={"host": "sw.example"})
        assert r.status_code == 200 and r.http_version == "HTTP/2"
