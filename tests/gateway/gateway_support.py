"""Harness for gateway tests (imported by conftest and tests): fleets written as files, real backends on distinct loopback
addresses (one per pod), and a real gateway on port 0 following the fleet.

Fixtures are factories so each test states its own scenario in a few lines.
"""
from __future__ import annotations

import asyncio
import importlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Awaitable, Callable

import pytest
import yaml
from aiohttp import web

from fleet.config import load_fleet_config
from fleet.fleet import Fleet
from gateway.context import Limits
from gateway.routing.backends import Backend, ClusterShare, make_endpoint
from gateway.server import Gateway, GatewayOptions


# --- manifests as dicts ---------------------------------------------------------------------

def ingress(name: str, rules: list[dict], *, namespace: str = "demo", annotations: dict | None = None,
            cls: str | None = "fleetgate", default: tuple[str, int | str] | None = None,
            created: str | None = None, tls: list[dict] | None = None) -> dict:
    spec: dict[str, Any] = {"rules": rules}
    if tls is not None:
        spec["tls"] = tls
    if cls is not None:
        spec["ingressClassName"] = cls
    if default is not None:
        spec["defaultBackend"] = backend_ref(*default)
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "annotations": annotations or {}}
    if created:
        meta["creationTimestamp"] = created
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta, "spec": spec}


def backend_ref(service: str, port: int | str = 80) -> dict:
    p = {"number": port} if isinstance(port, int) else {"name": port}
    return {"service": {"name": service, "port": p}}


def rule(host: str | None, *paths: tuple[str, str, str] | tuple[str, str, str, int | str]) -> dict:
    """rule("a.example", ("/api", "Prefix", "api-svc"), ...)"""
    out: dict[str, Any] = {"http": {"paths": [
        {"path": p[0], "pathType": p[1], "backend": backend_ref(p[2], p[3] if len(p) > 3 else 80)}
        for p in paths]}}
    if host is not None:
        out["host"] = host
    return out


INGRESS_CLASS = {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
                 "metadata": {"name": "fleetgate"}, "spec": {"controller": "fleetgate.io/gateway"}}


def service(name: str, *, namespace: str = "demo", port: int = 80, port_name: str = "http") -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
            "spec": {"ports": [{"name": port_name, "port": port}]}}


def endpoint_slice(service_name: str, endpoints: list[tuple[str, int]], *, namespace: str = "demo",
                   port_name: str = "http", suffix: str = "1", ready: bool | None = True) -> dict:
    ports = sorted({p for _, p in endpoints})
    assert len(ports) <= 1, "one port per slice in these fixtures"
    eps = []
    for addr, _ in endpoints:
        e: dict[str, Any] = {"addresses": [addr]}
        if ready is not None:
            e["conditions"] = {"ready": ready}
        eps.append(e)
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{service_name}-{suffix}", "namespace": namespace,
                         "labels": {"kubernetes.io/service-name": service_name}},
            "addressType": "IPv4", "ports": [{"name": port_name, "port": ports[0] if ports else 1}],
            "endpoints": eps}


