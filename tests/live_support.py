"""Shared harness for live-fleet tests in every package (fixtures imported by their conftest): test API servers per
cluster, fleets pointing at them through kubeconfigs, a gateway following such a fleet,
and kubernetes_asyncio clients for the changes a user would make. Manifest builders and
echo backends come from the gateway harness (tests/gateway/gateway_support.py)."""
from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
import yaml
from kubernetes_asyncio import client as k8s

sys.path.insert(0, str(Path(__file__).resolve().parent / "gateway"))

from gateway_support import INGRESS_CLASS, echo_backends, endpoint_slice, ingress, rule, service  # noqa: E402,F401

from fleet.admin import AdminServer  # noqa: E402
from fleet.config import load_fleet_config  # noqa: E402
from fleet.fleet import Fleet  # noqa: E402
from fleet.live import LiveSource  # noqa: E402
from kubefake import KubeAPIServer  # noqa: E402
from gateway.server import Gateway, GatewayOptions  # noqa: E402

async def eventually(check: Callable[[], Any], *, timeout: float = 5.0, interval: float = 0.01,
                     what: str = "condition") -> Any:
    """Poll `check()` (sync or async) until it returns something truthy; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        await asyncio.sleep(interval)


@pytest.fixture
async def api_servers() -> AsyncIterator[Callable[..., Awaitable[KubeAPIServer]]]:
    """start(**options) -> a running KubeAPIServer; all stopped after the test."""
    started: list[KubeAPIServer] = []

    async def start(**options: Any) -> KubeAPIServer:
        options.setdefault("bookmark_interval", 0.2)
        server = await KubeAPIServer(**options).start()
        started.append(server)
        return server

    yield start
    for server in started:
        await server.stop()


@dataclass
class LiveFleet:
    """A fleet folder whose clusters are test API servers or manifest folders."""
    root: Path
    servers: dict[str, KubeAPIServer] = field(default_factory=dict)
    kubeconfigs: dict[str, Path] = field(default_factory=dict)

    @property
    def fleet_yaml(self) -> Path:
        return self.root / "fleet.yaml"


def write_fleet(root: Path, *, hub: str | KubeAPIServer, members: dict[str, KubeAPIServer | list[dict]],
                zones: dict[str, str] | None = None) -> LiveFleet:
    """members: name -> a server (live) or a list of manifests (a files member). hub: a
    member's name (it doubles as the hub) or a server of its own."""
    root.mkdir(parents=True, exist_ok=True)
    fleet = LiveFleet(root)
    doc: dict[str, Any] = {}
    if isinstance(hub, str):
        doc["hub"] = {"cluster": hub}
    else:
        fleet.servers["hub"] = hub
        fleet.kubeconfigs["hub"] = hub.kubeconfig(root / "hub.kubeconfig", context="hub")
        doc["hub"] = {"kubeconfig": "hub.kubeconfig", "context": "hub"}
    clusters = []
    for name, member in members.items():
        entry: dict[str, Any] = {"name": name}
        if zones and name in zones:
            entry["zone"] = zones[name]
        if isinstance(member, KubeAPIServer):
            fleet.servers[name] = member
            fleet.kubeconfigs[name] = member.kubeconfig(root / f"{name}.kubeconfig", context=name)
            entry.update(kubeconfig=f"{name}.kubeconfig", context=name)
        else:
            folder = root / name
            folder.mkdir(exist_ok=True)
            (folder / "objects.yaml").write_text(yaml.safe_dump_all(member, sort_keys=False))
            entry["manifests"] = f"{name}/"
        clusters.append(entry)
    doc["clusters"] = clusters
    fleet.fleet_yaml.write_text(yaml.safe_dump(doc, sort_keys=False))
    return fleet


@dataclass
class RunningLive:
    fleet: Fleet
    gateway: Gateway
    url: str
    admin: AdminServer | None = None

    @property
    def admin_url(self) -> str:
        assert self.admin is not None and self.admin.address is not None
        return "http://%s:%d" % self.admin.address


@pytest.fixture
async def run_gateway() -> AsyncIterator[Callable[..., Awaitable[RunningLive]]]:
    """start(live_fleet, publish_address=None, admin=False) -> a gateway following it."""
    running: list[tuple[RunningLive, Any]] = []

    async def start(live: LiveFleet, *, publish_address: str | None = None, admin: bool = False,
                    poll_interval: float = 0.05) -> RunningLive:
        from gateway.status import start_status_writer

        fleet = Fleet.from_config(load_fleet_config(live.fleet_yaml), live_factory=LiveSource.factory,
                                  poll_interval=poll_interval)
        await fleet.start()
        gateway = Gateway(GatewayOptions(http=("127.0.0.1", 0)))
        gateway.follow(fleet)
        (host, port), *_ = await gateway.start()
        writer = None
        if publish_address:
            writer = start_status_writer(fleet, address=publish_address, classes=("fleetgate",))
        server = None
        if admin:
            server = AdminServer(fleet)
            await server.start("127.0.0.1", 0)
        run = RunningLive(fleet, gateway, f"http://{host}:{port}", server)
        running.append((run, writer))
        return run

    yield start
    for run, writer in running:
        if writer is not None:
            await writer.close()
        if run.admin is not None:
            await run.admin.close()
        await run.gateway.close()
        await run.fleet.stop()


@pytest.fixture
async def kube() -> AsyncIterator[Callable[[Path], Awaitable[k8s.ApiClient]]]:
    """connect(kubeconfig) -> a kubernetes_asyncio ApiClient (closed after the test)."""
    from kubernetes_asyncio import config

    clients: list[k8s.ApiClient] = []

    async def connect(kubeconfig: Path) -> k8s.ApiClient:
        api = await config.new_client_from_config(config_file=str(kubeconfig))
        clients.append(api)
        return api

    yield connect
    for api in clients:
        await api.close()


async def get_json(session: aiohttp.ClientSession, url: str, host: str) -> tuple[int, dict]:
    """(status, JSON body or {}) of one GET with a Host header."""
    async with session.get(url, headers={"Host": host}) as resp:
        body = await resp.read()
    try:
        return resp.status, json.loads(body)
    except ValueError:
        return resp.status, {}
