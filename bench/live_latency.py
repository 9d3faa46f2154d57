"""Change-to-traffic latency on a live fleet: EndpointSlice update in a member → the
gateway's route table uses it.

A child process runs one test API server per member cluster (plus the hub), seeded with
`--services` Services in every member and `--endpoints` ready endpoints in all; 100
Ingresses × 10 hosts route to them. This process runs the real LiveSources, Fleet and
Gateway (route table only; no traffic is needed to see the table). Then, `--changes`
times: PATCH one EndpointSlice through kubernetes_asyncio (moving one endpoint to a new
address) and time until the gateway's table contains the new address, the moment the
gateway would send traffic there. It prints p50/p99/max, the initial sync time, and the
requests the API servers saw after sync (target: watches only; the PATCHes are ours).

    python bench/live_latency.py [--members 3 --services 1000 --endpoints 10000 --changes 50]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop
import yaml

HOSTS_PER_INGRESS = 10
SETTLE = 0.05  # seconds between changes, so each is its own burst


# --- the API servers (child process) -----------------------------------------------------------

def member_objects(member: int, services: int, per_service: list[int]) -> list[dict[str, Any]]:
    objs: list[dict[str, Any]] = []
    for k in range(services):
        name = f"s-{k}"
        objs.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "bench"},
                     "spec": {"ports": [{"name": "http", "port": 80}]}})
        eps = [{"addresses": [endpoint_address(member, k, j)], "conditions": {"ready": True}}
               for j in range(per_service[k])]
        objs.append({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                     "metadata": {"name": f"{name}-m{member}", "namespace": "bench",
                                  "labels": {"kubernetes.io/service-name": name}},
                     "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}], "endpoints": eps})
    return objs


def endpoint_address(member: int, service: int, index: int) -> str:
    n = service * 16 + index  # nobody listens on these: the table is what is measured
    return f"127.{10 + member}.{n // 250}.{n % 250 + 1}"


def hub_objects(services: int) -> list[dict[str, Any]]:
    objs: list[dict[str, Any]] = [{"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
                                   "metadata": {"name": "fleetgate"}, "spec": {"controller": "fleetgate.io/gateway"}}]
    for i in range(0, services, HOSTS_PER_INGRESS):
        rules = [{"host": f"s-{k}.bench.local", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {
            "service": {"name": f"s-{k}", "port": {"number": 80}}}}]}} for k in range(i, min(services, i + HOSTS_PER_INGRESS))]
        objs.append({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                     "metadata": {"name": f"ing-{i // HOSTS_PER_INGRESS}", "namespace": "bench"},
                     "spec": {"ingressClassName": "fleetgate", "rules": rules}})
    return objs


def spread(members: int, services: int, endpoints: int) -> list[list[int]]:
    """Endpoints per (member, service), as even as possible, summing to `endpoints`."""
    cells = members * services
    base, extra = divmod(endpoints, cells)
    return [[base + (1 if m * services + k < extra else 0) for k in range(services)] for m in range(members)]


async def serve_apis(members: int, services: int, endpoints: int) -> None:
    """Child: start and seed the servers, print their URLs, answer `mark`/`stats` on stdin."""
    from kubefake import KubeAPIServer

    hub = await KubeAPIServer(bookmark_interval=60).start()
    for obj in hub_objects(services):
        hub.create(obj)
    counts = spread(members, services, endpoints)
    servers = {"hub": hub}
    for m in range(members):
        server = await KubeAPIServer(bookmark_interval=60).start()
        for obj in member_objects(m, services, counts[m]):
            server.create(obj)
        servers[f"m{m}"] = server
    print(json.dumps({name: s.url for name, s in servers.items()}), flush=True)
    marks = {name: 0 for name in servers}
    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).decode().strip():
        if line == "mark":
            marks = {name: len(s.requests) for name, s in servers.items()}
            print("{}", flush=True)
        elif line == "stats":
            stats = {}
            for name, s in servers.items():
                after = s.requests[marks[name]:]
                stats[name] = {"watch": sum(r.is_watch for r in after),
                               "write": sum(r.is_write for r in after),
                               "other": [f"{r.method} {r.path}" for r in after if not r.is_watch and not r.is_write],
                               "open_watches": s.open_watches}
            print(json.dumps(stats), flush=True)
    for s in servers.values():
        await s.stop()


# --- the gateway side (this process) ----------------------------------------------------------

class Child:
    def __init__(self, args: argparse.Namespace) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve-apis", "--members", str(args.members),
             "--services", str(args.services), "--endpoints", str(args.endpoints)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=str(Path(__file__).resolve().parents[1]))

    async def ask(self, command: str | None = None) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if command is not None:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        line = await asyncio.to_thread(self.proc.stdout.readline)
        if not line:
            raise SystemExit("the API server process ended")
        return json.loads(line)

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def write_fleet(root: Path, urls: dict[str, str]) -> Path:
    from kubefake import write_kubeconfig

    clusters = []
    for name, url in urls.items():
        write_kubeconfig(root / f"{name}.kubeconfig", {name: url})
        if name != "hub":
            clusters.append({"name": name, "kubeconfig": f"{name}.kubeconfig", "context": name})
    doc = {"hub": {"kubeconfig": "hub.kubeconfig", "context": "hub"}, "clusters": clusters}
    (root / "fleet.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return root / "fleet.yaml"


def route_addresses(gateway: Any, host: str) -> set[str]:
    for route in gateway.table.routes:
        if route.host == host and route.backend is not None:
            return {e.address for e in route.backend.endpoints}
    return set()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


async def measure(args: argparse.Namespace) -> int:
    from kubernetes_asyncio import client as k8s
    from kubernetes_asyncio import config as k8s_config

    from fleet.config import load_fleet_config
    from fleet.fleet import COALESCE_DELAY, Fleet
    from fleet.live import LiveSource
    from gateway.server import Gateway, GatewayOptions

    log(f"seeding {args.members} members: {args.services} Services each, {args.endpoints} endpoints in all")
    child = Child(args)
    fleet = None
    clients: list[Any] = []
    try:
        urls = await asyncio.wait_for(child.ask(), args.timeout)
        with tempfile.TemporaryDirectory(prefix="fleetgate-bench-") as tmp:
            fleet_yaml = write_fleet(Path(tmp), urls)
            started = time.perf_counter()
            fleet = Fleet.from_config(load_fleet_config(fleet_yaml), live_factory=LiveSource.factory)
            await fleet.start()
            gateway = Gateway(GatewayOptions(http=("127.0.0.1", 0)))
            builds: list[float] = []
            apply = gateway.apply

            def timed_apply(snapshot: Any) -> None:  # how much of the latency is the table build
                t = time.perf_counter()
                apply(snapshot)
                builds.append(time.perf_counter() - t)

            gateway.apply = timed_apply  # type: ignore[method-assign]
            gateway.follow(fleet)
            sync = time.perf_counter() - started
            routes = len(gateway.table.routes)
            total = sum(len(r.backend.endpoints) for r in gateway.table.routes if r.backend)
            log(f"synced in {sync:.2f}s: {routes} routes, {total} endpoints in the table, ready={fleet.ready}")
            await child.ask("mark")

            waiting: dict[str, Any] = {}

            def on_snapshot(_snapshot: Any) -> None:  # runs right after the gateway's apply
                if waiting and waiting["address"] in route_addresses(gateway, waiting["host"]):
                    waiting["future"].set_result(time.perf_counter())
                    waiting.clear()

            fleet.follow(on_snapshot)
            apis = {}
            for name in urls:
                if name != "hub":
                    api = await k8s_config.new_client_from_config(config_file=str(Path(tmp) / f"{name}.kubeconfig"))
                    clients.append(api)
                    apis[name] = k8s.DiscoveryV1Api(api)
            builds.clear()
            rng = random.Random(7)
            latencies: list[float] = []
            deadline = time.monotonic() + args.timeout
            for i in range(args.changes):
                if time.monotonic() > deadline:
                    log("time bound reached after %d changes" % i)
                    break
                member, service = i % args.members, rng.randrange(args.services)
                address = f"127.200.{i // 250}.{i % 250 + 1}"
                future = asyncio.get_running_loop().create_future()
                waiting.update(address=address, host=f"s-{service}.bench.local", future=future)
                sent = time.perf_counter()
                await apis[f"m{member}"].patch_namespaced_endpoint_slice(
                    f"s-{service}-m{member}", "bench",
                    [{"op": "replace", "path": "/endpoints/0/addresses/0", "value": address}])
                seen = await asyncio.wait_for(future, 10)
                latencies.append(seen - sent)
                await asyncio.sleep(SETTLE)
            stats = await child.ask("stats")
    finally:
        for api in clients:
            await api.close()
        if fleet is not None:
            await fleet.stop()
        child.close()

    ms = [x * 1000 for x in latencies]
    print(f"change-to-table latency over {len(ms)} EndpointSlice updates "
          f"({args.members} members, {args.services} Services each, {args.endpoints} endpoints):")
    print(f"  p50 {statistics.median(ms):.1f} ms   p99 {pct(ms, 99):.1f} ms   max {max(ms):.1f} ms   "
          f"(target p99 <= 200 ms)")
    build_ms = [x * 1000 for x in builds]
    print(f"  of which the gateway's route table build (gateway.apply): p50 {statistics.median(build_ms):.1f} ms   "
          f"p99 {pct(build_ms, 99):.1f} ms; the rest is API write + watch + store + the Fleet's "
          f"{COALESCE_DELAY * 1000:.0f} ms coalescing")
    print(f"  initial sync {sync:.2f} s")
    others = sum(len(s["other"]) for s in stats.values())
    print("  API requests after sync: %d watches, %d writes (the bench's own PATCHes: %d), %d other%s"
          % (sum(s["watch"] for s in stats.values()), sum(s["write"] for s in stats.values()), len(ms),
             others, "" if not others else ": " + ", ".join(x for s in stats.values() for x in s["other"][:5])))
    print("  open watches: " + ", ".join(f"{n} {s['open_watches']}" for n, s in stats.items()))
    return 0 if others == 0 else 1


def log(msg: str) -> None:
    print("# " + msg, file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--services", type=int, default=1000, help="Services in every member")
    parser.add_argument("--endpoints", type=int, default=10000, help="ready endpoints in the whole fleet")
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=120.0, help="bound on setup and on the change loop")
    parser.add_argument("--serve-apis", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_apis:
        sys.path.insert(0, os.getcwd())
        uvloop.run(serve_apis(args.members, args.services, args.endpoints))
        return 0
    return uvloop.run(measure(args))


if __name__ == "__main__":
    sys.exit(main())
