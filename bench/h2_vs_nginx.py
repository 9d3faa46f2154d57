"""HTTP/2 clients: the gateway's h2c listener against nginx `listen ... http2`, side by side.

The same setup as proxy_vs_nginx.py (one nginx backend speaking HTTP/1.1, nginx as a
reverse proxy with upstream keepalive, `fleetgate gateway` with one Ingress; servers on
one CPU, the load generator on the other), with h2load as the client: HTTP/2 with prior
knowledge over cleartext, C connections each carrying up to M concurrent streams.
Prints req/s, mean and max request time, errors, CPU per request and the ratio.
With --tls, h2 over TLS rows too: both proxies' TLS listeners (one self-signed EC P-256
certificate, ALPN h2; h2load keeps its connections, so this is the cost of TLS records,
not of handshakes), each round running all four targets in turn.

    python bench/h2_vs_nginx.py [--connections 50] [--streams 10] [--rounds 3] [--duration 10] [--tls]
    python bench/h2_vs_nginx.py --grpc [--connections 50] [--streams 1]   # gRPC unary
    python bench/h2_vs_nginx.py --library-floor   # CPU of the h2 library alone per request

`--grpc`: unary gRPC calls (h2load POSTing one gRPC-framed message with `content-type:
application/grpc` and `te: trailers`) through nginx's `grpc_pass` (upstream keepalive) and
through fleetgate's `backend-protocol: GRPC` route, both to one h2c gRPC backend: an nginx
server answering every call with one 5-byte message and `grpc-status: 0` in trailers (a
static file and add_trailer: no application cost, as the nginx backend of the HTTP rows).

`--library-floor` measures, in-process and without sockets, what the h2 library costs a
server per request (receive a HEADERS frame of h2load's request, send a six-header
response, six bytes of DATA and END_STREAM, configured as the gateway configures it): the
part of the gateway's HTTP/2 cost that no change of ours removes.
"""
from __future__ import annotations

import argparse
import re
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import (LOOPBACK, Proc, Processes, ensure_tools, free_port, interrupt_on_signals, log,  # noqa: E402
                   median, pinned, tree_cpu_seconds)
from proxy_vs_nginx import (HOST, TOOLS, _BACKEND, _PROXY, _ingress, _ingress_class, _service,  # noqa: E402
                            _slice, _write_fleet, bench_fleet, choose_cpus, start_fleetgate, start_nginx)

_H2C = """
        listen {host}:{port} http2 backlog=4096;"""
_GRPC_BACKEND = """\
    server {{
        listen {host}:{port} backlog=4096;
        location / {{ return 200 "ok\\n"; }}
    }}
    server {{
        listen {host}:{grpc_port} http2 backlog=4096;
        location / {{
            default_type application/grpc;
            add_trailer grpc-status 0 always;
            add_trailer grpc-message "" always;
            error_page 405 =200 /reply.bin;
            root {dir};
            try_files /reply.bin =404;
        }}
    }}"""
_GRPC_PROXY = """\
    upstream grpcbackend {{
        server {host}:{grpc_port};
        keepalive 1024;
        keepalive_requests 10000000;
        keepalive_timeout 300s;
    }}
    server {{
        listen {host}:{port} backlog=4096;
        location / {{ return 200 "ok\\n"; }}
    }}
    server {{
        listen {host}:{h2_port} http2 backlog=4096;
        location / {{ grpc_pass grpc://grpcbackend; }}
    }}"""
GRPC_PATH = "/bench.Echo/Unary"
GRPC_MESSAGE = b"\x00\x00\x00\x00\x05hello"  # uncompressed, 5 bytes: the request and the reply
_H2TLS = """
        listen {host}:{port} ssl http2 backlog=4096;
        ssl_certificate {dir}/tls.crt;
        ssl_certificate_key {dir}/tls.key;"""


@dataclass(frozen=True)
class H2Result:
    rps: float
    mean_ms: float
    max_ms: float
    requests: int
    errors: int
    cpu_us: float = 0.0


_UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def parse_h2load(text: str) -> H2Result:
    done = re.search(r"finished in [\d.]+s, ([\d.]+) req/s", text)
    counts = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, \d+ succeeded, (\d+) failed, "
                       r"(\d+) errored, (\d+) timeout", text)
    codes = re.search(r"status codes: \d+ 2xx, \d+ 3xx, (\d+) 4xx, (\d+) 5xx", text)
    times = re.search(r"time for request:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)", text)
    if not (done and counts and codes and times):
        raise RuntimeError("unexpected h2load output:\n" + text[-2000:])
    failed = sum(int(counts.group(i)) for i in (3, 4, 5)) + int(codes.group(1)) + int(codes.group(2))
    return H2Result(rps=float(done.group(1)), mean_ms=float(times.group(5)) * _UNIT[times.group(6)],
                    max_ms=float(times.group(3)) * _UNIT[times.group(4)], requests=int(counts.group(2)),
                    errors=failed)


def run_h2load(port: int, *, connections: int, streams: int, duration_s: int, cpu: int | None,
               tls: bool = False, grpc: Path | None = None) -> H2Result:
    """h2load for duration_s; with `grpc` (a file holding one gRPC message) unary calls."""
    cmd = ["h2load", "-c", str(connections), "-m", str(streams), "-t", "1", "-D", str(duration_s),
           "-H", ":authority: %s" % HOST]
    if grpc is not None:
        cmd += ["-d", str(grpc), "-H", "content-type: application/grpc", "-H", "te: trailers"]
    cmd.append("%s://%s:%d%s" % ("https" if tls else "http", LOOPBACK, port, GRPC_PATH if grpc else "/"))
    out = subprocess.run(pinned(cmd, cpu), capture_output=True, text=True, timeout=duration_s + 60, check=False)
    if out.returncode != 0:
        raise RuntimeError("h2load failed (%d): %s%s" % (out.returncode, out.stdout, out.stderr))
    return parse_h2load(out.stdout)


