"""The access log (issue 15 item 1): one line per downstream request, HTTP/1.1 and HTTP/2,
generated answers included, mirror copies excluded; text and JSON layouts; a write error
counted and never a failed request. Real gateway, real aiohttp backends, real clients."""
from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest

from fleet.config import load_fleet_config
from fleet.fleet import Fleet
from gateway.accesslog import AccessLog, AccessLogError
from gateway.server import Gateway, GatewayOptions
from gateway_support import endpoint_slice, ingress, rule, served, service

NGINX = "nginx.ingress.kubernetes.io/"
# ingress-nginx's default log-format-upstream, then member cluster and canary Ingress
TEXT = re.compile(
    r'^(?P<addr>\S+) - - \[(?P<time>[^\]]+)\] "(?P<method>\S+) (?P<path>\S+) (?P<proto>\S+)" (?P<status>\d+) '
    r'(?P<bytes>\d+) "(?P<referer>[^"]*)" "(?P<agent>[^"]*)" (?P<length>\d+) (?P<rtime>\d+\.\d{6}) '
    r'\[(?P<upstream>[^\]]*)\] \[(?P<alternative>[^\]]*)\] (?P<uaddr>\S+(?:, \S+)*) - (?P<urtime>\S+) '
    r'(?P<ustatus>\S+) (?P<rid>\S+) (?P<cluster>\S+) (?P<canary>\S+)$')


async def start_logging_gateway(fd, log: str, fmt: str = "text") -> tuple[Gateway, Fleet, str]:
    fleet = Fleet.from_config(load_fleet_config(fd.fleet_yaml), poll_interval=0.05)
    await fleet.start()
    gw = Gateway(GatewayOptions(http=("127.0.0.1", 0), access_log=log, access_log_format=fmt))
    gw.follow(fleet)
    (host, port), *_ = await gw.start()
    return gw, fleet, f"http://{host}:{port}"


async def lines_of(path: Path, n: int, timeout: float = 10.0) -> list[str]:
    """The log's lines once it has n (the writer thread writes them after the loop turn)."""
    deadline = time.monotonic() + timeout
    while True:
        text = path.read_text() if path.exists() else ""
        lines = text.splitlines()
        if len(lines) >= n or time.monotonic() > deadline:
            return lines
        await asyncio.sleep(0.01)


async def test_text_line_per_request_with_nginx_fields_generated_answers_and_no_mirror_copy(
        tmp_path, fleet_dir, echo_backends):
    fd = fleet_dir("zone-a")
    web = await echo_backends("web", host="127.0.8.21")
    shadow = await echo_backends("shadow", host="127.0.8.22")
    fd.member("zone-a", [*served("web", web), *served("shadow", shadow), service("empty")])
    fd.hub([ingress("web", [rule("web.example.com", ("/", "Prefix", "web"))],
                    annotations={"higress.io/mirror-target-service": "shadow"}),
            ingress("empty", [rule("empty.example.com", ("/", "Prefix", "empty"))])])
    path = tmp_path / "access.log"
    gw, fleet, url = await start_logging_gateway(fd, str(path))
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(url + "/hello?x=1", headers={"Host": "web.example.com", "Referer": "http://r.example/",
                                                          "User-Agent": 'agent "quoted"/1.0',
                                                          "X-Request-Id": "client-rid-1"}) as r:
                assert r.status == 200
                body = await r.read()
            async with s.get(url + "/nothing", headers={"Host": "nope.example"}) as r:
                assert r.status == 404
                rid = r.headers["x-request-id"]  # the gateway's own
            async with s.get(url + "/", headers={"Host": "empty.example.com"}) as r:
                assert r.status == 503
        lines = await lines_of(path, 3)
        deadline = time.monotonic() + 5
        while shadow.hits < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert shadow.hits == 1  # the mirror copy was sent ...
    finally:
        await gw.close()
        await fleet.stop()
    lines = path.read_text().splitlines()
    assert len(lines) == 3, lines  # ... and has no line of its own
    ok, missing, empty = (TEXT.match(line) for line in lines)
    assert ok and missing and empty, lines
    assert ok["addr"] == "127.0.0.1" and ok["method"] == "GET" and ok["path"] == "/hello?x=1"
    assert ok["proto"] == "HTTP/1.1" and ok["status"] == "200"
    assert int(ok["bytes"]) > len(body)  # head and body
    assert ok["referer"] == "http://r.example/" and ok["agent"] == r'agent \x22quoted\x22/1.0'
    assert int(ok["length"]) > len("GET /hello?x=1 HTTP/1.1\r\n")
    assert 0 < float(ok["rtime"]) < 5
    assert ok["upstream"] == "demo-web-80" and ok["alternative"] == ""
    assert ok["uaddr"] == f"{web.host}:{web.port}" and ok["ustatus"] == "200"
    assert float(ok["urtime"]) > 0 and ok["rid"] == "client-rid-1"
    assert ok["cluster"] == "zone-a" and ok["canary"] == "-"
    assert re.fullmatch(r"\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000", ok["time"])
    # generated answers: no upstream, and a request time that is not 0
    assert missing["status"] == "404" and missing["upstream"] == "" and missing["uaddr"] == "-"
    assert missing["ustatus"] == "-" and missing["urtime"] == "-" and missing["cluster"] == "-"
    assert float(missing["rtime"]) > 0 and missing["rid"] == rid
    assert empty["status"] == "503" and empty["upstream"] == "demo-empty-80" and empty["ustatus"] == "-"


