"""Failover drill: one member cluster dies (or hangs) under steady load; fleetgate vs nginx.

Two member clusters of loopback "pods" (one single-process nginx per address:
127.0.70.x = zone-a, 127.0.71.x = zone-b, same port). A paced client of our own sends
GETs at a fixed rate and records every request (scheduled/sent/done time, status,
x-fleetgate-cluster or nginx's $upstream_addr). After `--before` seconds every pod of
zone-a is SIGKILLed (`kill`) or SIGSTOPped (`hang`: the kernel still accepts connections,
nothing answers, so only timeouts detect it). Each scenario runs once per proxy, each on
fresh pods and a fresh proxy, in one invocation (issue 3 item 9).

    /work/venv/bin/python bench/failover_drill.py [--scenarios kill,hang] [--proxies fleetgate,nginx]
        [--rate 300] [--before 3] [--after 4] [--timeout 1] [--window 2] [--json FILE]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import (LOOPBACK, interrupt_on_signals, Proc, Processes, cpus, ensure_tools, find_binary, free_port,  # noqa: E402
                   log, pinned, wait_http)
from proxy_vs_nginx import (_ingress, _ingress_class, _service, _slice,  # noqa: E402
                            _write_fleet, fleetgate_cmd, nginx_conf, start_fleetgate)

HOST = "drill.local"
DEAD, ALIVE = "zone-a", "zone-b"
SUBNET = {DEAD: "127.0.70", ALIVE: "127.0.71"}
TOOLS = {"nginx": "nginx-light"}
PREFIX = "nginx.ingress.kubernetes.io/"

# ---------------------------------------------------------------- servers

_POD = """\
    server {{
        listen {address}:{port} backlog=511;
        location / {{
            add_header X-Pod {address};
            return 200 "pod {address}\\n";
        }}
    }}"""

_PROXY = """\
    upstream pods {{
{servers}
        keepalive 256;
        keepalive_requests 10000000;
        keepalive_timeout 300s;
    }}
    server {{
        listen {host}:{port} backlog=4096;
        location / {{
            proxy_pass http://pods;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_next_upstream error timeout;
            proxy_next_upstream_tries {tries};
            proxy_connect_timeout {timeout_ms}ms;
            proxy_read_timeout {timeout_ms}ms;
            proxy_send_timeout {timeout_ms}ms;
            add_header X-Upstream $upstream_addr always;
            add_header X-Upstream-Status $upstream_status always;
        }}
    }}"""


def pod_addresses(pods: int) -> dict[str, list[str]]:
    return {cluster: ["%s.%d" % (net, i + 1) for i in range(pods)] for cluster, net in SUBNET.items()}


def start_pod(procs: Processes, tmp: Path, address: str, port: int, cpu: int | None, deadline_s: float) -> Proc:
    """A single-process nginx (master_process off), so SIGKILL/SIGSTOP hit the server itself."""
    name = "pod-%s" % address
    conf = nginx_conf(tmp, name, _POD.format(address=address, port=port))
    conf.write_text("master_process off;\n" + conf.read_text())
    proc = procs.start(name, pinned([find_binary("nginx") or "nginx", "-p", str(tmp), "-c", str(conf)], cpu),
                       log_path=tmp / ("%s.log" % name))
    wait_http(proc, address, port, deadline_s=deadline_s)
    return proc


def start_nginx_proxy(procs: Processes, tmp: Path, addresses: dict[str, list[str]], pod_port: int,
                      args: argparse.Namespace, cpu: int | None) -> tuple[Proc, int]:
    """nginx configured as the gateway is: one upstream with all pods, max_fails=1
    fail_timeout=30s, next upstream on error and timeout, the same timeouts and tries.
    Pods are listed interleaved across clusters (a, b, a, b...): the order most favourable
    to nginx, whose retry takes the next peer in round-robin order."""
    order = [a for pair in zip(*addresses.values()) for a in pair]
    servers = "\n".join("        server %s:%d max_fails=1 fail_timeout=30s;" % (a, pod_port) for a in order)
    port = free_port()
    body = _PROXY.format(servers=servers, host=LOOPBACK, port=port, tries=args.tries,
                         timeout_ms=round(args.timeout * 1000))
    nginx_conf(tmp, "nginx", body)
    proc = procs.start("nginx", pinned([find_binary("nginx") or "nginx", "-p", str(tmp), "-c",
                                        str(tmp / "nginx.conf")], cpu), log_path=tmp / "nginx.log")
    wait_http(proc, LOOPBACK, port, host_header=HOST, deadline_s=args.start_timeout)
    return proc, port


def drill_fleet(root: Path, addresses: dict[str, list[str]], pod_port: int, args: argparse.Namespace) -> Path:
    """Hub: Ingress drill.local / -> Service `app` with the retry/timeout annotations;
    member clusters zone-a and zone-b: Service `app` + an EndpointSlice of their pods."""
    ingress = _ingress("drill", [(HOST, "app")], annotations={
        PREFIX + "proxy-next-upstream": "error timeout",
        PREFIX + "proxy-next-upstream-tries": str(args.tries),
        PREFIX + "proxy-connect-timeout": "%gs" % args.timeout,
        PREFIX + "proxy-read-timeout": "%gs" % args.timeout,
        PREFIX + "proxy-send-timeout": "%gs" % args.timeout,
    })
    clusters = {c: [_service("app"), _slice("app-%s" % c, "app", addrs, pod_port)] for c, addrs in addresses.items()}
    return _write_fleet(root, [_ingress_class(), ingress], clusters)


# ---------------------------------------------------------------- the load client

@dataclass(slots=True)
class Sample:
    """One request as the client saw it; times are time.monotonic() seconds."""
    sched: float
    sent: float = 0.0
    done: float = 0.0
    status: int = 0  # 0: transport error
    error: str = ""
    cluster: str = ""  # x-fleetgate-cluster
    reason: str = ""  # x-fleetgate-reason (answers the gateway generated)
    upstream: str = ""  # nginx $upstream_addr: every attempt, comma-separated
    upstream_status: str = ""  # nginx $upstream_status, one per attempt

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def latency(self) -> float:
        """From the scheduled send time, so client-side queueing counts (no coordinated omission)."""
        return self.done - self.sched


_WANTED = {b"x-fleetgate-cluster": "cluster", b"x-fleetgate-reason": "reason",
           b"x-upstream": "upstream", b"x-upstream-status": "upstream_status"}


class LoadClient:
    """Open-loop HTTP/1.1 client: request i is due at t0 + i/rate whatever happened before,
    on an idle keep-alive connection or a new one (at most `max_conns`)."""

    def __init__(self, host: str, port: int, host_header: str, *, max_conns: int, timeout: float,
                 method: str = "GET") -> None:
        self.host, self.port = host, port
        body = b'{"drill": true}' if method in ("POST", "PUT", "PATCH") else b""
        self.request = ("%s / HTTP/1.1\r\nHost: %s\r\nUser-Agent: fleetgate-drill\r\n%s\r\n"
                        % (method, host_header, "Content-Length: %d\r\n" % len(body) if body else "")
                        ).encode() + body
        self.head_only = method == "HEAD"
        self.slots = asyncio.Semaphore(max_conns)
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.timeout = timeout
        self.samples: list[Sample] = []
        self.open = 0

    async def run(self, *, rate: float, duration: float) -> list[Sample]:
        t0 = time.monotonic()
        tasks: set[asyncio.Task[None]] = set()
        for i in range(int(rate * duration)):
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(self._one(Sample(sched=t0 + i / rate)))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks, timeout=self.timeout + 2)
        for task in tasks:
            task.cancel()
        self.close()
        return self.samples

    async def _one(self, s: Sample) -> None:
        self.samples.append(s)
        async with self.slots:
            s.sent = time.monotonic()
            conn = self.idle.pop() if self.idle else None
            try:
                await asyncio.wait_for(self._exchange(s, conn), self.timeout)
            except asyncio.TimeoutError:
                s.status, s.error = 0, "client-timeout"
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
                s.status, s.error = 0, "%s%s" % (type(exc).__name__, " on reused connection" if conn else "")
            if not s.done:
                s.done = time.monotonic()

    async def _exchange(self, s: Sample, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None) -> None:
        if conn is None:
            conn = await asyncio.open_connection(self.host, self.port)
            self.open += 1
        reader, writer = conn
        keep = False
        try:
            writer.write(self.request)
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            status = int(lines[0].split(b" ", 2)[1])
            length, keep = 0, True
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name, value = name.strip().lower(), value.strip()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection" and value.lower() == b"close":
                    keep = False
                elif name in _WANTED:
                    setattr(s, _WANTED[name], value.decode("latin-1"))
            if length and not self.head_only:
                await reader.readexactly(length)
            s.status, s.done = status, time.monotonic()
        finally:
            if keep:
                self.idle.append(conn)
            else:
                writer.close()
                self.open -= 1

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


# ---------------------------------------------------------------- watching the gateway

_RETRY = re.compile(r'^fleetgate_upstream_rq_retry_total\{[^}]*cluster="([^"]*)"[^}]*\}\s+([0-9.e+]+)', re.M)


@dataclass
class GatewayWatch:
    """What the gateway's admin API said while the drill ran: polled every `interval`, and
    every `fine` seconds from just before the failure to `fine_for` seconds after it."""
    interval: float
    fine: float
    fine_for: float
    retries: list[tuple[float, float, float]] = field(default_factory=list)  # (sent, got, retry total)
    dead_down: list[tuple[float, int]] = field(default_factory=list)  # (got, dead endpoints not healthy)
    retries_by_cluster: dict[str, float] = field(default_factory=dict)  # at the end: by retry target

    async def poll(self, admin_port: int, fail_at: float, stop: asyncio.Event) -> None:
        base = "http://%s:%d" % (LOOPBACK, admin_port)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            while not stop.is_set():
                try:
                    sent = time.monotonic()
                    async with http.get(base + "/metrics") as r:
                        text = await r.text()
                    by_cluster = {c: float(v) for c, v in _RETRY.findall(text)}
                    self.retries.append((sent, time.monotonic(), sum(by_cluster.values())))
                    self.retries_by_cluster = by_cluster
                    async with http.get(base + "/debug/routes") as r:
                        routes = await r.json()
                    self.dead_down.append((time.monotonic(), _dead_down(routes)))
                except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
                    log("admin poll failed: %s", exc)
                now = time.monotonic()
                fine = fail_at - 2 * self.interval <= now <= fail_at + self.fine_for
                try:
                    await asyncio.wait_for(stop.wait(), self.fine if fine else self.interval)
                except asyncio.TimeoutError:
                    pass


def _dead_down(routes: dict[str, Any]) -> int:
    down = set()
    for r in routes.get("routes", []):
        for c in ((r.get("backend") or {}).get("clusters") or []):
            if c.get("cluster") == DEAD:
                down |= {e["address"] for e in c.get("endpoints", []) if not e.get("healthy", True)}
    return len(down)


# ---------------------------------------------------------------- one run

@dataclass
class Run:
    proxy: str
    scenario: str
    fail_at: float
    start: float
    samples: list[Sample]
    watch: GatewayWatch | None
    pods_dead: int


async def drive(port: int, pods: list[Proc], scenario: str, args: argparse.Namespace,
                admin_port: int | None) -> tuple[float, float, list[Sample], GatewayWatch | None]:
    """Load for warmup+before+after seconds; fail every pod of zone-a after warmup+before."""
    client = LoadClient(LOOPBACK, port, HOST, max_conns=args.max_conns, timeout=args.client_timeout,
                        method=args.method)
    stop = asyncio.Event()
    start = time.monotonic()
    fail_at = start + args.warmup + args.before
    watch = poller = None
    if admin_port is not None:
        watch = GatewayWatch(args.poll_interval, args.fine_poll_interval, args.fine_poll_for)
        poller = asyncio.create_task(watch.poll(admin_port, fail_at, stop))
    sig = signal.SIGKILL if scenario == "kill" else signal.SIGSTOP

    async def fail() -> float:
        await asyncio.sleep(max(0.0, fail_at - time.monotonic()))
        at = time.monotonic()
        for pod in pods:
            os.kill(pod.pid, sig)
        return at

    failer = asyncio.create_task(fail())
    samples = await client.run(rate=args.rate, duration=args.warmup + args.before + args.after)
    at = await failer
    stop.set()
    if poller is not None:
        await poller
    return start, at, samples, watch


def run_one(proxy: str, scenario: str, args: argparse.Namespace, tmp: Path, server_cpu: int | None,
            client_cpu: int | None) -> Run:
    addresses = pod_addresses(args.pods)
    pod_port = free_port(SUBNET[DEAD] + ".1")
    with Processes() as procs:
        pods = {c: [start_pod(procs, tmp, a, pod_port, server_cpu, args.start_timeout) for a in addrs]
                for c, addrs in addresses.items()}
        admin_port: int | None = None
        if proxy == "nginx":
            _, port = start_nginx_proxy(procs, tmp, addresses, pod_port, args, server_cpu)
        else:
            fleet = drill_fleet(tmp / "fleet", addresses, pod_port, args)
            _, port, admin_port = start_fleetgate(procs, args, fleet, tmp, server_cpu, probe_host=HOST)
        log("%s/%s: %d pods per cluster on port %d, %d req/s for %.0f s, %s at +%.1f s",
            proxy, scenario, args.pods, pod_port, args.rate, args.warmup + args.before + args.after,
            "SIGKILL" if scenario == "kill" else "SIGSTOP", args.warmup + args.before)
        own = os.sched_getaffinity(0)
        if client_cpu is not None:
            os.sched_setaffinity(0, {client_cpu})
        try:
            start, fail_at, samples, watch = asyncio.run(drive(port, pods[DEAD], scenario, args, admin_port))
        finally:
            os.sched_setaffinity(0, own)
            for pod in pods[DEAD]:
                if pod.alive():
                    os.kill(pod.pid, signal.SIGCONT)  # a stopped process cannot act on SIGTERM
    return Run(proxy, scenario, fail_at, start, samples, watch, len(pods[DEAD]))


# ---------------------------------------------------------------- analysis

def p99(values: Sequence[float]) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def _attempts(s: Sample) -> list[tuple[str, str]]:
    """nginx's (address, status) per attempt; `:` separates internal redirects, `,` peers."""
    addrs = [a.strip() for a in re.split(r"[,:]\s", s.upstream) if a.strip()]
    codes = [c.strip() for c in re.split(r"[,:]\s", s.upstream_status) if c.strip()]
    return list(zip(addrs, codes + [""] * (len(addrs) - len(codes))))