def write_docs(path: Path, docs: list[dict]) -> None:
    """Atomic write (temp + rename) so the file poller never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp"
    tmp.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    os.replace(tmp, path)


@dataclass
class FleetDir:
    root: Path
    clusters: list[str]

    @property
    def fleet_yaml(self) -> Path:
        return self.root / "fleet.yaml"

    def hub(self, docs: list[dict], name: str = "ingresses.yaml") -> None:
        write_docs(self.root / "hub" / name, docs)

    def member(self, cluster: str, docs: list[dict], name: str = "objects.yaml") -> None:
        write_docs(self.root / cluster / name, docs)


def make_fleet_dir(root: Path, clusters: list[str], zones: dict[str, str] | None = None) -> FleetDir:
    (root / "hub").mkdir(parents=True, exist_ok=True)
    lines = ["hub:", "  manifests: hub/", "clusters:"]
    for c in clusters:
        (root / c).mkdir(exist_ok=True)
        lines += [f"  - name: {c}", f"    manifests: {c}/"]
        if zones and c in zones:
            lines.append(f"    zone: {zones[c]}")
    (root / "fleet.yaml").write_text("\n".join(lines) + "\n")
    fd = FleetDir(root, clusters)
    fd.hub([INGRESS_CLASS], name="class.yaml")
    return fd


@pytest.fixture
def fleet_dir(tmp_path: Path) -> Callable[..., FleetDir]:
    def make(*clusters: str, zones: dict[str, str] | None = None) -> FleetDir:
        return make_fleet_dir(tmp_path / "fleet", list(clusters) or ["zone-a", "zone-b"], zones)
    return make


def served(name: str, *pods: Any) -> list[dict]:
    """A Service and the EndpointSlice of its ready pods (anything with .host and .port)."""
    return [service(name), endpoint_slice(name, [(p.host, p.port) for p in pods])]


# --- resolved backends as the route builder makes them (for the pure tests) ---------------

def backend(name: str, **clusters: int) -> Backend:
    """Service `name` resolved in each cluster given with its endpoint count: cluster i gets
    zone az-{i+1} and endpoints 127.0.{i}.1.. port 80."""
    shares = []
    for i, (cluster, n) in enumerate(clusters.items()):
        shares.append(ClusterShare(cluster, f"az-{i + 1}",
                                   tuple(make_endpoint(f"127.0.{i}.{j + 1}", 80, cluster, f"az-{i + 1}")
                                         for j in range(n))))
    return Backend(f"demo/{name}:80", "demo", name, "80", tuple(shares),
                   tuple(e for s in shares for e in s.endpoints))


# --- backends: real HTTP servers, one per "pod" address -----------------------------------

@dataclass
class EchoBackend:
    name: str
    host: str
    port: int
    hits: int = 0
    requests: list[dict] = field(default_factory=list)
    runner: Any = None

    async def stop(self) -> None:
        """Kill the pod: stop listening and reset every open connection at once."""
        for site in list(self.runner.sites):
            await site.stop()
        for handler in list(self.runner.server.connections):
            if handler.transport is not None:
                handler.transport.abort()


@pytest.fixture
async def echo_backends() -> Any:
    """start(name, host) -> EchoBackend: an aiohttp server answering JSON
    {backend, method, path, headers, body_len} and counting hits."""
    runners: list[web.AppRunner] = []

    async def start(name: str, host: str = "127.0.0.1", port: int = 0,
                    handler: Callable[[web.Request], Awaitable[web.StreamResponse]] | None = None) -> EchoBackend:
        backend = EchoBackend(name, host, 0)

        async def echo(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            backend.hits += 1
            info = {"backend": name, "method": request.method, "path": request.path_qs,
                    "headers": {k.lower(): v for k, v in request.headers.items()}, "body_len": len(body)}
            backend.requests.append(info)
            if handler is not None:
                return await handler(request)
            return web.json_response(info)

        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", echo)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        backend.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        backend.runner = runner
        runners.append(runner)
        return backend

    yield start
    for r in runners:
        await r.cleanup()


# --- the gateway under test ------------------------------------------------------------------

@dataclass
class RunningGateway:
    gateway: Gateway
    fleet: Fleet
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def wait_version(self, version: int, timeout: float = 5.0) -> None:
        """Wait until the route table was built from snapshot `version` or later."""
        deadline = time.monotonic() + timeout
        while self.gateway.table.version < version:
            if time.monotonic() > deadline:
                raise AssertionError(f"table stuck at v{self.gateway.table.version}, wanted v{version}")
            await asyncio.sleep(0.01)

    async def wait_reload(self, timeout: float = 5.0) -> None:
        """Wait for the next snapshot after now."""
        await self.wait_version(self.fleet.snapshot.version + 1, timeout)


@pytest.fixture
async def start_gateway() -> Any:
    running: list[tuple[Gateway, Fleet]] = []

    async def start(fd: FleetDir, *, limits: Limits | None = None, cluster_header: bool = True,
                    ingress_classes: tuple[str, ...] = ("fleetgate",), https: bool = False) -> RunningGateway:
        fleet = Fleet.from_config(load_fleet_config(fd.fleet_yaml), poll_interval=0.05)
        await fleet.start()
        gw = Gateway(GatewayOptions(http=("127.0.0.1", 0), limits=limits or Limits(),
                                    cluster_header=cluster_header, ingress_classes=ingress_classes,
                                    https=("127.0.0.1", 0) if https else None))
        gw.follow(fleet)
        (host, port), *_ = await gw.start()
        running.append((gw, fleet))
        return RunningGateway(gw, fleet, host, port)

    yield start
    for gw, fleet in running:
        await gw.close()
        await fleet.stop()


async def raw_request(host: str, port: int, data: bytes, *, read_timeout: float = 5.0,
                      until_close: bool = True) -> bytes:
    """Send raw bytes, read until the server closes (or the timeout); for malformed input."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(data)
    await writer.drain()
    chunks = []
    try:
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), read_timeout)
            if not chunk:
                break
            chunks.append(chunk)
            if not until_close:
                break
    except asyncio.TimeoutError:
        pass
    finally:
        writer.close()
    return b"".join(chunks)


def body_json(text: str) -> dict:
    return json.loads(text)


# the request-path core's modules, per build: the core first (it names the build), then the
# exchange and the route snapshot / warm plan that _core.pxd cimports
EXCHANGE_MODULES = {"pure": ("_core_py", "_exchange_py", "_route_py"), "compiled": ("_core", "_exchange", "_route")}


def exchange_build(build: str) -> ModuleType:
    """One build of the request-path core ("pure" | "compiled") as one namespace: the names
    of its three modules, under the core module's name (ImportError: not built)."""
    parts = [importlib.import_module("gateway.exchange." + name) for name in EXCHANGE_MODULES[build]]
    ns = ModuleType(parts[0].__name__)
    for part in reversed(parts):
        ns.__dict__.update({k: v for k, v in vars(part).items() if not k.startswith("__")})
    return ns


def exchange_builds() -> list[ModuleType]:
    """The request-path core's builds to hold to each other: the pure-Python twin, and the
    compiled modules when they are built (`setup.py build_ext --inplace` builds them)."""
    builds = [exchange_build("pure")]
    try:
        builds.append(exchange_build("compiled"))
    except ImportError:  # not built: the twin alone
        pass
    return builds
