"""fleet/kube.py's KubeClient sends its requests on kubernetes_asyncio's session itself (not
through ApiClient.call_api): the kubeconfig's credentials must still reach the API server
(a static bearer token, an exec plugin's token), with the body as JSON and the query as given.

A small aiohttp server on loopback plays the API server and records what it is sent."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
import yaml
from aiohttp import web

from fleet.kube import SERVICES, KubeClient, KubeError


class Recorder:
    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.seen.append({"method": request.method, "path": request.path, "query": dict(request.query),
                          "headers": dict(request.headers), "body": json.loads(body) if body else None})
        if request.path.endswith("/missing"):
            return web.json_response({"kind": "Status", "message": "services \"missing\" not found",
                                      "reason": "NotFound", "code": 404}, status=404)
        if request.method == "GET" and request.path.endswith("/services"):
            return web.json_response({"kind": "ServiceList", "metadata": {"resourceVersion": "9"},
                                      "items": [{"metadata": {"name": "web", "namespace": "demo"}}]})
        doc = json.loads(body) if body else {"metadata": {"name": "web", "namespace": "demo"}}
        doc.setdefault("metadata", {})["resourceVersion"] = "7"
        return web.json_response(doc)


@pytest.fixture
async def api() -> AsyncIterator[tuple[str, Recorder]]:
    rec = Recorder()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", rec
    finally:
        await runner.cleanup()


def kubeconfig(path: Path, url: str, user: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": url}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    return path


async def test_a_static_token_and_a_json_body_reach_the_server(api: tuple[str, Recorder], tmp_path: Path) -> None:
    url, rec = api
    client = KubeClient(kubeconfig(tmp_path / "kc", url, {"token": "s3cret"}))
    try:
        body = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "demo"},
                "spec": {"ports": [{"port": 80}]}}
        made = await client.create(SERVICES, "v1", body)
        patched = await client.merge_patch(SERVICES, "v1", "demo", "web", {"metadata": {"labels": {"a": "b"}}})
        items, rv = await client.list(SERVICES, "v1")
        with pytest.raises(KubeError) as err:
            await client.get(SERVICES, "v1", "demo", "missing")
    finally:
        await client.close()
    assert made["metadata"]["resourceVersion"] == "7" and made["spec"] == {"ports": [{"port": 80}]}
    assert patched["kind"] == "Service" and patched["metadata"]["labels"] == {"a": "b"}
    assert err.value.not_found and err.value.reason == "NotFound"
    post, patch, listed, get = rec.seen
    assert all(r["headers"]["Authorization"] == "Bearer s3cret" for r in rec.seen)
    assert all(r["headers"]["Accept"] == "application/json" for r in rec.seen)
    assert all(r["headers"]["User-Agent"].startswith("OpenAPI-Generator/") for r in rec.seen)
    assert (post["method"], post["path"], post["body"]) == ("POST", "/api/v1/namespaces/demo/services", body)
    assert post["headers"]["Content-Type"] == "application/json"
    assert (patch["method"], patch["path"]) == ("PATCH", "/api/v1/namespaces/demo/services/web")
    assert patch["headers"]["Content-Type"] == "application/merge-patch+json"
    assert (listed["method"], listed["query"]) == ("GET", {"limit": "500"})
    assert get["path"] == "/api/v1/namespaces/demo/services/missing"
    assert rv == "9" and [(i["kind"], i["metadata"]["name"]) for i in items] == [("Service", "web")]


async def test_an_exec_plugins_token_is_sent(api: tuple[str, Recorder], tmp_path: Path) -> None:
    """The kubeconfig's exec plugin is run by kubernetes_asyncio and its token is the bearer."""
    url, rec = api
    plugin = tmp_path / "plugin.py"
    plugin.write_text("import json\nprint(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1', "
                      "'kind': 'ExecCredential', 'status': {'token': 'from-exec'}}))\n")
    user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": sys.executable,
                     "args": [str(plugin)], "interactiveMode": "Never"}}
    client = KubeClient(kubeconfig(tmp_path / "kc", url, user))
    try:
        await client.get(SERVICES, "v1", "demo", "web")
    finally:
        await client.close()
    assert [r["headers"].get("Authorization") for r in rec.seen] == ["Bearer from-exec"]


async def test_the_echo_of_a_learned_write_is_a_bookmark_and_every_other_event_is_decoded(
        api_servers: Any, tmp_path: Path) -> None:
    """expect_echo: the watch event of a write whose answer the store holds comes as a
    bookmark with that write's resourceVersion (the watch still resumes past it), undecoded;
    a write not expected, and a later change of the same object, come in full."""
    from tests.controller.mcs_support import namespace, service
    server = await api_servers()
    server.create(namespace("demo"))
    client = KubeClient(server.kubeconfig(tmp_path / "kubeconfig"))
    try:
        _, start = await client.list(SERVICES, "v1")
        stream = await client.watch(SERVICES, "v1", start, timeout_seconds=30)
        ours = await client.create(SERVICES, "v1", service("ours"))
        client.expect_echo(SERVICES, ours["metadata"]["resourceVersion"])
        theirs = server.create(service("theirs"))
        patched = await client.merge_patch(SERVICES, "v1", "demo", "ours", {"metadata": {"labels": {"x": "1"}}})
        events = [await stream.__anext__() for _ in range(3)]
        stream.close()
    finally:
        await client.close()
    assert events[0] == ("BOOKMARK", {"metadata": {"resourceVersion": ours["metadata"]["resourceVersion"]}})
    assert events[1][0] == "ADDED" and events[1][1]["metadata"]["name"] == "theirs"
    assert events[1][1]["metadata"]["resourceVersion"] == theirs["metadata"]["resourceVersion"]
    assert events[2][0] == "MODIFIED" and events[2][1]["metadata"]["labels"] == {"x": "1"}
    assert events[2][1]["metadata"]["resourceVersion"] == patched["metadata"]["resourceVersion"]
