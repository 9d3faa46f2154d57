"""Running it in production (issue 15): JSON logs, readiness that cannot stick, graceful
drain through SIGTERM, admin safety. Real `fleetgate` processes and real sockets."""
from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import time
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp import web

from fleet.admin import AdminServer, debug_allowed
from tests.fleetgate.process_support import _write_secret, free_port, served, start, wait_ready, write_fleet


@pytest.fixture
async def backend():
    """A backend answering after 20 ms (so requests are in flight at any moment)."""
    async def handle(request: web.Request) -> web.Response:
        await asyncio.sleep(0.02)
        return web.Response(text="ok")

    async with served(handle) as port:
        yield port


async def get(url: str, **kw) -> tuple[int, str]:
    async with aiohttp.ClientSession() as s:
        async with s.get(url, **kw) as r:
            return r.status, await r.text()


# --- item 7: admin safety -------------------------------------------------------------------


def test_debug_is_allowed_from_loopback_and_named_addresses_only():
    assert debug_allowed("127.0.0.1") and debug_allowed("127.3.4.5") and debug_allowed("::1")
    assert debug_allowed("::ffff:127.0.0.1") and debug_allowed(None)
    assert not debug_allowed("10.1.2.3") and not debug_allowed("192.168.0.7") and not debug_allowed("fe80::1")
    assert not debug_allowed("not-an-ip")
    assert debug_allowed("10.1.2.3", ["10.1.2.3"]) and debug_allowed("10.1.2.3", ["10.0.0.0/8"])
    assert not debug_allowed("10.1.2.3", ["10.1.2.4", "192.168.0.0/16"])
    assert debug_allowed("10.1.2.3", ["0.0.0.0"])


def _non_loopback_ip() -> str | None:
    """An address of this host that is not loopback (the UDP-connect trick sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
            ip = s.getsockname()[0]
        except OSError:
            return None
    return None if ip.startswith("127.") or ip == "0.0.0.0" else ip


async def test_admin_index_lists_endpoints_and_debug_answers_loopback_only():
    admin = AdminServer()
    admin.add_json("/debug/routes", lambda request: {"routes": []}, "the routing table")
    ip = _non_loopback_ip()
    await admin.start("0.0.0.0" if ip else "127.0.0.1", 0)
    port = admin.address[1]
    try:
        status, index = await get(f"http://127.0.0.1:{port}/")
        assert status == 200
        assert [line.split("\t")[0] for line in index.splitlines()] == \
            ["/debug/routes", "/healthz", "/metrics", "/readyz"]
        assert (await get(f"http://127.0.0.1:{port}/debug/routes"))[0] == 200
        if ip is None:
            pytest.skip("this host has no non-loopback IPv4 address to connect from")
        # the same server, reached from a non-loopback peer address
        status, body = await get(f"http://{ip}:{port}/debug/routes")
        assert status == 403 and "--debug-address" in body
        status, index = await get(f"http://{ip}:{port}/")
        assert status == 200 and "/debug/routes" not in index and "/metrics" in index
        assert (await get(f"http://{ip}:{port}/metrics"))[0] == 200
        assert (await get(f"http://{ip}:{port}/healthz"))[0] == 200
        admin.debug_addresses = (ip,)
        assert (await get(f"http://{ip}:{port}/debug/routes"))[0] == 200
    finally:
        await admin.close()


# --- item 5: readiness that cannot stick ------------------------------------------------------


def _fleet_with_dead_member(root: Path, backend_port: int) -> Path:
    """write_fleet's files member `a` plus a kubeconfig member `b` whose API server address
    nobody listens on."""
    path = write_fleet(root, backend_port)
    dead = free_port()
    (root / "b.kubeconfig").write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "b",
        "clusters": [{"name": "b", "cluster": {"server": f"http://127.0.0.1:{dead}"}}],
        "users": [{"name": "b", "user": {"token": "x"}}],
        "contexts": [{"name": "b", "context": {"cluster": "b", "user": "b"}}]}))
    doc = yaml.safe_load(path.read_text())
    doc["clusters"].append({"name": "b", "kubeconfig": "b.kubeconfig", "context": "b"})
    path.write_text(yaml.safe_dump(doc))
    return path


async def test_an_unreachable_member_holds_readyz_only_until_the_member_sync_timeout(tmp_path, backend):
    fleet = _fleet_with_dead_member(tmp_path / "fleet", backend)
    http, admin = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    proc = start(["gateway", "--fleet", str(fleet), "--http", http, "--admin", admin,
                  "--member-sync-timeout", "3", "--drain-delay", "0"])
    try:
        seen_503 = False
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert proc.poll() is None
            try:
                status, body = await get(f"http://{admin}/readyz")
            except aiohttp.ClientError:
                await asyncio.sleep(0.05)
                continue
            assert (await get(f"http://{admin}/healthz"))[0] == 200  # liveness ignores members
            if status == 200:
                break
            seen_503 = True
            assert json.loads(body)["missing"] == ["source b not loaded"]
            await asyncio.sleep(0.1)
        assert seen_503, "ready before the member sync timeout although b never loaded"
        assert status == 200, "readyz stuck at 503 past --member-sync-timeout"
        ready = json.loads(body)
        assert ready["ready"] is True and ready["missing"] == ["source b not loaded"]
        assert "b" in ready["degraded"]
        metrics = (await get(f"http://{admin}/metrics"))[1]
        assert 'fleetgate_member_sync_missing{source="b"} 1.0' in metrics
        assert 'fleetgate_member_sync_missing{source="a"}' not in metrics
        # ready with what it has: member a serves
        status, text = await get(f"http://{http}/", headers={"Host": "web.example.com"})
        assert (status, text) == (200, "ok")
    finally:
        proc.terminate()
        proc.wait(15)


# --- item 2: logs -----------------------------------------------------------------------------


async def test_log_format_json_puts_the_same_fields_on_every_line(tmp_path, backend):
    fleet = _fleet_with_dead_member(tmp_path / "fleet", backend)
    (fleet.parent / "hub" / "bad.yaml").write_text("""
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: broken, namespace: demo}
spec:
  ingressClassName: fleetgate
  rules:
  - host: broken.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: nowhere, port: {number: 80}}}}
