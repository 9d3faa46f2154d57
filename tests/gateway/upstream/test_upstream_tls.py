"""`backend-protocol: HTTPS`: the gateway speaks TLS to the pods (encrypted, unverified, as
ingress-nginx by default), keeps those connections alive in pools of their own, and a
plain-HTTP route to a TLS pod fails as a 502 rather than hanging."""
from __future__ import annotations

import ssl
import tempfile
from pathlib import Path

import aiohttp
from aiohttp import web

from gateway_support import endpoint_slice, ingress, rule, service

from gateway.tls import self_signed

HTTPS = {"nginx.ingress.kubernetes.io/backend-protocol": "HTTPS"}


async def test_https_backends_are_reached_over_tls_on_kept_alive_connections(fleet_dir, start_gateway):
    seen: list[tuple[str, str]] = []

    async def handle(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        seen.append((request.scheme, f"{peer[0]}:{peer[1]}" if peer else "?"))
        return web.json_response({"secure": request.secure, "host": request.host})

    cert, key = self_signed("pod.internal")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "c").write_bytes(cert)
        Path(tmp, "k").write_bytes(key)
        context.load_cert_chain(Path(tmp, "c"), Path(tmp, "k"))
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.4.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        fd = fleet_dir("zone-a")
        fd.member("zone-a", [service("secure"), endpoint_slice("secure", [("127.0.4.1", port)])])
        fd.hub([ingress("tls-up", [rule("up.example", ("/", "Prefix", "secure"))], annotations=HTTPS),
                ingress("plain-up", [rule("plain.example", ("/", "Prefix", "secure"))])])
        gw = await start_gateway(fd)
        async with aiohttp.ClientSession() as s:
            for _ in range(3):
                async with s.get(f"{gw.url}/x", headers={"Host": "up.example"}) as r:
                    assert r.status == 200
                    body = await r.json()
                    assert body == {"secure": True, "host": "up.example"}
                    assert r.headers["x-fleetgate-cluster"] == "zone-a"
            assert [scheme for scheme, _ in seen] == ["https"] * 3
            assert len({peer for _, peer in seen}) == 1  # one upstream TLS connection, kept alive
            # the same pod without the annotation: plain HTTP into a TLS port is an upstream error
            async with s.get(f"{gw.url}/x", headers={"Host": "plain.example"}) as r:
                assert r.status == 502 and r.headers["x-fleetgate-reason"].startswith("upstream")
            assert len(seen) == 3
        route = next(r for r in gw.gateway.debug_routes()["routes"] if r["host"] == "up.example")
        assert route["policy"]["backend_protocol"] == "HTTPS"
        assert not any("backend-protocol" in d for d in gw.gateway.debug_routes()["diagnostics"])
    finally:
        await runner.cleanup()
