"""`fleetgate demo --live`: the bundled demo fleet served by test API servers, and the
kubectl lines it prints actually change what the gateway routes."""
from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from fleetgate.cli import DEFAULT_FLEET, build_parser
from fleet.config import load_fleet_config
from fleetgate.demo import kubectl_lines, start_live_clusters
from fleet.fleet import Fleet, load_fleet_once
from fleet.live import LiveSource
from kubefake.kubectl import kubectl
from tests.live_support import eventually
from tests.tools import require_tool



def test_demo_takes_a_live_flag() -> None:
    assert build_parser().parse_args(["demo", "--live"]).live is True
    assert build_parser().parse_args(["demo"]).live is False


async def run_kubectl(line: str, home: Path) -> str:
    argv = shlex.split(line.split("   #")[0])
    assert argv[0] == "kubectl"
    return await kubectl(*argv[1:], cache_dir=home / "cache", env={"HOME": str(home), "PATH": "/usr/bin:/bin"})


async def test_the_live_demo_serves_the_demo_objects_and_follows_its_kubectl_lines(tmp_path: Path) -> None:
    require_tool("kubectl")  # before starting three API servers it would not use
    live = await start_live_clusters(DEFAULT_FLEET, tmp_path)
    fleet: Any = None
    try:
        assert set(live.servers) == {"hub", "zone-a", "zone-b"} and live.hub == "hub"
        config = load_fleet_config(live.fleet_yaml)
        assert [c.source.kubeconfig for c in config.clusters] == [live.kubeconfigs["zone-a"],
                                                                   live.kubeconfigs["zone-b"]]
        fleet = Fleet.from_config(config, live_factory=LiveSource.factory)
        await fleet.start()
        assert fleet.ready
        files, served = load_fleet_once(load_fleet_config(DEFAULT_FLEET)), fleet.snapshot
        assert set(served.hub.ingresses) == set(files.hub.ingresses)
        for on_files, on_api in zip(files.members, served.members):
            assert (on_api.name, on_api.zone) == (on_files.name, on_files.zone)
            for kind in ("Service", "EndpointSlice", "ServiceExport"):
                assert set(on_api.objects.of(kind)) == set(on_files.objects.of(kind)), (on_api.name, kind)

        lines = kubectl_lines(live, DEFAULT_FLEET, {"http": ("127.0.0.1", 8080)})
        assert any(f"--server {live.servers['hub'].url}" in line for line in lines)
        patch = next(line.strip() for line in lines if "patch ingress" in line)
        await run_kubectl(patch, tmp_path)
        await eventually(lambda: any(r.host and r.host.startswith("moved.")
                                     for i in fleet.snapshot.hub.ingresses.values() for r in i.rules),
                         what="the Ingress moved by kubectl")
        unready = next(line.strip() for line in lines if "patch endpointslice" in line)
        await run_kubectl(unready, tmp_path)
        await eventually(lambda: any(e.ready is False for m in fleet.snapshot.members
                                     for s in m.objects.endpoint_slices.values() for e in s.endpoints),
                         what="the endpoint made not ready by kubectl")
    finally:
        if fleet is not None:
            await fleet.stop()
        await live.stop()
