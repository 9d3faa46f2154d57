"""TLS termination over real sockets: certificates from Ingress `tls` Secrets chosen by SNI,
the default certificate, HTTPS redirects, rotation, a broken Secret, the listener opening
when the first Ingress with tls appears, and bad bytes on the TLS port."""
from __future__ import annotations

import asyncio
import json
import ssl
import time

import aiohttp

from gateway_support import endpoint_slice, ingress, rule, service
from h1_support import read_response
from tls_support import common_name, https_get, make_ca, tls_entry, tls_secret

from gateway.tls import DEFAULT_COMMON_NAME


async def tls_gateway(fleet_dir, echo_backends, start_gateway, *, extra_hub=()):
    """A gateway with its TLS listener over service `web` in zone-a; a.example (Secret
    a-tls), *.wild.example (Secret wild-tls) and plain.example (no tls) all route to it.
    Returns (gateway, CA, fleet folder, backend, https port)."""
    ca = make_ca()
    fd = fleet_dir("zone-a")
    b = await echo_backends("zone-a", host="127.0.0.2")
    fd.member("zone-a", [service("web"), endpoint_slice("web", [(b.host, b.port)])])
    a_cert, a_key = ca.issue("a.example")
    w_cert, w_key = ca.issue("*.wild.example")
    fd.hub([tls_secret("a-tls", a_cert, a_key), tls_secret("wild-tls", w_cert, w_key)], name="secrets.yaml")
    fd.hub([ingress("a", [rule("a.example", ("/", "Prefix", "web"))], tls=[tls_entry("a-tls", "a.example")]),
            ingress("wild", [rule("*.wild.example", ("/", "Prefix", "web"))], tls=[tls_entry("wild-tls")]),
            ingress("plain", [rule("plain.example", ("/", "Prefix", "web"))]), *extra_hub])
    gw = await start_gateway(fd, https=True)
    return gw, ca, fd, b, gw.gateway.https_address[1]


async def wait_for(predicate, timeout=5.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def test_each_host_gets_its_certificate_by_sni_and_unknown_names_the_default(
        fleet_dir, echo_backends, start_gateway):
    gw, ca, _, backend, port = await tls_gateway(fleet_dir, echo_backends, start_gateway)

    # verified against the CA, host name checked by the client: the right certificate
    (ex,) = await https_get(port, "a.example", "/x?y=1", context=ca.client_context())
    assert common_name(ex.peer) == "a.example"
    assert ex.response.status == 200
    seen = json.loads(ex.response.body)
    assert seen["path"] == "/x?y=1"
    assert seen["headers"]["x-forwarded-proto"] == "https"
    assert seen["headers"]["x-forwarded-host"] == "a.example"
    assert ex.response.headers["x-fleetgate-cluster"] == "zone-a"

    # a wildcard entry without `hosts` covers the Ingress's rule host
    (ex,) = await https_get(port, "deep.wild.example", context=ca.client_context())
    assert common_name(ex.peer) == "*.wild.example" and ex.response.status == 200

    # a host without tls, and a client that sends no SNI: the self-signed default
    for name in ("plain.example", None):
        (ex,) = await https_get(port, name, host="plain.example")
        assert common_name(ex.peer) == DEFAULT_COMMON_NAME
        assert ex.response.status == 200
    # ... which a verifying client refuses
    try:
        await https_get(port, "plain.example", context=ca.client_context())
    except ssl.SSLCertVerificationError:
        pass
    else:
        raise AssertionError("the default certificate passed verification against the test CA")

    # ALPN: h2 when the client offers it, else HTTP/1.1 (test_h2.py speaks it)
    for offer, chosen in ((["h2", "http/1.1"], "h2"), (["http/1.1"], "http/1.1")):
        ctx = ca.client_context()
        ctx.set_alpn_protocols(offer)
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="a.example")
        assert writer.get_extra_info("ssl_object").selected_alpn_protocol() == chosen
        writer.close()

    routes = gw.gateway.debug_routes()
    assert routes["tls"]["a.example"] == {"secret": "demo/a-tls", "loaded": True}
    assert routes["https"] == f"127.0.0.1:{port}"
    assert backend.hits == 4


async def test_plain_http_is_redirected_to_https_for_ingresses_with_tls(fleet_dir, echo_backends, start_gateway):
    opt_out = ingress("optout", [rule("optout.example", ("/", "Prefix", "web"))],
                      tls=[tls_entry("a-tls", "optout.example")], annotations={
                          "nginx.ingress.kubernetes.io/ssl-redirect": "false"})
    gw, ca, _, backend, port = await tls_gateway(fleet_dir, echo_backends, start_gateway, extra_hub=[opt_out])
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{gw.url}/p/q?r=1", headers={"Host": "a.example:8080"}, allow_redirects=False) as r:
            assert r.status == 308
            assert r.headers["location"] == f"https://a.example:{port}/p/q?r=1"
            assert r.headers["x-fleetgate-reason"] == "ssl-redirect"
        for host in ("plain.example", "optout.example"):
            async with s.get(f"{gw.url}/", headers={"Host": host}) as r:
                assert r.status == 200, host
                assert json.loads(await r.text())["headers"]["x-forwarded-proto"] == "http"
    # over TLS the same route is proxied, not redirected
    (ex,) = await https_get(port, "a.example", "/p", context=ca.client_context())
    assert ex.response.status == 200
    assert backend.hits == 3