""")
    http, admin = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    proc = start(["gateway", "--fleet", str(fleet), "--http", http, "--admin", admin, "--log-format", "json",
                  "--member-sync-timeout", "0", "--drain-delay", "0"])
    try:
        await wait_ready(admin, proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    lines = [json.loads(line) for line in err.decode().splitlines() if line.strip()]
    assert len(lines) >= 3
    for line in lines:
        assert {"time", "level", "logger", "message", "component", "cluster", "ingress", "object"} <= line.keys()
        assert line["component"]
    assert any(line["cluster"] == "b" and line["component"] == "fleet" for line in lines)
    assert any(line["component"] == "gateway" for line in lines)
    assert any(line["ingress"] == "demo/broken" and line["object"] == "Ingress/demo/broken" for line in lines), \
        [line["message"] for line in lines]


# --- item 6: graceful drain -------------------------------------------------------------------


async def test_sigterm_under_load_fails_no_request(tmp_path, backend):
    """Clients keep sending on 16 keep-alive connections and a stream of new ones through
    SIGTERM. /readyz turns 503 at once; like an endpoint controller, the clients stop
    sending a moment after they see it (within --drain-delay). Not one request fails, and
    afterwards the listener is closed and the process exits 0."""
    fleet = write_fleet(tmp_path / "fleet", backend)
    http, admin = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    proc = start(["gateway", "--fleet", str(fleet), "--http", http, "--admin", admin, "--log-level", "warning",
                  "--drain-delay", "3", "--drain-timeout", "5"])
    counts = {"ok": 0, "failed": 0, "after_sigterm": 0, "new_connections_after_sigterm": 0}
    errors: list[str] = []
    stop_sending = asyncio.Event()
    sigterm_sent = asyncio.Event()
    try:
        await wait_ready(admin, proc)

        async def client(session: aiohttp.ClientSession, fresh: bool) -> None:
            for _ in range(3000):  # bounded; the loop ends on stop_sending long before
                if stop_sending.is_set():
                    return
                try:
                    async with session.get(f"http://{http}/", headers={"Host": "web.example.com"}) as r:
                        text = await r.text()
                    if r.status == 200 and text == "ok":
                        counts["ok"] += 1
                        if sigterm_sent.is_set():
                            counts["after_sigterm"] += 1
                            counts["new_connections_after_sigterm"] += fresh
                    else:
                        counts["failed"] += 1
                        errors.append(f"{r.status} {text[:80]}")
                except (aiohttp.ClientError, OSError) as exc:
                    counts["failed"] += 1
                    errors.append(repr(exc))

        keepalive = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=16))
        fresh = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
        async with keepalive, fresh:
            tasks = [asyncio.create_task(client(keepalive, False)) for _ in range(16)]
            tasks += [asyncio.create_task(client(fresh, True)) for _ in range(2)]
            while counts["ok"] < 100 and not any(t.done() for t in tasks):
                await asyncio.sleep(0.02)
            proc.send_signal(signal.SIGTERM)
            sigterm_sent.set()
            deadline = time.monotonic() + 10
            while (await get(f"http://{admin}/readyz"))[0] != 503:
                assert time.monotonic() < deadline, "readyz still 200 after SIGTERM"
                await asyncio.sleep(0.02)
            # the "endpoint controller" takes a moment to stop sending (well inside the 3 s delay)
            await asyncio.sleep(0.8)
            stop_sending.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 30)
        assert counts["failed"] == 0, errors[:5]
        assert counts["after_sigterm"] > 0 and counts["new_connections_after_sigterm"] > 0, counts
        assert await asyncio.to_thread(proc.wait, 20) == 0
        with pytest.raises(OSError):
            host, port = http.rsplit(":", 1)
            socket.create_connection((host, int(port)), timeout=1).close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --- item 3 (non-request-path gateway metrics) ------------------------------------------------


def _gauge(metrics: str, name: str) -> dict[str, float]:
    """{labels text: value} of one metric's samples in an exposition."""
    out = {}
    for line in metrics.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            labels, _, value = line[len(name):].rpartition(" ")
            out[labels] = float(value)
    return out