def _is_dead(address: str) -> bool:
    return address.startswith(SUBNET[DEAD] + ".")


def analyse(run: Run, args: argparse.Namespace) -> dict[str, Any]:
    fail = run.fail_at
    counted = [s for s in run.samples if s.sched >= run.start + args.warmup]
    before = [s.latency for s in counted if s.done and s.sched < fail]
    window = [s.latency for s in counted if s.done and fail - args.window <= s.sched <= fail + args.window]
    failed = [s for s in counted if not s.ok]
    kinds: dict[str, int] = {}
    for s in failed:
        key = ("%d %s" % (s.status, s.reason or s.upstream_status)).strip() if s.status else s.error
        kinds[key] = kinds.get(key, 0) + 1
    served_dead = [s for s in counted if s.ok and s.sent >= fail
                   and (s.cluster == DEAD or (s.upstream and _is_dead(_attempts(s)[-1][0])))]
    out: dict[str, Any] = {
        "proxy": run.proxy, "scenario": run.scenario, "requests": len(counted), "failed": len(failed),
        "failures": kinds, "p99_before_ms": p99(before) * 1000, "p99_window_ms": p99(window) * 1000,
        "max_window_ms": max(window, default=float("nan")) * 1000,
        "served_by_dead_after_failure": len(served_dead),
        "dead_attempts": None, "moved_ms": None, "moved_how": "", "all_dead_down_ms": None,
    }
    # "moved": send time of the last request that reached the dead cluster (served there or
    # a failed attempt there), relative to the failure.
    touched = [s.sent for s in served_dead]
    if run.proxy == "nginx":
        attempts = [s for s in counted if s.done >= fail for a, code in _attempts(s)
                    if _is_dead(a) and not code.startswith(("2", "3"))]
        out["dead_attempts"] = len(attempts)
        touched += [s.sent for s in attempts]
        out["moved_how"] = "$upstream_addr"
    else:
        # A request that waited out a timeout was retried after an attempt at a hung endpoint.
        touched += [s.sent for s in counted if s.ok and s.sent >= fail - args.timeout
                    and s.done - s.sent >= 0.9 * args.timeout]
        out["moved_how"] = "x-fleetgate-cluster + latency"
    if touched and max(touched) >= fail - args.timeout:
        out["moved_ms"] = max(0.0, max(touched) - fail) * 1000
    w = run.watch
    if w is not None and w.retries:
        at_fail = max((v for _, got, v in w.retries if got <= fail), default=0.0)
        out["dead_attempts"] = int(w.retries[-1][2] - at_fail) + sum(1 for s in failed if s.status >= 500)
        out["retries_by_target_cluster"] = w.retries_by_cluster
        rises = [(prev_sent, got) for (prev_sent, _, prev), (_, got, v) in zip(w.retries, w.retries[1:])
                 if v > prev and got > fail]
        if rises and run.scenario == "kill":
            # a refused connect is retried at once: the last rise bounds the last attempt
            lo, hi = rises[-1]
            if out["moved_ms"] is None or (hi - fail) * 1000 > out["moved_ms"]:
                out["moved_ms"] = (hi - fail) * 1000
                out["moved_lower_ms"] = max(0.0, lo - fail) * 1000
                out["moved_how"] = "retry counter polls"
        downs = [t for t, n in w.dead_down if t >= fail and n >= run.pods_dead]
        if downs:
            out["all_dead_down_ms"] = (min(downs) - fail) * 1000
    bound = 2 * out["p99_before_ms"] + args.timeout * 1000
    out["p99_bound_ms"] = bound
    out["meets_targets"] = out["failed"] == 0 and out["p99_window_ms"] <= bound
    return out


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None or value != value:
        return "-"
    return "%.0f%s" % (value, unit) if value >= 100 else "%.1f%s" % (value, unit)


