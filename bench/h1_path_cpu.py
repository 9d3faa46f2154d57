"""CPU cost of the gateway's HTTP/1.1 request path with the sockets taken out.

Feeds a request into a DownstreamH1 and the upstream's response into its pooled
UpstreamH1, with in-memory transports, N times; prints microseconds per proxied request.
This isolates our Python from kernel loopback cost, so a change to the hot path can be
measured in a second, repeatably, before running the side-by-side wrk benchmark.
`--instructions` runs it twice under callgrind and prints instructions per request (the
difference between a short and a long run, so start-up cancels out): slower, but the
same figure on a busy or a quiet machine.

    python bench/h1_path_cpu.py [--requests 100000]
    python bench/h1_path_cpu.py --instructions      # needs valgrind (apt-get install valgrind)
    python bench/h1_path_cpu.py --floor [--instructions]   # bench/floor_proxy.py instead
    python bench/h1_path_cpu.py --headers 12 [--instructions]  # a longer (browser-like) head
    python bench/h1_path_cpu.py --policies [--instructions]  # canary + cluster weights + 10 % mirror
    python bench/h1_path_cpu.py --access-log PATH [--access-log-format json] [--instructions]
        # the access log on: each request's line formatted and handed to the writer thread
        # right after it (a batch per request: the worst case, one request per loop turn)

`--policies` gives the route what bench/proxy_vs_nginx.py --policies gives it: a canary
Ingress (by header x-canary, else 10 %), cluster-weights zone-a=70,zone-b=30 over two
member clusters and a 10 % mirror to a third Service; every upstream (the mirror's too)
answers from memory. The random draws are seeded, so runs are repeatable. Every endpoint
is up and the requests are bodiless GETs, so they take the route's warm plan
(gateway/routing/plan.py, resolved by the request path core's `resolve_warm`).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import subprocess
import sys
import time

import uvloop

from fleet.objects import parse_object
from fleet.snapshot import ClusterObjects, FleetSnapshot, MemberCluster
from gateway.accesslog import AccessLog
from gateway.context import GatewayContext
from gateway.protocol.downstream import DownstreamH1
from gateway.routing.build import build
from gateway.upstream.connection import UpstreamH1
from gateway.upstream.mirror import MirrorTarget, _MirrorConnection

REQUEST = (b"GET /index.html HTTP/1.1\r\nHost: bench.local\r\nUser-Agent: wrk\r\n"
           b"Accept: */*\r\n\r\n")
# header lines a browser sends beyond Host, User-Agent and Accept (for --headers N > 3)
EXTRA_HEADERS = (b"Accept-Language: en-US,en;q=0.9\r\n", b"Accept-Encoding: gzip, deflate, br\r\n",
                 b"Cache-Control: no-cache\r\n", b"Pragma: no-cache\r\n", b"Sec-Fetch-Dest: document\r\n",
                 b"Sec-Fetch-Mode: navigate\r\n", b"Sec-Fetch-Site: none\r\n", b"Upgrade-Insecure-Requests: 1\r\n",
                 b"Referer: http://bench.local/\r\n", b"Cookie: session=0123456789abcdef\r\n",
                 b"DNT: 1\r\n", b"Priority: u=0, i\r\n")


def request_with(headers: int) -> bytes:
    """REQUEST with `headers` header lines in all (3 to 15)."""
    if not 3 <= headers <= 3 + len(EXTRA_HEADERS):
        raise SystemExit(f"--headers must be 3..{3 + len(EXTRA_HEADERS)}")
    return REQUEST[:-2] + b"".join(EXTRA_HEADERS[:headers - 3]) + b"\r\n"
RESPONSE = (b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sun, 22 Nov 2026 00:00:00 GMT\r\n"
            b"Content-Type: text/plain\r\nContent-Length: 6\r\nConnection: keep-alive\r\n\r\nhello\n")


class MemoryTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = 0
        self.closed = False

    def write(self, data: bytes) -> None:  # type: ignore[override]
        self.written += len(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default=None):  # type: ignore[no-untyped-def]
        return ("127.0.0.1", 40000) if name == "peername" else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def snapshot() -> FleetSnapshot:
    hub = ClusterObjects.build([parse_object({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "b", "namespace": "d"},
        "spec": {"ingressClassName": "fleetgate", "rules": [{"host": "bench.local", "http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "s", "port": {"number": 80}}}}]}}]}})])
    member = ClusterObjects.build([
        parse_object({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "d"},
                      "spec": {"ports": [{"name": "http", "port": 80}]}}),
        parse_object({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                      "metadata": {"name": "s-1", "namespace": "d", "labels": {"kubernetes.io/service-name": "s"}},
                      "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}],
                      "endpoints": [{"addresses": ["127.0.0.1"]}]})])
    return FleetSnapshot(hub=hub, members=(MemberCluster("a", None, member),))  # type: ignore[arg-type]


def _ingress(name: str, service: str, annotations: dict[str, str]) -> dict:  # type: ignore[type-arg]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "namespace": "d", "annotations": annotations},
            "spec": {"ingressClassName": "fleetgate", "rules": [{"host": "bench.local", "http": {"paths": [
                {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": service,
                                                                            "port": {"number": 80}}}}]}}]}}


def _service(name: str, address: str, port: int) -> list:  # type: ignore[type-arg]
    return [parse_object({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "d"},
                          "spec": {"ports": [{"name": "http", "port": 80}]}}),
            parse_object({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                          "metadata": {"name": name + "-1", "namespace": "d",
                                       "labels": {"kubernetes.io/service-name": name}},
                          "addressType": "IPv4", "ports": [{"name": "http", "port": port}],
                          "endpoints": [{"addresses": [address]}]})]


def policies_snapshot() -> FleetSnapshot:
    """bench/proxy_vs_nginx.py's policies_fleet: `s` and its canary `s-canary` in zone-a
    (127.0.0.1) and zone-b (127.0.0.2), weights 70/30, 10 % mirrored to `shadow` (zone-a)."""
    hub = ClusterObjects.build([parse_object(_ingress("b", "s", {
        "fleetgate.io/cluster-weights": "zone-a=70,zone-b=30",
        "higress.io/mirror-target-service": "d/shadow:80", "higress.io/mirror-percentage": "10"})),
        parse_object(_ingress("b-canary", "s-canary", {
            "nginx.ingress.kubernetes.io/canary": "true",
            "nginx.ingress.kubernetes.io/canary-by-header": "x-canary",
            "nginx.ingress.kubernetes.io/canary-weight": "10"}))])
    members = []
    for cluster, address in (("zone-a", "127.0.0.1"), ("zone-b", "127.0.0.2")):
        objs = _service("s", address, 8080) + _service("s-canary", address, 8080)
        if cluster == "zone-a":
            objs += _service("shadow", "127.0.0.1", 8081)
        members.append(MemberCluster(cluster, None, ClusterObjects.build(objs)))  # type: ignore[arg-type]
    return FleetSnapshot(hub=hub, members=tuple(members))


# --access-log PATH and --access-log-format, when given (main sets them)
ACCESS_LOG: str | None = None
ACCESS_LOG_FORMAT = "text"


def _attach_log(ctx: GatewayContext) -> AccessLog | None:
    if not ACCESS_LOG:
        return None
    log = AccessLog(ACCESS_LOG, ACCESS_LOG_FORMAT)
    log.open(asyncio.get_running_loop())
    ctx.metrics.log = log
    return log


def _loop(ds: asyncio.Protocol, up: asyncio.Protocol, n: int, log: AccessLog | None = None) -> float:
    """CPU microseconds per request for n requests through ds and responses through up."""
    start = time.process_time()
    if log is None:
        for _ in range(n):
            ds.data_received(REQUEST)  # type: ignore[attr-defined]
            up.data_received(RESPONSE)  # type: ignore[attr-defined]
    else:
        flush = log.flush
        for _ in range(n):
            ds.data_received(REQUEST)  # type: ignore[attr-defined]
            up.data_received(RESPONSE)  # type: ignore[attr-defined]
            flush()  # what the loop's call_soon runs after this turn
        log.close()
    elapsed = time.process_time() - start
    assert ds.transport.written > 0 and up.transport.written > 0  # type: ignore[attr-defined]
    return elapsed * 1e6 / n


async def run(n: int) -> float:
    ctx = GatewayContext()
    log = _attach_log(ctx)
    table, _ = build(snapshot())
    ctx.swap_table(table)
    ds = DownstreamH1(ctx)
    ds.connection_made(MemoryTransport())
    ep = table.routes[0].backend.endpoints[0]  # type: ignore[union-attr]
    pool = ctx.pools.get(ep.key)
    up = UpstreamH1(pool)
    up.connection_made(MemoryTransport())
    pool.release(up, 0.0)
    return _loop(ds, up, n, log)


def _loop_policies(ds: asyncio.Protocol, mirror: _MirrorConnection, n: int) -> float:
    """_loop for --policies: the response goes to whichever pooled connection the pick
    chose, and a mirrored copy is answered too (its connection back to idle)."""
    start = time.process_time()
    for _ in range(n):
        ds.data_received(REQUEST)  # type: ignore[attr-defined]
        ds.active.upstream.data_received(RESPONSE)  # type: ignore[attr-defined]
        if mirror.busy:
            mirror.data_received(RESPONSE)
    elapsed = time.process_time() - start
    assert ds.transport.written > 0 and mirror.transport.written > 0  # type: ignore[attr-defined,union-attr]
    return elapsed * 1e6 / n


async def run_policies(n: int) -> float:
    random.seed(13)  # the canary, cluster and mirror draws: the same sequence every run
    ctx = GatewayContext()
    table, diags = build(policies_snapshot())
    ctx.swap_table(table)
    (r,) = [r for r in table.routes if r.host == "bench.local"]
    policy = r.policy
    if not (policy.canaries and policy.cluster_weights and policy.mirror is not None) or len(
            {e.cluster for e in r.backend.endpoints}) != 2:  # type: ignore[union-attr]
        raise SystemExit(f"policies not in force on bench.local: {policy.describe()} {diags}")
    ds = DownstreamH1(ctx)
    ds.connection_made(MemoryTransport())
    for ep in r.backend.endpoints:  # type: ignore[union-attr]  # (the canary's share these endpoints)
        pool = ctx.pools.get(ep.key)
        up = UpstreamH1(pool)
        up.connection_made(MemoryTransport())
        pool.release(up, 0.0)
    (shadow,) = policy.mirror.service.backend.endpoints  # type: ignore[union-attr]
    target = ctx.mirrors.targets[(shadow.address, shadow.port)] = MirrorTarget(
        shadow.address, shadow.port, shadow.cluster, ctx.mirrors._count)
    mirror = _MirrorConnection(target)
    mirror.connection_made(MemoryTransport())
    target.all.add(mirror)
    target.idle.append(mirror)
    return _loop_policies(ds, mirror, n)


async def run_floor(n: int) -> float:
    """The same loop through bench/floor_proxy.py: the contract's per-request work, bare."""
    from floor_proxy import FloorDownstream, FloorUpstream
    pool: list[FloorUpstream] = []
    ds = FloorDownstream(pool, route=object())
    ds.connection_made(MemoryTransport())
    up = FloorUpstream(pool, rows={})
    up.connection_made(MemoryTransport())
    pool.append(up)
    return _loop(ds, up, n)