async def test_config_generation_reload_time_and_certificate_expiry_are_exported(tmp_path, backend):
    from cryptography import x509

    from gateway.tls import self_signed

    fleet = write_fleet(tmp_path / "fleet", backend)
    ing = fleet.parent / "hub" / "ing.yaml"
    ing.write_text(ing.read_text() + "  tls:\n  - {secretName: web-tls, hosts: [web.example.com]}\n")
    cert, key = self_signed("web.example.com", days=20)
    _write_secret(fleet, cert, key)
    expected = x509.load_pem_x509_certificate(cert).not_valid_after_utc.timestamp()
    http, https, admin = (f"127.0.0.1:{free_port()}" for _ in range(3))
    proc = start(["gateway", "--fleet", str(fleet), "--http", http, "--https", https, "--admin", admin,
                  "--drain-delay", "0"])
    try:
        await wait_ready(admin, proc)
        before = time.time()
        metrics = (await get(f"http://{admin}/metrics"))[1]
        assert _gauge(metrics, "fleetgate_tls_certificate_expiry_timestamp_seconds") == \
            {'{secret="demo/web-tls"}': expected}
        generation = _gauge(metrics, "fleetgate_config_generation")[""]
        reloaded = _gauge(metrics, "fleetgate_config_last_reload_timestamp_seconds")[""]
        assert generation >= 1 and 0 < reloaded <= before
        # an edit of the followed files swaps a new table: both move on
        ing.write_text(ing.read_text().replace("path: /,", "path: /v2,"))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            metrics = (await get(f"http://{admin}/metrics"))[1]
            if _gauge(metrics, "fleetgate_config_generation")[""] > generation:
                break
            await asyncio.sleep(0.1)
        assert _gauge(metrics, "fleetgate_config_generation")[""] > generation
        assert _gauge(metrics, "fleetgate_config_last_reload_timestamp_seconds")[""] >= before
    finally:
        proc.terminate()
        proc.wait(15)


def test_every_subcommand_takes_log_format_and_every_server_the_drain_and_readiness_flags():
    from fleetgate.cli import build_parser

    parser = build_parser()
    for command in ("gateway", "controller", "dns", "up", "demo", "validate"):
        args = parser.parse_args([command, "--log-format", "json"])
        assert args.log_format == "json"
        if command == "validate":
            continue
        args = parser.parse_args([command, "--drain-delay", "2", "--drain-timeout", "3", "--member-sync-timeout", "4",
                                  "--debug-address", "10.0.0.0/8"])
        assert (args.drain_delay, args.drain_timeout, args.member_sync_timeout, args.debug_address) == \
            (2.0, 3.0, 4.0, ["10.0.0.0/8"])
        defaults = parser.parse_args([command])
        assert (defaults.drain_delay, defaults.member_sync_timeout, defaults.log_format) == (5.0, 10.0, "text")
    with pytest.raises(SystemExit):
        parser.parse_args(["gateway", "--log-format", "yaml"])


@pytest.fixture
async def slow_path_backend():
    """/slow answers after 1.5 s, anything else at once."""
    async def handle(request: web.Request) -> web.Response:
        if request.path == "/slow":
            await asyncio.sleep(1.5)
        return web.Response(text="done")

    async with served(handle) as port:
        yield port


