"""Watch semantics over real HTTP: list-then-watch, history replay, bookmarks, 410, drops."""
from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.exceptions import ApiException

from kubefake import KubeAPIServer

MCS = "multicluster.x-k8s.io"


def svc(name: str, namespace: str = "default", **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace, "labels": labels or {"app": name}},
            "spec": {"ports": [{"port": 80}]}}


async def collect(stream: watch.Watch, count: int, *, types: tuple[str, ...] = ("ADDED", "MODIFIED", "DELETED"),
                  timeout: float = 5.0) -> list[dict[str, Any]]:
    """The first `count` events of the wanted types (bounded in count and time)."""
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        async for event in stream:
            if event["type"] in types:
                seen.append(event)
            if len(seen) >= count:
                break
    return seen


def summary(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["type"], e["raw_object"]["metadata"]["name"]) for e in events]


async def test_list_then_watch_sees_later_changes_exactly_once_in_order(
        server: KubeAPIServer, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    server.create(svc("a"))
    server.create(svc("b"))
    listed = await core.list_namespaced_service("default")
    # changes after the list but before the watch starts must be replayed from history
    server.create(svc("c"))
    await core.patch_namespaced_service("a", "default", {"metadata": {"labels": {"v": "2"}}})
    await core.delete_namespaced_service("b", "default")

    async def later_changes() -> None:
        await server.wait_for_watches(1)
        await core.patch_namespaced_service("c", "default", {"metadata": {"labels": {"v": "3"}}})
        await core.create_namespaced_service("default", client.V1Service(
            metadata=client.V1ObjectMeta(name="d"), spec=client.V1ServiceSpec(ports=[client.V1ServicePort(port=80)])))

    writer = asyncio.create_task(later_changes())
    w = watch.Watch()
    events = await collect(w.stream(core.list_namespaced_service, "default",
                                    resource_version=listed.metadata.resource_version, timeout_seconds=10), 5)
    await w.close()
    await writer
    assert summary(events) == [("ADDED", "c"), ("MODIFIED", "a"), ("DELETED", "b"), ("MODIFIED", "c"), ("ADDED", "d")]
    rvs = [int(e["raw_object"]["metadata"]["resourceVersion"]) for e in events]
    assert rvs == sorted(set(rvs)) and rvs[0] > int(listed.metadata.resource_version)


async def test_watch_without_resource_version_starts_with_current_state(
        server: KubeAPIServer, api: client.ApiClient) -> None:
    server.create(svc("a"))
    server.create(svc("b", namespace="other"))
    w = watch.Watch()
    events = await collect(w.stream(client.CoreV1Api(api).list_service_for_all_namespaces, timeout_seconds=10), 2)
    await w.close()
    assert sorted(summary(events)) == [("ADDED", "a"), ("ADDED", "b")]


async def test_bookmarks_carry_the_current_resource_version(server: KubeAPIServer, api: client.ApiClient) -> None:
    server.create(svc("a"))
    w = watch.Watch()
    events = await collect(w.stream(client.CoreV1Api(api).list_namespaced_service, "default",
                                    allow_watch_bookmarks=True, timeout_seconds=10), 1, types=("BOOKMARK",))
    await w.close()
    assert events[0]["raw_object"]["kind"] == "Service"
    assert int(events[0]["raw_object"]["metadata"]["resourceVersion"]) == server.store.resource_version


async def test_watch_from_compacted_resource_version_is_410(server: KubeAPIServer, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    server.create(svc("a"))
    old = (await core.list_namespaced_service("default")).metadata.resource_version
    server.create(svc("b"))
    server.compact()
    w = watch.Watch()
    with pytest.raises(ApiException) as err:
        await collect(w.stream(core.list_namespaced_service, "default", resource_version=old, timeout_seconds=5), 1)
    await w.close()
    assert err.value.status == 410
    # the wire format: HTTP 200 with one ERROR event carrying a 410 Status, then the end
    async with aiohttp.ClientSession() as http:
        async with http.get(server.url + "/api/v1/namespaces/default/services",
                            params={"watch": "1", "resourceVersion": old}) as resp:
            assert resp.status == 200
            lines = (await resp.read()).splitlines()
    event = json.loads(lines[0])
    assert len(lines) == 1 and event["type"] == "ERROR"
    assert (event["object"]["code"], event["object"]["reason"]) == (410, "Expired")
    with pytest.raises(ApiException) as err:
        await core.list_namespaced_service("default", resource_version=old, resource_version_match="Exact")
    assert err.value.status == 410


async def test_watch_from_the_compaction_point_still_works(server: KubeAPIServer, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    server.create(svc("a"))
    server.compact()
    rv = (await core.list_namespaced_service("default")).metadata.resource_version

    async def change() -> None:
        await server.wait_for_watches(1)
        server.create(svc("b"))

    writer = asyncio.create_task(change())
    w = watch.Watch()
    events = await collect(w.stream(core.list_namespaced_service, "default", resource_version=rv,
                                    timeout_seconds=10), 1)
    await w.close()
    await writer
    assert summary(events) == [("ADDED", "b")]


async def test_drop_watches_ends_open_streams(server: KubeAPIServer, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    w = watch.Watch()
    stream = w.stream(core.list_namespaced_service, "default", timeout_seconds=30)
    reader = asyncio.create_task(collect(stream, 1))
    await server.wait_for_watches(1)
    assert server.drop_watches() == 1
    assert await asyncio.wait_for(reader, 5) == []  # the stream ended with no events
    await w.close()
    assert server.open_watches == 0


async def test_drop_watches_abort_breaks_the_connection(server: KubeAPIServer) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(server.url + "/api/v1/services", params={"watch": "true"}) as resp:
            await server.wait_for_watches(1)
            server.drop_watches(abort=True)
            with pytest.raises(aiohttp.ClientError):
                async with asyncio.timeout(5):
                    await resp.read()


async def test_timeout_seconds_ends_the_stream_cleanly(server: KubeAPIServer) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(server.url + "/api/v1/services", params={"watch": "1", "timeoutSeconds": "1"}) as resp:
            async with asyncio.timeout(5):
                assert await resp.read() == b""
    assert server.open_watches == 0


async def test_object_leaving_the_selector_is_deleted_for_that_watcher(
        server: KubeAPIServer, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    server.create(svc("a", tier="front"))
    server.create(svc("b", tier="back"))
    rv = (await core.list_namespaced_service("default", label_selector="tier=front")).metadata.resource_version

    async def changes() -> None:
        await server.wait_for_watches(1)
        await core.patch_namespaced_service("a", "default", {"metadata": {"labels": {"tier": "back"}}})
        await core.patch_namespaced_service("b", "default", {"metadata": {"labels": {"x": "1"}}})
        await core.patch_namespaced_service("b", "default", {"metadata": {"labels": {"tier": "front"}}})
        await core.patch_namespaced_service("b", "default", {"metadata": {"labels": {"x": "2"}}})

    writer = asyncio.create_task(changes())
    w = watch.Watch()
    events = await collect(w.stream(core.list_namespaced_service, "default", label_selector="tier=front",
                                    resource_version=rv, timeout_seconds=10), 3)
    await w.close()
    await writer
    assert summary(events) == [("DELETED", "a"), ("ADDED", "b"), ("MODIFIED", "b")]


async def test_namespaced_watch_sees_only_its_namespace(server: KubeAPIServer, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    server.create(svc("a", namespace="one"))
    server.create(svc("b", namespace="two"))
    w = watch.Watch()
    events = await collect(w.stream(core.list_namespaced_service, "two", field_selector="metadata.name=b",
                                    timeout_seconds=10), 1)
    await w.close()
    assert summary(events) == [("ADDED", "b")]


async def test_custom_object_watch_serves_the_requested_version(
        server: KubeAPIServer, api: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(api)

    async def change() -> None:
        await server.wait_for_watches(1)
        await custom.create_namespaced_custom_object(MCS, "v1alpha1", "default", "serviceexports", {
            "apiVersion": MCS + "/v1alpha1", "kind": "ServiceExport", "metadata": {"name": "web"}})

    writer = asyncio.create_task(change())
    w = watch.Watch()
    events = await collect(w.stream(custom.list_namespaced_custom_object, MCS, "v1beta1", "default",
                                    "serviceexports", timeout_seconds=10), 1)
    await w.close()
    await writer
    assert events[0]["raw_object"]["apiVersion"] == MCS + "/v1beta1"


async def test_send_initial_events_ends_with_a_marked_bookmark(server: KubeAPIServer) -> None:
    server.create(svc("a"))
    params = {"watch": "1", "sendInitialEvents": "true", "allowWatchBookmarks": "true",
              "resourceVersionMatch": "NotOlderThan", "timeoutSeconds": "10"}
    async with aiohttp.ClientSession() as http:
        async with http.get(server.url + "/api/v1/namespaces/default/services", params=params) as resp:
            async with asyncio.timeout(5):
                first = json.loads(await resp.content.readline())
                mark = json.loads(await resp.content.readline())
    assert (first["type"], first["object"]["metadata"]["name"]) == ("ADDED", "a")
    assert mark["type"] == "BOOKMARK"
    assert mark["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
