"""fleetgate gateway vs nginx `proxy_pass`, in front of the same nginx backend.

Servers share CPU 0, wrk runs on CPU 1; targets are measured in rotation and the
medians compared (issue 2 targets: req/s >= 0.7x nginx, p99 <= 1.5x nginx).
`--rss-scale` instead loads 1,000 Ingress rules and 10,000 endpoints and reports RSS.
`--policies` gives the gateway's route canary + cluster-weights + 10 % mirroring (issue 3
target: req/s >= 0.6x plain nginx).

    /work/venv/bin/python bench/proxy_vs_nginx.py [--rounds 3] [--duration 10] \
        [--connections 50,200] [--fleetgate CMD] [--only nginx|fleetgate] [--json FILE]
    /work/venv/bin/python bench/proxy_vs_nginx.py --policies
    /work/venv/bin/python bench/proxy_vs_nginx.py --rss-scale
    /work/venv/bin/python bench/proxy_vs_nginx.py --access-log

`--access-log` measures what an access log costs each proxy: nginx with and without its
access_log (ingress-nginx's log-format-upstream, to a file) and fleetgate with and without
--access-log (to a file), all four in rotation, and prints each one's log-on/log-off req/s
ratio (issue 15 target: ours costs no larger a fraction than nginx's). Without it both
proxies run with their access logs off (fleetgate gets --access-log off: its default is
stdout).
"""
from __future__ import annotations

import argparse
import http.client
import json
import math
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import (LOOPBACK, interrupt_on_signals, Proc, Processes, WrkResult, cpus, ensure_tools,  # noqa: E402
                   free_port, http_get, log, median, pinned, run_wrk, tree_cpu_seconds, wait_http)
# the setup lives in _proxy_setup.py; its names stay importable from here (h2_vs_nginx.py,
# failover_drill.py import them from this module)
from _proxy_setup import (BROWSER_HEADERS, HOST, POLICIES, POLICY_CLUSTER_WEIGHTS,  # noqa: E402,F401
                          POLICY_HOST2, REPO, TOOLS, WARMUP_S, _BACKEND, _BACKEND_TWO, _NGINX_LOG_FORMAT,
                          _NGINX_TLS, _PROXY, _ingress, _ingress_class, _service, _slice, _write_fleet,
                          bench_fleet, check_policies, fleetgate_cmd, nginx_conf, policies_fleet,
                          policy_counts, rss_report, scale_fleet, start_fleetgate, start_nginx)


# ---------------------------------------------------------------- the comparison

def choose_cpus(args: argparse.Namespace) -> tuple[int | None, int | None]:
    if args.no_pin:
        return None, None
    have = cpus()
    if len(have) < 2:
        log("only %d CPU available: not pinning", len(have))
        return None, None
    server = args.server_cpu if args.server_cpu is not None else have[0]
    client = args.client_cpu if args.client_cpu is not None else have[1]
    return server, client


def rotation(rounds: int, connections: Sequence[int], targets: Sequence[str]) -> Iterator[tuple[int, int, str]]:
    for rnd in range(rounds):
        for conns in connections:
            for target in targets:
                yield rnd, conns, target


