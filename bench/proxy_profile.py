"""Whole-process cost per proxied request, fleetgate beside nginx, under the same wrk load.

bench/h1_path_cpu.py counts the request path with the sockets taken out; this counts the
proxy process as it runs behind real sockets (issue 13: where the rest of the gap lives):

- `--syscalls`: the proxy's system calls per request by kind (`perf stat` on the
  syscalls:sys_enter_* tracepoints of every thread of the proxy process, low overhead),
  over one bounded wrk run after a warm-up.
- `--callgrind`: the proxy's user-space instructions per request, by object (libpython,
  uvloop, our compiled modules, libc, libssl/libcrypto, nginx) and the top functions.
  The proxy runs under `valgrind --tool=callgrind --instr-atstart=no`; instrumentation
  is switched on (callgrind_control -i on) only for the measured wrk run.

Both proxies have the same nginx backend (one worker) and the same wrk shape (-t1, -c N,
-d S); nginx runs one worker (`master_process off` under callgrind). Requests are wrk's
count. Servers on CPU 0, wrk on CPU 1 (as proxy_vs_nginx.py).

    /work/venv/bin/python bench/proxy_profile.py --syscalls [--tls] [--connections 50] [--duration 5]
    /work/venv/bin/python bench/proxy_profile.py --callgrind [--tls] [--connections 50] [--duration 10]

`--policies` adds the target `policies`: fleetgate with proxy_vs_nginx.py --policies' route
(canary 10 % + cluster weights 70/30 + 10 % mirror to a `shadow` nginx, checked in
/debug/routes), beside plain fleetgate, so the two are measured in one run (issue 13: the
policies case costs more per request over sockets than callgrind without sockets shows).
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import (LOOPBACK, Proc, Processes, WrkResult, cpus, ensure_tools, find_binary,  # noqa: E402
                   descendants, free_port, log, pinned, run_wrk, tree_cpu_seconds, wait_http)
from _proxy_setup import (HOST, POLICIES, POLICY_HOST2, TOOLS, _BACKEND, _BACKEND_TWO,  # noqa: E402
                          _NGINX_TLS, _PROXY, bench_fleet, check_policies, fleetgate_cmd, nginx_conf,
                          policies_fleet, start_fleetgate, start_nginx)

WARMUP_S = 2
WRK_HEADERS = ["Host: %s" % HOST]  # as proxy_vs_nginx.py: the route's host


def _valgrind(out: Path) -> list[str]:
    return ["valgrind", "--tool=callgrind", "--trace-children=no", "--instr-atstart=no",
            "--callgrind-out-file=%s" % out]


def start_proxies(procs: Processes, args: argparse.Namespace, tmp: Path, cpu: int | None,
                  target: str, callgrind_out: Path | None) -> tuple[Proc, str]:
    """The backend, then `target` (nginx or fleetgate) in front of it; the URL wrk loads."""
    backend_port = free_port()
    if target == "policies":  # member cluster zone-b's endpoint is the backend's second address
        backend = _BACKEND_TWO.format(host=LOOPBACK, host2=POLICY_HOST2, port=backend_port)
    else:
        backend = _BACKEND.format(host=LOOPBACK, port=backend_port)
    start_nginx(procs, tmp, "backend", backend, backend_port, cpu, args.start_timeout)
    tls_pem = None
    if args.tls:
        from gateway.tls import self_signed
        tls_pem = self_signed(HOST)
        (tmp / "tls.crt").write_bytes(tls_pem[0])
        (tmp / "tls.key").write_bytes(tls_pem[1])
    tls_port = free_port()
    scheme_port: tuple[str, int]
    if target == "nginx":
        port = free_port()
        tls = _NGINX_TLS.format(host=LOOPBACK, port=tls_port, dir=tmp) if args.tls else ""
        body = _PROXY.format(host=LOOPBACK, port=port, backend_port=backend_port, tls=tls, log="")
        if callgrind_out is None:
            proc = start_nginx(procs, tmp, "nginx", body, port, cpu, args.start_timeout)
        else:
            conf = nginx_conf(tmp, "nginx", body)
            nginx = find_binary("nginx") or "nginx"
            proc = procs.start("nginx", pinned(_valgrind(callgrind_out) + [
                nginx, "-p", str(tmp), "-c", str(conf), "-g", "master_process off;"], cpu),
                log_path=tmp / "nginx.log")
            wait_http(proc, LOOPBACK, port, host_header=HOST, deadline_s=args.start_timeout)
        scheme_port = ("https", tls_port) if args.tls else ("http", port)
    else:
        if target == "policies":
            shadow_port = None
            if "mirror" in POLICIES:  # the mirror's destination, on the servers' CPU
                shadow_port = free_port()
                start_nginx(procs, tmp, "shadow", _BACKEND.format(host=LOOPBACK, port=shadow_port),
                            shadow_port, cpu, args.start_timeout)
            fleet = policies_fleet(tmp / "fleet", backend_port, shadow_port)
        else:
            fleet = bench_fleet(tmp / "fleet", backend_port, tls=tls_pem)
        gw = argparse.Namespace(**vars(args))
        if args.tls:
            gw.gateway_args += " --https %s:%d" % (LOOPBACK, tls_port)
        if callgrind_out is not None:
            base, _ = fleetgate_cmd(args.fleetgate)
            gw.fleetgate = shlex.join(_valgrind(callgrind_out) + base)
        proc, port, admin_port = start_fleetgate(procs, gw, fleet, tmp, cpu, probe_host=HOST, name=target)
        if target == "policies":
            log("policies in force: %s", check_policies(admin_port, POLICIES))
        scheme_port = ("https", tls_port) if args.tls else ("http", port)
    return proc, "%s://%s:%d/" % (scheme_port[0], LOOPBACK, scheme_port[1])


def negotiated(url: str) -> str:
    """The TLS version and cipher a default OpenSSL client (as wrk) gets from the proxy."""
    hostport = url.split("//", 1)[1].rstrip("/")
    if find_binary("openssl") is None:
        return "unknown (no openssl command)"
    out = subprocess.run(["openssl", "s_client", "-connect", hostport, "-servername", HOST, "-brief"],
                         input="", capture_output=True, text=True, timeout=30)
    text = out.stdout + out.stderr
    proto = re.search(r"Protocol version: (\S+)", text)
    cipher = re.search(r"Ciphersuite: (\S+)", text)
    return "%s %s" % (proto.group(1) if proto else "?", cipher.group(1) if cipher else "?")


# ---------------------------------------------------------------- system calls

_PERF_LINE = re.compile(r"^\s*([\d,]+)\s+syscalls:sys_enter_(\w+)", re.M)


def count_syscalls(proc: Proc, url: str, args: argparse.Namespace, client_cpu: int | None
                   ) -> tuple[WrkResult, dict[str, int], float]:
    """perf stat on the proxy's syscall tracepoints during one wrk run; also the proxy's
    CPU seconds (user + system) over that run: its CPU per request, which wrk's req/s on a
    shared machine hides (the server CPU also runs the backends, and other load moves)."""
    run_wrk(url, connections=args.connections, duration_s=WARMUP_S, cpu=client_cpu,
            headers=WRK_HEADERS)
    pids = descendants(proc.pid)  # the proxy (taskset execs it) and nginx's worker
    perf = subprocess.Popen(["perf", "stat", "-e", "syscalls:sys_enter_*", "-p", ",".join(map(str, pids))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)  # perf attaches to every thread
        cpu_before = tree_cpu_seconds(proc.pid)
        res = run_wrk(url, connections=args.connections, duration_s=args.duration, cpu=client_cpu,
                      headers=WRK_HEADERS)
        cpu = tree_cpu_seconds(proc.pid) - cpu_before
    finally:
        perf.send_signal(signal.SIGINT)
        _, err = perf.communicate(timeout=60)
    if args.raw:
        print(err, file=sys.stderr)
    counts = {name: int(n.replace(",", "")) for n, name in _PERF_LINE.findall(err)}
    return res, {k: v for k, v in counts.items() if v}, cpu


# ---------------------------------------------------------------- instructions

_ANNOTATE_LINE = re.compile(r"^\s*([\d,]+)\s+(?:\([^)]*\)\s+)?(\S.*?)(?:\s+\[(.+)\])?\s*$")


# a function each proxy calls once per proxied request: the request count of an
# instrumented window is its call count (wrk's own count includes the connections' start)
MARKERS = {"nginx": "ngx_http_create_request", "fleetgate": "DownstreamCore__on_head",
           "policies": "DownstreamCore__on_head"}


def profile_callgrind(proc: Proc, url: str, out: Path, args: argparse.Namespace, client_cpu: int | None
                      ) -> tuple[WrkResult, int, int, dict[str, int], list[tuple[int, str]]]:
    """Instrument a window of a wrk run whose connections are open already (TLS handshakes
    done: kept-alive connections, as the socket bench measures them); the proxy's Ir in the
    window in total, by object and top functions, and the requests served in it."""
    run_wrk(url, connections=args.connections, duration_s=WARMUP_S, cpu=client_cpu, headers=WRK_HEADERS)
    pid = str(_valgrind_pid(proc))
    done: list[WrkResult] = []
    wrk = threading.Thread(target=lambda: done.append(run_wrk(
        url, connections=args.connections, duration_s=args.settle + args.duration + 3, cpu=client_cpu,
        headers=WRK_HEADERS)))
    wrk.start()
    time.sleep(args.settle)  # every connection open (and its handshake done) before the window
    subprocess.run(["callgrind_control", "-i", "on", pid], check=True, capture_output=True, timeout=120)
    time.sleep(args.duration)
    subprocess.run(["callgrind_control", "-i", "off", pid], check=True, capture_output=True, timeout=120)
    wrk.join(timeout=args.settle + args.duration + 60)
    subprocess.run(["callgrind_control", "-d", pid], check=True, capture_output=True, timeout=300)
    dumps = sorted(out.parent.glob(out.name + "*"), key=lambda p: p.stat().st_mtime)
    if args.keep_out:
        Path(args.keep_out).mkdir(parents=True, exist_ok=True)
        shutil.copy(dumps[-1], Path(args.keep_out) / ("callgrind.%s%s.out" % (proc.name, "-tls" if args.tls else "")))
    requests, total, by_obj, top = analyse(dumps[-1], proc.name)
    by_obj = dict(by_obj, **{"split: " + k: v for k, v in split(dumps[-1]).items()}) if proc.name != "nginx" else by_obj
    return done[0] if done else WrkResult(0.0, 0.0, 0.0, 0, 0, 0), requests, total, by_obj, top


def analyse(dump: Path, target: str) -> tuple[int, int, dict[str, int], list[tuple[int, str]]]:
    """A callgrind dump's requests (MARKERS' calls), total Ir, Ir by object, functions by self Ir."""
    tree = subprocess.run(["callgrind_annotate", "--auto=no", "--tree=caller", "--threshold=100", str(dump)],
                          capture_output=True, text=True, check=True, timeout=300).stdout
    requests = _calls(tree, MARKERS[target])
    ann = subprocess.run(["callgrind_annotate", "--auto=no", "--threshold=99.9", str(dump)], capture_output=True,
                         text=True, check=True, timeout=300).stdout
    total = 0
    by_obj: dict[str, int] = defaultdict(int)
    top: list[tuple[int, str]] = []
    body = ann.split("file:function", 1)[-1]
    for line in ann.splitlines():
        if line.rstrip().endswith("PROGRAM TOTALS"):
            total = int(line.split()[0].replace(",", ""))
    for line in body.splitlines()[1:]:
        m = _ANNOTATE_LINE.match(line)
        if not m or not line.strip() or line.lstrip().startswith("-"):
            continue
        ir = int(m.group(1).replace(",", ""))
        obj = os.path.basename(m.group(3) or "?")
        by_obj[_object_group(obj)] += ir
        top.append((ir, "%s [%s]" % (m.group(2), obj)))
    return requests, total, dict(by_obj), top


# Where a fleetgate request's instructions go, by inclusive cost of the event loop's entry
# points (uvloop/libuv function names). Time-driven work (timers and call_soon callbacks:
# the timeout sweeper's 100 ms tick, the fleet's polling...) costs the same per second at
# any load, so per request it shrinks as the rate grows: under callgrind (~1k req/s) it is
# ~2-3k a request, at socket-bench rates ~0.1k. "per request path" leaves it out.
SPLIT = (
    ("socket callbacks (reads: libuv, uvloop, the protocols)", ("uv__stream_io",)),
    ("  of which the protocols' data_received", ("run_in_context1",)),
    ("  of which re-taking the GIL (PyGILState_Ensure/Release)", ("PyGILState_Ensure", "PyGILState_Release")),
    ("  of which uvloop's read-buffer callback", ("__loop_alloc_buffer",)),
    ("transport.write through uvloop (all callers)", ("UVStream_5write",)),
    ("time-driven: call_soon callbacks (uv__run_idle)", ("uv__run_idle",)),
    ("time-driven: timers (uv__run_timers)", ("uv__run_timers",)),
)
_INCLUSIVE_LINE = re.compile(r"^\s*([\d,]+)\s+\([^)]*\)\s+(\S+)")


def split(dump: Path) -> dict[str, int]:
    """SPLIT's rows: the inclusive instructions of their functions in the dump."""
    ann = subprocess.run(["callgrind_annotate", "--auto=no", "--inclusive=yes", "--threshold=100", str(dump)],
                         capture_output=True, text=True, check=True, timeout=300).stdout
    inclusive: dict[str, int] = {}
    for line in ann.splitlines():
        m = _INCLUSIVE_LINE.match(line)
        if m:
            name = m.group(2).rsplit(":", 1)[-1]
            inclusive[name] = max(inclusive.get(name, 0), int(m.group(1).replace(",", "")))
    rows: dict[str, int] = {}
    for label, names in SPLIT:
        rows[label] = sum(v for fn, v in inclusive.items() if any(fn.endswith(n) for n in names))
    return rows