def print_table(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print("failover drill: %d pods per member cluster, %g req/s open-loop %ss; every %s pod %s; "
          "connect/read/send timeouts %g s, tries %d; p99 window +-%g s"
          % (args.pods, args.rate, args.method, DEAD, "SIGKILLed (kill) / SIGSTOPped (hang)", args.timeout, args.tries,
             args.window))
    head = ("scenario", "proxy", "requests", "failed", "p99 before", "p99 window", "max window",
            "dead attempts", "moved after", "all dead down", "targets")
    row = "%-8s %-10s %8s %6s %10s %10s %10s %13s %12s %13s %7s"
    print(row % head)
    for r in results:
        moved = "-" if r["moved_ms"] is None else _fmt(r["moved_ms"], " ms")
        if r.get("moved_lower_ms") is not None:
            moved = "<=" + moved
        print(row % (r["scenario"], r["proxy"], r["requests"], r["failed"], _fmt(r["p99_before_ms"], " ms"),
                     _fmt(r["p99_window_ms"], " ms"), _fmt(r["max_window_ms"], " ms"),
                     "-" if r["dead_attempts"] is None else r["dead_attempts"], moved,
                     "-" if r["all_dead_down_ms"] is None else "<=" + _fmt(r["all_dead_down_ms"], " ms"),
                     "ok" if r["meets_targets"] else "MISS"))
    for r in results:
        if r["failures"]:
            print("  %s/%s failures: %s" % (r["scenario"], r["proxy"],
                                            ", ".join("%s x%d" % kv for kv in sorted(r["failures"].items()))))
        if r["served_by_dead_after_failure"]:
            print("  %s/%s: %d responses served by %s for requests sent after the failure"
                  % (r["scenario"], r["proxy"], r["served_by_dead_after_failure"], DEAD))
    print("latency counts from each request's scheduled send time; p99 window: requests due within +-%g s "
          "of the failure; targets: 0 failed and p99 window <= 2 x p99 before + %g s"
          % (args.window, args.timeout))
    print("moved after: send time of the last request that reached %s (nginx: $upstream_addr; fleetgate: "
          "x-fleetgate-cluster, requests that waited out a timeout, and for kill the last rise of "
          "fleetgate_upstream_rq_retry_total seen by admin polls every %g ms, an upper bound marked <=); "
          "dead attempts: nginx: dead peers in $upstream_addr; fleetgate: retry counter rise + 5xx answers; "
          "all dead down: first /debug/routes poll showing every %s endpoint unhealthy"
          % (DEAD, args.fine_poll_interval * 1000, DEAD))


# ---------------------------------------------------------------- entry

def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenarios", default="kill,hang", help="comma-separated: kill, hang")
    p.add_argument("--proxies", default="fleetgate,nginx", help="comma-separated: fleetgate, nginx")
    p.add_argument("--pods", type=int, default=3, help="pods per member cluster")
    p.add_argument("--method", default="GET", choices=["GET", "HEAD", "POST", "PUT"],
                   help="request method (POST/PUT carry a small body; a request already sent to a pod that "
                        "dies is not retried for them, by both proxies' rules)")
    p.add_argument("--rate", type=float, default=300.0, help="requests per second")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds of load not counted")
    p.add_argument("--before", type=float, default=3.0, help="counted seconds of load before the failure")
    p.add_argument("--after", type=float, default=4.0, help="seconds of load after the failure")
    p.add_argument("--window", type=float, default=2.0, help="p99 window: +- seconds around the failure")
    p.add_argument("--timeout", type=float, default=1.0, help="connect/read/send timeout for both proxies (s)")
    p.add_argument("--tries", type=int, default=3, help="proxy-next-upstream-tries for both proxies")
    p.add_argument("--max-conns", type=int, default=256, help="client connections at most")
    p.add_argument("--client-timeout", type=float, default=10.0, help="client gives up on a request after (s)")
    p.add_argument("--poll-interval", type=float, default=0.05, help="gateway admin poll interval (s)")
    p.add_argument("--fine-poll-interval", type=float, default=0.005,
                   help="gateway admin poll interval around the failure (s)")
    p.add_argument("--fine-poll-for", type=float, default=0.5,
                   help="seconds after the failure to poll at --fine-poll-interval")
    p.add_argument("--fleetgate", help="command that runs fleetgate (default: the venv's fleetgate)")
    p.add_argument("--gateway-args", default="", help="extra arguments for `fleetgate gateway`")
    p.add_argument("--gateway-log-level", default="warning")
    p.add_argument("--start-timeout", type=float, default=20.0, help="seconds to wait for each server")
    p.add_argument("--no-pin", action="store_true", help="do not pin servers and client to CPUs")
    p.add_argument("--json", metavar="FILE", help="also write results and per-run summaries as JSON")
    p.add_argument("--samples", metavar="FILE", help="also write every request of every run as JSON lines")
    p.add_argument("--keep-tmp", action="store_true", help="keep configs and logs in a temp folder")
    args = p.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    args.proxies = [s.strip() for s in args.proxies.split(",") if s.strip()]
    if not set(args.scenarios) <= {"kill", "hang"} or not args.scenarios:
        p.error("--scenarios takes kill and/or hang")
    if not set(args.proxies) <= {"fleetgate", "nginx"} or not args.proxies:
        p.error("--proxies takes fleetgate and/or nginx")
    if not 1 <= args.pods <= 50 or args.rate <= 0 or args.rate > 5000 or args.after < args.timeout:
        p.error("need 1..50 pods, 0 < rate <= 5000 and --after >= --timeout")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    interrupt_on_signals()
    ensure_tools(TOOLS)
    if "fleetgate" in args.proxies:
        fleetgate_cmd(args.fleetgate)
    have = cpus()
    server_cpu, client_cpu = (None, None) if args.no_pin or len(have) < 2 else (have[0], have[1])
    results: list[dict[str, Any]] = []
    runs: list[Run] = []
    keep = tempfile.mkdtemp(prefix="fleetgate-drill-") if args.keep_tmp else None
    t0 = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="fleetgate-drill-") as auto:
            root = Path(keep or auto)
            log("working folder %s; servers on CPU %s, client on CPU %s", root, server_cpu, client_cpu)
            for scenario in args.scenarios:
                for proxy in args.proxies:
                    tmp = root / ("%s-%s" % (scenario, proxy))
                    tmp.mkdir()
                    run = run_one(proxy, scenario, args, tmp, server_cpu, client_cpu)
                    runs.append(run)
                    results.append(analyse(run, args))
                    r = results[-1]
                    log("%s/%s: %d requests, %d failed, p99 %.1f ms before, %.1f ms around the failure",
                        scenario, proxy, r["requests"], r["failed"], r["p99_before_ms"], r["p99_window_ms"])
    except KeyboardInterrupt:
        log("interrupted; servers stopped")
        return 130
    except RuntimeError as exc:
        log("failed: %s", exc)
        return 1
    print_table(results, args)
    log("drill took %.0f s", time.monotonic() - t0)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": {k: v for k, v in vars(args).items()},
                                               "results": results}, indent=2, default=str) + "\n")
    if args.samples:
        with open(args.samples, "w") as fh:
            for run in runs:
                for s in run.samples:
                    row = asdict(s)
                    row.update(proxy=run.proxy, scenario=run.scenario,
                               t_ms=round((s.sched - run.fail_at) * 1000, 3),
                               latency_ms=round(s.latency * 1000, 3))
                    fh.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