def compare(args: argparse.Namespace) -> dict[str, Any]:
    ensure_tools(TOOLS)
    server_cpu, client_cpu = choose_cpus(args)
    targets = ["nginx", "fleetgate"]
    if args.only:
        targets = [args.only]
    if args.direct:
        targets.insert(0, "backend")
    if args.floor:
        targets.append("floor")
    if args.access_log:
        targets = ["nginx", "nginx-log", "fleetgate", "fleetgate-log"]
    if "fleetgate" in targets:
        fleetgate_cmd(args.fleetgate)  # fail before starting anything when there is none
    keep = tempfile.mkdtemp(prefix="fleetgate-bench-") if args.keep_tmp else None
    with tempfile.TemporaryDirectory(prefix="fleetgate-bench-") as auto, Processes() as procs:
        tmp = Path(keep or auto)
        log("working folder %s; servers on CPU %s, wrk on CPU %s", tmp, server_cpu, client_cpu)
        ports: dict[str, int] = {"backend": free_port()}
        servers: dict[str, Proc] = {}  # the proxies under test
        tls_pem = None
        if args.tls:
            from gateway.tls import self_signed
            tls_pem = self_signed(HOST)
            (tmp / "tls.crt").write_bytes(tls_pem[0])
            (tmp / "tls.key").write_bytes(tls_pem[1])
        if args.policies:
            backend_body = _BACKEND_TWO.format(host=LOOPBACK, host2=POLICY_HOST2, port=ports["backend"])
        else:
            backend_body = _BACKEND.format(host=LOOPBACK, port=ports["backend"])
        servers["backend"] = start_nginx(procs, tmp, "backend", backend_body, ports["backend"], server_cpu,
                                         args.start_timeout)
        if "mirror" in args.policies and "fleetgate" in targets:
            # the mirror's destination, on the servers' CPU like the backend
            ports["shadow"] = free_port()
            start_nginx(procs, tmp, "shadow", _BACKEND.format(host=LOOPBACK, port=ports["shadow"]),
                        ports["shadow"], server_cpu, args.start_timeout)
        if "nginx" in targets:
            ports["nginx"] = free_port()
            tls = ""
            if args.tls:
                ports["nginx-tls"] = free_port()
                tls = _NGINX_TLS.format(host=LOOPBACK, port=ports["nginx-tls"], dir=tmp)
            servers["nginx"] = start_nginx(procs, tmp, "nginx", _PROXY.format(
                host=LOOPBACK, port=ports["nginx"], backend_port=ports["backend"], tls=tls, log=""),
                ports["nginx"], server_cpu, args.start_timeout)
        if "nginx-log" in targets:
            ports["nginx-log"] = free_port()
            servers["nginx-log"] = start_nginx(procs, tmp, "nginx-log", _NGINX_LOG_FORMAT + _PROXY.format(
                host=LOOPBACK, port=ports["nginx-log"], backend_port=ports["backend"], tls="",
                log="\n        access_log %s upstreaminfo;" % (tmp / "nginx-access.log")),
                ports["nginx-log"], server_cpu, args.start_timeout)
        gateway: Proc | None = None
        policy: dict[str, Any] | None = None
        if "fleetgate" in targets:
            if args.policies:
                fleet = policies_fleet(tmp / "fleet", ports["backend"], ports.get("shadow"), args.policies)
            else:
                fleet = bench_fleet(tmp / "fleet", ports["backend"], tls=tls_pem)
            if args.tls:
                ports["fleetgate-tls"] = free_port()
                args.gateway_args += " --https %s:%d" % (LOOPBACK, ports["fleetgate-tls"])
            gateway, ports["fleetgate"], admin_port = start_fleetgate(procs, args, fleet, tmp, server_cpu,
                                                                      probe_host=HOST)
            servers["fleetgate"] = gateway
            if "fleetgate-log" in targets:
                servers["fleetgate-log"], ports["fleetgate-log"], _ = start_fleetgate(
                    procs, args, fleet, tmp, server_cpu, probe_host=HOST,
                    access_log=str(tmp / "fleetgate-access.log"), name="fleetgate-log")
            if args.policies:
                policy = check_policies(admin_port, args.policies)
                log("policies in force: %s", json.dumps(policy, sort_keys=True))
        if "floor" in targets:
            ports["floor"] = free_port()
            servers["floor"] = procs.start("floor", pinned(
                [sys.executable, str(Path(__file__).with_name("floor_proxy.py")), "--port", str(ports["floor"]),
                 "--backend-port", str(ports["backend"]), "--connections", str(max(args.connections) + 16)],
                server_cpu), log_path=tmp / "floor.log")
            wait_http(servers["floor"], LOOPBACK, ports["floor"], host_header=HOST, deadline_s=args.start_timeout)
        headers = ["Host: %s" % HOST] + (BROWSER_HEADERS if args.browser_headers else [])

        def url(target: str) -> str:
            if args.tls and target != "backend":  # the same certificate kind for both: EC P-256
                return "https://%s:%d/" % (LOOPBACK, ports[target + "-tls"])
            return "http://%s:%d/" % (LOOPBACK, ports[target])

        for target in targets:
            log("warm-up %s (%.0f s, %d connections)", target, WARMUP_S, max(args.connections))
            run_wrk(url(target), connections=max(args.connections), duration_s=WARMUP_S, cpu=client_cpu,
                    headers=headers)
        runs: dict[int, dict[str, list[WrkResult]]] = {c: {t: [] for t in targets} for c in args.connections}
        for rnd, conns, target in rotation(args.rounds, args.connections, targets):
            cpu_before = tree_cpu_seconds(servers[target].pid)
            res = run_wrk(url(target), connections=conns, duration_s=args.duration, cpu=client_cpu,
                          headers=headers)
            # CPU per request of the proxy alone: what the ratio is made of, less sensitive
            # than req/s to a shared machine's speed changing between runs
            res = replace(res, cpu_us=(tree_cpu_seconds(servers[target].pid) - cpu_before) * 1e6
                          / max(res.requests, 1))
            log("round %d c=%d %-9s %9.0f req/s  p50 %.2f ms  p99 %.2f ms  errors %d  proxy CPU %.1f us/req",
                rnd + 1, conns, target, res.rps, res.p50_ms, res.p99_ms, res.errors, res.cpu_us)
            runs[conns][target].append(res)
        rss = rss_report(gateway) if gateway is not None else None
        counts = policy_counts(admin_port) if policy is not None else None
    summary = summarize(args, targets, runs, rss, server_cpu, client_cpu)
    if policy is not None:
        summary["policies"] = {"enabled": list(args.policies), "policy": policy, "counts": counts}
    return summary


