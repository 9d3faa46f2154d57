"""The responder as `dig` (BIND's client, from dnsutils) sees it, over UDP and TCP.

Skipped where dig is not installed; test_wire_client.py checks the same behaviour with
dnspython, so no row goes untested on such a machine."""
from __future__ import annotations

import asyncio
from dnsplugin.service import DnsService, serve
from tests.dnsplugin.dnsclient_support import feed, StubFleet
from tests.tools import require_tool

Z = "svc.clusterset.local"


async def dig(service: DnsService, *args: str) -> str:
    exe = require_tool("dig")
    host, port = service.udp_address
    proc = await asyncio.create_subprocess_exec(
        exe, f"@{host}", "-p", str(port), "+time=2", "+tries=1", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(10):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_dig_short_answers(dns: DnsService) -> None:
    assert (await dig(dns, "+short", f"web.demo.{Z}", "A")).strip().startswith("242.0.")
    assert sorted((await dig(dns, "+short", f"db.demo.{Z}", "A")).split()) == ["10.1.0.1", "10.1.0.2", "10.2.0.1"]
    assert (await dig(dns, "+short", "dns-version.clusterset.local", "TXT")).strip() == '"1.0.0"'
    srv = (await dig(dns, "+short", f"_mysql._tcp.db.demo.{Z}", "SRV")).splitlines()
    assert f"0 100 3306 mysql-0.zone-b.db.demo.{Z}." in srv and len(srv) == 4


async def test_dig_over_tcp_and_status_lines(dns: DnsService) -> None:
    out = await dig(dns, "+tcp", f"mysql-0.db.demo.{Z}", "A")
    assert "status: NOERROR" in out and "flags: qr aa rd;" in out and "10.2.0.1" in out
    nx = await dig(dns, f"zone-a.db.demo.{Z}", "A")
    assert "status: NXDOMAIN" in nx and "SOA" in nx
    refused = await dig(dns, "example.com", "A")
    assert "status: REFUSED" in refused


async def test_dig_edns_buffer_and_truncation_fallback(dns: DnsService) -> None:
    out = await dig(dns, "+bufsize=1232", f"web.demo.{Z}", "SRV")
    assert "udp: 1232" in out and "ANSWER: 3" in out
    # without EDNS, dig retries a truncated answer over TCP on its own
    from tests.dnsplugin.fleets_support import big_headless_fleet
    big = await serve(feed(StubFleet(big_headless_fleet(120))), listen="127.0.0.1:0")
    try:
        out = await dig(big, "+noedns", f"big.demo.{Z}", "A")
        assert "Truncated, retrying in TCP mode" in out and "ANSWER: 120" in out
    finally:
        await big.close()


async def test_dig_case_is_echoed(dns: DnsService) -> None:
    out = await dig(dns, "+noall", "+question", "+answer", f"WEB.Demo.{Z}", "A")
    question_line, answer_line = out.strip().splitlines()
    assert question_line.startswith(f";WEB.Demo.{Z}.") and answer_line.startswith(f"WEB.Demo.{Z}.")
