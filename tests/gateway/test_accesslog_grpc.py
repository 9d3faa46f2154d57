"""Access log lines of gRPC calls (relayed as HTTP/2 end to end by h2_grpc.py, no Exchange):
a real grpcio client and server through a logging gateway."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from fleet.config import load_fleet_config
from fleet.fleet import Fleet
from gateway.server import Gateway, GatewayOptions
from gateway_support import endpoint_slice, ingress, rule, service
from test_accesslog import TEXT, lines_of

grpc = pytest.importorskip("grpc", reason="grpcio is a test dependency: pip install grpcio")
SERVICE = "test.Echo"
OPTIONS: list[tuple[str, int]] = []


class Backend:
    """A grpcio server with one raw-bytes unary method answering `cluster:request`."""

    def __init__(self, cluster: str, host: str) -> None:
        from concurrent import futures
        self.host = host
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        tag = cluster.encode()
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {
            "Unary": grpc.unary_unary_rpc_method_handler(lambda req, ctx: tag + b":" + req)}),))
        self.port = self.server.add_insecure_port(f"{host}:0")
        self.server.start()

    def stop(self) -> None:
        self.server.stop(None).wait(5)


@pytest.mark.parametrize("fmt", ["text", "json"])
async def test_a_grpc_call_has_its_line(tmp_path: Path, fleet_dir, fmt: str):
    backend = Backend("zone-a", "127.0.5.31")
    try:
        fd = fleet_dir("zone-a")
        fd.member("zone-a", [service("echo"), endpoint_slice("echo", [(backend.host, backend.port)])])
        fd.hub([ingress("echo", [rule("grpc.example", ("/", "Prefix", "echo"))],
                        annotations={"nginx.ingress.kubernetes.io/backend-protocol": "GRPC"})])
        fleet = Fleet.from_config(load_fleet_config(fd.fleet_yaml), poll_interval=0.05)
        await fleet.start()
        path = tmp_path / "access.log"
        gw = Gateway(GatewayOptions(http=("127.0.0.1", 0), access_log=str(path), access_log_format=fmt))
        gw.follow(fleet)
        (host, port), *_ = await gw.start()
        try:
            def call() -> bytes:
                with grpc.insecure_channel(f"{host}:{port}",
                                           options=OPTIONS + [("grpc.default_authority", "grpc.example")]) as ch:
                    return ch.unary_unary(f"/{SERVICE}/Unary")(b"hi", timeout=10)
            assert await asyncio.to_thread(call) == b"zone-a:hi"
            lines = await lines_of(path, 1)
        finally:
            await gw.close()
            await fleet.stop()
    finally:
        backend.stop()
    assert len(lines) == 1, lines
    if fmt == "json":
        e = json.loads(lines[0])
        assert (e["method"], e["path"], e["protocol"], e["status"]) == ("POST", f"/{SERVICE}/Unary", "HTTP/2.0", 200)
        assert e["upstream_addr"] == f"{backend.host}:{backend.port}" and e["cluster"] == "zone-a"
        assert e["proxy_upstream_name"] == "demo-echo-80" and e["ingress"] == "demo/echo"
        assert e["request_time"] > 0 and e["req_id"]
    else:
        m = TEXT.match(lines[0])
        assert m, lines[0]
        assert (m["method"], m["path"], m["proto"], m["status"]) == ("POST", f"/{SERVICE}/Unary", "HTTP/2.0", "200")
        assert m["uaddr"] == f"{backend.host}:{backend.port}" and m["cluster"] == "zone-a" and m["ustatus"] == "200"