class H2cClient:
    """A minimal h2c (prior knowledge) client from hyperframe and hpack: it reads frames
    after a GOAWAY too (the h2 library's client closes its state machine on GOAWAY and
    refuses the frames of streams that are still allowed to finish)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        import hpack
        self.reader, self.writer = reader, writer
        self.encoder, self.decoder = hpack.Encoder(), hpack.Decoder()
        self.buffer = b""
        self.early: list = []  # frames read before the request

    @classmethod
    async def open(cls, host: str, port: int) -> "H2cClient":
        from hyperframe.frame import SettingsFrame
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + SettingsFrame(0).serialize())
        client = cls(reader, writer)
        # the server's SETTINGS, acknowledged now: an ACK written later could reach a socket
        # the draining server already closed, and the reset would discard frames unread here
        while not any(isinstance(f, SettingsFrame) and "ACK" not in f.flags for f in client.early):
            client.early += await client._read(10)
            assert None not in client.early, "the server closed before its SETTINGS"
        writer.write(SettingsFrame(0, flags=["ACK"]).serialize())
        return client

    async def _read(self, timeout: float) -> list:
        from hyperframe.frame import Frame
        data = await asyncio.wait_for(self.reader.read(65536), timeout)
        if not data:
            return [None]
        self.buffer += data
        out = []
        while len(self.buffer) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(self.buffer[:9]))
            if len(self.buffer) < 9 + length:
                break
            frame.parse_body(memoryview(self.buffer[9:9 + length]))
            self.buffer = self.buffer[9 + length:]
            out.append(frame)
        return out

    def get(self, stream_id: int, authority: str, path: str) -> None:
        from hyperframe.frame import HeadersFrame
        block = self.encoder.encode([(":method", "GET"), (":path", path), (":scheme", "http"),
                                     (":authority", authority)])
        self.writer.write(HeadersFrame(stream_id, block, flags=["END_HEADERS", "END_STREAM"]).serialize())

    async def frames(self, timeout: float = 10) -> list:
        """Every frame until the server closes the connection (nothing is written back)."""
        out = [f for f in self.early if f is not None]
        while True:
            got = await self._read(timeout)
            if got == [None]:
                return out
            out += got


async def test_a_response_in_flight_when_the_listeners_close_says_connection_close(tmp_path, slow_path_backend):
    fleet = write_fleet(tmp_path / "fleet", slow_path_backend)
    http, admin = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    proc = start(["gateway", "--fleet", str(fleet), "--http", http, "--admin", admin, "--log-level", "warning",
                  "--drain-delay", "0.5", "--drain-timeout", "8"])
    host, port = http.rsplit(":", 1)
    try:
        await wait_ready(admin, proc)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET /slow HTTP/1.1\r\nHost: web.example.com\r\n\r\n")
        await asyncio.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"done")
        assert b"\r\nconnection: close\r\n" in answer.lower()
    finally:
        proc.terminate()
        proc.wait(20)


async def test_after_the_drain_delay_idle_connections_close_busy_ones_finish_and_h2_goes_away(
        tmp_path, slow_path_backend):
    fleet = write_fleet(tmp_path / "fleet", slow_path_backend)
    http, admin = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    proc = start(["gateway", "--fleet", str(fleet), "--http", http, "--admin", admin, "--log-level", "warning",
                  "--drain-delay", "1", "--drain-timeout", "8"])
    host, port = http.rsplit(":", 1)
    try:
        await wait_ready(admin, proc)
        # an HTTP/1.1 keep-alive connection, used once, then idle
        idle_r, idle_w = await asyncio.open_connection(host, int(port))
        idle_w.write(b"GET /x HTTP/1.1\r\nHost: web.example.com\r\n\r\n")
        head = await asyncio.wait_for(idle_r.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 200") and b"connection: close" not in head.lower()
        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
        await idle_r.readexactly(length)
        h2c = await H2cClient.open(host, int(port))

        proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)  # inside the drain delay: both requests start, and stay in flight past it
        busy_r, busy_w = await asyncio.open_connection(host, int(port))  # still accepted
        busy_w.write(b"GET /slow HTTP/1.1\r\nHost: web.example.com\r\n\r\n")
        h2c.get(1, "web.example.com", "/slow")

        # the idle HTTP/1 connection is closed once the delay is over
        assert await asyncio.wait_for(idle_r.read(), 10) == b""
        # the busy one gets its whole answer, then the connection closes (read() to EOF)
        answer = await asyncio.wait_for(busy_r.read(), 10)
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"done")
        # drain() marks the exchange in flight, so its head says it is the last (as nginx/Envoy)
        assert b"\r\nconnection: close\r\n" in answer.lower()
        # h2: GOAWAY (no error, stream 1 still allowed), and stream 1 still finishes
        from hyperframe.frame import DataFrame, GoAwayFrame, HeadersFrame, RstStreamFrame
        frames = await h2c.frames()
        goaway = [f for f in frames if isinstance(f, GoAwayFrame)]
        assert goaway and goaway[0].error_code == 0 and goaway[0].last_stream_id >= 1, frames
        assert not [f for f in frames if isinstance(f, RstStreamFrame)], frames
        heads = [dict(h2c.decoder.decode(f.data)) for f in frames if isinstance(f, HeadersFrame)]
        assert heads and heads[0][":status"] == "200", frames
        data = [f for f in frames if isinstance(f, DataFrame) and f.stream_id == 1]
        assert b"".join(f.data for f in data) == b"done" and "END_STREAM" in data[-1].flags
        for w in (idle_w, busy_w, h2c.writer):
            w.close()
        assert await asyncio.to_thread(proc.wait, 20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
