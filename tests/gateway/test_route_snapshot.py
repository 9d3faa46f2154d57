"""The request path's per-context memo of route snapshots (gateway/exchange/_core_py.py's
RouteHot, kept in ContextCore by (Host, target) for one route table) and the request ids
the compiled core formats itself. Over real sockets, one kept-alive client connection:
a table swap must reach the very next request on it (a new table, a new memo), a route
that goes away must answer 404 at once, and a generated x-request-id must be the
context's prefix and its counter in hex whatever the number of digits."""
from __future__ import annotations

import aiohttp

from gateway.metrics import SUM
from gateway_support import ingress, rule, served


async def _get(s: aiohttp.ClientSession, url: str, host: str) -> tuple[int, dict]:
    async with s.get(url, headers={"Host": host}) as r:
        return r.status, (await r.json() if r.status == 200 else {})


async def test_a_kept_alive_connection_follows_every_table_swap(fleet_dir, echo_backends, start_gateway):
    fd = fleet_dir("zone-a")
    blue = await echo_backends("blue", host="127.0.6.1")
    green = await echo_backends("green", host="127.0.6.2")
    fd.member("zone-a", served("blue", blue) + served("green", green))
    fd.hub([ingress("web", [rule("web.example.com", ("/", "Prefix", "blue"))])])
    gw = await start_gateway(fd)
    # one connection for every request: the memo of that context is what is under test
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as s:
        for _ in range(3):
            status, body = await _get(s, gw.url + "/a", "web.example.com")
            assert (status, body["backend"]) == (200, "blue")
        fd.hub([ingress("web", [rule("web.example.com", ("/", "Prefix", "green"))])])
        await gw.wait_reload()
        status, body = await _get(s, gw.url + "/a", "web.example.com")
        assert (status, body["backend"]) == (200, "green")
        fd.hub([ingress("web", [rule("other.example.com", ("/", "Prefix", "green"))])])
        await gw.wait_reload()
        assert (await _get(s, gw.url + "/a", "web.example.com"))[0] == 404
        status, body = await _get(s, gw.url + "/a", "other.example.com")
        assert (status, body["backend"]) == (200, "green")
        fd.hub([ingress("web", [rule("web.example.com", ("/", "Prefix", "blue")),
                                rule("web.example.com", ("/g", "Prefix", "green")),
                                rule("other.example.com", ("/", "Prefix", "green"))])])
        await gw.wait_reload()
        status, body = await _get(s, gw.url + "/a", "web.example.com")
        assert (status, body["backend"]) == (200, "blue")
        # one Host, then another, then another target: each request its own route, never
        # the previous request's
        for host, path, want in (("web.example.com", "/g/1", "green"), ("web.example.com", "/a", "blue"),
                                 ("other.example.com", "/a", "green"), ("web.example.com", "/a", "blue"),
                                 ("web.example.com", "/a", "blue"), ("nowhere.example.com", "/a", None),
                                 ("web.example.com", "/a", "blue")):
            status, body = await _get(s, gw.url + path, host)
            assert (status, body.get("backend")) == ((200, want) if want else (404, None)), (host, path)
    assert blue.hits == 8 and green.hits == 4
    assert sum(gw.gateway.ctx.metrics.accepted.values()) == 1  # all on one client connection
    # the metrics rows follow the routes too: green's requests were counted as green's
    rows = gw.gateway.ctx.metrics.rows
    by_service = {}
    for (_label, _ingress, svc, _cluster, _method, status), row in rows.items():
        by_service[(svc, status)] = by_service.get((svc, status), 0) + sum(row[:SUM])
    assert by_service[("demo/blue:80", 200)] == 8 and by_service[("demo/green:80", 200)] == 4


async def test_generated_request_ids_are_the_prefix_and_the_counter_in_hex(fleet_dir, echo_backends,
                                                                         start_gateway):
    fd = fleet_dir("zone-a")
    web = await echo_backends("web")
    fd.member("zone-a", served("web", web))
    fd.hub([ingress("web", [rule("web.example.com", ("/", "Prefix", "web"))])])
    gw = await start_gateway(fd)
    ctx = gw.gateway.ctx
    prefix = ctx.rid_prefix.decode()
    assert prefix.endswith("-") and len(prefix) == 13
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as s:
        for start in (0, 0xD, 0xFFE, 0xFFFFFFFE, 0xFFFFFFFFFFFE):  # across 1→2, 3→4, 8→9, 12→13 digits
            ctx.rid = start
            seen = [(await _get(s, gw.url + "/", "web.example.com"))[1]["headers"]["x-request-id"] for _ in range(4)]
            assert seen == ["%s%x" % (prefix, n) for n in range(start + 1, start + 5)]
            assert ctx.rid == start + 4
        # a client's own x-request-id is kept, and the counter does not move
        async with s.get(gw.url + "/", headers={"Host": "web.example.com", "x-request-id": "mine-1"}) as r:
            assert (await r.json())["headers"]["x-request-id"] == "mine-1"
        assert ctx.rid == 0xFFFFFFFFFFFE + 4