def _calls(tree: str, function: str) -> int:
    """How often `function` was called: the sum of its callers' counts in a --tree=caller listing."""
    n = 0
    callers: list[int] = []
    for line in tree.splitlines():
        if " < " in line:
            m = re.search(r"\(([\d,]+)x\)", line)
            if m:
                callers.append(int(m.group(1).replace(",", "")))
        elif " *  " in line:
            if function in line.split(" *  ", 1)[1]:
                n += sum(callers)
            callers = []
        elif not line.strip():
            callers = []
    return n


def _object_group(obj: str) -> str:
    for key, name in (("libpython", "CPython"), ("python3", "CPython"), ("loop.cpython", "uvloop (+libuv)"),
                      ("_core.cpython", "fleetgate exchange core"), ("_exchange.cpython", "fleetgate exchange core"),
                      ("_route.cpython", "fleetgate exchange core"), ("_http1", "fleetgate codec"),
                      ("libssl", "OpenSSL libssl"), ("libcrypto", "OpenSSL libcrypto"),
                      ("_ssl.cpython", "CPython _ssl"), ("libc.so", "libc"), ("nginx", "nginx"),
                      ("ld-linux", "ld.so"), ("vgpreload", "valgrind preload")):
        if key in obj:
            return name
    return obj


def _valgrind_pid(proc: Proc) -> int:
    """The valgrind process is the leader itself (taskset execs it)."""
    return proc.pid


