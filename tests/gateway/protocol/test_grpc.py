"""gRPC through the gateway (backend-protocol GRPC and GRPCS): real grpcio servers in two
member clusters, a real grpcio client through the gateway over h2c and TLS. Unary, server
streaming, client streaming, bidirectional streaming, a 4 MiB message, a deadline, an
error with details in trailers, gRPC-shaped errors of the gateway itself, failover when
one cluster's server is stopped mid-run, and an HTTP/1.1 client refused."""
from __future__ import annotations

import asyncio
import threading
import time
from concurrent import futures
from typing import Any, Iterator

import httpx
import pytest

from gateway_support import endpoint_slice, ingress, rule, service
from h2_layer_support import h2_layer  # noqa: F401  (fixture)
from tls_support import make_ca, tls_entry, tls_secret

from gateway.context import Limits
from gateway.protocol.h2_grpc import pools

grpc = pytest.importorskip("grpc", reason="grpcio is a test dependency: pip install grpcio")

BIG = 4 * 1024 * 1024
OPTIONS = [("grpc.max_receive_message_length", 8 * BIG), ("grpc.max_send_message_length", 8 * BIG)]
SERVICE = "test.Echo"


class Backend:
    """A grpcio server for one member cluster: raw-bytes handlers (no generated stubs)."""

    def __init__(self, cluster: str, host: str, *, tls: tuple[bytes, bytes] | None = None) -> None:
        self.cluster = cluster
        self.host = host
        self.cancelled = threading.Event()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=OPTIONS)
        tag = cluster.encode()

        def unary(req: bytes, ctx: Any) -> bytes:
            if req == b"slow":
                ctx.add_callback(self.cancelled.set)
                time.sleep(3)
                return b"late"
            if req == b"fail":
                ctx.set_trailing_metadata([("detail-bin", b"\x00\x01why"), ("x-app", "fleet")])
                ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad thing")
            if len(req) >= BIG:
                return req[::-1]
            return tag + b":" + req

        def server_stream(req: bytes, ctx: Any) -> Iterator[bytes]:
            for i in range(int(req)):
                yield b"%s-%d" % (tag, i)

        def client_stream(reqs: Iterator[bytes], ctx: Any) -> bytes:
            return b"%d" % sum(len(r) for r in reqs)

        def bidi(reqs: Iterator[bytes], ctx: Any) -> Iterator[bytes]:
            for r in reqs:
                yield r.upper()

        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
            "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
            "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        }),))
        if tls is None:
            self.port = self.server.add_insecure_port(f"{host}:0")
        else:
            creds = grpc.ssl_server_credentials([(tls[1], tls[0])])
            self.port = self.server.add_secure_port(f"{host}:0", creds)
        self.server.start()

    def stop(self) -> None:
        self.server.stop(None).wait(5)


@pytest.fixture
def grpc_backends() -> Iterator[Any]:
    made: list[Backend] = []

    def make(cluster: str, host: str, **kw: Any) -> Backend:
        b = Backend(cluster, host, **kw)
        made.append(b)
        return b
    yield make
    for b in made:
        b.stop()


async def grpc_fleet(fleet_dir, start_gateway, grpc_backends, *, protocol: str = "GRPC", https: bool = False,
                     tls: tuple[bytes, bytes] | None = None, hub: list | None = None,
                     ing_tls: list | None = None, limits: Limits | None = None):
    fd = fleet_dir("zone-a", "zone-b")
    backends = []
    for cluster, addr in (("zone-a", "127.0.5.1"), ("zone-b", "127.0.5.2")):
        b = grpc_backends(cluster, addr, tls=tls)
        backends.append(b)
        fd.member(cluster, [service("echo"), endpoint_slice("echo", [(b.host, b.port)])])
    fd.hub([ingress("echo", [rule("grpc.example", ("/", "Prefix", "echo"))],
                    annotations={"nginx.ingress.kubernetes.io/backend-protocol": protocol}, tls=ing_tls),
            *(hub or [])])
    gw = await start_gateway(fd, https=https, limits=limits)
    return backends, gw


def calls(channel: Any) -> dict[str, Any]:
    return {
        "unary": channel.unary_unary(f"/{SERVICE}/Unary"),
        "server": channel.unary_stream(f"/{SERVICE}/ServerStream"),
        "client": channel.stream_unary(f"/{SERVICE}/ClientStream"),
        "bidi": channel.stream_stream(f"/{SERVICE}/Bidi"),
        "missing": channel.unary_unary("/test.Missing/Call"),
    }


