"""Benchmark: fleetgate's clusterset.local responder against knot serving the same records.

    /work/venv/bin/python bench/dns_vs_knot.py [--services 1000] [--seconds 5] [--rounds 3]

Generates 1,000 exported ClusterSetIP services (a fleet snapshot for us, the same records
as a zone file for knot), pins each server to core 0 (knot with one UDP worker) and dnsperf
to core 1, runs them in rotation and prints qps, average latency and our/knot ratio. Then
times a zone rebuild at 10,000 services: from scratch, and after one service changes
(the path a snapshot change takes). Installs knot and dnsperf with apt-get when missing.
Every run is bounded (dnsperf -l, process timeouts). Numbers are noisy on a shared machine.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from controller.imports import derive_imports  # noqa: E402
from dnsplugin.zone import build_zone, zone_to_json  # noqa: E402
from fleet.objects import parse_object  # noqa: E402
from fleet.snapshot import ClusterName, ClusterObjects, FleetSnapshot, MemberCluster  # noqa: E402

ZONE = "clusterset.local"


def raw_objects(n: int, *, changed: int | None = None) -> list[dict]:
    """n exported ClusterIP services with two named ports each and a two-endpoint slice."""
    objs: list[dict] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}}]
    for i in range(n):
        name = f"svc-{i}"
        last = 9 if i == changed else 1
        objs += [
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "bench"},
             "spec": {"ports": [{"name": "http", "port": 80}, {"name": "grpc", "port": 9000}]}},
            {"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceExport",
             "metadata": {"name": name, "namespace": "bench"}},
            {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
             "metadata": {"name": f"{name}-a", "namespace": "bench",
                          "labels": {"kubernetes.io/service-name": name}},
             "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}, {"name": "grpc", "port": 9090}],
             "endpoints": [{"addresses": [f"10.{i // 250 % 250}.{i % 250}.{last}"]},
                           {"addresses": [f"10.{i // 250 % 250}.{i % 250}.2"]}]},
        ]
    return objs


def snapshot(n: int, *, version: int = 1, objects: list | None = None) -> FleetSnapshot:
    parsed = objects if objects is not None else [parse_object(o) for o in raw_objects(n)]
    members = (MemberCluster(ClusterName("zone-a"), None, ClusterObjects.build(parsed)),
               MemberCluster(ClusterName("zone-b"), None, ClusterObjects.build([parsed[0]])))
    return FleetSnapshot(hub=ClusterObjects(), members=members, zone=ZONE,
                         clusterset_ip_range="242.0.0.0/8", version=version)


def knot_zone_file(records: list[dict]) -> str:
    lines = [f"$ORIGIN {ZONE}.", ""]
    for r in records:
        data = f'"{r["data"]}"' if r["type"] == "TXT" else r["data"]
        lines.append(f'{r["name"]} {r["ttl"]} IN {r["type"]} {data}')
    return "\n".join(lines) + "\n"


def query_file(n: int) -> str:
    out = []
    for i in range(n):
        out.append(f"svc-{i}.bench.svc.{ZONE} A")
        if i % 4 == 0:
            out.append(f"_http._tcp.svc-{i}.bench.svc.{ZONE} SRV")
        if i % 8 == 0:
            out.append(f"svc-{i}.bench.svc.{ZONE} AAAA")  # NODATA
    return "\n".join(out) + "\n"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_tools() -> None:
    missing = [pkg for tool, pkg in (("knotd", "knot"), ("dnsperf", "dnsperf"))
               if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}")]
    if missing:
        print(f"installing {' '.join(missing)} with apt-get", flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-q"], check=False, timeout=300, env=env,
                       stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-q", *missing], check=True, timeout=600, env=env,
                       stdout=subprocess.DEVNULL)


def wait_answering(port: int, timeout: float = 10.0) -> None:
    """Poll with a deadline until the server answers the schema-version query."""
    from dnslib import DNSRecord
    q = DNSRecord.question(f"dns-version.{ZONE}", "TXT").pack()
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        while time.monotonic() < deadline:
            s.sendto(q, ("127.0.0.1", port))
            try:
                if s.recv(4096):
                    return
            except OSError:
                continue
    raise RuntimeError(f"server on port {port} did not answer within {timeout}s")


def start_knot(tmp: Path, records: list[dict]) -> tuple[subprocess.Popen, int]:
    port = free_port()
    (tmp / "knot").mkdir(exist_ok=True)
    (tmp / "knot" / f"{ZONE}.zone").write_text(knot_zone_file(records))
    conf = tmp / "knot" / "knot.conf"
    conf.write_text(f"""server:
    listen: 127.0.0.1@{port}
    rundir: {tmp / 'knot'}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: {tmp / 'knot'}
control:
    listen: {tmp / 'knot' / 'knot.sock'}
log:
  - target: stderr
    any: error
zone:
  - domain: {ZONE}
    file: {tmp / 'knot' / (ZONE + '.zone')}
    zonefile-load: whole
    journal-content: none
