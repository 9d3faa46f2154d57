"""The setup behind bench/proxy_vs_nginx.py (and h2_vs_nginx.py, failover_drill.py,
proxy_profile.py): nginx configurations and processes, the fleets the gateway loads (plain,
TLS, policies, RSS scale), /debug/routes and /metrics readers, and starting `fleetgate
gateway`. Moved out of proxy_vs_nginx.py unchanged (house rule: modules under ~600 lines).
"""
from __future__ import annotations

import argparse
import base64
import http.client
import json
import re
import shlex
import sys
from pathlib import Path
from typing import Any, Sequence

import yaml

from _util import (LOOPBACK, Proc, Processes, find_binary, free_port, log, pinned, tree_rss_kb,
                   wait_http)

REPO = Path(__file__).resolve().parent.parent
HOST = "bench.local"
TOOLS = {"nginx": "nginx-light", "wrk": "wrk"}
WARMUP_S = 2.0

# ---------------------------------------------------------------- nginx configs

_NGINX_COMMON = """\
worker_processes 1;
worker_rlimit_nofile 16384;
daemon off;
pid {dir}/{name}.pid;
error_log {dir}/{name}.error.log warn;
events {{ worker_connections 8192; multi_accept on; }}
http {{
    access_log off;
    default_type text/plain;
    client_body_temp_path {dir}/{name}-tmp/body;
    proxy_temp_path {dir}/{name}-tmp/proxy;
    fastcgi_temp_path {dir}/{name}-tmp/fastcgi;
    uwsgi_temp_path {dir}/{name}-tmp/uwsgi;
    scgi_temp_path {dir}/{name}-tmp/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
{body}
}}
"""

_BACKEND = """\
    server {{
        listen {host}:{port} backlog=4096;
        location / {{
            add_header X-Bench backend;
            return 200 "hello\\n";
        }}
    }}"""

_BACKEND_TWO = """\
    server {{
        listen {host}:{port} backlog=4096;
        listen {host2}:{port} backlog=4096;
        location / {{
            add_header X-Bench backend;
            return 200 "hello\\n";
        }}
    }}"""

# ssl_protocols: nginx before 1.23.4 leaves TLS 1.3 out by default (TLS 1.2 with
# ECDHE-ECDSA-AES256-GCM-SHA384 to wrk), the gateway negotiates TLS 1.3
# (TLS_AES_256_GCM_SHA384): both offer both, as ingress-nginx's default ssl-protocols does
_NGINX_TLS = """
        listen {host}:{port} ssl backlog=4096;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_certificate {dir}/tls.crt;
        ssl_certificate_key {dir}/tls.key;"""

# ingress-nginx's default log-format-upstream ($proxy_upstream_name and friends are Lua-set
# variables there; plain nginx logs $upstream_addr's kin and the request id instead)
_NGINX_LOG_FORMAT = """\
    log_format upstreaminfo '$remote_addr - $remote_user [$time_local] "$request" '
        '$status $body_bytes_sent "$http_referer" "$http_user_agent" $request_length $request_time '
        '[backend] [] $upstream_addr $upstream_response_length $upstream_response_time $upstream_status '
        '$request_id';
"""

_PROXY = """\
    upstream backend {{
        server {host}:{backend_port};
        keepalive 1024;
        keepalive_requests 10000000;
        keepalive_timeout 300s;
    }}
    server {{
        listen {host}:{port} backlog=4096;{tls}{log}
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
        }}
    }}"""


def nginx_conf(tmp: Path, name: str, body: str) -> Path:
    (tmp / ("%s-tmp" % name)).mkdir(exist_ok=True)
    path = tmp / ("%s.conf" % name)
    path.write_text(_NGINX_COMMON.format(dir=tmp, name=name, body=body))
    return path


def start_nginx(procs: Processes, tmp: Path, name: str, body: str, port: int, cpu: int | None,
                deadline_s: float) -> Proc:
    conf = nginx_conf(tmp, name, body)
    nginx = find_binary("nginx") or "nginx"
    proc = procs.start(name, pinned([nginx, "-p", str(tmp), "-c", str(conf)], cpu),
                       log_path=tmp / ("%s.log" % name))
    wait_http(proc, LOOPBACK, port, host_header=HOST, deadline_s=deadline_s)
    return proc