def instructions(requests: int, floor: bool, headers: int = 3, policies: bool = False) -> int:
    """Instructions callgrind counts for a whole run of `requests` requests."""
    out = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                          sys.executable, __file__, "--requests", str(requests), "--headers", str(headers)]
                         + (["--floor"] if floor else []) + (["--policies"] if policies else [])
                         + (["--access-log", ACCESS_LOG, "--access-log-format", ACCESS_LOG_FORMAT]
                            if ACCESS_LOG else []),
                         capture_output=True, text=True, timeout=900, check=True,
                         env=dict(os.environ, PYTHONHASHSEED="0"))  # the same start-up in both runs
    m = re.search(r"Collected : (\d+)", out.stderr)
    if m is None:
        raise SystemExit("no instruction count in valgrind's output:\n" + out.stderr[-2000:])
    return int(m.group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--instructions", action="store_true",
                    help="instructions per request under callgrind (runs 1,000 and 6,000 requests)")
    ap.add_argument("--floor", action="store_true",
                    help="run bench/floor_proxy.py (the contract's per-request work, bare) instead")
    ap.add_argument("--headers", type=int, default=3, help="header lines in the request (3..15)")
    ap.add_argument("--policies", action="store_true",
                    help="the route has a canary, cluster weights over two member clusters and a 10 %% mirror")
    ap.add_argument("--access-log", metavar="PATH", help="the access log on, written to PATH")
    ap.add_argument("--access-log-format", choices=("text", "json"), default="text")
    args = ap.parse_args()
    if args.policies and args.floor:
        ap.error("--policies goes with the gateway's path, not --floor")
    if args.access_log and (args.policies or args.floor):
        ap.error("--access-log goes with the plain gateway path")
    global REQUEST, ACCESS_LOG, ACCESS_LOG_FORMAT
    REQUEST = request_with(args.headers)
    ACCESS_LOG, ACCESS_LOG_FORMAT = args.access_log, args.access_log_format
    what = ("floor_proxy.py" if args.floor else
            "Python request path, canary + cluster weights + 10 % mirror" if args.policies else "Python request path")
    if args.access_log:
        what += ", access log %s" % args.access_log_format
    if args.instructions:
        if shutil.which("valgrind") is None:
            raise SystemExit("valgrind is not installed (apt-get install -y valgrind)")
        short = instructions(1000, args.floor, args.headers, args.policies)
        long = instructions(6000, args.floor, args.headers, args.policies)
        print(f"{(long - short) / 5000:.0f} instructions per proxied request "
              f"(callgrind, {what}, {args.headers} headers)")
        return
    us = uvloop.run(run_floor(args.requests) if args.floor else
                    run_policies(args.requests) if args.policies else run(args.requests))
    print(f"{us:.2f} us CPU per proxied request ({what}, {args.headers} headers, no sockets)")


if __name__ == "__main__":
    main()
