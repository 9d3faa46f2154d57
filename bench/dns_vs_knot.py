"""Benchmark: fleetgate's clusterset.local responder (compiled fast path and its pure-Python
twin) against knot serving the same records, over UDP with and without EDNS0 and over TCP.

    /work/venv/bin/python bench/dns_vs_knot.py [--services 1000,10000] [--seconds 5] [--rounds 3]
        [--modes udp,edns,tcp] [--reference] [--skip-rebuild]

For each zone size: generates that many exported ClusterSetIP services (a fleet snapshot
for us, the same records as a zone file for knot), and per round starts each server in
rotation (knot with one UDP and one TCP worker; ours as `fleetgate dns` runs it, on uvloop,
compiled or with FLEETGATE_PURE_PYTHON=1), pinned to core 0 with dnsperf on core 1; warms
each up with one pass of the query file, then runs dnsperf once per mode: `udp` (plain
queries), `edns` (dnsperf -e: an OPT record in every query), `tcp` (dnsperf -m tcp: four
kept-open connections). Prints qps, latency and the server's CPU per answered query (from
/proc: it drifts less than qps on a shared machine) per run, then per size and mode the
medians and the median of the per-round paired qps ratios to knot.
`--reference` adds the spec's yardstick for UDP: a uvloop responder that does nothing but
look the lowercased question up in answers prebuilt for the query file, patch the ID and
sendto. Then times a zone build at 10,000 services from scratch, and the change-to-answer
latency of the running responder when one EndpointSlice changes (`--rebuild-only` runs just
that). Installs knot and dnsperf with apt-get when missing. Every run is bounded (dnsperf -l,
process timeouts). Numbers are noisy on a shared machine: say how loaded it was (uptime).
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

from controller.derive import derive_imports  # noqa: E402
from dnsplugin.zone import build_zone, zone_to_json  # noqa: E402
from fleet.objects import parse_object  # noqa: E402
from fleet.snapshot import ClusterName, ClusterObjects, FleetSnapshot, MemberCluster  # noqa: E402

ZONE = "clusterset.local"


def slice_raw(i: int, last: int = 1) -> dict:
    """Service i's EndpointSlice; `last` varies its first endpoint's address (a change)."""
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"svc-{i}-a", "namespace": "bench",
                         "labels": {"kubernetes.io/service-name": f"svc-{i}"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}, {"name": "grpc", "port": 9090}],
            "endpoints": [{"addresses": [f"10.{i // 250 % 250}.{i % 250}.{last}"]},
                          {"addresses": [f"10.{i // 250 % 250}.{i % 250}.2"]}]}


def raw_objects(n: int, *, headless_every: int = 0) -> list[dict]:
    """n exported services with two named ports each and a two-endpoint slice.

    Object 3*i+3 is service i's slice (after the Namespace, its Service and ServiceExport).
    With headless_every=k, services 0, k, 2k... are headless (their A answers list endpoints).
    """
    objs: list[dict] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}}]
    for i in range(n):
        name = f"svc-{i}"
        spec: dict = {"ports": [{"name": "http", "port": 80}, {"name": "grpc", "port": 9000}]}
        if headless_every and i % headless_every == 0:
            spec["clusterIP"] = "None"
        objs += [
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "bench"}, "spec": spec},
            {"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceExport",
             "metadata": {"name": name, "namespace": "bench"}},
            slice_raw(i),
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


def wait_answering(port: int, timeout: float = 10.0, proc: subprocess.Popen | None = None) -> None:
    """Poll with a deadline until the server answers the schema-version query.

    ChildProcessError at once when `proc` exits first (a port taken by someone else).
    """
    from dnslib import DNSRecord
    q = DNSRecord.question(f"dns-version.{ZONE}", "TXT").pack()
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise ChildProcessError(f"server for port {port} exited with {proc.returncode}")
            s.sendto(q, ("127.0.0.1", port))
            try:
                if s.recv(4096):
                    return
            except OSError:
                continue
    raise RuntimeError(f"server on port {port} did not answer within {timeout}s")


def start_knot(tmp: Path, records: list[dict]) -> tuple[subprocess.Popen, int]:
    """knotd on a free port, from a fresh directory each start (no state carried over);
    retried on another port when it exits (a port taken by someone else)."""
    for attempt in range(3):
        port = free_port()
        here = Path(tempfile.mkdtemp(prefix="knot-", dir=tmp))
        (here / f"{ZONE}.zone").write_text(knot_zone_file(records))
        conf = here / "knot.conf"
        conf.write_text(f"""server:
    listen: 127.0.0.1@{port}
    rundir: {here}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: {here}
control:
    listen: {here / 'knot.sock'}
log:
  - target: stderr
    any: error
zone:
  - domain: {ZONE}
    file: {here / (ZONE + '.zone')}
    zonefile-load: whole
    journal-content: none
