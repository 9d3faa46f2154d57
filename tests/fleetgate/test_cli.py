"""The `fleetgate` command as users run it: real processes, real signals, real sockets."""
from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.fleetgate.process_support import (FLEETGATE, _write_secret, free_port, served, start,  # noqa: F401
                                            wait_ready, write_fleet)
DEMO = Path(__file__).resolve().parents[2] / "fleetgate" / "examples" / "demo"


@pytest.fixture
async def slow_backend():
    """A backend whose answers take 0.5 s, so a SIGTERM lands mid-request."""
    async def handle(request: web.Request) -> web.Response:
        await asyncio.sleep(0.5)
        return web.Response(text="finished")

    async with served(handle) as port:
        yield port


async def test_sigterm_drains_in_flight_requests_then_exits_zero(tmp_path, slow_backend):
    fleet = write_fleet(tmp_path / "fleet", slow_backend)
    http, admin = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    proc = start(["gateway", "--fleet", str(fleet), "--http", http, "--admin", admin, "--log-level", "warning",
                  "--drain-delay", "1"])
    try:
        await wait_ready(admin, proc)
        async with aiohttp.ClientSession() as s:
            requests = [asyncio.create_task(s.get(f"http://{http}/", headers={"Host": "web.example.com"}))
                        for _ in range(5)]
            await asyncio.sleep(0.2)  # the requests are now waiting on the backend
            proc.send_signal(signal.SIGTERM)
            responses = await asyncio.gather(*requests)
            assert [r.status for r in responses] == [200] * 5
            assert [await r.text() for r in responses] == ["finished"] * 5
        assert await asyncio.to_thread(proc.wait, 10) == 0
        # no longer accepting
        with pytest.raises(OSError):
            socket.create_connection(tuple(http.rsplit(":", 1)), timeout=1).close()  # type: ignore[arg-type]
    finally:
        if proc.poll() is None:
            proc.kill()


async def test_admin_endpoints_answer_per_the_contract(tmp_path, slow_backend):
    fleet = write_fleet(tmp_path / "fleet", slow_backend)
    http, admin = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    proc = start(["gateway", "--fleet", str(fleet), "--http", http, "--admin", admin])
    try:
        await wait_ready(admin, proc)
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://{http}/x", headers={"Host": "web.example.com"}) as r:
                assert r.status == 200
            async with s.get(f"http://{admin}/healthz") as r:
                assert r.status == 200 and (await r.text()).strip() == "ok"
            async with s.get(f"http://{admin}/debug/routes") as r:
                routes = await r.json()
            route = routes["routes"][0]
            assert (route["host"], route["path"], route["pathType"], route["ingress"]) == \
                ("web.example.com", "/", "Prefix", "demo/web")
            cluster = route["backend"]["clusters"][0]
            assert cluster["cluster"] == "a" and cluster["service"] == "web"
            assert cluster["endpoints"] == [{"address": "127.0.7.1", "port": slow_backend, "healthy": True}]
            async with s.get(f"http://{admin}/metrics") as r:
                text = await r.text()
            assert 'fleetgate_http_requests_total{cluster="a",code="200",ingress="demo/web"} 1.0' in text
            assert 'fleetgate_http_request_duration_seconds_count{ingress="demo/web"} 1.0' in text
            assert "fleetgate_config_reload_total" in text
            build = next(line for line in text.splitlines() if line.startswith("fleetgate_build_info{"))
            assert 'http1_codec="' in build and 'dns_fastpath="' in build and build.endswith(" 1.0")
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_listener_that_cannot_bind_fails_with_exit_2(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run(FLEETGATE + ["gateway", "--http", f"127.0.0.1:{port}", "--admin",
                                           f"127.0.0.1:{free_port()}"], capture_output=True, timeout=30)
    assert proc.returncode == 2
    err = proc.stderr.decode().strip().splitlines()
    assert err[-1].startswith("fleetgate: cannot listen for http on 127.0.0.1:"), err


def test_validate_passes_the_bundled_fleet_and_reports_problems_with_file_and_object(tmp_path):
    ok = subprocess.run(FLEETGATE + ["validate"], capture_output=True, timeout=30)
    assert ok.returncode == 0, ok.stdout.decode() + ok.stderr.decode()
    broken = tmp_path / "demo"
    shutil.copytree(DEMO, broken)
    ing = broken / "hub" / "ingresses.yaml"
    ing.write_text(ing.read_text().replace("pathType: Prefix", "pathType: Sideways", 1))
    bad = subprocess.run(FLEETGATE + ["validate", "--fleet", str(broken / "fleet.yaml")],
                         capture_output=True, timeout=30)
    assert bad.returncode == 1
    lines = bad.stdout.decode().splitlines()
    assert any(line.startswith(str(ing)) and ": Ingress/demo/" in line and "pathType" in line
               for line in lines), lines


async def test_workers_share_the_port(tmp_path, slow_backend):
    fleet = write_fleet(tmp_path / "fleet", slow_backend)
    http, admin = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    proc = start(["gateway", "--fleet", str(fleet), "--http", http, "--admin", admin, "--workers", "2",
                  "--log-level", "warning"])
    try:
        await wait_ready(admin, proc)
        async with aiohttp.ClientSession() as s:
            # wait until both workers have loaded their routes
            deadline = time.monotonic() + 10
            statuses: list[int] = []
            while time.monotonic() < deadline:
                rs = await asyncio.gather(*[s.get(f"http://{http}/", headers={"Host": "web.example.com"})
                                            for _ in range(10)])
                statuses = [r.status for r in rs]
                if statuses == [200] * 10:
                    break
            assert statuses == [200] * 10
        children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True).stdout.split()
        assert len(children) == 2
    finally:
        proc.terminate()
        assert await asyncio.to_thread(proc.wait, 15) == 0