async def test_json_lines_canary_and_http2(tmp_path, fleet_dir, echo_backends):
    fd = fleet_dir("zone-a")
    main = await echo_backends("main", host="127.0.8.23")
    can = await echo_backends("canary", host="127.0.8.24")
    fd.member("zone-a", served("main", main) + served("canary", can))
    fd.hub([ingress("main", [rule("web.example.com", ("/", "Prefix", "main"))]),
            ingress("canary", [rule("web.example.com", ("/", "Prefix", "canary"))],
                    annotations={f"{NGINX}canary": "true", f"{NGINX}canary-by-header": "x-canary"})])
    path = tmp_path / "access.json"
    gw, fleet, url = await start_logging_gateway(fd, str(path), "json")
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(url + "/a", headers={"Host": "web.example.com", "x-canary": "always"}) as r:
                assert r.status == 200
        async with httpx.AsyncClient(http1=False, http2=True) as client:  # h2c, prior knowledge
            r = await client.get(url + "/b", headers={"host": "web.example.com", "user-agent": "h2-client"})
            assert r.status_code == 200 and r.http_version == "HTTP/2"
        lines = await lines_of(path, 2)
    finally:
        await gw.close()
        await fleet.stop()
    canary, h2 = (json.loads(line) for line in lines)
    assert canary["canary"] == "demo/canary" and canary["ingress"] == "demo/main"
    assert canary["proxy_upstream_name"] == "demo-main-80"
    assert canary["proxy_alternative_upstream_name"] == "demo-canary-80"
    assert canary["upstream_addr"] == f"{can.host}:{can.port}" and canary["upstream_status"] == 200
    assert canary["protocol"] == "HTTP/1.1" and canary["cluster"] == "zone-a"
    assert canary["time"].endswith("Z") and canary["request_time"] > 0
    assert h2["protocol"] == "HTTP/2.0" and h2["path"] == "/b" and h2["status"] == 200
    assert h2["http_user_agent"] == "h2-client" and h2["canary"] == "" and h2["req_id"]
    assert h2["upstream_addr"] == f"{main.host}:{main.port}" and h2["bytes_sent"] > 0