# ---------------------------------------------------------------- entry

def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.annotate:
        kept: dict[str, Any] = {}
        for target in args.targets:
            dump = Path(args.annotate) / ("callgrind.%s%s.out" % (target, "-tls" if args.tls else ""))
            requests, total, by_obj, top = analyse(dump, target)
            if target != "nginx":
                by_obj.update({"split: " + k: v for k, v in split(dump).items()})
            kept[target] = {"requests": requests, "rps": 0.0, "total": total, "by_object": by_obj,
                           "top": top[:args.top]}
        return kept
    ensure_tools(TOOLS)
    have = cpus()
    server_cpu, client_cpu = (have[0], have[1]) if len(have) >= 2 else (None, None)
    results: dict[str, Any] = {}
    for target in args.targets:
        with tempfile.TemporaryDirectory(prefix="fleetgate-profile-") as t, Processes() as procs:
            tmp = Path(t)
            out = tmp / "callgrind.out" if args.callgrind else None
            proc, url = start_proxies(procs, args, tmp, server_cpu, target, out)
            if args.tls:
                log("%s negotiates %s", target, negotiated(url))
            if args.callgrind:
                assert out is not None
                res, requests, total, by_obj, top = profile_callgrind(proc, url, out, args, client_cpu)
                results[target] = {"requests": requests, "rps": res.rps, "total": total,
                                   "by_object": by_obj, "top": top[:args.top]}
            else:
                res, counts, cpu = count_syscalls(proc, url, args, client_cpu)
                results[target] = {"requests": res.requests, "rps": res.rps, "syscalls": counts,
                                   "cpu_us": cpu * 1e6 / max(res.requests, 1)}
            log("%s: %d requests measured (wrk: %.0f req/s)", target, results[target]["requests"], res.rps)
    return results


