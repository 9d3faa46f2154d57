"""Live: a write's answer handled after watch events for the same object never puts into the
store something the API server no longer holds (writer._learn, LiveSource.writing).

The answers are held back by wrapping the writer's client, so the watch's events for the
object reach the store first, as on a loaded controller or a slow network."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Awaitable, Callable

from kubefake import KubeAPIServer
from tests.controller.mcs_support import endpoint, endpoint_slice, export, service
from tests.controller.test_writer_live import run_controller, two_clusters  # noqa: F401  (fixture)
from tests.live_support import eventually

NAME = "amcs-api-zone-a-ipv4"  # the derived slice of `api` from zone-a


def hold_answers(client: Any, method: str, name: str) -> tuple[asyncio.Event, asyncio.Event]:
    """Hold the first answer of `client.method` for the EndpointSlice `name` until the returned
    gate is set (held: the request went through and its answer is waiting)."""
    held, gate = asyncio.Event(), asyncio.Event()
    real: Callable[..., Awaitable[Any]] = getattr(client, method)

    async def late(resource: Any, *args: Any, **kw: Any) -> Any:
        answer = await real(resource, *args, **kw)
        body = args[-1] if method == "create_later" else None
        target = body["metadata"]["name"] if body is not None else args[2]
        if resource.kind == "EndpointSlice" and target == name and not held.is_set():
            held.set()
            await gate.wait()
        return answer
    setattr(client, method, late)
    return held, gate


def agrees(server: KubeAPIServer, source: Any) -> bool:
    """The store holds the slice exactly as the API server does (same resourceVersion), or
    neither holds it."""
    on_server, in_store = server.get("EndpointSlice", NAME, "demo"), source.current("EndpointSlice", "demo", NAME)
    if on_server is None or in_store is None:
        return on_server is None and in_store is None
    return bool(in_store.meta.resource_version == on_server["metadata"]["resourceVersion"])


def export_api(server: KubeAPIServer, ip: str = "10.1.0.9") -> None:
    server.create(service("api"))
    server.create(endpoint_slice("api", [endpoint(ip)], name="api-1"))
    server.create(export("api"))


async def test_a_create_answer_after_the_objects_added_and_deleted_events_is_not_stored(
        api_servers: Any, run_controller: Any, tmp_path: Path) -> None:
    """ADDED then DELETED (kubectl, the GC) before the create's answer is handled: the store
    was None before and is None again, yet the answer must not bring the slice back into the
    store; the writer sees it missing and creates it again."""
    a, b, live = await two_clusters(api_servers, tmp_path)
    run = await run_controller(live)
    worker = run.writer.workers["zone-b"]
    source = worker.source
    await eventually(lambda: source.loaded and run.writer.idle, what="loaded")
    held, gate = hold_answers(source.client, "create_later", NAME)

    export_api(a)
    await asyncio.wait_for(held.wait(), 10)
    await eventually(lambda: source.current("EndpointSlice", "demo", NAME) is not None, what="the ADDED echo")
    first_uid = b.get("EndpointSlice", NAME, "demo")["metadata"]["uid"]
    b.delete("EndpointSlice", NAME, "demo")
    await eventually(lambda: source.current("EndpointSlice", "demo", NAME) is None, what="the DELETED event")
    gate.set()
    await eventually(lambda: (b.get("EndpointSlice", NAME, "demo") or {}).get("metadata", {}).get("uid")
                     not in (None, first_uid), what="the slice created again")
    await eventually(lambda: run.writer.idle and not run.writer.plan("zone-b"), what="converged")
    assert agrees(b, source), "the store and the API server disagree"
    assert source.current("EndpointSlice", "demo", NAME).endpoints[0].addresses == ("10.1.0.9",)
    assert not source._writing, "every write's in-flight entry is released"


async def test_an_update_answer_after_a_later_change_does_not_overwrite_it(
        api_servers: Any, run_controller: Any, tmp_path: Path) -> None:
    """An endpoint change's patch answer held while another writer replaces the slice: the
    watch's later version stays in the store (the older answer loses), and the writer then
    puts the slice back to what it derives."""
    a, b, live = await two_clusters(api_servers, tmp_path)
    export_api(a)
    run = await run_controller(live)
    source = run.writer.workers["zone-b"].source
    await eventually(lambda: b.get("EndpointSlice", NAME, "demo") is not None and run.writer.idle,
                     what="the slice written")
    held, gate = hold_answers(source.client, "merge_patch_later", NAME)

    a.replace({**endpoint_slice("api", [endpoint("10.1.0.10")], name="api-1"),
               "metadata": {**a.get("EndpointSlice", "api-1", "demo")["metadata"]}})
    await asyncio.wait_for(held.wait(), 10)
    ours = b.get("EndpointSlice", NAME, "demo")
    assert [e["addresses"] for e in ours["endpoints"]] == [["10.1.0.10"]]
    other = b.replace({**ours, "endpoints": [{"addresses": ["10.9.9.9"], "conditions": {"ready": True}}]})
    later = other["metadata"]["resourceVersion"]
    await eventually(lambda: source.current("EndpointSlice", "demo", NAME).meta.resource_version == later,
                     what="the other writer's version in the store")
    gate.set()
    await eventually(lambda: [e["addresses"] for e in b.get("EndpointSlice", NAME, "demo")["endpoints"]]
                     == [["10.1.0.10"]], what="the derived endpoints written back")
    await eventually(lambda: run.writer.idle and not run.writer.plan("zone-b"), what="converged")
    assert agrees(b, source), "the store and the API server disagree"
