"""Active gRPC health checks (gateway/upstream/checker.py): on a backend-protocol GRPC route
with a `health-check-*` annotation, each endpoint is probed with grpc.health.v1.Health/Check
about `health-check-grpc-service`; NOT_SERVING takes it out of rotation, SERVING brings it
back, and a server without the health service is unhealthy. Real grpcio servers in two
member clusters, a real grpcio client through the gateway."""
from __future__ import annotations

import asyncio
import threading
import time
from concurrent import futures
from typing import Any

import pytest

from gateway_support import endpoint_slice, ingress, rule, service

grpc = pytest.importorskip("grpc", reason="grpcio is a test dependency: pip install grpcio")

SERVING, NOT_SERVING = b"\x08\x01", b"\x08\x02"  # HealthCheckResponse{status} in protobuf


class Member:
    """A grpcio server for one member cluster: test.Echo/Unary answers its cluster's name;
    grpc.health.v1.Health/Check (raw protobuf bytes, no generated stubs) answers `status`."""

    def __init__(self, cluster: str, host: str, *, health: bool = True) -> None:
        self.cluster = cluster
        self.status = SERVING
        self.asked: list[bytes] = []  # the HealthCheckRequests received
        self.lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handlers = [grpc.method_handlers_generic_handler("test.Echo", {
            "Unary": grpc.unary_unary_rpc_method_handler(lambda req, ctx: cluster.encode())})]
        if health:
            handlers.append(grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
                "Check": grpc.unary_unary_rpc_method_handler(self._check)}))
        self.server.add_generic_rpc_handlers(tuple(handlers))
        self.port = self.server.add_insecure_port(f"{host}:0")
        self.host = host
        self.server.start()

    def _check(self, req: bytes, ctx: Any) -> bytes:
        with self.lock:
            self.asked.append(req)
            return self.status

    def stop(self) -> None:
        self.server.stop(None).wait(5)


@pytest.fixture
def members():
    made: list[Member] = []

    def make(cluster: str, host: str, **kw: Any) -> Member:
        m = Member(cluster, host, **kw)
        made.append(m)
        return m
    yield make
    for m in made:
        m.stop()


async def fleet(fleet_dir, start_gateway, a: Member, b: Member):
    fd = fleet_dir("zone-a", "zone-b")
    for m in (a, b):
        fd.member(m.cluster, [service("echo"), endpoint_slice("echo", [(m.host, m.port)])])
    fd.hub([ingress("echo", [rule("grpc.example", ("/", "Prefix", "echo"))], annotations={
        "nginx.ingress.kubernetes.io/backend-protocol": "GRPC",
        "fleetgate.io/health-check-interval": "0.2",
        "fleetgate.io/health-check-grpc-service": "test.Echo",
        "fleetgate.io/healthy-threshold": "1"})])
    return await start_gateway(fd)


def healthy(gw) -> dict[str, bool]:
    routes = gw.gateway.debug_routes()["routes"]
    return {e["address"]: e["healthy"] for r in routes for c in r["backend"]["clusters"] for e in c["endpoints"]}


async def wait_for(cond, timeout: float = 10.0) -> bool:
    """Poll cond (health changes on the checker's own schedule), bounded in time."""
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return bool(cond())


def clusters_of(target: str, n: int) -> set[bytes]:
    with grpc.insecure_channel(target, options=[("grpc.default_authority", "grpc.example")]) as ch:
        unary = ch.unary_unary("/test.Echo/Unary")
        return {unary(b"x", timeout=10) for _ in range(n)}


async def test_not_serving_takes_an_endpoint_out_and_serving_brings_it_back(fleet_dir, start_gateway, members):
    a, b = members("zone-a", "127.0.68.1"), members("zone-b", "127.0.68.2")
    gw = await fleet(fleet_dir, start_gateway, a, b)
    target = f"{gw.host}:{gw.port}"
    assert await wait_for(lambda: len(a.asked) >= 1 and len(b.asked) >= 1)
    assert a.asked[0] == b"\x0a\x09test.Echo"  # HealthCheckRequest{service: "test.Echo"}
    assert await asyncio.to_thread(clusters_of, target, 20) == {b"zone-a", b"zone-b"}

    b.status = NOT_SERVING
    assert await wait_for(lambda: healthy(gw).get("127.0.68.2") is False)
    assert await asyncio.to_thread(clusters_of, target, 20) == {b"zone-a"}

    b.status = SERVING
    assert await wait_for(lambda: healthy(gw).get("127.0.68.2") is True)
    assert await asyncio.to_thread(clusters_of, target, 20) == {b"zone-a", b"zone-b"}


async def test_a_server_without_the_health_service_is_unhealthy(fleet_dir, start_gateway, members):
    a, b = members("zone-a", "127.0.68.3"), members("zone-b", "127.0.68.4", health=False)
    gw = await fleet(fleet_dir, start_gateway, a, b)
    assert await wait_for(lambda: healthy(gw) == {"127.0.68.3": True, "127.0.68.4": False})
    assert await asyncio.to_thread(clusters_of, f"{gw.host}:{gw.port}", 10) == {b"zone-a"}