def four_kinds(channel: Any) -> dict[str, Any]:
    """Every call type once (run in a thread: grpcio's sync client blocks)."""
    c = calls(channel)
    out: dict[str, Any] = {}
    resp, call = c["unary"].with_call(b"hello", timeout=10)
    out["unary"] = resp
    out["cluster"] = dict(call.initial_metadata()).get("x-fleetgate-cluster")
    out["server"] = list(c["server"](b"5", timeout=10))
    out["client"] = c["client"](iter([b"a" * 1000] * 300), timeout=10)  # 300 kB up, one answer
    out["bidi"] = list(c["bidi"](iter([b"x%d" % i for i in range(50)]), timeout=10))
    out["big"] = c["unary"](b"\x01" * (BIG - 1) + b"\x02", timeout=30)
    try:
        c["unary"](b"fail", timeout=10)
    except grpc.RpcError as e:
        out["fail"] = (e.code(), e.details(), dict(e.trailing_metadata()))
    return out


def check_four_kinds(out: dict[str, Any]) -> None:
    cluster = out["cluster"]
    assert cluster in ("zone-a", "zone-b")
    assert out["unary"] == cluster.encode() + b":hello"
    assert len(out["server"]) == 5 and out["server"][4].endswith(b"-4")
    assert out["client"] == b"300000"
    assert out["bidi"] == [b"X%d" % i for i in range(50)]
    assert out["big"] == b"\x02" + b"\x01" * (BIG - 1)
    code, details, trailers = out["fail"]
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details == "bad thing"
    assert trailers["detail-bin"] == b"\x00\x01why" and trailers["x-app"] == "fleet"


async def test_grpc_h2c_all_call_types_through_the_gateway(fleet_dir, start_gateway, grpc_backends):
    _, gw = await grpc_fleet(fleet_dir, start_gateway, grpc_backends)
    target = f"{gw.host}:{gw.port}"

    def run() -> tuple[list[dict[str, Any]], set[str]]:
        with grpc.insecure_channel(target, options=OPTIONS + [("grpc.default_authority", "grpc.example")]) as ch:
            results = [four_kinds(ch) for _ in range(2)]
            unary = calls(ch)["unary"]
            clusters = {dict(unary.with_call(b"x", timeout=10)[1].initial_metadata())["x-fleetgate-cluster"]
                        for _ in range(4)}
            return results, clusters
    results, clusters = await asyncio.to_thread(run)
    for out in results:
        check_four_kinds(out)
    assert clusters == {"zone-a", "zone-b"}  # round robin across member clusters


async def test_grpc_over_tls_to_grpcs_backends(fleet_dir, start_gateway, grpc_backends):
    ca = make_ca()
    cert, key = ca.issue("grpc.example")
    up_cert, up_key = ca.issue("pod.local")
    _, gw = await grpc_fleet(fleet_dir, start_gateway, grpc_backends, protocol="GRPCS", https=True,
                             tls=(up_cert, up_key), hub=[tls_secret("g-tls", cert, key)],
                             ing_tls=[tls_entry("g-tls", "grpc.example")])
    port = gw.gateway.https_address[1]

    def run() -> dict[str, Any]:
        creds = grpc.ssl_channel_credentials(root_certificates=ca.pem)
        opts = OPTIONS + [("grpc.ssl_target_name_override", "grpc.example"), ("grpc.default_authority", "grpc.example")]
        with grpc.secure_channel(f"127.0.0.1:{port}", creds, options=opts) as ch:
            return four_kinds(ch)
    check_four_kinds(await asyncio.to_thread(run))