def summarize(args: argparse.Namespace, targets: Sequence[str], runs: dict[int, dict[str, list[WrkResult]]],
              rss: dict[str, Any] | None, server_cpu: int | None, client_cpu: int | None) -> dict[str, Any]:
    levels: dict[str, Any] = {}
    for conns, by_target in runs.items():
        level: dict[str, Any] = {}
        for target, results in by_target.items():
            level[target] = {
                "rps": median([r.rps for r in results]),
                "p50_ms": median([r.p50_ms for r in results]),
                "p99_ms": median([r.p99_ms for r in results]),
                "errors": sum(r.errors for r in results),
                "runs": [r.__dict__ for r in results],
            }
        if "nginx" in level and "fleetgate" in level:
            level["ratio"] = {"rps": level["fleetgate"]["rps"] / level["nginx"]["rps"],
                              "p99": level["fleetgate"]["p99_ms"] / level["nginx"]["p99_ms"]}
            # each round's fleetgate run against the nginx run next to it: robust to drift
            pairs = list(zip(by_target["nginx"], by_target["fleetgate"]))
            level["paired"] = {"rps": median([f.rps / n.rps for n, f in pairs]),
                               "p99": median([f.p99_ms / n.p99_ms for n, f in pairs])}
            level["cpu_us"] = {t: median([r.cpu_us for r in by_target[t]]) for t in ("nginx", "fleetgate")}
        if "nginx-log" in level and "fleetgate-log" in level:
            # log on / log off, each round's pair: what the access log costs each proxy
            level["log_ratio"] = {
                "nginx": median([on.rps / off.rps for off, on in zip(by_target["nginx"], by_target["nginx-log"])]),
                "fleetgate": median([on.rps / off.rps for off, on in zip(by_target["fleetgate"],
                                                                         by_target["fleetgate-log"])]),
                "cpu_us": {t: median([r.cpu_us for r in by_target[t]])
                           for t in ("nginx", "nginx-log", "fleetgate", "fleetgate-log")}}
        if "nginx" in level and "floor" in level:
            pairs = list(zip(by_target["nginx"], by_target["floor"]))
            level["floor_paired"] = {"rps": median([f.rps / n.rps for n, f in pairs]),
                                     "cpu_us": median([r.cpu_us for r in by_target["floor"]])}
        levels[str(conns)] = level
    return {"rounds": args.rounds, "duration_s": args.duration, "connections": list(args.connections),
            "targets": list(targets), "server_cpu": server_cpu, "client_cpu": client_cpu,
            "levels": levels, "gateway_rss": rss}


