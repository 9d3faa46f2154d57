"""Status subresources, generation, garbage collection, finalizers, namespace lifecycle."""
from __future__ import annotations

import asyncio

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from kubefake import KubeAPIServer

MCS = "multicluster.x-k8s.io"
V = MCS + "/v1beta1"


def export(name: str = "web") -> dict:
    return {"apiVersion": V, "kind": "ServiceExport", "metadata": {"name": name, "namespace": "default"}}


def condition(kind: str, status: str) -> dict:
    return {"type": kind, "status": status, "reason": kind, "message": "", "lastTransitionTime": "2025-01-01T00:00:00Z"}


async def test_status_subresource_changes_only_status(server: KubeAPIServer, api: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(api)
    created = await custom.create_namespaced_custom_object(
        MCS, "v1beta1", "default", "serviceexports", {**export(), "status": {"conditions": [condition("Valid", "True")]}})
    assert "status" not in created  # status on create is dropped
    body = {**created, "metadata": {**created["metadata"], "labels": {"ignored": "yes"}},
            "status": {"conditions": [condition("Valid", "True")]}}
    updated = await custom.replace_namespaced_custom_object_status(MCS, "v1beta1", "default", "serviceexports", "web", body)
    assert updated["status"]["conditions"][0]["type"] == "Valid"
    assert "labels" not in updated["metadata"]  # metadata is not writable through /status
    assert updated["metadata"]["generation"] == 1  # status writes never bump generation
    # the main resource ignores status
    main = await custom.patch_namespaced_custom_object(MCS, "v1beta1", "default", "serviceexports", "web",
                                                       {"status": {"conditions": []}, "metadata": {"labels": {"a": "b"}}},
                                                       _content_type="application/merge-patch+json")
    assert main["status"]["conditions"][0]["type"] == "Valid" and main["metadata"]["labels"] == {"a": "b"}
    patched = await custom.patch_namespaced_custom_object_status(
        MCS, "v1beta1", "default", "serviceexports", "web", {"status": {"conditions": [condition("Ready", "False")]}},
        _content_type="application/merge-patch+json")
    assert [c["type"] for c in patched["status"]["conditions"]] == ["Ready"]
    got = await custom.get_namespaced_custom_object_status(MCS, "v1beta1", "default", "serviceexports", "web")
    assert got["status"] == patched["status"]


async def test_status_put_with_stale_resource_version_conflicts(server: KubeAPIServer, api: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(api)
    obj = server.create(export())
    server.replace({**export(), "metadata": {**export()["metadata"], "labels": {"x": "1"}}})
    with pytest.raises(ApiException) as err:
        await custom.replace_namespaced_custom_object_status(
            MCS, "v1beta1", "default", "serviceexports", "web", {**obj, "status": {"conditions": []}})
    assert err.value.status == 409


async def test_service_status_is_ignored_on_the_main_resource(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    svc = await core.create_namespaced_service("default", client.V1Service(
        metadata=client.V1ObjectMeta(name="lb"), spec=client.V1ServiceSpec(type="LoadBalancer", ports=[client.V1ServicePort(port=80)]),
        status=client.V1ServiceStatus(load_balancer=client.V1LoadBalancerStatus(ingress=[client.V1LoadBalancerIngress(ip="1.2.3.4")]))))
    assert not svc.status.load_balancer.ingress
    svc.status = client.V1ServiceStatus(load_balancer=client.V1LoadBalancerStatus(ingress=[client.V1LoadBalancerIngress(ip="1.2.3.4")]))
    done = await core.replace_namespaced_service_status("lb", "default", svc)
    assert done.status.load_balancer.ingress[0].ip == "1.2.3.4"


async def test_generation_counts_spec_changes_only(server: KubeAPIServer, api: client.ApiClient) -> None:
    net = client.NetworkingV1Api(api)
    ing = await net.create_namespaced_ingress("default", {
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "shop"},
        "spec": {"defaultBackend": {"service": {"name": "web", "port": {"number": 80}}}}})
    assert ing.metadata.generation == 1
    ing = await net.patch_namespaced_ingress("shop", "default", {"metadata": {"annotations": {"a": "b"}}})
    assert ing.metadata.generation == 1
    ing = await net.patch_namespaced_ingress_status("shop", "default", {"status": {"loadBalancer": {"ingress": [{"ip": "127.0.0.1"}]}}})
    assert ing.metadata.generation == 1
    ing = await net.patch_namespaced_ingress("shop", "default", {"spec": {"defaultBackend": {"service": {"port": {"number": 81}}}}})
    assert ing.metadata.generation == 2
    assert ing.status.load_balancer.ingress[0].ip == "127.0.0.1"


async def test_owner_deletion_collects_dependents(server: KubeAPIServer, api: client.ApiClient) -> None:
    imp = server.create({"apiVersion": V, "kind": "ServiceImport", "metadata": {"name": "web", "namespace": "default"},
                         "spec": {"type": "ClusterSetIP"}})
    other = server.create({"apiVersion": V, "kind": "ServiceImport", "metadata": {"name": "db", "namespace": "default"},
                           "spec": {"type": "ClusterSetIP"}})

    def slice_owned_by(name: str, *owners: dict) -> dict:
        return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4", "endpoints": [],
                "metadata": {"name": name, "namespace": "default", "ownerReferences": [
                    {"apiVersion": V, "kind": "ServiceImport", "name": o["metadata"]["name"], "uid": o["metadata"]["uid"]}
                    for o in owners]}}

    server.create(slice_owned_by("web-zone-a", imp))
    server.create(slice_owned_by("shared", imp, other))
    await client.CustomObjectsApi(api).delete_namespaced_custom_object(MCS, "v1alpha1", "default", "serviceimports", "web")
    assert [s["metadata"]["name"] for s in server.objects("endpointslices")] == ["shared"]  # another owner lives
    server.delete("serviceimports", "db")
    assert server.objects("endpointslices") == []


async def test_orphan_propagation_keeps_dependents(server: KubeAPIServer, api: client.ApiClient) -> None:
    owner = server.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner", "namespace": "default"}})
    server.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "dep", "namespace": "default", "ownerReferences": [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}]}})
    await client.CoreV1Api(api).delete_namespaced_config_map("owner", "default", propagation_policy="Orphan")
    dep = server.get("Secret", "dep")
    assert dep is not None and "ownerReferences" not in dep["metadata"]