async def test_up_serves_gateway_dns_and_derived_imports_from_one_process(tmp_path):
    from dnslib import QTYPE, DNSRecord
    http, admin, dns = (f"127.0.0.1:{free_port()}" for _ in range(3))
    proc = start(["up", "--http", http, "--admin", admin, "--dns", dns, "--cluster", "zone-b",
                  "--log-level", "warning"])
    try:
        await wait_ready(admin, proc)
        host, port = dns.rsplit(":", 1)
        answer = await asyncio.to_thread(
            lambda: DNSRecord.parse(DNSRecord.question("echo.demo.svc.clusterset.local", "A").send(
                host, int(port), timeout=5)))
        ips = [str(rr.rdata) for rr in answer.rr if rr.rtype == QTYPE.A]
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://{admin}/debug/imports?cluster=zone-b") as r:
                imports = await r.json()
            async with s.get(f"http://{admin}/debug/zone?cluster=zone-b") as r:
                assert r.status == 200
            async with s.get(f"http://{admin}/debug/imports?cluster=nowhere") as r:
                assert r.status == 404
            async with s.get(f"http://{http}/", headers={"Host": "nope.example"}) as r:
                assert r.status == 404 and r.headers["x-fleetgate-reason"] == "no-route"
        echo = [si for si in imports["serviceImports"] if si["metadata"]["name"] == "echo"]
        assert len(echo) == 1 and echo[0]["spec"]["type"] == "ClusterSetIP"
        assert ips == echo[0]["spec"]["ips"]
        assert any(s["metadata"]["name"] == "amcs-echo" for s in imports["services"])
    finally:
        proc.terminate()
        assert await asyncio.to_thread(proc.wait, 15) == 0


async def test_https_listener_serves_an_ingress_with_tls_and_validate_checks_its_secret(tmp_path, slow_backend):
    import ssl

    from gateway.tls import self_signed
    fleet = write_fleet(tmp_path / "fleet", slow_backend)
    ing = fleet.parent / "hub" / "ing.yaml"
    ing.write_text(ing.read_text() + "  tls:\n  - {secretName: web-tls, hosts: [web.example.com]}\n")
    secret = _write_secret(fleet, *self_signed("web.example.com"))
    ok = subprocess.run(FLEETGATE + ["validate", "--fleet", str(fleet)], capture_output=True, timeout=30)
    assert ok.returncode == 0, ok.stdout.decode()

    http, https, admin = (f"127.0.0.1:{free_port()}" for _ in range(3))
    proc = start(["gateway", "--fleet", str(fleet), "--http", http, "--https", https, "--admin", admin])
    try:
        await wait_ready(admin, proc)
        client = ssl.create_default_context()
        client.check_hostname = False
        client.verify_mode = ssl.CERT_NONE
        host, port = https.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port), ssl=client, server_hostname="web.example.com")
        peer = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        writer.write(b"GET / HTTP/1.1\r\nHost: web.example.com\r\nConnection: close\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"finished")
        from cryptography import x509
        assert "web.example.com" in x509.load_der_x509_certificate(peer).subject.rfc4514_string()
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://{http}/a", headers={"Host": "web.example.com"}, allow_redirects=False) as r:
                assert r.status == 308 and r.headers["location"] == f"https://web.example.com:{port}/a"
    finally:
        proc.terminate()
        proc.wait(10)

    _write_secret(fleet, b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", b"junk")
    bad = subprocess.run(FLEETGATE + ["validate", "--fleet", str(fleet)], capture_output=True, timeout=30)
    assert bad.returncode == 1
    lines = bad.stdout.decode().splitlines()
    assert any(line.startswith(f"{secret}: Secret/demo/web-tls: tls.crt/tls.key do not load") for line in lines), lines
