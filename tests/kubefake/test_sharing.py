"""Stored objects are shared, never changed: every version a watcher or a test was given
stays as it was, whatever is written after it (the store hands out what it holds and the
server encodes each stored object once; see kubefake/store.py and render.Wire)."""
from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from kubefake import KubeAPIServer

MCS = "/apis/multicluster.x-k8s.io"
SERVICES = "/api/v1/namespaces/default/services"


def svc(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default",
                                                                 "labels": {"v": "0"}},
            "spec": {"ports": [{"name": "http", "port": 80}]}}


async def send(session: aiohttp.ClientSession, method: str, url: str, body: Any, media: str) -> dict[str, Any]:
    async with session.request(method, url, data=json.dumps(body), headers={"Content-Type": media}) as resp:
        doc = await resp.json()
        assert resp.status < 300, doc
        return doc


async def watch_lines(session: aiohttp.ClientSession, url: str, since: str, count: int) -> list[dict[str, Any]]:
    """The first `count` non-bookmark events of a watch from `since` (bounded in time)."""
    params = {"watch": "true", "resourceVersion": since, "timeoutSeconds": "10"}
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(10):
        async with session.get(url, params=params) as resp:
            async for line in resp.content:
                event = json.loads(line)
                if event["type"] != "BOOKMARK":
                    events.append(event)
                if len(events) == count:
                    break
    return events


async def test_every_patch_flavour_leaves_earlier_versions_as_they_were(server: KubeAPIServer) -> None:
    first = server.create(svc("web"))
    url = server.url + SERVICES + "/web"
    async with aiohttp.ClientSession() as session:
        answers = [
            await send(session, "PATCH", url, {"metadata": {"labels": {"v": "1"}}}, "application/merge-patch+json"),
            await send(session, "PATCH", url, [{"op": "replace", "path": "/metadata/labels/v", "value": "2"}],
                       "application/json-patch+json"),
            await send(session, "PATCH", url, {"metadata": {"labels": {"v": "3"}},
                                               "spec": {"ports": [{"port": 80, "name": "web"}]}},
                       "application/strategic-merge-patch+json"),
            await send(session, "PATCH", url + "/status", {"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}},
                       "application/merge-patch+json"),
        ]
        replayed = await watch_lines(session, server.url + SERVICES, first["metadata"]["resourceVersion"], 4)
    assert [e["object"]["metadata"]["labels"]["v"] for e in replayed] == ["1", "2", "3", "3"]
    assert [e["object"]["spec"]["ports"][0]["name"] for e in replayed] == ["http", "http", "web", "web"]
    assert [e["object"]["status"] for e in replayed[2:]] == [{"loadBalancer": {}},
                                                            {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}]
    # each event is the object its write answered, version for version
    assert [e["object"] for e in replayed] == answers
    assert server.changes(0)[-4:] == [("MODIFIED", "services", "default", "web", int(a["metadata"]["resourceVersion"]))
                                      for a in answers]


async def test_objects_given_to_a_test_are_its_own(server: KubeAPIServer) -> None:
    body = svc("web")
    created = server.create(body)
    body["metadata"]["labels"]["v"] = "changed-input"
    created["metadata"]["labels"]["v"] = "changed-answer"
    got = server.get("services", "web", "default")
    assert got is not None
    got["spec"]["ports"].append({"port": 443})
    server.objects("services", "default")[0]["metadata"]["labels"]["v"] = "changed-list"
    async with aiohttp.ClientSession() as session:
        async with session.get(server.url + SERVICES + "/web") as resp:
            served = await resp.json()
    assert served["metadata"]["labels"] == {"v": "0"}
    assert [p["port"] for p in served["spec"]["ports"]] == [80]


async def test_each_version_served_gets_its_own_api_version(server: KubeAPIServer) -> None:
    """One stored ServiceExport, watched in two API versions and answered in a third request:
    the encoding made for one version is not served for another."""
    async with aiohttp.ClientSession() as session:
        mark = str(server.resource_version)
        created = await send(session, "POST", server.url + MCS + "/v1beta1/namespaces/default/serviceexports",
                             {"apiVersion": "multicluster.x-k8s.io/v1beta1", "kind": "ServiceExport",
                              "metadata": {"name": "web"}}, "application/json")
        old, new = await asyncio.gather(
            watch_lines(session, server.url + MCS + "/v1alpha1/serviceexports", mark, 1),
            watch_lines(session, server.url + MCS + "/v1beta1/serviceexports", mark, 1))
        async with session.get(server.url + MCS + "/v1alpha1/namespaces/default/serviceexports/web") as resp:
            got = await resp.json()
    assert created["apiVersion"] == new[0]["object"]["apiVersion"] == "multicluster.x-k8s.io/v1beta1"
    assert old[0]["object"]["apiVersion"] == got["apiVersion"] == "multicluster.x-k8s.io/v1alpha1"
    assert old[0]["object"]["metadata"] == new[0]["object"]["metadata"] == created["metadata"]