def wait_tcp(port: int, deadline_s: float) -> None:
    """Until something accepts on the port (the gateway opens its TLS listener once the
    Ingress with tls is in its table), bounded by the deadline."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            socket.create_connection((LOOPBACK, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("nothing listens on %s:%d after %.0f s" % (LOOPBACK, port, deadline_s))
            time.sleep(0.1)


def compare(args: argparse.Namespace) -> dict[str, list[H2Result]]:
    ensure_tools({**TOOLS, "h2load": "nghttp2-client"})
    server_cpu, client_cpu = choose_cpus(args)
    with tempfile.TemporaryDirectory(prefix="fleetgate-h2-") as tmpdir, Processes() as procs:
        tmp = Path(tmpdir)
        backend, nginx_plain, nginx_h2c = free_port(), free_port(), free_port()
        listeners = _H2C.format(host=LOOPBACK, port=nginx_h2c)
        tls_pem = None
        nginx_tls = gateway_tls = 0
        if args.tls:
            from gateway.tls import self_signed
            tls_pem = self_signed(HOST)  # the same certificate kind for both: EC P-256
            (tmp / "tls.crt").write_bytes(tls_pem[0])
            (tmp / "tls.key").write_bytes(tls_pem[1])
            nginx_tls, gateway_tls = free_port(), free_port()
            listeners += _H2TLS.format(host=LOOPBACK, port=nginx_tls, dir=tmp)
            args.gateway_args += " --https %s:%d" % (LOOPBACK, gateway_tls)
        start_nginx(procs, tmp, "backend", _BACKEND.format(host=LOOPBACK, port=backend), backend, server_cpu,
                    args.start_timeout)
        nginx = start_nginx(procs, tmp, "nginx", _PROXY.format(
            host=LOOPBACK, port=nginx_plain, backend_port=backend, tls=listeners, log=""), nginx_plain,
            server_cpu, args.start_timeout)
        gateway, gateway_port, _ = start_fleetgate(procs, args, bench_fleet(tmp / "fleet", backend, tls=tls_pem),
                                                   tmp, server_cpu, probe_host=HOST)
        targets = {"nginx": (nginx, nginx_h2c, False), "fleetgate": (gateway, gateway_port, False)}
        if args.tls:
            wait_tcp(gateway_tls, args.start_timeout)
            targets.update({"nginx-tls": (nginx, nginx_tls, True), "fleetgate-tls": (gateway, gateway_tls, True)})
        for name, (_, port, tls) in targets.items():
            log("warm-up %s", name)
            run_h2load(port, connections=args.connections, streams=args.streams, duration_s=2, cpu=client_cpu,
                       tls=tls)
        runs: dict[str, list[H2Result]] = {name: [] for name in targets}
        for rnd in range(args.rounds):
            for name, (proc, port, tls) in targets.items():
                before = tree_cpu_seconds(proc.pid)
                res = run_h2load(port, connections=args.connections, streams=args.streams,
                                 duration_s=args.duration, cpu=client_cpu, tls=tls)
                cpu_us = (tree_cpu_seconds(proc.pid) - before) * 1e6 / max(res.requests, 1)
                res = H2Result(res.rps, res.mean_ms, res.max_ms, res.requests, res.errors, cpu_us)
                log("round %d %-13s %9.0f req/s  mean %.2f ms  max %.2f ms  errors %d  CPU %.1f us/req",
                    rnd + 1, name, res.rps, res.mean_ms, res.max_ms, res.errors, res.cpu_us)
                runs[name].append(res)
    return runs


def compare_grpc(args: argparse.Namespace) -> dict[str, list[H2Result]]:
    """nginx grpc_pass and fleetgate's GRPC route to one h2c gRPC backend (see the docstring)."""
    ensure_tools({**TOOLS, "h2load": "nghttp2-client"})
    server_cpu, client_cpu = choose_cpus(args)
    with tempfile.TemporaryDirectory(prefix="fleetgate-grpc-") as tmpdir, Processes() as procs:
        tmp = Path(tmpdir)
        tmp.chmod(0o755)  # nginx's workers (not root) read the reply from here
        (tmp / "reply.bin").write_bytes(GRPC_MESSAGE)
        request = tmp / "request.bin"
        request.write_bytes(GRPC_MESSAGE)
        backend, backend_grpc, nginx_plain, nginx_h2c = free_port(), free_port(), free_port(), free_port()
        start_nginx(procs, tmp, "backend", _GRPC_BACKEND.format(host=LOOPBACK, port=backend, grpc_port=backend_grpc,
                                                                dir=tmp), backend, server_cpu, args.start_timeout)
        nginx = start_nginx(procs, tmp, "nginx", _GRPC_PROXY.format(
            host=LOOPBACK, port=nginx_plain, grpc_port=backend_grpc, h2_port=nginx_h2c), nginx_plain, server_cpu,
            args.start_timeout)
        fleet = _write_fleet(tmp / "fleet", hub=[_ingress_class(), _ingress(
            "bench", [(HOST, "backend")], annotations={"nginx.ingress.kubernetes.io/backend-protocol": "GRPC"})],
            clusters={"bench": [_service("backend"), _slice("backend-1", "backend", [LOOPBACK], backend_grpc)]})
        gateway, gateway_port, _ = start_fleetgate(procs, args, fleet, tmp, server_cpu, probe_host=None)
        deadline = time.monotonic() + args.start_timeout  # the route is in the table once a call succeeds
        while True:
            try:
                if run_h2load(gateway_port, connections=1, streams=1, duration_s=1, cpu=client_cpu,
                              grpc=request).requests:
                    break
            except RuntimeError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("no gRPC call through fleetgate succeeded within %.0f s" % args.start_timeout)
            time.sleep(0.2)
        targets = {"nginx": (nginx, nginx_h2c), "fleetgate": (gateway, gateway_port)}
        return _rounds(args, targets, client_cpu, grpc=request)


def _rounds(args: argparse.Namespace, targets: dict[str, tuple[Proc, int]], client_cpu: int | None, *,
            grpc: Path | None = None) -> dict[str, list[H2Result]]:
    """A warm-up per target, then the rounds, each running every target in turn."""
    for name, (_, port) in targets.items():
        log("warm-up %s", name)
        run_h2load(port, connections=args.connections, streams=args.streams, duration_s=2, cpu=client_cpu, grpc=grpc)
    runs: dict[str, list[H2Result]] = {name: [] for name in targets}
    for rnd in range(args.rounds):
        for name, (proc, port) in targets.items():
            before = tree_cpu_seconds(proc.pid)
            res = run_h2load(port, connections=args.connections, streams=args.streams, duration_s=args.duration,
                             cpu=client_cpu, grpc=grpc)
            cpu_us = (tree_cpu_seconds(proc.pid) - before) * 1e6 / max(res.requests, 1)
            res = H2Result(res.rps, res.mean_ms, res.max_ms, res.requests, res.errors, cpu_us)
            log("round %d %-13s %9.0f req/s  mean %.2f ms  max %.2f ms  errors %d  CPU %.1f us/req",
                rnd + 1, name, res.rps, res.mean_ms, res.max_ms, res.errors, res.cpu_us)
            runs[name].append(res)
    return runs


