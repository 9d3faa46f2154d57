"""`fleetgate demo`: a working copy of the demo fleet, echo backends for its endpoints, then `up`.

The bundled fleet lives inside the installed package, where edits would be lost or
refused; the demo copies it once into a working folder (./fleetgate-demo/ by default) and
follows that folder, so "edit the files" means files the user owns. The backends are read
from the fleet's own EndpointSlices, so the demo shows exactly what the files say: each
echo server answers as the pod (cluster, address) it stands in for.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shlex
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from aiohttp import web

from fleet.config import (FLEET_FILE, HUB_SOURCE_NAME, FleetConfig, FleetConfigError, SourceSpec, fleet_file,
                          load_fleet_config)
from fleet.fleet import load_fleet_once
from fleet.manifests import is_manifest_path
from fleet.objects import is_known
from fleet.snapshot import FleetSnapshot

from .run import StartupError, run_components

log = logging.getLogger("fleetgate.demo")

BUNDLED_DEMO = Path(__file__).parent / "examples" / "demo"


@dataclass(frozen=True, slots=True)
class WorkingFolder:
    """The demo's folder: `created` when this run copied the bundled fleet into it."""
    path: Path
    created: bool

    @property
    def fleet_yaml(self) -> Path:
        return self.path / FLEET_FILE


def prepare_working_folder(folder: str | Path, bundled: Path = BUNDLED_DEMO) -> WorkingFolder:
    """Copy the bundled demo fleet to `folder` unless it exists; an existing folder is used
    as it is (the user's edits are the point), never overwritten. The copy is made beside
    it and renamed into place, so an interrupted copy never leaves a half folder to reuse."""
    path = Path(folder).absolute()
    if path.exists():
        if not path.is_dir():
            raise StartupError(f"--dir {path}: exists and is not a folder")
        if not (path / FLEET_FILE).is_file():
            raise StartupError(f"--dir {path}: exists but holds no {FLEET_FILE}; "
                               "remove it or pick another --dir")
        return WorkingFolder(path, created=False)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        # copyfile, not copy2: files from a read-only install must be writable copies
        shutil.copytree(bundled, partial, copy_function=shutil.copyfile,
                        ignore=shutil.ignore_patterns("__pycache__", ".*"))
    except OSError as exc:
        raise StartupError(f"--dir {path}: cannot create the demo folder: {exc.strerror or exc}") from None
    try:
        os.rename(partial, path)
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)
        if (path / FLEET_FILE).is_file():  # another demo made it first: use theirs
            return WorkingFolder(path, created=False)
        raise
    return WorkingFolder(path, created=True)


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
    """One echo server per pod; StartupError (after closing the ones started) when any
    cannot bind: a demo missing some of its pods would show routing that the files do not say."""
    runners: list[web.AppRunner] = []
    for cluster, service, address, port in pods:
        runner = web.AppRunner(echo_app(cluster, service, address, port), access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, address, port).start()
        except OSError as exc:
            await runner.cleanup()
            for started in runners:
                await started.cleanup()
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise StartupError(f"cannot listen for demo backend {cluster}/{service} on {address}:{port}: "
                               f"{reason}") from None
        runners.append(runner)
    return runners


def print_try_lines(bound: dict[str, Any], *, live: bool = False, fleet_path: str | Path | None = None) -> None:
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
    if not live and fleet_path is not None:
        lines += edit_lines(fleet_path, bound)
    if not live:
        lines.append("Ctrl-C stops.")
    print("\n".join(lines), flush=True)


def edit_lines(fleet_path: str | Path, bound: dict[str, Any]) -> list[str]:
    """The fleet's folder, its files (what each holds), and a sed line that moves traffic
    (picked from the files as they are now, so it matches a folder already edited)."""
    config = load_fleet_config(fleet_path)
    folder = config.path.absolute().parent
    snapshot = load_fleet_once(config)
    kinds: dict[str, set[str]] = {}
    for objs in (snapshot.hub, *(m.objects for m in snapshot.members)):
        for (kind, _, _), origin in objs.origins.items():
            kinds.setdefault(origin, set()).add(kind)
    lines = ["", f"The fleet is the folder {folder}", "edit its files and the gateway follows within a second:"]
    for origin in sorted(kinds):
        shown = os.path.relpath(origin, folder)
        lines.append(f"  {shown:24} {', '.join(sorted(kinds[origin]))}")
    lines += _weight_lines(snapshot, bound)
    return lines


def _weight_lines(snapshot: FleetSnapshot, bound: dict[str, Any]) -> list[str]:
    """sed + curl lines that send one Ingress's traffic all to one member cluster."""
    http = bound.get("http")
    base = f"http://{http[0]}:{http[1]}" if http else "http://127.0.0.1:8080"
    for ing in sorted(snapshot.hub.ingresses.values(), key=lambda i: i.meta.name):
        key = next((k for k in ing.meta.annotations if k.endswith("/cluster-weights")), None)
        rule = next((r for r in ing.rules if r.host and r.paths), None)
        if key is None or rule is None:
            continue
        value = ing.meta.annotations[key]
        origin = snapshot.hub.origin(ing)
        names = [part.partition("=")[0].strip() for part in value.split(",")]
        if len(names) < 2 or value not in Path(origin).read_text(encoding="utf-8"):
            continue
        target = names[-1] if not value.replace(" ", "").endswith(f"{names[-1]}=100") else names[0]
        new = ",".join(f"{n}={100 if n == target else 0}" for n in names)
        path = rule.paths[0].path if rule.paths[0].path.startswith("/") else "/"
        curl = f"curl -si -H 'Host: {rule.host}' {base}{path} | grep -i x-fleetgate-cluster"
        return [f"Try: send all of {rule.host} to one member cluster, then back:",
                f"  sed -i 's|{value}|{new}|' {shlex.quote(origin)}",
                f"  {curl}   # now always {target}",
                f"  sed -i 's|{new}|{value}|' {shlex.quote(origin)}"]
    return []


async def run_demo(args: argparse.Namespace, stop: asyncio.Event) -> None:
    """Prepare the working folder (unless --fleet names a fleet), start the backends, then
    `up` on the fleet; any bind failure is a StartupError before anything serves."""
    if args.fleet is None:
        work = prepare_working_folder(args.dir)
        args.fleet = str(work.fleet_yaml)
        print(f"demo fleet: {work.path} ("
              + ("a new copy of the bundled demo" if work.created else "existing folder, used as it is") + ")",
              flush=True)
    try:
        pods = demo_pods(args.fleet)
    except FleetConfigError as exc:
        raise StartupError(str(exc)) from None
    runners = await start_echo_backends(pods)
    print(f"started {len(runners)} echo backends standing in for the member clusters' pods", flush=True)
    try:
        if args.live:
            await _run_live(args, stop)
        else:
            await run_components(args, stop, gateway=True, dns=True, controller=True,
                                 on_ready=lambda bound: print_try_lines(bound, fleet_path=args.fleet))
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
    from kubefake import KubeAPIServer  # the demo's stand-in clusters; loaded only for --live

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
            print(f"\nThe API servers were loaded from {fleet_file(args.fleet).absolute().parent} at start; "
                  "from now on kubectl changes them (edits to those files do not).", flush=True)
            print("\n".join(kubectl_lines(live, args.fleet, bound) + ["Ctrl-C stops."]), flush=True)

        try:
            await run_components(live_args, stop, gateway=True, dns=True, controller=True, on_ready=ready)
        finally:
            await live.stop()
