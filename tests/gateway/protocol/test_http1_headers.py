"""Headers across the gateway: what it adds for the upstream, what it strips both ways."""
from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

from h1_support import HOST, get, one_service, read_response


async def test_forwarding_headers_are_added_and_client_values_appended(fleet_dir, echo_backends, start_gateway):
    gw, (b,) = await one_service(fleet_dir, echo_backends, start_gateway, {"zone-a": "127.0.50.1"})
    async with aiohttp.ClientSession() as s:
        async with s.get(gw.url + "/p?q=1", headers={
                "Host": HOST, "X-Forwarded-For": "10.0.0.1", "Via": "1.0 client-proxy",
                "X-Forwarded-Proto": "https", "X-Forwarded-Host": "spoofed.example"}) as r:
            assert r.status == 200
            first = (await r.json())["headers"]
            generated_id = r.headers.get("x-request-id")
        async with s.get(gw.url + "/p", headers={"Host": HOST, "X-Request-Id": "client-id-42"}) as r:
            assert r.status == 200
            second = (await r.json())["headers"]
    assert first["host"] == HOST  # the client's Host, not the pod address
    assert first["x-forwarded-for"] == "10.0.0.1, 127.0.0.1"
    assert first["x-forwarded-proto"] == "http"  # ours, not the client's claim
    assert first["x-forwarded-host"] == HOST
    assert first["via"] == "1.0 client-proxy, 1.1 fleetgate"
    assert first["x-request-id"]
    assert generated_id in (None, first["x-request-id"])
    assert second["x-forwarded-for"] == "127.0.0.1"
    assert second["via"] == "1.1 fleetgate"
    assert second["x-request-id"] == "client-id-42"
    assert second["x-request-id"] != first["x-request-id"]
    assert b.hits == 2


async def test_generated_request_ids_are_unique(fleet_dir, echo_backends, start_gateway):
    gw, (b,) = await one_service(fleet_dir, echo_backends, start_gateway, {"zone-a": "127.0.50.2"})
    async with aiohttp.ClientSession() as s:
        for _ in range(5):
            async with s.get(gw.url + "/", headers={"Host": HOST}) as r:
                assert r.status == 200
    ids = {req["headers"]["x-request-id"] for req in b.requests}
    assert len(ids) == 5 and "" not in ids


async def test_hop_by_hop_request_headers_do_not_reach_the_upstream(fleet_dir, echo_backends, start_gateway):
    gw, (b,) = await one_service(fleet_dir, echo_backends, start_gateway, {"zone-a": "127.0.50.3"})
    reader, writer = await asyncio.open_connection(gw.host, gw.port)
    try:
        writer.write(get("/hop", extra=(
            "Connection: keep-alive, X-Foo, x-bar\r\nX-Foo: secret\r\nX-Bar: also\r\n"
            "Keep-Alive: timeout=5\r\nTE: trailers\r\nTrailer: x-checksum\r\n"
            "Proxy-Connection: keep-alive\r\nProxy-Authorization: Basic Zm9vOmJhcg==\r\n"
            "Upgrade: h2c\r\nX-Keep: kept\r\n")))
        r = await read_response(reader)
        assert r.status == 200
        # an Upgrade header without `Connection: upgrade` is no upgrade: the connection stays usable
        writer.write(get("/after"))
        r2 = await read_response(reader)
        assert r2.status == 200
    finally:
        writer.close()
    seen = b.requests[0]["headers"]
    for name in ("connection", "x-foo", "x-bar", "keep-alive", "te", "trailer", "proxy-connection",
                 "proxy-authorization", "upgrade"):
        assert name not in seen, (name, seen)
    assert seen["x-keep"] == "kept"
    assert b.requests[1]["path"] == "/after"


async def hop_by_hop_response(request: web.Request) -> web.StreamResponse:
    return web.Response(text="ok", headers={
        "Connection": "X-Secret-Hop", "X-Secret-Hop": "1", "Keep-Alive": "timeout=5",
        "Proxy-Connection": "keep-alive", "Trailer": "x-checksum", "Upgrade": "h2c",
        "Proxy-Authenticate": "Basic", "X-App": "visible"})


async def test_hop_by_hop_response_headers_are_stripped(fleet_dir, echo_backends, start_gateway):
    gw, _ = await one_service(fleet_dir, echo_backends, start_gateway, {"zone-a": "127.0.50.4"},
                              handler=hop_by_hop_response)
    reader, writer = await asyncio.open_connection(gw.host, gw.port)
    try:
        writer.write(get("/"))
        r = await read_response(reader)
        writer.write(get("/again"))
        r2 = await read_response(reader)  # the response framing survived the rewrite
    finally:
        writer.close()
    assert r.status == 200 and r.body == b"ok"
    assert r2.status == 200 and r2.body == b"ok"
    for name in ("x-secret-hop", "keep-alive", "proxy-connection", "trailer", "upgrade",
                 "proxy-authenticate", "connection"):
        assert name not in r.headers, (name, r.headers)
    assert r.headers["x-app"] == "visible"
    assert r.headers["x-fleetgate-cluster"] == "zone-a"
    assert r.names.count("content-length") == 1


async def test_cluster_header_names_the_member_cluster_that_served(fleet_dir, echo_backends, start_gateway):
    gw, _ = await one_service(fleet_dir, echo_backends, start_gateway,
                              {"zone-a": "127.0.50.5", "zone-b": "127.0.50.6"})
    served: dict[str, str] = {}
    async with aiohttp.ClientSession() as s:
        for _ in range(6):
            async with s.get(gw.url + "/", headers={"Host": HOST}) as r:
                assert r.status == 200
                served[(await r.json())["backend"]] = r.headers["x-fleetgate-cluster"]
    assert served == {"zone-a": "zone-a", "zone-b": "zone-b"}


async def test_cluster_header_can_be_turned_off(fleet_dir, echo_backends, start_gateway):
    gw, _ = await one_service(fleet_dir, echo_backends, start_gateway, {"zone-a": "127.0.50.7"},
                              cluster_header=False)
    async with aiohttp.ClientSession() as s:
        async with s.get(gw.url + "/", headers={"Host": HOST}) as r:
            assert r.status == 200
            assert "x-fleetgate-cluster" not in r.headers
            assert (await r.json())["backend"] == "zone-a"


async def closing_response(request: web.Request) -> web.StreamResponse:
    resp = web.json_response({"port": request.transport.get_extra_info("peername")[1]})
    resp.force_close()  # `Connection: close` from the upstream: about its own hop only
    return resp


async def test_upstream_connection_close_does_not_close_the_client_connection(
        fleet_dir, echo_backends, start_gateway):
    gw, (b,) = await one_service(fleet_dir, echo_backends, start_gateway, {"zone-a": "127.0.50.8"},
                                 handler=closing_response)
    reader, writer = await asyncio.open_connection(gw.host, gw.port)
    try:
        answers = []
        for _ in range(3):
            writer.write(get("/"))
            answers.append(await read_response(reader))
    finally:
        writer.close()
    assert [r.status for r in answers] == [200, 200, 200]
    assert all("connection" not in r.headers for r in answers)
    assert b.hits == 3
