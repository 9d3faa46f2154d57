"""`fleetgate validate` on a fleet with kubeconfig sources: it connects, waits for the
first lists, and reports objects and unreachable clusters like it does for files."""
from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable

from kubefake import KubeAPIServer
from tests.live_support import INGRESS_CLASS, endpoint_slice, ingress, rule, service, write_fleet

Start = Callable[..., Awaitable[KubeAPIServer]]
ROOT = Path(__file__).resolve().parents[2]


def validate(fleet_yaml: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fleetgate.cli", "validate", "--fleet", str(fleet_yaml), "--wait", "2",
                           *extra], capture_output=True, text=True, timeout=60, cwd=ROOT)


async def test_validate_reads_live_clusters_and_reports_bad_objects(api_servers: Start, tmp_path: Path) -> None:
    zone_a = await api_servers()
    for obj in (INGRESS_CLASS, ingress("web", [rule("web.example.com", ("/", "Prefix", "web"))]),
                ingress("ghost", [rule("ghost.example.com", ("/", "Prefix", "nope"))]),
                service("web"), endpoint_slice("web", [("127.0.65.1", 8080)])):
        zone_a.create(obj)
    fleet = write_fleet(tmp_path / "fleet", hub="zone-a", members={"zone-a": zone_a})
    result = await asyncio.to_thread(validate, fleet.fleet_yaml)
    assert "1 member clusters, 2 Ingresses on the hub" in result.stdout, result.stdout + result.stderr
    assert "Ingress/demo/ghost" in result.stdout and "nope" in result.stdout
    assert result.returncode == 0  # a missing Service is a warning: the route answers 503


async def test_an_unreachable_cluster_is_a_warning_that_fails_under_strict(api_servers: Start, tmp_path: Path) -> None:
    zone_a = await api_servers()
    fleet = write_fleet(tmp_path / "fleet", hub="zone-a", members={"zone-a": zone_a})
    await zone_a.stop()
    result = await asyncio.to_thread(validate, fleet.fleet_yaml)
    out = result.stdout.splitlines()
    assert [line for line in out if "cluster/zone-a" in line] == [
        f"{fleet.fleet_yaml}: cluster/zone-a: not loaded within 2s (API server unreachable?); "
        "its objects were not checked (warning)"], result.stdout + result.stderr
    assert out[-1].endswith("0 errors, 1 warnings") and result.returncode == 0
    strict = await asyncio.to_thread(validate, fleet.fleet_yaml, "--strict")
    assert strict.stdout.splitlines()[-1].endswith("1 errors, 0 warnings") and strict.returncode == 1
