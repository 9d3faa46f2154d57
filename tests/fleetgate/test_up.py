"""`fleetgate up` in-process over a copy of the demo fleet, on port 0 everywhere.

What the composition root promises: each fleet snapshot is derived once for every
component that needs derived MCS objects, and a stopped run leaves no task and no socket.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import aiohttp
import dns.asyncquery
import dns.message
import pytest

import controller.derive
from fleet.snapshot import FleetSnapshot
from fleetgate.cli import build_parser
from fleetgate.demo import BUNDLED_DEMO
from fleetgate.run import run_components

EXTRA = """\
apiVersion: v1
kind: Service
metadata: {name: extra, namespace: demo}
spec:
  ports: [{name: http, protocol: TCP, port: 80}]
---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceExport
metadata: {name: extra, namespace: demo}
"""


def socket_inodes() -> set[str]:
    """The sockets this process holds open, by inode (from /proc/self/fd)."""
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed while listing (the listing's own fd)
            continue
        if target.startswith("socket:"):
            out.add(target)
    return out


class Up:
    """A running `up`: its bound addresses, and a way to stop it and wait."""

    def __init__(self, task: asyncio.Task[None], stop: asyncio.Event, bound: dict[str, Any]) -> None:
        self.task, self.stop, self.bound = task, stop, bound

    def url(self, what: str, path: str) -> str:
        host, port = self.bound[what]
        return f"http://{host}:{port}{path}"

    async def close(self) -> None:
        self.stop.set()
        await self.task


@pytest.fixture
async def start_up(tmp_path: Path) -> AsyncIterator[Callable[[], Any]]:
    started: list[Up] = []
    folder = tmp_path / "fleet"
    shutil.copytree(BUNDLED_DEMO, folder)

    async def start() -> Up:
        args = build_parser().parse_args([
            "up", "--fleet", str(folder), "--http", "127.0.0.1:0", "--https", "127.0.0.1:0",
            "--dns", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--drain-timeout", "1"])
        stop, ready = asyncio.Event(), asyncio.Event()
        bound: dict[str, Any] = {}

        def on_ready(addresses: dict[str, Any]) -> None:
            bound.update(addresses)
            ready.set()
        task = asyncio.get_running_loop().create_task(run_components(
            args, stop, gateway=True, dns=True, controller=True, on_ready=on_ready), name="test-up")
        async with asyncio.timeout(20):
            await asyncio.wait([task, asyncio.ensure_future(ready.wait())], return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()  # a start-up failure: raise it here
        up = Up(task, stop, bound)
        started.append(up)
        return up

    start.folder = folder  # type: ignore[attr-defined]
    yield start
    for up in started:
        if not up.task.done():
            await up.close()


async def get_json(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as response:
        assert response.status == 200, (url, response.status, await response.text())
        return await response.json()


async def test_up_derives_each_snapshot_once(start_up: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    original = controller.derive.derive_imports
    derived: list[int] = []

    def counting(snapshot: FleetSnapshot, **kwargs: Any) -> Any:
        derived.append(snapshot.version)
        return original(snapshot, **kwargs)

    # every module holding the function, so a second caller anywhere would be counted too
    for module in list(sys.modules.values()):
        if getattr(module, "derive_imports", None) is original:
            monkeypatch.setattr(module, "derive_imports", counting)
    up = await start_up()
    (start_up.folder / "zone-b" / "extra.yaml").write_text(EXTRA)
    async with aiohttp.ClientSession() as session:
        async with asyncio.timeout(15):
            while True:
                imports = await get_json(session, up.url("admin", "/debug/imports?cluster=zone-a"))
                zone = await get_json(session, up.url("admin", "/debug/zone?cluster=zone-a"))
                routes = await get_json(session, up.url("admin", "/debug/routes"))
                soa = next(r for r in zone["records"] if r["type"] == "SOA")
                if ("extra" in {i["metadata"]["name"] for i in imports["serviceImports"]}
                        and " 2 " in soa["data"] and routes["version"] == 2):
                    break
                await asyncio.sleep(0.05)
    # the file controller, the DNS zone and (with live members) the writer all saw snapshot
    # 2; it was derived once, as snapshot 1 was
    assert derived == [1, 2]
    await up.close()


async def test_a_stopped_up_leaves_no_task_and_no_socket(start_up: Any) -> None:
    tasks_before = asyncio.all_tasks()
    sockets_before = socket_inodes()
    up = await start_up()
    assert socket_inodes() - sockets_before  # it listens: the check below can see sockets
    async with aiohttp.ClientSession() as session:
        async with session.get(up.url("admin", "/readyz")) as response:
            assert response.status == 200
        async with session.get(up.url("http", "/"), headers={"Host": "nobody.example"}) as response:
            assert response.status == 404
    host, port = up.bound["dns"]
    reply = await dns.asyncquery.udp(dns.message.make_query("web.demo.svc.clusterset.local", "A"), host,
                                     port=port, timeout=5)
    assert reply.rcode() in (0, 3)  # the responder answered
    await up.close()
    assert up.task.exception() is None
    current = asyncio.current_task()
    left = [t for t in asyncio.all_tasks() - tasks_before if t is not current and not t.done()]
    assert left == []
    assert socket_inodes() - sockets_before == set()