# ---------------------------------------------------------------- fleet generation

def _ingress(name: str, rules: list[tuple[str, str]], *,
             annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "default"}
    if annotations:
        meta["annotations"] = dict(annotations)
    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": meta,
        "spec": {"ingressClassName": "fleetgate", "rules": [
            {"host": host, "http": {"paths": [{
                "path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": svc, "port": {"number": 80}}}}]}}
            for host, svc in rules]},
    }


def _ingress_class() -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
            "metadata": {"name": "fleetgate"}, "spec": {"controller": "fleetgate.io/gateway"}}


def _service(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"selector": {"app": name},
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}}


def _slice(name: str, service: str, addresses: Sequence[str], port: int) -> dict[str, Any]:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": "default",
                         "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
            "endpoints": [{"addresses": [a], "conditions": {"ready": True}} for a in addresses]}


_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml: the 10,000-endpoint fleet in well under 1 s


def _dump(objs: list[dict[str, Any]]) -> str:
    return yaml.dump_all(objs, Dumper=_Dumper, sort_keys=False)


def _write_fleet(root: Path, hub: list[dict[str, Any]], clusters: dict[str, list[dict[str, Any]]]) -> Path:
    (root / "hub").mkdir(parents=True)
    (root / "hub" / "ingresses.yaml").write_text(_dump(hub))
    for name, objs in clusters.items():
        (root / name).mkdir()
        (root / name / "services.yaml").write_text(_dump(objs))
    fleet = {"hub": {"manifests": "hub/"},
             "clusters": [{"name": name, "manifests": "%s/" % name} for name in clusters]}
    path = root / "fleet.yaml"
    path.write_text(yaml.safe_dump(fleet, sort_keys=False))
    return path


def bench_fleet(root: Path, backend_port: int, tls: tuple[bytes, bytes] | None = None) -> Path:
    """One Ingress for bench.local -> Service `backend` -> the nginx backend; with tls
    (cert, key) its Secret too (plain HTTP stays unredirected: the readiness probe uses it)."""
    ingress = _ingress("bench", [(HOST, "backend")])
    hub = [_ingress_class(), ingress]
    if tls is not None:
        ingress["spec"]["tls"] = [{"secretName": "bench-tls", "hosts": [HOST]}]
        ingress["metadata"]["annotations"] = {"nginx.ingress.kubernetes.io/ssl-redirect": "false"}
        hub.append({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                    "metadata": {"name": "bench-tls", "namespace": "default"},
                    "data": {"tls.crt": base64.b64encode(tls[0]).decode(),
                             "tls.key": base64.b64encode(tls[1]).decode()}})
    return _write_fleet(
        root,
        hub=hub,
        clusters={"bench": [_service("backend"),
                            _slice("backend-1", "backend", [LOOPBACK], backend_port)]})


POLICY_HOST2 = "127.0.0.2"  # the backend's second address: member cluster zone-b's endpoint
# What a browser sends besides Host (`--browser-headers`): wrk's requests carry Host only,
# and every request header costs the gateway a parser callback and its handling.
BROWSER_HEADERS = [
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "Accept-Language: en-US,en;q=0.5", "Accept-Encoding: gzip, deflate, br",
    "Referer: http://bench.local/", "Cookie: session=3f9a1c2b7d; theme=dark",
    "Upgrade-Insecure-Requests: 1", "Sec-Fetch-Dest: document", "Sec-Fetch-Mode: navigate",
    "Sec-Fetch-Site: same-origin", "DNT: 1",
]
POLICY_CLUSTER_WEIGHTS = "zone-a=70,zone-b=30"


POLICIES = ("canary", "weights", "mirror")


