"""fleetgate_controller_objects_written_total and fleetgate_controller_sync_lag_seconds
from a live controller writing to two test API servers, scraped over the admin listener."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import aiohttp

from fleet.admin import AdminServer
from fleetgate.controller_metrics import ControllerSyncMetrics
from tests.controller.mcs_support import endpoint, endpoint_slice, export, service
from tests.controller.test_writer_live import export_web, imported, run_controller, two_clusters  # noqa: F401
from tests.live_support import eventually


async def scrape(admin: AdminServer) -> dict[str, float]:
    async with aiohttp.ClientSession() as s:
        async with s.get("http://%s:%d/metrics" % admin.address) as r:
            text = await r.text()
    return {m.group(1): float(m.group(2))
            for m in re.finditer(r"^(fleetgate_controller_(?:objects_written_total|sync_lag_seconds)\S*) (\S+)$",
                                 text, re.M)}


async def test_written_counts_and_sync_lag_follow_the_controller(api_servers: Any, run_controller: Any,  # noqa: F811
                                                                 tmp_path: Path) -> None:
    a, b, live = await two_clusters(api_servers, tmp_path)
    export_web(a, "10.1.0.1")
    run = await run_controller(live)
    metrics = ControllerSyncMetrics(run.writer).start()
    admin = AdminServer()
    admin.add_collector(metrics)
    await admin.start("127.0.0.1", 0)
    try:
        for server in (a, b):
            await eventually(lambda s=server: imported(s, ["zone-a"]), timeout=30, what="the import written")
        await eventually(lambda: run.writer.idle, timeout=30, what="caught up")
        seen = await scrape(admin)
        assert seen["fleetgate_controller_sync_lag_seconds"] == 0.0
        written_b = seen['fleetgate_controller_objects_written_total{cluster="zone-b"}']
        assert written_b >= 3 and seen['fleetgate_controller_objects_written_total{cluster="zone-a"}'] >= 3

        # zone-b's API server slows down: a new export keeps the controller behind
        b.delay(1.5)
        a.create(service("api", ports=[("http", 80, "TCP")]))
        a.create(endpoint_slice("api", [endpoint("10.1.0.2")], name="api-1"))
        a.create(export("api"))
        lags: list[float] = []

        async def behind() -> bool:
            lags.append((await scrape(admin))["fleetgate_controller_sync_lag_seconds"])
            return lags[-1] > 0.5
        await eventually(behind, timeout=30, interval=0.1, what="a lag while zone-b is slow")
        b.delay(0)
        await eventually(lambda: run.writer.idle, timeout=30, what="caught up again")

        async def in_sync() -> bool:
            return (await scrape(admin))["fleetgate_controller_sync_lag_seconds"] == 0.0
        await eventually(in_sync, timeout=10, interval=0.1, what="lag back to 0")
        assert (await scrape(admin))['fleetgate_controller_objects_written_total{cluster="zone-b"}'] > written_b
    finally:
        await admin.close()
        await metrics.close()


async def test_reconcile_results_count_ok_conflict_and_error(api_servers: Any, run_controller: Any,  # noqa: F811
                                                             tmp_path: Path) -> None:
    a, b, live = await two_clusters(api_servers, tmp_path)
    export_web(a, "10.1.0.1")
    a.fail_next(1, 409, method="PATCH", path="/status")  # the export's status: a stale view, planned again
    b.fail_next(1, 500, method="POST", path="/serviceimports")  # zone-b's import: an error, retried
    admin = AdminServer()
    await admin.start("127.0.0.1", 0)

    async def results() -> dict[str, float]:
        async with aiohttp.ClientSession() as s:
            async with s.get("http://%s:%d/metrics" % admin.address) as r:
                text = await r.text()
        return {m.group(1): float(m.group(2)) for m in
                re.finditer(r'^fleetgate_controller_reconcile_total\{result="(\w+)"\} (\S+)$', text, re.M)}
    try:
        before = await results()
        run = await run_controller(live)
        for server in (a, b):
            await eventually(lambda s=server: imported(s, ["zone-a"]), timeout=30, what="the import written")
        await eventually(lambda: run.writer.idle, timeout=30, what="caught up")
        after = await results()
    finally:
        await admin.close()
    moved = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in ("ok", "conflict", "error")}
    assert moved["conflict"] >= 1 and moved["error"] >= 1 and moved["ok"] >= 2, moved