def print_table(summary: dict[str, Any]) -> None:
    print("wrk -t1 -d%ds, medians of %d rotated rounds; servers on CPU %s, wrk on CPU %s"
          % (summary["duration_s"], summary["rounds"], summary["server_cpu"], summary["client_cpu"]))
    print("%6s  %-10s %10s %9s %9s %7s" % ("conns", "target", "req/s", "p50 ms", "p99 ms", "errors"))
    for conns, level in summary["levels"].items():
        for target in summary["targets"]:
            r = level[target]
            print("%6s  %-10s %10.0f %9.2f %9.2f %7d" % (conns, target, r["rps"], r["p50_ms"], r["p99_ms"],
                                                        r["errors"]))
        if "ratio" in level:
            targets = "req/s >= 0.60x (policies)" if summary.get("policies") else "req/s >= 0.70x, p99 <= 1.50x"
            print("%6s  %-10s %9.2fx %9s %8.2fx   (targets: %s)"
                  % (conns, "fg/nginx", level["ratio"]["rps"], "", level["ratio"]["p99"], targets))
            print("%6s  %-10s %9.2fx %9s %8.2fx   (median of per-round ratios)"
                  % (conns, "  paired", level["paired"]["rps"], "", level["paired"]["p99"]))
            print("%6s  %-10s %s" % (conns, "  CPU/req", "nginx %.1f us, fleetgate %.1f us (proxy process, user+sys)"
                                     % (level["cpu_us"]["nginx"], level["cpu_us"]["fleetgate"])))
        if "log_ratio" in level:
            lr = level["log_ratio"]
            print("%6s  %-10s nginx %.3fx, fleetgate %.3fx   (log on / log off req/s, median of rounds; target: "
                  "fleetgate's >= nginx's)" % (conns, "access log", lr["nginx"], lr["fleetgate"]))
            cpu = lr["cpu_us"]
            print("%6s  %-10s nginx %.1f -> %.1f us (+%.0f%%), fleetgate %.1f -> %.1f us (+%.0f%%) (log off -> on; "
                  "the steadier measure on a shared machine)"
                  % (conns, "  CPU/req", cpu["nginx"], cpu["nginx-log"], 100 * (cpu["nginx-log"] / cpu["nginx"] - 1),
                     cpu["fleetgate"], cpu["fleetgate-log"], 100 * (cpu["fleetgate-log"] / cpu["fleetgate"] - 1)))
        if "floor_paired" in level:
            print("%6s  %-10s %9.2fx %9s %9s   (bench/floor_proxy.py: the contract's work, bare; %.1f us CPU/req)"
                  % (conns, "floor/ngx", level["floor_paired"]["rps"], "", "", level["floor_paired"]["cpu_us"]))
    pol = summary.get("policies")
    if pol:
        what = {"canary": "canary by header x-canary else 10% weight",
                "weights": "cluster-weights %s" % POLICY_CLUSTER_WEIGHTS, "mirror": "mirror 10% to `shadow`"}
        print("fleetgate route policies over member clusters zone-a + zone-b: %s (nginx: plain proxy_pass)"
              % ", ".join(what[p] for p in pol["enabled"]))
        counts = pol.get("counts") or {}
        for key in ("ingress", "cluster"):
            total = sum(counts.get(key, {}).values()) or 1.0
            print("  2xx by %-7s %s" % (key, ", ".join("%s %.1f%%" % (k or "-", 100 * v / total)
                                                    for k, v in sorted(counts.get(key, {}).items()))))
        mirror = counts.get("mirror", {})
        served = sum(counts.get("ingress", {}).values()) or 1.0
        print("  mirror copies: %s (%.1f%% of 2xx answers)"
              % (", ".join("%s %d" % (k, v) for k, v in sorted(mirror.items())) or "none",
                 100 * sum(mirror.values()) / served))
    rss = summary.get("gateway_rss")
    if rss:
        print("fleetgate RSS at end: %.1f MB (process tree %.1f MB over %d processes, peak %.1f MB)"
              % (rss["rss_kb"] / 1024, rss["tree_rss_kb"] / 1024, rss["processes"], rss["hwm_kb"] / 1024))