def policies_fleet(root: Path, backend_port: int, shadow_port: int | None,
                   policies: Sequence[str] = POLICIES) -> Path:
    """bench.local / -> `backend` in two member clusters (the same nginx backend on
    127.0.0.1 in zone-a and 127.0.0.2 in zone-b), with the chosen policies: `weights`
    (cluster-weights 70/30), `mirror` (10 % to `shadow`), `canary` (a canary Ingress by
    header x-canary, else weight 10 %, -> `backend-canary`, backed by the same nginx)."""
    annotations = {}
    if "weights" in policies:
        annotations["fleetgate.io/cluster-weights"] = POLICY_CLUSTER_WEIGHTS
    if "mirror" in policies:
        annotations["higress.io/mirror-target-service"] = "default/shadow:80"
        annotations["higress.io/mirror-percentage"] = "10"
    hub = [_ingress_class(), _ingress("bench", [(HOST, "backend")], annotations=annotations)]
    if "canary" in policies:
        hub.append(_ingress("bench-canary", [(HOST, "backend-canary")], annotations={
            "nginx.ingress.kubernetes.io/canary": "true",
            "nginx.ingress.kubernetes.io/canary-by-header": "x-canary",
            "nginx.ingress.kubernetes.io/canary-weight": "10",
        }))
    members: dict[str, list[dict[str, Any]]] = {}
    for cluster, address in (("zone-a", LOOPBACK), ("zone-b", POLICY_HOST2)):
        members[cluster] = [_service("backend"), _service("backend-canary"),
                            _slice("backend-%s" % cluster, "backend", [address], backend_port),
                            _slice("backend-canary-%s" % cluster, "backend-canary", [address], backend_port)]
    if shadow_port is not None:
        members["zone-a"] += [_service("shadow"), _slice("shadow-zone-a", "shadow", [LOOPBACK], shadow_port)]
    return _write_fleet(root, hub, members)


_POLICY_FIELDS = {"canary": "canaries", "weights": "cluster_weights", "mirror": "mirror"}


def check_policies(admin_port: int, policies: Sequence[str]) -> dict[str, Any]:
    """Fail the run unless /debug/routes shows the policies on bench.local: a typo in an
    annotation would otherwise measure the plain fast path."""
    conn = http.client.HTTPConnection(LOOPBACK, admin_port, timeout=10)
    try:
        conn.request("GET", "/debug/routes")
        body = json.loads(conn.getresponse().read())
    except (OSError, ValueError, http.client.HTTPException) as exc:
        raise RuntimeError("cannot read /debug/routes: %s" % exc) from None
    finally:
        conn.close()
    for r in body.get("routes", []):
        if r.get("host") == HOST:
            policy = r.get("policy") or {}
            missing = [_POLICY_FIELDS[k] for k in policies if not policy.get(_POLICY_FIELDS[k])]
            clusters = [c["cluster"] for c in (r.get("backend") or {}).get("clusters", [])]
            if missing or sorted(clusters) != ["zone-a", "zone-b"]:
                raise RuntimeError("policies not in force on %s: missing %s, member clusters %s; diagnostics: %s"
                                   % (HOST, missing, clusters, body.get("diagnostics")))
            return policy
    raise RuntimeError("no route for %s in /debug/routes: %s" % (HOST, body))