async def test_finalizers_hold_deletion_until_removed(server: KubeAPIServer, api: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(api)
    server.create({**export(), "metadata": {**export()["metadata"], "finalizers": ["fleetgate.io/cleanup"]}})
    marked = await custom.delete_namespaced_custom_object(MCS, "v1beta1", "default", "serviceexports", "web")
    assert marked["metadata"]["deletionTimestamp"]
    assert server.get("svcex", "web") is not None
    await custom.patch_namespaced_custom_object(MCS, "v1beta1", "default", "serviceexports", "web",
                                                {"metadata": {"finalizers": None}},
                                                _content_type="application/merge-patch+json")
    assert server.get("svcex", "web") is None


async def test_namespace_deletion_terminates_then_removes_contents(server: KubeAPIServer, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    server.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "shop"}})
    await core.delete_namespace("shop")
    ns = await core.read_namespace("shop")
    assert ns.status.phase == "Terminating"
    with pytest.raises(ApiException) as err:
        await core.create_namespaced_config_map("shop", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="d")))
    assert err.value.status == 403
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while server.get("Namespace", "shop") is not None and loop.time() < deadline:
        await asyncio.sleep(0.02)
    assert server.get("Namespace", "shop") is None and server.objects("ConfigMap", "shop") == []


async def test_crd_creation_extends_discovery(server: KubeAPIServer, api: client.ApiClient) -> None:
    ext = client.ApiextensionsV1Api(api)
    await ext.create_custom_resource_definition({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
                 "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                 "versions": [{"name": "v1", "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": {"type": "object"}}}]}})
    crd = await ext.read_custom_resource_definition("widgets.example.com")
    assert {c.type for c in crd.status.conditions} == {"Established", "NamesAccepted"}
    custom = client.CustomObjectsApi(api)
    await custom.create_namespaced_custom_object("example.com", "v1", "default", "widgets",
                                                 {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})
    await ext.delete_custom_resource_definition("widgets.example.com")
    with pytest.raises(ApiException) as err:
        await custom.list_namespaced_custom_object("example.com", "v1", "default", "widgets")
    assert err.value.status == 404
