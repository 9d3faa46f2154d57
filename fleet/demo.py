"""`fleetgate demo`: echo backends for every endpoint of the demo fleet, then `up`.

The backends are read from the fleet's own EndpointSlices, so the demo shows exactly what
the files say: each echo server answers as the pod (cluster, address) it stands in for.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shlex
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from aiohttp import web

from .config import FleetConfig, SourceSpec, load_fleet_config
from .fleet import load_fleet_once

log = logging.getLogger("fleetgate.demo")


def demo_pods(fleet_path: str) -> list[tuple[str, str, str, int]]:
    """(cluster, service, address, port) of every ready endpoint in the fleet's files."""
    snapshot = load_fleet_once(load_fleet_config(fleet_path))
    pods = set()
    for member in snapshot.members:
        for sl in member.objects.endpoint_slices.values():
            for port in sl.ports:
                for ep in sl.endpoints:
                    for addr in ep.addresses:
                        if port.port and sl.address_type == "IPv4":
                            pods.add((member.name, sl.service_name or "?", addr, port.port))
    return sorted(pods)


def echo_app(cluster: str, service: str, address: str, port: int) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response({
            "cluster": cluster, "service": service, "pod": f"{address}:{port}",
            "method": request.method, "path": request.path_qs,
            "headers": dict(request.headers), "body_bytes": len(body),
        }, dumps=lambda o: json.dumps(o, indent=2) + "\n")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


async def start_echo_backends(pods: list[tuple[str, str, str, int]]) -> list[web.AppRunner]:
    runners = []
    for cluster, service, address, port in pods:
        runner = web.AppRunner(echo_app(cluster, service, address, port), access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, address, port).start()
        except OSError as exc:
            log.warning("demo backend %s:%s (%s/%s) not started: %s", address, port, cluster, service, exc)
            await runner.cleanup()
            continue
        runners.append(runner)
    return runners


def print_try_lines(bound: dict[str, Any], *, live: bool = False) -> None:
    http = bound.get("http")
    admin = bound.get("admin")
    dns = bound.get("dns")
    lines = ["", "fleetgate demo is running. Try:"]
    if http:
        base = f"http://{http[0]}:{http[1]}"
        lines += [
            f"  curl -s -H 'Host: echo.demo.local' {base}/hello        # balanced over 3 pods in 2 clusters",
            f"  curl -si -H 'Host: echo.demo.local' {base}/ | grep x-fleetgate-cluster",
            f"  curl -s -H 'Host: api.demo.local' {base}/v1/users      # Prefix /v1",
            f"  curl -si -H 'Host: nope.demo.local' {base}/            # 404 no-route",
            f"  curl -si --http2-prior-knowledge -H 'Host: echo.demo.local' {base}/   # HTTP/2 (h2c)",
        ]
    if dns:
        lines.append(f"  dig @{dns[0]} -p {dns[1]} echo.demo.svc.clusterset.local")
        lines.append(f"  dig @{dns[0]} -p {dns[1]} db-0.db.demo.svc.clusterset.local")
    if admin:
        base = f"http://{admin[0]}:{admin[1]}"
        lines += [f"  curl -s {base}/debug/routes", f"  curl -s '{base}/debug/imports?cluster=zone-b'",
                  f"  curl -s {base}/metrics | grep fleetgate_http"]
    if not live:
        lines.append("Edit the files under the fleet folder and the gateway follows within a second. Ctrl-C stops.")
    print("\n".join(lines), flush=True)


async def run_demo(args: argparse.Namespace, stop: asyncio.Event) -> None:
    from .cli import run_components

    runners = await start_echo_backends(demo_pods(args.fleet))
    print(f"started {len(runners)} echo backends standing in for the member clusters' pods", flush=True)
    try:
        if getattr(args, "live", False):
            await _run_live(args, stop)
        else:
            await run_components(args, stop, gateway=True, dns=True, controller=True, on_ready=print_try_lines)
    finally:
        for runner in runners:
            await runner.cleanup()


# --- demo --live: every cluster is a test API server ------------------------------------------


@dataclass
class LiveClusters:
    """Test API servers standing in for the fleet's clusters, and the fleet.yaml that
    points at them through kubeconfigs."""
    fleet_yaml: Path
    servers: dict[str, Any] = field(default_factory=dict)  # source name -> KubeAPIServer
    kubeconfigs: dict[str, Path] = field(default_factory=dict)
    hub: str | None = None  # the source name holding the Ingresses

    async def stop(self) -> None:
        for server in self.servers.values():
            await server.stop()


def manifest_documents(folder: Path) -> list[dict[str, Any]]:
    """The Kubernetes objects fleetgate knows in a manifests folder, as raw dicts."""
    from .manifests import is_manifest_path
    from .objects import is_known

    docs: list[dict[str, Any]] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(root, name)
            if not is_manifest_path(PurePosixPath(path.relative_to(folder).as_posix())):
                continue
            for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
                if isinstance(doc, dict) and is_known(doc):
                    docs.append(doc)
    return docs