def print_table(args: argparse.Namespace, runs: dict[str, list[H2Result]]) -> None:
    if args.grpc:
        what = "gRPC unary, nginx grpc_pass vs backend-protocol GRPC, h2c both ways"
    else:
        what = "h2c, prior knowledge" + ("; -tls: h2 over TLS, ALPN" if args.tls else "")
    print("h2load -c%d -m%d -D%ds (%s), medians of %d rotated rounds"
          % (args.connections, args.streams, args.duration, what, args.rounds))
    print("%-13s %10s %9s %9s %7s %9s" % ("target", "req/s", "mean ms", "max ms", "errors", "CPU/req"))
    for name, results in runs.items():
        print("%-13s %10.0f %9.2f %9.2f %7d %7.1fus" % (
            name, median([r.rps for r in results]), median([r.mean_ms for r in results]),
            median([r.max_ms for r in results]), sum(r.errors for r in results),
            median([r.cpu_us for r in results])))
    for suffix, what in (("", "gRPC unary" if args.grpc else "h2c"), ("-tls", "h2 over TLS")):
        if "nginx" + suffix in runs:
            paired = median([f.rps / n.rps for n, f in zip(runs["nginx" + suffix], runs["fleetgate" + suffix])])
            print("fleetgate/nginx %s: %.2fx req/s (median of per-round ratios)" % (what, paired))


def library_floor(n: int = 3000) -> float:
    """CPU microseconds per request spent in the h2 library alone (see the docstring)."""
    import time

    import h2.config
    import h2.connection
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    client.increment_flow_control_window(2 ** 30)
    server = h2.connection.H2Connection(h2.config.H2Configuration(
        client_side=False, header_encoding=None, validate_inbound_headers=True,
        validate_outbound_headers=False, normalize_outbound_headers=False))
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    server.data_to_send()
    request = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", HOST.encode()),
               (b"user-agent", b"h2load nghttp2/1.52.0")]
    response = [(b":status", b"200"), (b"server", b"nginx/1.22.1"), (b"date", b"Sun, 22 Nov 2026 00:00:00 GMT"),
                (b"content-type", b"text/plain"), (b"content-length", b"6"), (b"x-fleetgate-cluster", b"bench")]
    frames = []
    for _ in range(n):
        client.send_headers(client.get_next_available_stream_id(), request, end_stream=True)
        frames.append(client.data_to_send())
    start = time.process_time()
    for i, data in enumerate(frames):
        server.receive_data(data)
        sid = 2 * i + 1
        server.send_headers(sid, response)
        server.send_data(sid, b"hello\n")
        server.end_stream(sid)
        server.data_to_send()
    return (time.process_time() - start) * 1e6 / n


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--streams", type=int, default=10, help="concurrent streams per connection")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--server-cpu", type=int, default=None)
    p.add_argument("--client-cpu", type=int, default=None)
    p.add_argument("--no-pin", action="store_true")
    p.add_argument("--start-timeout", type=float, default=30.0)
    p.add_argument("--fleetgate", default=None, help="command that runs fleetgate (default: the venv's)")
    p.add_argument("--gateway-args", default="")
    p.add_argument("--gateway-log-level", default="warning")
    p.add_argument("--library-floor", action="store_true", help="only measure the h2 library's own CPU per request")
    p.add_argument("--tls", action="store_true", help="h2 over TLS rows too (ALPN h2, one self-signed EC P-256 "
                                                      "certificate for both proxies)")
    p.add_argument("--grpc", action="store_true", help="gRPC unary calls: nginx grpc_pass vs a GRPC route")
    args = p.parse_args(argv)
    if args.grpc and args.tls:
        p.error("--grpc goes with h2c only (not --tls)")
    if args.library_floor:
        print("%.1f us CPU per request in the h2 library alone (server side, no sockets)" % library_floor())
        return 0
    interrupt_on_signals()
    try:
        print_table(args, compare_grpc(args) if args.grpc else compare(args))
    except KeyboardInterrupt:
        return 130
    except RuntimeError as exc:
        log("failed: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