# ---------------------------------------------------------------- RSS at scale

def rss_scale(args: argparse.Namespace) -> dict[str, Any]:
    keep = tempfile.mkdtemp(prefix="fleetgate-rss-") if args.keep_tmp else None
    with tempfile.TemporaryDirectory(prefix="fleetgate-rss-") as auto, Processes() as procs:
        tmp = Path(keep or auto)
        t0 = time.monotonic()
        fleet = scale_fleet(tmp / "fleet", rules=args.rss_rules, services=args.rss_services,
                            endpoints=args.rss_endpoints, clusters=args.rss_clusters)
        log("generated %d rules, %d services, %d endpoints over %d member clusters in %.1f s (%s)",
            args.rss_rules, args.rss_services, args.rss_endpoints, args.rss_clusters, time.monotonic() - t0, tmp)
        t0 = time.monotonic()
        proc, http_port, admin_port = start_fleetgate(procs, args, fleet, tmp, None, probe_host=None)
        ready_s = time.monotonic() - t0
        at_ready = rss_report(proc)
        time.sleep(args.rss_settle)  # let startup garbage and first health rounds settle
        settled = rss_report(proc)
        # A request through the gateway proves the table is live (the endpoint refuses: 502/503).
        probe = http_get(LOOPBACK, http_port, host_header="h00000.%s" % HOST, timeout=5.0)
        routes = _count_routes(admin_port)
    out = {"rules": args.rss_rules, "services": args.rss_services, "endpoints": args.rss_endpoints,
           "clusters": args.rss_clusters, "ready_s": ready_s, "at_ready": at_ready, "settled": settled,
           "settle_s": args.rss_settle, "probe_status": probe, "debug_routes": routes}
    print("fleetgate with %d Ingress rules, %d endpoints (%d Services, %d member clusters): ready in %.1f s"
          % (out["rules"], out["endpoints"], out["services"], out["clusters"], ready_s))
    print("RSS at ready %.1f MB; after %.0f s %.1f MB (tree %.1f MB, peak %.1f MB); target <= 80 MB"
          % (at_ready["rss_kb"] / 1024, args.rss_settle, settled["rss_kb"] / 1024,
             settled["tree_rss_kb"] / 1024, settled["hwm_kb"] / 1024))
    print("probe through the gateway: %s; /debug/routes entries: %s" % (probe or "no answer", routes))
    return out


def _count_routes(admin_port: int) -> int | None:
    """Best effort: how many routes /debug/routes lists (its exact shape is the gateway's)."""
    conn = http.client.HTTPConnection(LOOPBACK, admin_port, timeout=10)
    try:
        conn.request("GET", "/debug/routes")
        body = json.loads(conn.getresponse().read())
    except (OSError, ValueError, http.client.HTTPException):
        return None
    finally:
        conn.close()
    if isinstance(body, dict):
        body = body.get("routes", body)
    return len(body) if isinstance(body, (list, dict)) else None