async def test_a_full_disk_is_counted_logged_once_and_fails_no_request(fleet_dir, echo_backends, caplog):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system (a device whose writes fail with ENOSPC)")
    fd = fleet_dir("zone-a")
    web = await echo_backends("web", host="127.0.8.25")
    fd.member("zone-a", served("web", web))
    fd.hub([ingress("web", [rule("web.example.com", ("/", "Prefix", "web"))])])
    caplog.set_level(logging.ERROR, logger="fleetgate.gateway")
    gw, fleet, url = await start_logging_gateway(fd, "/dev/full")
    try:
        async with aiohttp.ClientSession() as s:
            for i in range(20):
                async with s.get(url + f"/{i}", headers={"Host": "web.example.com"}) as r:
                    assert r.status == 200
        log = gw.access_log
        assert log is not None
        deadline = time.monotonic() + 10
        while log.errors < 20 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert log.errors == 20
        text = exposition(gw)
        assert re.search(r"^fleetgate_access_log_errors_total 20\.0$", text, re.M), text
    finally:
        await gw.close()
        await fleet.stop()
    complaints = [r for r in caplog.records if "access log" in r.getMessage()]
    assert len(complaints) == 1 and "No space left" in complaints[0].getMessage()


def exposition(gw: Gateway) -> str:
    from prometheus_client import CollectorRegistry, generate_latest
    registry = CollectorRegistry()
    registry.register(gw.ctx.metrics)
    return generate_latest(registry).decode()


def test_an_access_log_that_cannot_be_opened_is_a_start_up_error(tmp_path):
    log = AccessLog(str(tmp_path / "no-such-dir" / "access.log"))
    with pytest.raises(AccessLogError, match="cannot open the access log .*No such file"):
        log.open(asyncio.new_event_loop())


async def test_a_writer_far_behind_drops_and_counts_instead_of_growing(tmp_path):
    """A pipe nobody reads: batches past max_backlog are dropped (counted), memory stays bounded."""
    import os
    r, w = os.pipe()
    try:
        log = AccessLog(f"/proc/self/fd/{w}", max_backlog=64 * 1024, handoff_bytes=1)
        log.fd, log.own_fd = w, False  # the write end as is (reopening a pipe would wait for a reader)
        from gateway.accesslog import _Writer
        log.loop = asyncio.get_running_loop()
        log.writer = _Writer(log)
        log.writer.start()
        entry = _fake_exchange()
        for _ in range(2000):  # ~400 KB of lines against a 64 KiB pipe and a 64 KiB backlog
            log.pending.append((entry, 0.001, 10, 20))
            log.flush()
        assert log.dropped > 0
        assert log.queued - log.writer.written <= 64 * 1024 + 1024
    finally:
        os.close(r)  # the writer's blocked write now fails (EPIPE): it ends
        log.writer.queue.put(None)
        log.writer.join(5)
        os.close(w)
    assert not log.writer.is_alive()


def _fake_exchange() -> Any:
    """A finished exchange as the formatter reads it (the socket tests cover real ones)."""
    from types import SimpleNamespace
    req = (b"GET", b"/x", 11, b"h", 0, False, True, None, False, None, None, None, b"", 1)
    ds = SimpleNamespace(peer=b"127.0.0.1", transport=None)
    return SimpleNamespace(req=req, ds=ds, method=b"GET", status=200, route=None, label="", backend=None,
                           endpoint=None, cluster="", tried=None, request_id=b"rid", body_size=0, start=0.0,
                           attempt=1)


def test_text_fields_with_quotes_backslashes_tabs_and_non_ascii_are_escaped():
    from gateway.accesslog import Formatter
    ex = _fake_exchange()
    ex.req = (b"GET", b"/caf\xc3\xa9\\x", 11, b"h", 0, False, True, None, False, None, None, None,
              b"User-Agent: a\tb \"c\"\r\nReferer: r\r\n", 1)
    ex.request_id = b'id"1'
    line = Formatter("text").batch([(ex, 0.000123, 10, 20)], 1.7e9)[0].decode("ascii")
    m = TEXT.match(line.rstrip("\n"))
    assert m, line
    assert m["path"] == r"/caf\xC3\xA9\x5Cx" and m["agent"] == r"a\x09b \x22c\x22" and m["referer"] == "r"
    assert m["rid"] == r"id\x221" and m["rtime"] == "0.000123"
    plain = Formatter("text").batch([(_fake_exchange(), 0.5, 10, 20)], 1.7e9)[0]
    assert b'"GET /x HTTP/1.1"' in plain and b" 0.500000 " in plain
