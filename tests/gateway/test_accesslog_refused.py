"""A head refused before it becomes a request (a malformed request line, a TLS hello on the
plain port, an Expect the gateway cannot meet) gets an access-log line like
ingress-nginx's, `"-"` for its request and every field nothing is known of, and is counted
in fleetgate_ingress_requests_total (method OTHER, no ingress). Real gateway, raw sockets
and a real HTTP/2 client, the log in a file."""
from __future__ import annotations

import asyncio
import json
import re

import httpx

from gateway_support import ingress, rule, served
from test_accesslog import exposition, lines_of, start_logging_gateway

REFUSED = re.compile(
    r'^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] "-" (?P<status>\d{3}) (?P<bytes>\d+) "-" "-" '
    r'0 (?P<rtime>\d+\.\d{6}) \[\] \[\] - - - - - - -$')
# (the exposition sorts the labels)
OTHER_4XX = re.compile(r'^fleetgate_ingress_requests_total\{canary="",cluster="",ingress="",method="OTHER",service="",'
                       r'status_class="4xx"\} (?P<n>[\d.]+)$', re.M)


async def _refused_over_tcp(url: str, data: bytes) -> bytes:
    """Send data on a new connection; the whole answer, read until the gateway closes."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


async def _routed_fleet(fleet_dir, echo_backends):  # type: ignore[no-untyped-def]
    fd = fleet_dir("zone-a")
    web = await echo_backends("web", host="127.0.8.31")
    fd.member("zone-a", served("web", web))
    fd.hub([ingress("web", [rule("web.example.com", ("/", "Prefix", "web"))])])
    return fd


async def test_a_refused_head_gets_an_nginx_line_with_dashes_and_is_counted(tmp_path, fleet_dir, echo_backends):
    fd = await _routed_fleet(fleet_dir, echo_backends)
    path = tmp_path / "access.log"
    gw, fleet, url = await start_logging_gateway(fd, str(path))
    try:
        bad_line = await _refused_over_tcp(url, b"GET /a b c HTTP/1.1\r\nHost: web.example.com\r\n\r\n")
        tls_hello = await _refused_over_tcp(url, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32))
        # and a good request on its own connection: its line is the usual one
        async with httpx.AsyncClient() as client:
            ok = await client.get(url + "/fine", headers={"host": "web.example.com"})
        lines = await lines_of(path, 3)
        metrics = exposition(gw)
    finally:
        await gw.close()
        await fleet.stop()
    assert bad_line.startswith(b"HTTP/1.1 400 ") and tls_hello.startswith(b"HTTP/1.1 400 ")
    assert ok.status_code == 200
    assert len(lines) == 3, lines
    refused = [m for m in map(REFUSED.match, lines) if m is not None]
    assert len(refused) == 2, lines
    # bytes_sent is the answer the client read (head and body)
    assert sorted(int(m["bytes"]) for m in refused) == sorted((len(bad_line), len(tls_hello)))
    assert all(m["status"] == "400" for m in refused)
    (good,) = [line for line in lines if REFUSED.match(line) is None]
    assert '"GET /fine HTTP/1.1" 200 ' in good
    m = OTHER_4XX.search(metrics)
    assert m is not None and float(m["n"]) == 2, metrics


async def test_refused_lines_in_json_and_over_http2(tmp_path, fleet_dir, echo_backends):
    fd = await _routed_fleet(fleet_dir, echo_backends)
    path = tmp_path / "access.json"
    gw, fleet, url = await start_logging_gateway(fd, str(path), "json")
    try:
        bad = await _refused_over_tcp(url, b"GET /a\x01b HTTP/1.1\r\nHost: web.example.com\r\n\r\n")
        lines = await lines_of(path, 1)
        async with httpx.AsyncClient(http1=False, http2=True) as client:  # h2c, prior knowledge
            # an Expect the gateway cannot meet: refused before the stream is a request
            r = await client.get(url + "/x", headers={"host": "web.example.com", "expect": "teapot"})
        lines = await lines_of(path, 2)
        metrics = exposition(gw)
    finally:
        await gw.close()
        await fleet.stop()
    assert bad.startswith(b"HTTP/1.1 400 ")
    assert r.status_code == 417 and r.http_version == "HTTP/2"
    h1, h2 = (json.loads(line) for line in lines)
    for line, status in ((h1, 400), (h2, 417)):
        assert line["status"] == status
        assert line["method"] is None and line["path"] is None and line["protocol"] is None
        assert line["upstream_status"] is None and line["upstream_addr"] == "" and line["ingress"] == ""
        assert line["remote_addr"] == "127.0.0.1" and line["time"].endswith("Z")
        assert line["bytes_sent"] > 0
    assert h1["bytes_sent"] == len(bad)
    m = OTHER_4XX.search(metrics)
    assert m is not None and float(m["n"]) == 2, metrics