""")
        with open(here / "stderr.log", "wb") as err:
            proc = subprocess.Popen(["taskset", "-c", "0", "knotd", "-c", str(conf)], stderr=err)
        try:
            wait_answering(port, timeout=30, proc=proc)
        except ChildProcessError:
            print(f"    knot exited: {(here / 'stderr.log').read_text().strip()[-300:]}", flush=True)
            if attempt == 2:
                raise
            continue
        except RuntimeError:
            stop(proc)
            raise
        return proc, port
    raise AssertionError("unreachable")


def start_ours(n: int, *, mode: str = "--serve-ours", pure: bool = False) -> tuple[subprocess.Popen, int]:
    """Our responder (pure: its Python twin; mode="--serve-reference": the reference) on a free port."""
    env = dict(os.environ)
    env.pop("FLEETGATE_PURE_PYTHON", None)
    if pure:
        env["FLEETGATE_PURE_PYTHON"] = "1"
    for attempt in range(3):
        port = free_port()  # a UDP port; its TCP twin may be taken by another process: retry
        proc = subprocess.Popen(["taskset", "-c", "0", sys.executable, __file__, mode, str(port),
                                 "--services", str(n), "--expect", "pure" if pure else "compiled"],
                                cwd=str(ROOT), env=env)
        try:
            wait_answering(port, timeout=180, proc=proc)
        except ChildProcessError:
            if attempt == 2:
                raise
            continue
        except RuntimeError:
            stop(proc)
            raise
        return proc, port
    raise AssertionError("unreachable")


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


MODES = {"udp": [], "edns": ["-e"], "tcp": ["-m", "tcp"]}


def dnsperf(port: int, queries: Path, seconds: int, extra: list[str] = [], *, passes: int = 0
            ) -> tuple[float, float]:
    """qps and average latency of one dnsperf run (4 clients, 200 outstanding), bounded by
    `seconds` (and by `passes` over the query file when given)."""
    limit = ["-n", str(passes)] if passes else []
    out = subprocess.run(["taskset", "-c", "1", "dnsperf", "-s", "127.0.0.1", "-p", str(port),
                          "-d", str(queries), "-l", str(seconds), "-c", "4", "-q", "200", "-t", "2",
                          *limit, *extra],
                         capture_output=True, text=True, timeout=seconds + 10)
    qps = re.search(r"Queries per second:\s+([\d.]+)", out.stdout)
    lat = re.search(r"Average Latency \(s\):\s+([\d.]+)", out.stdout)
    lost = re.search(r"Queries lost:\s+(\d+)", out.stdout)
    if not qps or not lat:
        raise RuntimeError(f"dnsperf output not understood:\n{out.stdout}\n{out.stderr}")
    if lost and int(lost.group(1)):
        print(f"    ({lost.group(1)} queries lost)", flush=True)
    return float(qps.group(1)), float(lat.group(1))


def serve_ours(port: int, n: int, expect: str) -> None:
    """Child process: the responder on uvloop, as `fleetgate dns` runs it."""
    import uvloop

    from dnsplugin import codec
    if codec.IMPLEMENTATION != expect:
        sys.exit(f"the DNS fast path is {codec.IMPLEMENTATION}, not {expect} (build it: "
                 "python setup.py build_ext --inplace)")

    from controller.publisher import DerivedPublisher
    from dnsplugin.service import serve
    from fleetgate.process import frozen_after_rebuild

    class Fleet:
        def __init__(self) -> None:
            self.snapshot: FleetSnapshot | None = snapshot(n)

        def follow(self, callback):  # type: ignore[no-untyped-def]
            callback(self.snapshot)
            return lambda: None

        def live_members(self) -> dict:
            return {}

    async def main() -> None:
        feed = DerivedPublisher(Fleet(), guard=frozen_after_rebuild).start()  # type: ignore[arg-type]
        service = await serve(feed, listen=f"127.0.0.1:{port}")
        stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stopped.set)
        await stopped.wait()
        await service.close()

    uvloop.run(main())


def serve_reference(port: int, n: int) -> None:
    """Child process: the minimal prebuilt-answer uvloop responder dns.md measures (0.80x)."""
    import uvloop
    from dnslib import DNSRecord

    from dnsplugin.resolver import resolve

    d = derive_imports(snapshot(n), clusters=["zone-b"]).per_cluster["zone-b"]
    zone = build_zone(d.service_imports, d.endpoint_slices)
    answers: dict[bytes, bytes] = {}
    for line in query_file(n).splitlines() + [f"dns-version.{ZONE} TXT"]:
        name, qtype = line.split()
        q = DNSRecord.question(name, qtype)
        q.header.rd = 1
        raw = bytes(q.pack())
        answers[raw[12:].lower()] = resolve(zone, raw)[2:]  # type: ignore[index]

    class Reference(asyncio.DatagramProtocol):
        def connection_made(self, transport):  # type: ignore[no-untyped-def]
            self.transport = transport

        def datagram_received(self, data, addr):  # type: ignore[no-untyped-def]
            answer = answers.get(data[12:].lower())
            if answer is not None:
                self.transport.sendto(data[:2] + answer, addr)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(Reference, local_addr=("127.0.0.1", port))
        stopped = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stopped.set)
        await stopped.wait()
        transport.close()

    uvloop.run(main())


def rebuild_costs(n: int, changes: int) -> None:
    """From-scratch build time, then change-to-answer latency through the running responder.

    Every 10th service is headless. Each step changes one headless service's EndpointSlice
    (a new snapshot sharing every other object view, as the sources produce) and times from
    handing the snapshot to the subscribers until a UDP answer for that service's A records
    shows the new address. Runs with gc.freeze() after each swap off, then on, and times a
    full collection in each (the pause a gen-2 collection would add when one triggers).
    """
    import gc

    import uvloop
    from dnslib import DNSRecord

    from controller.publisher import DerivedPublisher
    from dnsplugin.service import serve, zone_for
    from fleetgate import process

    parsed = [parse_object(o) for o in raw_objects(n, headless_every=10)]
    gc.collect()
    t0 = time.perf_counter()
    first_snapshot = snapshot(n, objects=parsed)
    zone = zone_for(first_snapshot, derive_imports(first_snapshot).per_cluster.get("zone-b"))
    t1 = time.perf_counter()
    print(f"zone build at {n} services ({zone.name_count} names): from scratch {1000 * (t1 - t0):.0f} ms",
          flush=True)
    del zone

    class Fleet:
        def __init__(self, snap: FleetSnapshot) -> None:
            self.snapshot: FleetSnapshot | None = snap
            self.callbacks: list = []

        def follow(self, callback):  # type: ignore[no-untyped-def]
            callback(self.snapshot)
            self.callbacks.append(callback)
            return lambda: None

        def live_members(self) -> dict:
            return {}

        def publish(self, snap: FleetSnapshot) -> None:
            self.snapshot = snap
            for callback in self.callbacks:
                callback(snap)

    async def run(freeze: bool) -> None:
        process.FREEZE_GC = freeze
        objects = list(parsed)
        fleet = Fleet(snapshot(n, objects=objects))
        t0 = time.perf_counter()
        feed = DerivedPublisher(fleet, guard=process.frozen_after_rebuild).start()  # type: ignore[arg-type]
        service = await serve(feed, listen="127.0.0.1:0", cluster="zone-b")
        first = time.perf_counter() - t0
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.connect(service.udp_address)
        latencies, builds, sources = [], [], []
        try:
            for step in range(changes):
                i = (step * 10 * 97) % n  # a headless service, a different one each step
                last = 10 + step
                objects[3 * i + 3] = parse_object(slice_raw(i, last=last))
                s0 = time.perf_counter()
                snap = snapshot(n, version=step + 2, objects=objects)  # the source's work, not ours
                sources.append(time.perf_counter() - s0)
                query = DNSRecord.question(f"svc-{i}.bench.svc.{ZONE}", "A").pack()
                want = f"10.{i // 250 % 250}.{i % 250}.{last}"
                c0 = time.perf_counter()
                fleet.publish(snap)
                builds.append(service.last_build_seconds or 0.0)
                for _ in range(100):
                    await loop.sock_sendall(sock, query)
                    reply = DNSRecord.parse(await loop.sock_recv(sock, 4096))
                    if any(str(rr.rdata) == want for rr in reply.rr):
                        break
                else:
                    raise RuntimeError(f"svc-{i} never answered {want}")
                latencies.append(time.perf_counter() - c0)
            # What a full collection costs now: the pause a gen-2 collection adds to whatever
            # it interrupts (an answer, a zone change) when allocation counts trigger one.
            g0 = time.perf_counter()
            gc.collect()
            full_gc = time.perf_counter() - g0
        finally:
            sock.close()
            await service.close()
        ms = sorted(1000 * x for x in latencies)
        print(f"gc.freeze() {'on ' if freeze else 'off'}: first zone {1000 * first:.0f} ms; change-to-answer over "
              f"{changes} one-slice changes: median {statistics.median(ms):.1f} ms, max {ms[-1]:.1f} ms "
              f"(rebuild+swap median {1000 * statistics.median(builds):.1f} ms); not counted: the "
              f"source's ClusterObjects.build, median {1000 * statistics.median(sources):.0f} ms; "
              f"a full gc.collect() then took {1000 * full_gc:.0f} ms", flush=True)

    for freeze in (False, True):
        gc.unfreeze()
        gc.collect()
        uvloop.run(run(freeze))
    gc.unfreeze()


def cpu_seconds(pid: int) -> float:
    """User + system CPU the process has used (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def compare(args: argparse.Namespace, n: int, tmp: Path, modes: list[str]) -> list[str]:
    """Rotated rounds at n services; returns the summary lines."""
    d = derive_imports(snapshot(n), clusters=["zone-b"]).per_cluster["zone-b"]
    records = zone_to_json(build_zone(d.service_imports, d.endpoint_slices))["records"]
    here = tmp / f"n{n}"
    here.mkdir()
    queries = here / "queries.txt"
    queries.write_text(query_file(n))
    servers = [("knot", lambda: start_knot(here, records)),
               ("compiled", lambda: start_ours(n)),
               ("twin", lambda: start_ours(n, pure=True))]
    if args.reference:
        servers.append(("reference", lambda: start_ours(n, mode="--serve-reference")))
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}  # server CPU microseconds per answered query
    for rnd in range(args.rounds):
        order = servers[rnd % len(servers):] + servers[:rnd % len(servers)]  # who goes first rotates
        for name, starter in order:
            proc, port = starter()
            try:
                dnsperf(port, queries, 10, passes=1)  # warm-up: one pass (our first answers learn)
                for mode in modes:
                    if name == "reference" and mode == "tcp":
                        continue
                    c0 = cpu_seconds(proc.pid)
                    qps, lat = dnsperf(port, queries, args.seconds, MODES[mode])
                    per_query = 1e6 * (cpu_seconds(proc.pid) - c0) / max(qps * args.seconds, 1.0)
                    results.setdefault((name, mode), []).append((qps, lat))
                    cpu.setdefault((name, mode), []).append(per_query)
                    print(f"{n:6d} services  round {rnd + 1}  {mode:4s}  {name:9s} {qps:10.0f} qps  "
                          f"avg latency {lat * 1000:.3f} ms  {per_query:.1f} us CPU/query", flush=True)
            finally:
                stop(proc)
    lines = []
    for mode in modes:
        knot = results[("knot", mode)]
        for name, _ in servers:
            runs = results.get((name, mode))
            if not runs:
                continue
            qps = statistics.median(q for q, _ in runs)
            lat = statistics.median(x for _, x in runs)
            paired = statistics.median(q / k for (q, _), (k, _) in zip(runs, knot))
            us = statistics.median(cpu[(name, mode)])
            lines.append(f"{n:6d} services  {mode:4s}  {name:9s} median {qps:10.0f} qps  latency {lat * 1000:.3f} ms  "
                         f"{us:.1f} us CPU/query"
                         + ("" if name == "knot" else f"  {paired:.2f}x knot (median of paired rounds)"))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", default="1000,10000", help="zone sizes, comma-separated (default %(default)s)")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", default="udp,edns,tcp", help="of udp, edns, tcp (default %(default)s)")
    parser.add_argument("--rebuild-services", type=int, default=10000)
    parser.add_argument("--changes", type=int, default=30, help="zone changes timed (default %(default)s)")
    parser.add_argument("--rebuild-only", action="store_true", help="skip the knot comparison")
    parser.add_argument("--skip-rebuild", action="store_true", help="skip the change-to-answer timing")
    parser.add_argument("--reference", action="store_true",
                        help="also rotate the minimal prebuilt-answer uvloop responder (the ceiling, UDP)")
    parser.add_argument("--serve-ours", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--serve-reference", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--expect", default="compiled", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = [int(x) for x in str(args.services).split(",")]
    if args.serve_ours is not None:
        serve_ours(args.serve_ours, sizes[0], args.expect)
        return
    if args.serve_reference is not None:
        serve_reference(args.serve_reference, sizes[0])
        return
    if not 1 <= args.seconds <= 10:
        parser.error("--seconds must be within 1..10")
    modes = [m for m in args.modes.split(",") if m]
    if any(m not in MODES for m in modes):
        parser.error(f"--modes: choose from {', '.join(MODES)}")
    if args.rebuild_only:
        rebuild_costs(args.rebuild_services, args.changes)
        return
    ensure_tools()
    print(f"load before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} "
          f"(1/5/15 min) on {os.cpu_count()} cores", flush=True)
    summary: list[str] = []
    with tempfile.TemporaryDirectory(prefix="fleetgate-bench-") as tmpdir:
        for n in sizes:
            summary += compare(args, n, Path(tmpdir), modes)
    print(f"load after: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    for line in summary:
        print(line)
    print("(targets: UDP >= 1.0x knot, TCP >= 0.90x; medians of rotated rounds on a shared machine)")
    if not args.skip_rebuild:
        rebuild_costs(args.rebuild_services, args.changes)


if __name__ == "__main__":
    main()
