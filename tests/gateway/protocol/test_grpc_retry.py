"""Which failed gRPC calls go to another endpoint (gateway/protocol/h2_grpc.py): a call the
server resets before any response, or answers trailers-only UNAVAILABLE or CANCELLED, is
sent to another member cluster's endpoint (Envoy's reset, unavailable, cancelled retry
policies) unless `proxy-next-upstream: off`; any other status is the call's answer. Real
grpcio servers in two member clusters, a real grpcio client, both HTTP/2 layers."""
from __future__ import annotations

import asyncio
import threading
from concurrent import futures
from typing import Any

import pytest

from gateway_support import endpoint_slice, ingress, rule, service
from h2_layer_support import h2_layer  # noqa: F401  (fixture)

grpc = pytest.importorskip("grpc", reason="grpcio is a test dependency: pip install grpcio")


@pytest.fixture(autouse=True)
def _both_layers(h2_layer: str) -> str:
    """Every test here runs on libnghttp2 and on the h2 library (both sides of the gateway)."""
    return h2_layer


class Member:
    """test.Echo/Unary: zone-a fails every call the way the request names
    (b"unavailable", b"cancelled", b"invalid"); zone-b answers its name."""

    def __init__(self, cluster: str, host: str) -> None:
        self.cluster = cluster
        self.calls = 0
        self.lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Echo", {
            "Unary": grpc.unary_unary_rpc_method_handler(self._unary)}),))
        self.port = self.server.add_insecure_port(f"{host}:0")
        self.host = host
        self.server.start()

    def _unary(self, req: bytes, ctx: Any) -> bytes:
        with self.lock:
            self.calls += 1
        if self.cluster == "zone-a":
            code = {b"unavailable": grpc.StatusCode.UNAVAILABLE, b"cancelled": grpc.StatusCode.CANCELLED,
                    b"invalid": grpc.StatusCode.INVALID_ARGUMENT}[req]
            ctx.abort(code, "zone-a says " + req.decode())
        return self.cluster.encode()


async def fleet(fleet_dir, start_gateway, annotations: dict[str, str]):
    a, b = Member("zone-a", "127.0.69.1"), Member("zone-b", "127.0.69.2")
    fd = fleet_dir("zone-a", "zone-b")
    for m in (a, b):
        fd.member(m.cluster, [service("echo"), endpoint_slice("echo", [(m.host, m.port)])])
    fd.hub([ingress("echo", [rule("grpc.example", ("/", "Prefix", "echo"))], annotations={
        "nginx.ingress.kubernetes.io/backend-protocol": "GRPC", **annotations})])
    return a, b, await start_gateway(fd)


def call_all(target: str, req: bytes, n: int) -> list[Any]:
    """n calls: each one's answer, or its (status, details)."""
    out: list[Any] = []
    with grpc.insecure_channel(target, options=[("grpc.default_authority", "grpc.example")]) as ch:
        unary = ch.unary_unary("/test.Echo/Unary")
        for _ in range(n):
            try:
                out.append(unary(req, timeout=10))
            except grpc.RpcError as e:
                out.append((e.code(), e.details()))
    return out


@pytest.mark.parametrize("req", [b"unavailable", b"cancelled"])
async def test_unavailable_and_cancelled_answers_go_to_another_cluster(fleet_dir, start_gateway, req):
    a, b, gw = await fleet(fleet_dir, start_gateway, {})
    try:
        target = f"{gw.host}:{gw.port}"
        # any other status is the call's own answer: relayed, not retried (round robin: half to zone-a)
        got = await asyncio.to_thread(call_all, target, b"invalid", 10)
        assert got.count((grpc.StatusCode.INVALID_ARGUMENT, "zone-a says invalid")) == a.calls >= 1
        assert got.count(b"zone-b") == b.calls == 10 - a.calls
        before_a, before_b = a.calls, b.calls
        assert await asyncio.to_thread(call_all, target, req, 10) == [b"zone-b"] * 10
        assert a.calls > before_a  # a call answered so by zone-a was sent on to zone-b
        assert b.calls - before_b == 10
    finally:
        a.server.stop(None).wait(5)
        b.server.stop(None).wait(5)


async def test_proxy_next_upstream_off_relays_the_first_answer(fleet_dir, start_gateway):
    a, b, gw = await fleet(fleet_dir, start_gateway, {"nginx.ingress.kubernetes.io/proxy-next-upstream": "off"})
    try:
        got = await asyncio.to_thread(call_all, f"{gw.host}:{gw.port}", b"unavailable", 10)
        assert (grpc.StatusCode.UNAVAILABLE, "zone-a says unavailable") in got
        assert got.count(b"zone-b") == b.calls and a.calls + b.calls == 10
    finally:
        a.server.stop(None).wait(5)
        b.server.stop(None).wait(5)