def print_report(args: argparse.Namespace, results: dict[str, Any]) -> None:
    shape = "wrk -t1 -c%d -d%ds %s" % (args.connections, args.duration, "HTTPS" if args.tls else "plain HTTP")
    targets = list(results)
    if args.syscalls:
        print("system calls per request (%s; perf stat on the proxy process)" % shape)
        names = sorted({k for r in results.values() for k in r["syscalls"]},
                       key=lambda k: -max(r["syscalls"].get(k, 0) / max(r["requests"], 1) for r in results.values()))
        print("%-22s" % "syscall" + "".join("%12s" % t for t in targets))
        for name in names:
            per = [results[t]["syscalls"].get(name, 0) / max(results[t]["requests"], 1) for t in targets]
            if max(per) >= 0.005:
                print("%-22s" % name + "".join("%12.3f" % v for v in per))
        print("%-22s" % "total" + "".join("%12.3f" % (sum(results[t]["syscalls"].values())
                                                       / max(results[t]["requests"], 1)) for t in targets))
        print("%-22s" % "proxy CPU us/request" + "".join("%12.1f" % results[t]["cpu_us"] for t in targets))
        print("%-22s" % "wrk req/s" + "".join("%12.0f" % results[t]["rps"] for t in targets))
        return
    print("user-space instructions per request (%s; callgrind, measured run only)" % shape)
    objs = sorted({k for r in results.values() for k in r["by_object"] if not k.startswith("split: ")},
                  key=lambda k: -max(r["by_object"].get(k, 0) / max(r["requests"], 1) for r in results.values()))
    print("%-28s" % "object" + "".join("%12s" % t for t in targets))
    for obj in objs:
        per = [results[t]["by_object"].get(obj, 0) / max(results[t]["requests"], 1) for t in targets]
        if max(per) >= 50:
            print("%-28s" % obj[:28] + "".join("%12.0f" % v for v in per))
    print("%-28s" % "total" + "".join("%12.0f" % (results[t]["total"] / max(results[t]["requests"], 1))
                                      for t in targets))
    for t in targets:
        rows = {k[7:]: v for k, v in results[t]["by_object"].items() if k.startswith("split: ")}
        if not rows:
            continue
        n = max(results[t]["requests"], 1)
        print("\n%s: where a request's instructions go (inclusive, per request)" % t)
        for label, _ in SPLIT:
            print("%10.0f  %s" % (rows.get(label, 0) / n, label))
        timed = rows.get(SPLIT[5][0], 0) + rows.get(SPLIT[6][0], 0)
        print("%10.0f  per request path (the total without the time-driven rows)" % ((results[t]["total"] - timed) / n))
    for t in targets:
        n = max(results[t]["requests"], 1)
        print("\n%s: top functions (instructions per request, self)" % t)
        for ir, fn in results[t]["top"]:
            print("%10.0f  %s" % (ir / n, fn[:150]))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--syscalls", action="store_true", help="system calls per request (perf stat)")
    mode.add_argument("--callgrind", action="store_true", help="instructions per request (callgrind)")
    p.add_argument("--tls", action="store_true", help="wrk over HTTPS (kept-alive connections)")
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--duration", type=int, default=5, help="seconds of the measured wrk run")
    p.add_argument("--targets", default="nginx,fleetgate")
    p.add_argument("--policies", action="store_true",
                   help="add the target `policies`: fleetgate with canary + cluster weights + 10%% mirror")
    p.add_argument("--settle", type=float, default=5.0,
                   help="seconds of the wrk run before the instrumented window (--callgrind)")
    p.add_argument("--top", type=int, default=25, help="functions listed per proxy (--callgrind)")
    p.add_argument("--fleetgate", help="command that runs fleetgate (default: the venv's)")
    p.add_argument("--gateway-args", default="")
    p.add_argument("--gateway-log-level", default="warning")
    p.add_argument("--keep-out", metavar="DIR", help="keep the callgrind dumps there (--callgrind)")
    p.add_argument("--annotate", metavar="DIR", help="only report on dumps kept by --keep-out (--callgrind)")
    p.add_argument("--raw", action="store_true", help="print perf's own output too")
    p.add_argument("--start-timeout", type=float, default=120.0)
    args = p.parse_args(argv)
    args.targets = [t for t in args.targets.split(",") if t]
    if args.policies and "policies" not in args.targets:
        args.targets.append("policies")
    if set(args.targets) - {"nginx", "fleetgate", "policies"} or args.duration < 1 or args.connections < 1:
        p.error("--targets takes nginx,fleetgate,policies; --duration and --connections positive")
    if args.tls and "policies" in args.targets:
        p.error("--tls goes with the plain route only (not --policies)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    need = ["perf"] if args.syscalls else ["valgrind", "callgrind_control", "callgrind_annotate"]
    missing = [b for b in need if find_binary(b) is None]
    if missing:
        log("missing %s (apt-get install %s)", " ".join(missing),
            "linux-perf" if args.syscalls else "valgrind")
        return 1
    print_report(args, run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