""")
    proc = subprocess.Popen(["taskset", "-c", "0", "knotd", "-c", str(conf)], stderr=subprocess.PIPE)
    wait_answering(port)
    return proc, port


def start_ours(n: int) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen(["taskset", "-c", "0", sys.executable, __file__, "--serve-ours", str(port),
                             "--services", str(n)], cwd=str(ROOT))
    wait_answering(port, timeout=60)
    return proc, port


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def dnsperf(port: int, queries: Path, seconds: int) -> tuple[float, float]:
    out = subprocess.run(["taskset", "-c", "1", "dnsperf", "-s", "127.0.0.1", "-p", str(port),
                          "-d", str(queries), "-l", str(seconds), "-c", "4", "-q", "200", "-t", "2"],
                         capture_output=True, text=True, timeout=seconds + 10)
    qps = re.search(r"Queries per second:\s+([\d.]+)", out.stdout)
    lat = re.search(r"Average Latency \(s\):\s+([\d.]+)", out.stdout)
    lost = re.search(r"Queries lost:\s+(\d+)", out.stdout)
    if not qps or not lat:
        raise RuntimeError(f"dnsperf output not understood:\n{out.stdout}\n{out.stderr}")
    if lost and int(lost.group(1)):
        print(f"    ({lost.group(1)} queries lost)", flush=True)
    return float(qps.group(1)), float(lat.group(1))


def serve_ours(port: int, n: int) -> None:
    """Child process: the responder on uvloop, as `fleetgate dns` runs it."""
    import uvloop

    from dnsplugin.cli import serve

    class Fleet:
        def __init__(self) -> None:
            self.snapshot: FleetSnapshot | None = snapshot(n)

        def subscribe(self, callback):  # type: ignore[no-untyped-def]
            return lambda: None

    async def main() -> None:
        service = await serve(Fleet(), listen=f"127.0.0.1:{port}")
        stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stopped.set)
        await stopped.wait()
        await service.close()

    uvloop.run(main())


def rebuild_costs(n: int) -> None:
    from dnsplugin.cli import zone_for
    parsed = [parse_object(o) for o in raw_objects(n)]
    snap = snapshot(n, objects=parsed)
    t0 = time.perf_counter()
    zone, derived = zone_for(snap, "zone-b")
    t1 = time.perf_counter()
    # one service's endpoint changes: a new snapshot sharing every other object view
    changed = list(parsed)
    changed[3 * 7 + 3] = parse_object(raw_objects(8, changed=7)[3 * 7 + 3])
    snap2 = snapshot(n, version=2, objects=changed)
    t2 = time.perf_counter()
    zone2, _ = zone_for(snap2, "zone-b", previous_zone=zone, previous_derived=derived)
    t3 = time.perf_counter()
    print(f"zone rebuild at {n} services ({len(zone.nodes)} names): from scratch {1000 * (t1 - t0):.0f} ms, "
          f"after one service changes {1000 * (t3 - t2):.0f} ms (serial {zone2.serial})")
    assert len(zone_to_json(zone2)["records"]) == len(zone_to_json(zone)["records"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rebuild-services", type=int, default=10000)
    parser.add_argument("--serve-ours", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_ours is not None:
        serve_ours(args.serve_ours, args.services)
        return
    if not 1 <= args.seconds <= 10:
        parser.error("--seconds must be within 1..10")
    ensure_tools()
    d = derive_imports(snapshot(args.services), clusters=["zone-b"]).per_cluster["zone-b"]
    records = zone_to_json(build_zone(d.service_imports, d.endpoint_slices))["records"]
    with tempfile.TemporaryDirectory(prefix="fleetgate-bench-") as tmpdir:
        tmp = Path(tmpdir)
        queries = tmp / "queries.txt"
        queries.write_text(query_file(args.services))
        results: dict[str, list[tuple[float, float]]] = {"knot": [], "fleetgate": []}
        for rnd in range(args.rounds):
            for name, starter in (("knot", lambda: start_knot(tmp, records)),
                                  ("fleetgate", lambda: start_ours(args.services))):
                proc, port = starter()
                try:
                    qps, lat = dnsperf(port, queries, args.seconds)
                finally:
                    stop(proc)
                results[name].append((qps, lat))
                print(f"round {rnd + 1} {name:9s} {qps:10.0f} qps  avg latency {lat * 1000:.3f} ms", flush=True)
    med = {k: (statistics.median(q for q, _ in v), statistics.median(lat for _, lat in v))
           for k, v in results.items()}
    print(f"knot      median {med['knot'][0]:10.0f} qps  avg latency {med['knot'][1] * 1000:.3f} ms")
    print(f"fleetgate median {med['fleetgate'][0]:10.0f} qps  avg latency {med['fleetgate'][1] * 1000:.3f} ms")
    print(f"ratio fleetgate/knot: {med['fleetgate'][0] / med['knot'][0]:.2f}x (target >= 0.80x)")
    rebuild_costs(args.rebuild_services)


if __name__ == "__main__":
    main()
