"""Discovery documents, as kubernetes_asyncio and kubectl read them."""
from __future__ import annotations

import aiohttp
from kubernetes_asyncio import client

from kubefake import KubeAPIServer

AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"


async def test_group_discovery_lists_every_group(api: client.ApiClient) -> None:
    groups = await client.ApisApi(api).get_api_versions()
    by_name = {g.name: g for g in groups.groups}
    assert {"multicluster.x-k8s.io", "about.k8s.io", "discovery.k8s.io", "networking.k8s.io",
            "coordination.k8s.io", "apiextensions.k8s.io", "rbac.authorization.k8s.io", "apps",
            "policy"} <= set(by_name)
    mcs = by_name["multicluster.x-k8s.io"]
    assert [v.version for v in mcs.versions] == ["v1beta1", "v1alpha1"]
    assert mcs.preferred_version.version == "v1beta1"
    assert (await client.CoreApi(api).get_api_versions()).versions == ["v1"]
    assert (await client.VersionApi(api).get_code()).minor == "32"


async def test_mcs_resource_list_has_short_names_and_status(api: client.ApiClient) -> None:
    resources = await client.CustomObjectsApi(api).get_api_resources("multicluster.x-k8s.io", "v1alpha1")
    by_name = {r.name: r for r in resources.resources}
    assert by_name["serviceexports"].short_names == ["svcex"]
    assert by_name["serviceimports"].short_names == ["svcim"]
    assert by_name["serviceexports"].namespaced and by_name["serviceexports"].kind == "ServiceExport"
    assert by_name["serviceexports/status"].verbs == ["get", "patch", "update"]
    assert "watch" in by_name["serviceimports"].verbs
    props = await client.CustomObjectsApi(api).get_api_resources("about.k8s.io", "v1alpha1")
    assert [(r.name, r.namespaced) for r in props.resources] == [("clusterproperties", False)]


async def test_core_resource_list(api: client.ApiClient) -> None:
    core = await client.CoreV1Api(api).get_api_resources()
    by_name = {r.name: r for r in core.resources}
    assert by_name["services"].short_names == ["svc"] and "services/status" in by_name
    assert by_name["namespaces"].namespaced is False


async def test_aggregated_discovery_when_asked(server: KubeAPIServer) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(server.url + "/apis", headers={"Accept": AGGREGATED + ",application/json"}) as resp:
            assert resp.headers["Content-Type"] == AGGREGATED
            doc = await resp.json(content_type=None)
        async with http.get(server.url + "/apis/multicluster.x-k8s.io") as resp:
            group = await resp.json()
    assert doc["kind"] == "APIGroupDiscoveryList"
    mcs = next(i for i in doc["items"] if i["metadata"]["name"] == "multicluster.x-k8s.io")
    export = next(r for r in mcs["versions"][0]["resources"] if r["resource"] == "serviceexports")
    assert export["scope"] == "Namespaced" and export["shortNames"] == ["svcex"]
    assert export["subresources"][0]["subresource"] == "status"
    assert group["preferredVersion"] == {"groupVersion": "multicluster.x-k8s.io/v1beta1", "version": "v1beta1"}


async def test_without_default_crds_mcs_is_absent_until_installed() -> None:
    async with KubeAPIServer(install_crds=False) as bare:
        async with aiohttp.ClientSession() as http:
            async with http.get(bare.url + "/apis/multicluster.x-k8s.io/v1beta1") as resp:
                assert resp.status == 404
            from kubefake.resources import default_crds
            for crd in default_crds():
                bare.create(crd)
            async with http.get(bare.url + "/apis/multicluster.x-k8s.io/v1beta1") as resp:
                assert resp.status == 200
