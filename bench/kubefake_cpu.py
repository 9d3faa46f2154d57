"""The test API server's CPU per request, under the controller's cold-start request mix.

`bench/controller_scale.py` runs three kubefake servers beside the controller; on a small
machine their CPU bounds the cold start's wall time, so it is measured here on its own:
one kubefake server in a child process, the watches the controller holds on a member
(8 kinds, all namespaces, with bookmarks) plus the benchmark's label-selected watch on the
derived EndpointSlices, and per service the five writes a consumer gets at a cold start
(POST ServiceImport, POST Service, POST EndpointSlice with 10 endpoints, merge PATCH of the
ServiceImport, merge PATCH of its status; bodies as `fleetgate controller` sends them), 16
services at a time. The figure is the server process's CPU (utime+stime from /proc) from
the first write until every watcher holds every event, divided by the writes.

`--baseline DIR` runs a second kubefake (a directory holding a `kubefake` package, e.g.
`git archive HEAD kubefake | tar -x -C DIR`) alternately with this one, for a paired ratio
on the same (loaded) machine. `--callgrind` counts the server's instructions instead
(valgrind): one round with --services and one with a fifth of them, and the difference
divided by the writes between them (start-up and imports cancel out); the load does not
move these figures.

    python bench/kubefake_cpu.py [--services 1000 --rounds 3 --baseline /tmp/kubefake-head]
    python bench/kubefake_cpu.py --callgrind --services 250 --baseline /tmp/kubefake-head
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
NS = "bench"
MCS = "/apis/multicluster.x-k8s.io/v1beta1"
WATCHED = ["/api/v1/services", "/api/v1/secrets", "/api/v1/namespaces", "/apis/discovery.k8s.io/v1/endpointslices",
           MCS + "/serviceimports", MCS + "/serviceexports", "/apis/networking.k8s.io/v1/ingresses",
           "/apis/networking.k8s.io/v1/ingressclasses"]
SLICE_SELECTOR = "endpointslice.kubernetes.io/managed-by=controller.fleetgate.io"
MANAGED = {"app.kubernetes.io/managed-by": "fleetgate"}
IMPORT_SPEC = {"type": "ClusterSetIP", "ports": [{"port": 80, "protocol": "TCP", "name": "http"}],
               "ipFamilies": ["IPv4"], "sessionAffinity": "None", "internalTrafficPolicy": "Cluster"}


def serve(profile: str | None) -> None:
    """Child: one kubefake server with the namespace; prints its URL, serves until stdin
    closes. `profile`: cProfile (CPU time) of the serving, stats to that path."""
    import cProfile
    import time

    import uvloop
    from kubefake import KubeAPIServer

    async def run() -> None:
        server = await KubeAPIServer(bookmark_interval=60, history_limit=200000).start()
        server.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        profiler = cProfile.Profile(time.process_time) if profile else None
        if profiler is not None:
            profiler.enable()
        print(json.dumps({"url": server.url, "kubefake": str(Path(sys.modules["kubefake"].__file__).parent)}),
              flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await server.stop()
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile)
    uvloop.run(run())


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Watchers:
    """The watches, each counting the event lines it has read."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.lines = [0] * (len(WATCHED) + 1)
        self.grew = asyncio.Event()
        queries = [(path, {}) for path in WATCHED] + [
            ("/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices" % NS, {"labelSelector": SLICE_SELECTOR})]
        self.opened = [asyncio.get_running_loop().create_future() for _ in queries]
        self.tasks = [asyncio.create_task(self._watch(i, session, url + path, query))
                      for i, (path, query) in enumerate(queries)]

    async def _watch(self, i: int, session: aiohttp.ClientSession, url: str, query: dict[str, str]) -> None:
        params = {"watch": "true", "allowWatchBookmarks": "true", "timeoutSeconds": "3600",
                  "resourceVersion": "1", **query}
        async with session.get(url, params=params, timeout=aiohttp.ClientTimeout(total=None)) as resp:
            self.opened[i].set_result(None)
            async for line in resp.content:
                if b'"BOOKMARK"' not in line[:30]:
                    self.lines[i] += 1
                    self.grew.set()

    async def until(self, wanted: list[int], timeout: float) -> None:
        async def wait() -> None:
            while any(have < want for have, want in zip(self.lines, wanted)):
                self.grew.clear()
                await self.grew.wait()
        await asyncio.wait_for(wait(), timeout)

    async def close(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def one_service(session: aiohttp.ClientSession, url: str, k: int, endpoints: int) -> None:
    """The five writes of one service in a consumer, in the controller's order."""
    name = "s-%d" % k

    async def send(method: str, path: str, body: dict[str, Any], media: str = "application/json") -> Any:
        async with session.request(method, url + path, data=json.dumps(body, separators=(",", ":")),
                                   headers={"Content-Type": media, "Accept": "application/json"}) as resp:
            doc = await resp.json()
            if resp.status >= 300:
                raise SystemExit("%s %s: %d %s" % (method, path, resp.status, doc.get("message")))
            return doc

    imports = "%s/namespaces/%s/serviceimports" % (MCS, NS)
    si = await send("POST", imports, {
        "apiVersion": "multicluster.x-k8s.io/v1beta1", "kind": "ServiceImport",
        "metadata": {"name": name, "namespace": NS, "labels": MANAGED,
                     "annotations": {"multicluster.kubernetes.io/derived-service": "amcs-" + name}},
        "spec": IMPORT_SPEC})
    owner = [{"apiVersion": "multicluster.x-k8s.io/v1beta1", "kind": "ServiceImport", "name": name,
              "uid": si["metadata"]["uid"], "controller": False}]
    svc = await send("POST", "/api/v1/namespaces/%s/services" % NS, {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "amcs-" + name, "namespace": NS, "labels": {**MANAGED, "multicluster.kubernetes.io/service-name": name},
                     "ownerReferences": owner},
        "spec": {"type": "ClusterIP", "ports": [{"port": 80, "protocol": "TCP", "name": "http", "targetPort": 80}],
                 "ipFamilies": ["IPv4"], "sessionAffinity": "None", "internalTrafficPolicy": "Cluster"}})
    await send("POST", "/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices" % NS, {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "amcs-%s-m0-ipv4" % name, "namespace": NS, "ownerReferences": owner, "labels": {
            **MANAGED, "kubernetes.io/service-name": "amcs-" + name, "multicluster.kubernetes.io/service-name": name,
            "multicluster.kubernetes.io/source-cluster": "m0",
            "endpointslice.kubernetes.io/managed-by": "controller.fleetgate.io"}},
        "addressType": "IPv4", "ports": [{"name": "http", "protocol": "TCP", "port": 80}],
        "endpoints": [{"addresses": ["10.%d.%d.%d" % (k // 250 % 250, k % 250, j + 1)], "conditions": {"ready": True}}
                      for j in range(endpoints)]})
    await send("PATCH", "%s/%s" % (imports, name), {
        "metadata": {"resourceVersion": si["metadata"]["resourceVersion"], "labels": MANAGED,
                     "annotations": {"multicluster.kubernetes.io/derived-service": "amcs-" + name}},
        "spec": {**IMPORT_SPEC, "ips": svc["spec"]["clusterIPs"]}}, "application/merge-patch+json")
    await send("PATCH", "%s/%s/status" % (imports, name), {"status": {"clusters": [{"cluster": "m0"}]}},
               "application/merge-patch+json")


def instructions(path: Path) -> int:
    """The total instruction count of a callgrind output file."""
    for line in path.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise SystemExit("no instruction total in %s" % path)


async def one_round(kubefake_dir: Path | None, services: int, endpoints: int, concurrency: int,
                    timeout: float, profile: str | None = None, callgrind: Path | None = None) -> dict[str, Any]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(kubefake_dir or ROOT), env.get("PYTHONPATH")) if p)
    valgrind = ["valgrind", "--tool=callgrind", "--callgrind-out-file=%s" % callgrind] if callgrind else []
    child = subprocess.Popen(valgrind + [sys.executable, __file__, "--serve"] + (["--profile", profile] if profile else []), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True, env=env, cwd=str(kubefake_dir or ROOT))
    try:
        assert child.stdout is not None
        ready = json.loads(await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), timeout))
        url = ready["url"]
        connector = aiohttp.TCPConnector(limit=concurrency + len(WATCHED) + 4)
        async with aiohttp.ClientSession(connector=connector) as session:
            watchers = Watchers(session, url)
            await asyncio.wait_for(asyncio.gather(*watchers.opened), timeout)
            cpu0 = cpu_seconds(child.pid)
            queue = iter(range(services))

            async def worker() -> None:
                for k in queue:
                    await one_service(session, url, k, endpoints)
            await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), timeout)
            # every write is one event to the watch of its kind; slices also to the selected watch
            wanted = [0] * len(watchers.lines)
            wanted[WATCHED.index("/api/v1/services")] = services
            wanted[WATCHED.index("/apis/discovery.k8s.io/v1/endpointslices")] = services
            wanted[WATCHED.index(MCS + "/serviceimports")] = 3 * services
            wanted[-1] = services
            await watchers.until(wanted, timeout)
            cpu = cpu_seconds(child.pid) - cpu0
            await watchers.close()
        writes = 5 * services
        return {"kubefake": ready["kubefake"], "writes": writes, "cpu_s": cpu, "cpu_per_write_us": cpu / writes * 1e6}
    finally:
        if child.stdin is not None:
            child.stdin.close()
        try:
            child.wait(15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


async def count(args: argparse.Namespace) -> dict[str, Any]:
    """Instructions per write, by difference between a small and a large round."""
    small = max(1, args.services // 5)
    result: dict[str, Any] = {"services": [small, args.services]}
    with tempfile.TemporaryDirectory(prefix="kubefake-callgrind-") as scratch:
        tmp = args.keep or scratch
        for which, where in (("baseline", args.baseline), ("this", None)):
            if which == "baseline" and where is None:
                continue
            totals = []
            for n in (small, args.services):
                out = Path(tmp) / ("%s-%d.out" % (which, n))
                await one_round(where, n, args.endpoints, args.concurrency, args.timeout, callgrind=out)
                totals.append(instructions(out))
            per_write = (totals[1] - totals[0]) / (5 * (args.services - small))
            result[which + "_instructions_per_write"] = round(per_write)
            print("# %-8s %s: %.0f instructions per write" % (which, where or ROOT / "kubefake", per_write),
                  file=sys.stderr, flush=True)
    if "baseline_instructions_per_write" in result:
        result["ratio"] = round(result["this_instructions_per_write"] / result["baseline_instructions_per_write"], 3)
    return result


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    runs: dict[str, list[float]] = {"this": [], "baseline": []}
    for r in range(args.rounds):
        for which, where in (("baseline", args.baseline), ("this", None)):
            if which == "baseline" and where is None:
                continue
            out = await one_round(where, args.services, args.endpoints, args.concurrency, args.timeout,
                                  args.profile if which == "this" and r == 0 else None)
            runs[which].append(out["cpu_per_write_us"])
            print("# round %d %-8s %s: %.0f us CPU per write (%.2f s for %d writes), load %.1f"
                  % (r + 1, which, out["kubefake"], out["cpu_per_write_us"], out["cpu_s"], out["writes"],
                     os.getloadavg()[0]), file=sys.stderr, flush=True)
    result: dict[str, Any] = {"services": args.services, "rounds": args.rounds,
                              "this_us": statistics.median(runs["this"]), "load": os.getloadavg()[0]}
    if runs["baseline"]:
        result["baseline_us"] = statistics.median(runs["baseline"])
        result["ratio"] = round(result["this_us"] / result["baseline_us"], 3)
        result["paired_ratios"] = [round(t / b, 3) for t, b in zip(runs["this"], runs["baseline"])]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=16, help="services written at a time")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", type=Path, help="a directory holding another kubefake package")
    parser.add_argument("--timeout", type=float, default=300.0, help="bound on each round's phases")
    parser.add_argument("--profile", metavar="PATH",
                        help="cProfile (CPU time) this kubefake's first round, stats to PATH")
    parser.add_argument("--callgrind", action="store_true",
                        help="count the server's instructions per write (valgrind) instead of CPU time")
    parser.add_argument("--keep", metavar="DIR", help="with --callgrind: leave the callgrind outputs in DIR "
                        "(for callgrind_annotate)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.profile)
        return 0
    import uvloop
    print(json.dumps(uvloop.run(count(args) if args.callgrind else measure(args)), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
