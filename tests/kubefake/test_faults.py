"""Fault injection: failing and slow responses, restarts, and what a client sees."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest
from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.exceptions import ApiException

from kubefake import KubeAPIServer


async def test_fail_next_answers_n_requests_with_a_status(server: KubeAPIServer, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    server.fail_next(2, status=503, retry_after=1)
    for _ in range(2):
        with pytest.raises(ApiException) as err:
            await core.list_namespace()
        body = json.loads(err.value.body)
        assert (err.value.status, body["kind"], body["reason"], body["code"]) == (503, "Status", "ServiceUnavailable", 503)
        assert err.value.headers["Retry-After"] == "1"
    assert len((await core.list_namespace()).items) == 4  # default, kube-system, kube-public, kube-node-lease


async def test_fail_next_can_target_a_method_and_path(server: KubeAPIServer, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    server.fail_next(1, status=409, method="POST", path="/configmaps")
    await core.list_namespaced_config_map("default")  # not matched: served normally
    with pytest.raises(ApiException) as err:
        await core.create_namespaced_config_map("default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="c")))
    assert err.value.status == 409
    await core.create_namespaced_config_map("default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="c")))
    assert [r.method for r in server.writes()] == ["POST", "POST"]


async def test_delay_holds_responses_until_lifted(server: KubeAPIServer) -> None:
    server.delay(30)
    async with aiohttp.ClientSession() as http:
        pending = asyncio.create_task(http.get(server.url + "/api/v1/namespaces"))
        done, _ = await asyncio.wait({pending}, timeout=0.2)
        assert not done  # held by the delay
        server.delay(0)
        async with asyncio.timeout(5):
            resp = await pending
        assert resp.status == 200
        resp.release()


async def test_restart_keeps_port_and_data_and_drops_watches(server: KubeAPIServer, tmp_path: Path,
                                                              unused_ca: str) -> None:
    server.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kept", "namespace": "default"}})
    port, rv = server.port, server.store.resource_version
    async with aiohttp.ClientSession() as http:
        async with http.get(server.url + "/api/v1/configmaps", params={"watch": "1"}) as resp:
            assert (await resp.content.readline()).startswith(b'{"type":"ADDED"')
            await server.restart()
            with pytest.raises(aiohttp.ClientError):
                async with asyncio.timeout(5):
                    await resp.read()
    assert server.port == port
    cfg = client.Configuration()
    await config.load_kube_config(config_file=str(server.kubeconfig(tmp_path / "kc")), client_configuration=cfg)
    cfg.ssl_ca_cert = unused_ca
    async with client.ApiClient(configuration=cfg) as api:
        listed = await client.CoreV1Api(api).list_namespaced_config_map("default")
    assert [c.metadata.name for c in listed.items] == ["kept"]
    assert int(listed.metadata.resource_version) == rv


async def test_watch_client_resumes_after_drop_watches(server: KubeAPIServer, api: client.ApiClient) -> None:
    """kubernetes_asyncio's endless watch reconnects from its last resourceVersion."""
    core = client.CoreV1Api(api)
    server.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "default"}})
    rv = (await core.list_namespaced_config_map("default")).metadata.resource_version
    w = watch.Watch()
    seen: list[str] = []

    async def read() -> None:
        async for event in w.stream(core.list_namespaced_config_map, "default", resource_version=rv):
            seen.append(event["raw_object"]["metadata"]["name"])
            if len(seen) == 2:
                return

    reader = asyncio.create_task(read())
    await server.wait_for_watches(1)
    server.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b", "namespace": "default"}})
    server.drop_watches()  # a clean end of stream: the client re-watches from "b"'s resourceVersion
    await server.wait_for_watches(1)
    server.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"}})
    await asyncio.wait_for(reader, 5)
    await w.close()
    assert seen == ["b", "c"]