# ---------------------------------------------------------------- entry

def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    p.add_argument("--connections", default="50,200", help="comma-separated wrk -c levels")
    p.add_argument("--browser-headers", action="store_true",
                   help="send 11 typical browser request headers besides Host (wrk sends Host only)")
    p.add_argument("--fleetgate", help="command that runs fleetgate (default: the venv's fleetgate, "
                                       "else python -m fleetgate.cli)")
    p.add_argument("--gateway-args", default="", help="extra arguments for `fleetgate gateway`")
    p.add_argument("--gateway-log-level", default="warning")
    p.add_argument("--only", choices=["nginx", "fleetgate"], help="measure only this proxy")
    p.add_argument("--skip-fleetgate", action="store_true", help="same as --only nginx")
    p.add_argument("--direct", action="store_true", help="also measure the backend without a proxy")
    p.add_argument("--tls", action="store_true",
                   help="wrk over HTTPS to both proxies (one self-signed EC P-256 certificate, kept-alive "
                        "connections: the cost of TLS records, not handshakes)")
    p.add_argument("--floor", action="store_true",
                   help="also measure bench/floor_proxy.py: the contract's per-request work with nothing else")
    p.add_argument("--policies", nargs="?", const=",".join(POLICIES), default="",
                   help="give the gateway's route canary (10%% weight), cluster-weights over two member "
                        "clusters and 10%% mirroring (issue 3 target: req/s >= 0.6x nginx); optionally a "
                        "comma-separated subset of " + ",".join(POLICIES))
    p.add_argument("--access-log", action="store_true",
                   help="measure the access log's cost: nginx and fleetgate each with and without it (to a file)")
    p.add_argument("--server-cpu", type=int)
    p.add_argument("--client-cpu", type=int)
    p.add_argument("--no-pin", action="store_true", help="do not use taskset")
    p.add_argument("--start-timeout", type=float, default=30.0, help="seconds to wait for each server")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--keep-tmp", action="store_true", help="keep configs and logs in a temp folder")
    p.add_argument("--rss-scale", action="store_true", help="measure gateway RSS with a large fleet instead")
    p.add_argument("--rss-rules", type=int, default=1000)
    p.add_argument("--rss-endpoints", type=int, default=10000)
    p.add_argument("--rss-services", type=int, default=500)
    p.add_argument("--rss-clusters", type=int, default=2)
    p.add_argument("--rss-settle", type=float, default=3.0, help="seconds between ready and the RSS reading")
    args = p.parse_args(argv)
    args.connections = [int(c) for c in str(args.connections).split(",") if c.strip()]
    args.policies = [x.strip() for x in args.policies.split(",") if x.strip()]
    if set(args.policies) - set(POLICIES):
        p.error("--policies takes a comma-separated subset of %s" % ",".join(POLICIES))
    if args.skip_fleetgate:
        if args.only == "fleetgate":
            p.error("--skip-fleetgate contradicts --only fleetgate")
        args.only = "nginx"
    if args.rounds < 1 or args.duration < 1 or not args.connections or min(args.connections) < 1:
        p.error("need --rounds >= 1, --duration >= 1 and positive --connections")
    if args.tls and (args.floor or args.policies):
        p.error("--tls goes with the plain route only (not --floor or --policies)")
    if args.access_log and (args.tls or args.floor or args.policies or args.only or args.direct):
        p.error("--access-log goes with the plain route and both proxies only")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    interrupt_on_signals()
    try:
        if args.rss_scale:
            result = rss_scale(args)
        else:
            result = compare(args)
            print_table(result)
    except KeyboardInterrupt:
        log("interrupted; servers stopped")
        return 130
    except RuntimeError as exc:
        log("failed: %s", exc)
        return 1
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=_json_default) + "\n")
    return 0


def _json_default(value: object) -> object:
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