_SAMPLE = re.compile(r"^(fleetgate_http_requests_total|fleetgate_mirror_requests_total)\{([^}]*)\}\s+(\S+)$", re.M)
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def policy_counts(admin_port: int) -> dict[str, dict[str, float]]:
    """Requests by Ingress, by member cluster, and mirror copies by result, from /metrics."""
    conn = http.client.HTTPConnection(LOOPBACK, admin_port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    except (OSError, http.client.HTTPException) as exc:
        log("cannot read /metrics: %s", exc)
        return {}
    finally:
        conn.close()
    out: dict[str, dict[str, float]] = {"ingress": {}, "cluster": {}, "mirror": {}}
    for name, labels, value in _SAMPLE.findall(text):
        lab = dict(_LABEL.findall(labels))
        n = float(value)
        if name == "fleetgate_mirror_requests_total":
            out["mirror"][lab.get("result", "")] = out["mirror"].get(lab.get("result", ""), 0.0) + n
        elif lab.get("code", "").startswith("2"):
            for key in ("ingress", "cluster"):
                out[key][lab.get(key, "")] = out[key].get(lab.get(key, ""), 0.0) + n
    return out


def scale_fleet(root: Path, *, rules: int, services: int, endpoints: int, clusters: int) -> Path:
    """`rules` host rules over `services` Services, `endpoints` endpoints spread over member clusters.

    Endpoints sit on 127.x addresses nobody listens on; only the loaded size matters here.
    """
    per_ingress = 10
    hub: list[dict[str, Any]] = [_ingress_class()]
    for i in range(0, rules, per_ingress):
        hub.append(_ingress("scale-%04d" % (i // per_ingress),
                            [("h%05d.%s" % (r, HOST), "svc-%04d" % (r % services))
                             for r in range(i, min(i + per_ingress, rules))]))
    per_cluster = [endpoints // clusters + (1 if c < endpoints % clusters else 0) for c in range(clusters)]
    members: dict[str, list[dict[str, Any]]] = {}
    for c, count in enumerate(per_cluster):
        objs: list[dict[str, Any]] = []
        addrs = ["127.%d.%d.%d" % (20 + c, n // 250, n % 250 + 1) for n in range(count)]
        for s in range(services):
            svc = "svc-%04d" % s
            objs.append(_service(svc))
            mine = addrs[s::services]
            for k in range(0, len(mine), 100):  # Kubernetes caps a slice at 100 endpoints
                objs.append(_slice("%s-%d" % (svc, k // 100), svc, mine[k:k + 100], 8080))
        members["member-%d" % c] = objs
    return _write_fleet(root, hub, members)


# ---------------------------------------------------------------- fleetgate

def fleetgate_cmd(override: str | None) -> tuple[list[str], Path | None]:
    """The command that runs `fleetgate`, and the working directory it needs."""
    if override:
        return shlex.split(override), None
    venv_script = Path(sys.executable).parent / "fleetgate"
    if venv_script.exists():
        return [str(venv_script)], None
    if not (REPO / "fleet" / "cli.py").exists():
        raise SystemExit("no fleetgate command (neither %s nor %s); pass --fleetgate CMD or --only nginx"
                         % (venv_script, REPO / "fleet" / "cli.py"))
    return [sys.executable, "-m", "fleetgate.cli"], REPO


def start_fleetgate(procs: Processes, args: argparse.Namespace, fleet: Path, tmp: Path, cpu: int | None,
                    *, probe_host: str | None, access_log: str = "off",
                    name: str = "fleetgate") -> tuple[Proc, int, int]:
    base, cwd = fleetgate_cmd(args.fleetgate)
    http_port, admin_port = free_port(), free_port()
    cmd = base + ["gateway", "--fleet", str(fleet),
                  "--http", "%s:%d" % (LOOPBACK, http_port), "--admin", "%s:%d" % (LOOPBACK, admin_port),
                  "--workers", "1", "--log-level", args.gateway_log_level, "--access-log", access_log,
                  ] + shlex.split(args.gateway_args)
    proc = procs.start(name, pinned(cmd, cpu), log_path=tmp / ("%s.log" % name), cwd=cwd)
    wait_http(proc, LOOPBACK, admin_port, "/readyz", deadline_s=args.start_timeout)
    if probe_host is not None:
        wait_http(proc, LOOPBACK, http_port, host_header=probe_host, deadline_s=args.start_timeout)
    return proc, http_port, admin_port


def rss_report(proc: Proc) -> dict[str, Any]:
    per_pid = tree_rss_kb(proc.pid)
    return {"pid": proc.pid, "rss_kb": per_pid.get(proc.pid, 0), "tree_rss_kb": sum(per_pid.values()),
            "processes": len(per_pid), "hwm_kb": _hwm_kb(proc.pid)}


def _hwm_kb(pid: int) -> int:
    try:
        for line in Path("/proc/%d/status" % pid).read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0