async def start_live_clusters(fleet_path: str | Path, workdir: Path) -> LiveClusters:
    """One test API server per source of a file fleet, loaded with its objects; writes a
    kubeconfig per server and a fleet.yaml using them into workdir."""
    from .config import HUB_SOURCE_NAME
    from .testing import KubeAPIServer

    config = load_fleet_config(fleet_path)
    sources: list[tuple[str, SourceSpec]] = [(c.name, c.source) for c in config.clusters]
    if config.hub is not None:
        sources.insert(0, (HUB_SOURCE_NAME, config.hub))
    live = LiveClusters(workdir / "fleet.yaml", hub=config.hub_cluster or (HUB_SOURCE_NAME if config.hub else None))
    try:
        for name, spec in sources:
            if spec.manifests is None:
                raise ValueError(f"{config.path}: {name} is already live; demo --live needs a file fleet")
            server = await KubeAPIServer().start()
            live.servers[name] = server
            for doc in manifest_documents(spec.manifests):
                try:
                    server.apply(doc)
                except Exception as exc:  # an object the API would refuse: say so, go on
                    log.warning("demo: %s: %s/%s not loaded: %s", name, doc.get("kind"),
                                (doc.get("metadata") or {}).get("name"), exc)
            live.kubeconfigs[name] = server.kubeconfig(workdir / f"{name}.kubeconfig", context=name)
    except BaseException:
        await live.stop()
        raise
    live.fleet_yaml.write_text(yaml.safe_dump(_live_fleet_doc(config, live), sort_keys=False))
    return live


def _live_fleet_doc(config: FleetConfig, live: LiveClusters) -> dict[str, Any]:
    doc: dict[str, Any] = {"zone": config.zone, "clustersetIPRange": config.clusterset_ip_range}
    if config.hub_cluster is not None:
        doc["hub"] = {"cluster": config.hub_cluster}
    elif config.hub is not None and live.hub is not None:
        doc["hub"] = {"kubeconfig": live.kubeconfigs[live.hub].name, "context": live.hub}
    clusters = []
    for c in config.clusters:
        entry: dict[str, Any] = {"name": c.name}
        if c.zone:
            entry["zone"] = c.zone
        entry.update(kubeconfig=live.kubeconfigs[c.name].name, context=c.name)
        clusters.append(entry)
    doc["clusters"] = clusters
    return doc


def kubectl_lines(live: LiveClusters, fleet_path: str | Path, bound: dict[str, Any]) -> list[str]:
    """kubectl commands that change the live clusters, picked from the fleet's own objects."""
    snapshot = load_fleet_once(load_fleet_config(fleet_path))
    http = bound.get("http")
    base = f"http://{http[0]}:{http[1]}" if http else "http://127.0.0.1:8080"
    lines = ["", "Each cluster is a Kubernetes API server (kubectl talks to it); change objects and "
             "watch the gateway follow:"]
    for name, server in live.servers.items():
        lines.append(f"  # {name}: kubectl --server {server.url}   (or --kubeconfig {live.kubeconfigs[name]})")
    hub = live.servers.get(live.hub) if live.hub else None
    # prefer an Ingress routing "/" of a host: the friendliest to curl
    candidates = [(p.path != "/", i.meta.name, i, r, p) for i in snapshot.hub.ingresses.values()
                  for r in i.rules[:1] if r.host for p in r.paths[:1]]
    service = None
    if hub is not None and candidates:
        _, _, ingress, rule, path = min(candidates, key=lambda c: c[:2])
        service = path.backend.service_name
        k = f"kubectl --server {hub.url} -n {ingress.meta.namespace}"
        new_host = f"moved.{rule.host}"
        patch = json.dumps([{"op": "replace", "path": "/spec/rules/0/host", "value": new_host}])
        lines += [f"  {k} get ingress",
                  f"  {k} patch ingress {ingress.meta.name} --type=json -p {shlex.quote(patch)}",
                  f"  curl -s -H 'Host: {new_host}' {base}{path.path}          # the route follows",
                  f"  {k} get ingress {ingress.meta.name} -o jsonpath='{{.status.loadBalancer}}'; echo"]
    for member in reversed(snapshot.members):
        slices = sorted(member.objects.endpoint_slices.values(),
                        key=lambda s: (s.service_name != service, s.meta.name))
        target = next((s for s in slices if s.endpoints and s.service_name), None)
        server = live.servers.get(member.name)
        if target is None or server is None:
            continue
        k = f"kubectl --server {server.url} -n {target.meta.namespace}"
        unready = json.dumps([{"op": "replace", "path": "/endpoints/0/conditions/ready", "value": False}])
        what = (f"{member.name} stops serving {target.service_name}" if len(target.endpoints) == 1
                else f"one {target.service_name} endpoint in {member.name} turns not ready")
        lines += [f"  {k} get endpointslices",
                  f"  {k} patch endpointslice {target.meta.name} --type=json -p {shlex.quote(unready)}   # {what}",
                  f"  {k} delete endpointslice {target.meta.name}"]
        break
    return lines


async def _run_live(args: argparse.Namespace, stop: asyncio.Event) -> None:
    from .cli import run_components

    with tempfile.TemporaryDirectory(prefix="fleetgate-demo-") as tmp:
        live = await start_live_clusters(args.fleet, Path(tmp))
        print(f"started {len(live.servers)} Kubernetes API servers ({', '.join(live.servers)}); "
              f"fleet: {live.fleet_yaml}", flush=True)
        live_args = argparse.Namespace(**vars(args))
        live_args.fleet = str(live.fleet_yaml)
        if not live_args.publish_address:  # show status.loadBalancer being written
            live_args.publish_address = str(args.http).rpartition(":")[0] or "127.0.0.1"

        def ready(bound: dict[str, Any]) -> None:
            print_try_lines(bound, live=True)
            print("\n".join(kubectl_lines(live, args.fleet, bound) + ["Ctrl-C stops."]), flush=True)

        try:
            await run_components(live_args, stop, gateway=True, dns=True, controller=True, on_ready=ready)
        finally:
            await live.stop()
