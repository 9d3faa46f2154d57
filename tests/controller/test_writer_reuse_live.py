"""Live: what the writer stores for its own answers (reused, not parsed: controller/answers.py)
is what parsing the object the API server holds gives, also for a source spelling unset
optional fields as "" (a zone, a nodeName, an appProtocol)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import controller.answers
from fleet.objects import parse_object
from tests.controller.mcs_support import endpoint, endpoint_slice, export, service
from tests.controller.test_writer_live import imported, managed, run_controller, two_clusters  # noqa: F401
from tests.live_support import eventually


async def test_the_stored_answers_equal_the_parsed_objects_when_a_source_spells_unset_as_empty(
        api_servers: Any, run_controller: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the store itself is compared here (answers.CHECK would stop at the first difference)
    monkeypatch.setattr(controller.answers, "CHECK", False)
    a, b, live = await two_clusters(api_servers, tmp_path)
    ep = endpoint("10.1.0.1")
    ep.update(zone="", nodeName="")
    source_slice = endpoint_slice("web", [ep], name="web-1")
    source_slice["ports"][0]["appProtocol"] = ""
    svc = service("web")
    svc["spec"]["ports"][0]["appProtocol"] = ""
    a.create(svc)
    a.create(source_slice)
    a.create(export("web"))
    run = await run_controller(live)
    await eventually(lambda: imported(b, ["zone-a"]), what="the import written")
    await eventually(lambda: not run.writer.plan("zone-b") and run.writer.idle, what="quiet")
    worker = run.writer.workers["zone-b"]
    assert worker.answers_reused.get("EndpointSlice"), "the slice's answer was reused"
    api_versions = {"EndpointSlice": "discovery.k8s.io/v1", "Service": "v1"}
    for kind in ("EndpointSlice", "Service", "ServiceImport"):
        for raw in managed(b, kind):
            held = worker.source.current(kind, "demo", raw["metadata"]["name"])
            parsed = parse_object({"apiVersion": api_versions.get(kind, raw.get("apiVersion")), "kind": kind, **raw})
            assert held == parsed, f"{kind} {raw['metadata']['name']}"
    (raw,) = managed(b, "EndpointSlice")
    assert raw["endpoints"] == [{"addresses": ["10.1.0.1"], "conditions": {"ready": True}}], \
        "unset fields are not written"
