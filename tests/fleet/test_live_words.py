"""What an unreachable live cluster is called: a warning that says what is still served."""
from __future__ import annotations

import asyncio
from pathlib import Path

from fleet.config import SourceSpec
from fleet.live import LiveSource
from kubefake import KubeAPIServer


async def eventually(check, what: str, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    """Await a condition a background task makes true (bounded; polls the loop, no fixed sleep)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def service(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "demo"},
            "spec": {"ports": [{"name": "http", "port": 80}]}}


async def test_a_cluster_never_reached_says_no_objects_loaded_yet(tmp_path: Path) -> None:
    server = await KubeAPIServer().start()
    kubeconfig = server.kubeconfig(tmp_path / "kc.yaml", context="zone-a")
    await server.stop()
    src = LiveSource("zone-a", SourceSpec(kubeconfig=kubeconfig, context="zone-a"), start_timeout=5)
    await src.start(lambda: None)
    try:
        await eventually(lambda: not src.reachable, "unreachable")
        assert [(d.object, d.message, d.severity) for d in src.diagnostics] == [
            ("cluster/zone-a", "API server unreachable; no objects loaded yet", "warning")]
    finally:
        await src.stop()


async def test_a_cluster_lost_after_loading_says_how_many_objects_it_still_serves(tmp_path: Path) -> None:
    server = await KubeAPIServer().start()
    server.create(service("web"))
    server.create(service("api"))
    src = LiveSource("zone-a", SourceSpec(kubeconfig=server.kubeconfig(tmp_path / "kc.yaml", context="zone-a"),
                                          context="zone-a"), start_timeout=5)
    await src.start(lambda: None)
    try:
        assert src.loaded
        count = len(src._store)
        assert count >= 2
        await server.stop()
        await eventually(lambda: not src.reachable, "unreachable")
        assert [d.message for d in src.diagnostics] == [f"API server unreachable; serving its {count} last known objects"]
    finally:
        await src.stop()