async def test_rotation_applies_and_a_broken_secret_keeps_the_last_good_certificate(
        fleet_dir, echo_backends, start_gateway):
    gw, ca, fd, _, port = await tls_gateway(fleet_dir, echo_backends, start_gateway)
    (first,) = await https_get(port, "a.example", context=ca.client_context())

    # a connection opened before the rotation keeps serving on its session
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ca.client_context(),
                                                   server_hostname="a.example")
    new_cert, new_key = ca.issue("a.example")
    w_cert, w_key = ca.issue("*.wild.example")
    fd.hub([tls_secret("a-tls", new_cert, new_key), tls_secret("wild-tls", w_cert, w_key)], name="secrets.yaml")
    await gw.wait_reload()
    (rotated,) = await https_get(port, "a.example", context=ca.client_context())
    assert rotated.peer.serial_number != first.peer.serial_number
    writer.write(b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n")
    assert (await read_response(reader)).status == 200
    writer.close()

    # a Secret whose PEM does not load: reported with its file, the last good one stays
    fd.hub([tls_secret("a-tls", b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
                       new_key), tls_secret("wild-tls", w_cert, w_key)], name="secrets.yaml")
    await gw.wait_reload()
    bad = [str(d) for d in gw.gateway.diagnostics if "Secret/demo/a-tls" in str(d)]
    assert bad and "secrets.yaml" in bad[0] and "do not load" in bad[0], gw.gateway.diagnostics
    (kept,) = await https_get(port, "a.example", context=ca.client_context())
    assert kept.peer.serial_number == rotated.peer.serial_number
    assert kept.response.status == 200

    # the Secret gone: the host falls back to the default certificate, others unaffected
    fd.hub([tls_secret("wild-tls", w_cert, w_key)], name="secrets.yaml")
    await gw.wait_reload()
    assert any("Secret demo/a-tls not found" in str(d) for d in gw.gateway.diagnostics)
    (gone,) = await https_get(port, "a.example")
    assert common_name(gone.peer) == DEFAULT_COMMON_NAME
    (wild,) = await https_get(port, "x.wild.example", context=ca.client_context())
    assert wild.response.status == 200


async def test_listener_opens_when_the_first_ingress_with_tls_appears(fleet_dir, echo_backends, start_gateway):
    ca = make_ca()
    fd = fleet_dir("zone-a")
    b = await echo_backends("zone-a", host="127.0.0.2")
    fd.member("zone-a", [service("web"), endpoint_slice("web", [(b.host, b.port)])])
    fd.hub([ingress("plain", [rule("plain.example", ("/", "Prefix", "web"))])])
    gw = await start_gateway(fd, https=True)
    assert gw.gateway.https_address is None  # no Ingress has tls: no TLS listener
    cert, key = ca.issue("late.example")
    fd.hub([tls_secret("late-tls", cert, key)], name="secrets.yaml")
    fd.hub([ingress("plain", [rule("plain.example", ("/", "Prefix", "web"))]),
            ingress("late", [rule("late.example", ("/", "Prefix", "web"))], tls=[tls_entry("late-tls")])])
    await wait_for(lambda: gw.gateway.https_address is not None, what="the https listener")
    first, second = await https_get(gw.gateway.https_address[1], "late.example", context=ca.client_context(),
                                    requests=2)  # keep-alive over TLS
    assert common_name(first.peer) == "late.example"
    assert first.response.status == second.response.status == 200


async def test_garbage_and_plain_http_on_the_tls_port_are_dropped_cleanly(fleet_dir, echo_backends, start_gateway):
    gw, ca, fd, _, port = await tls_gateway(fleet_dir, echo_backends, start_gateway)
    for junk in (b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n", b"\x16\x03\x01\x00\x05hello", b"\x00" * 64):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(junk)
        await writer.drain()
        try:
            rest = await asyncio.wait_for(reader.read(), 5)  # the gateway closes: EOF
        except ConnectionResetError:
            rest = b""
        assert b"HTTP/1.1 200" not in rest
        writer.close()
    # and TLS clients are still served, malformed requests inside TLS get their 400
    (ex,) = await https_get(port, "a.example", context=ca.client_context())
    assert ex.response.status == 200
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ca.client_context(),
                                                   server_hostname="a.example")
    writer.write(b"GET / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert (await read_response(reader)).status == 400
    writer.close()