async def test_grpc_errors_are_answered_the_grpc_way(fleet_dir, start_gateway, grpc_backends):
    backends, gw = await grpc_fleet(fleet_dir, start_gateway, grpc_backends)
    target = f"{gw.host}:{gw.port}"

    def run() -> dict[str, Any]:
        out: dict[str, Any] = {}
        with grpc.insecure_channel(target, options=[("grpc.default_authority", "grpc.example")]) as ch:
            c = calls(ch)
            try:
                c["unary"](b"slow", timeout=0.5)
            except grpc.RpcError as e:
                out["deadline"] = e.code()
            try:
                c["missing"](b"x", timeout=5)
            except grpc.RpcError as e:
                out["missing"] = e.code()
        return out
    out = await asyncio.to_thread(run)
    assert out["deadline"] == grpc.StatusCode.DEADLINE_EXCEEDED
    assert out["missing"] == grpc.StatusCode.UNIMPLEMENTED  # the server's own answer, relayed
    # the expired call was cancelled upstream, not left running
    assert await asyncio.to_thread(lambda: any(b.cancelled.wait(5) for b in backends))

    # the gateway's own answers: HTTP 200 and grpc-status, never an HTML body
    async with httpx.AsyncClient(http1=False, http2=True, timeout=10) as client:
        hdr = {"host": "grpc.example", "content-type": "application/grpc", "te": "trailers", "grpc-timeout": "200m"}
        r = await client.post(f"{gw.url}/{SERVICE}/Unary", headers=hdr, content=b"\x00\x00\x00\x00\x04slow")
        assert r.status_code == 200 and r.headers["grpc-status"] == "4" and r.content == b""
        # the backend gets the grpc-timeout too and ends the call itself when it passes; the
        # gateway's timer starts first and nearly always answers, but a loaded machine can let
        # the backend's status 4 win the race (relayed as it is, with no gateway reason)
        assert r.headers.get("x-fleetgate-reason", "deadline-exceeded") == "deadline-exceeded"
        # the answers below come at once; a generous deadline keeps a loaded machine from
        # turning them into DEADLINE_EXCEEDED
        hdr = {**hdr, "grpc-timeout": "10S"}
        r = await client.post(f"{gw.url}/{SERVICE}/Unary", headers={**hdr, "host": "nowhere.example"},
                              content=b"\x00\x00\x00\x00\x01x")
        assert r.status_code == 200 and r.headers["grpc-status"] == "12" and r.content == b""  # no route
        for b in backends:
            await asyncio.to_thread(b.stop)
        r = await client.post(f"{gw.url}/{SERVICE}/Unary", headers=hdr, content=b"\x00\x00\x00\x00\x01x")
        assert r.status_code == 200 and r.headers["grpc-status"] == "14" and r.content == b""
    # an HTTP/1.1 client on a gRPC route: a clear 4xx, not a broken relay
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.post(f"{gw.url}/{SERVICE}/Unary", headers={"host": "grpc.example",
                                                                   "content-type": "application/grpc"})
        assert r.status_code == 426 and r.headers["x-fleetgate-reason"] == "grpc-requires-http2"


async def test_grpc_unary_calls_survive_one_cluster_stopping(fleet_dir, start_gateway, grpc_backends):
    backends, gw = await grpc_fleet(fleet_dir, start_gateway, grpc_backends)
    target = f"{gw.host}:{gw.port}"
    stop_at = 100

    def run() -> tuple[list[str], list[Any]]:
        seen: list[str] = []
        errors: list[Any] = []
        with grpc.insecure_channel(target, options=[("grpc.default_authority", "grpc.example")]) as ch:
            unary = calls(ch)["unary"]
            for i in range(300):
                if i == stop_at:
                    threading.Thread(target=backends[0].stop).start()  # mid-run, calls still going
                try:
                    resp = unary(b"n%d" % i, timeout=10)
                    seen.append(resp.split(b":")[0].decode())
                except grpc.RpcError as e:
                    errors.append((i, e.code(), e.details()))
        return seen, errors
    seen, errors = await asyncio.to_thread(run)
    assert errors == []
    assert set(seen[:stop_at]) == {"zone-a", "zone-b"}
    assert set(seen[-100:]) == {"zone-b"}


async def test_idle_upstream_connections_close_after_the_idle_timeout(fleet_dir, start_gateway, grpc_backends):
    _, gw = await grpc_fleet(fleet_dir, start_gateway, grpc_backends, limits=Limits(upstream_idle_timeout=0.3))
    target = f"{gw.host}:{gw.port}"

    def two_calls() -> list[bytes]:
        with grpc.insecure_channel(target, options=[("grpc.default_authority", "grpc.example")]) as ch:
            unary = calls(ch)["unary"]
            return [unary(b"a", timeout=10), unary(b"b", timeout=10)]
    assert len(await asyncio.to_thread(two_calls)) == 2
    registry = pools(gw.gateway.ctx)
    assert sum(len(p.conns) for p in registry.pools.values()) == 2  # one per member cluster's pod
    deadline = time.monotonic() + 10  # (no event says "closed": poll, bounded)
    while sum(len(p.conns) for p in registry.pools.values()) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert sum(len(p.conns) for p in registry.pools.values()) == 0
    assert len(await asyncio.to_thread(two_calls)) == 2  # new connections serve the next calls
    conns = [c for p in registry.pools.values() for c in p.conns]
    assert conns
    await gw.gateway.close()  # shutdown closes the gRPC upstream connections too
    assert all(c.transport is None or c.transport.is_closing() for c in conns)


@pytest.fixture(autouse=True)
def _both_layers(h2_layer: str) -> str:
    """Every test here runs on libnghttp2 and on the h2 library."""
    return h2_layer
