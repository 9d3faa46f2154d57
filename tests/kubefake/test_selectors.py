"""Label and field selectors: the grammar (pure) and their use on lists."""
from __future__ import annotations

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from kubefake import ApiError, KubeAPIServer
from kubefake.selectors import parse_field_selector, parse_label_selector

LABELS = {"app": "web", "tier": "front", "replicas": "3"}


@pytest.mark.parametrize("selector, matches", [
    ("app=web", True), ("app==web", True), ("app!=web", False), ("app!=db", True), ("missing!=x", True),
    ("app in (web, db)", True), ("app notin (web)", False), ("missing notin (web)", True),
    ("tier", True), ("!tier", False), ("!missing", True), ("app=web,tier=back", False),
    ("app in (web),tier notin (back),!missing", True), ("replicas>2", True), ("replicas<2", False), ("", True),
])
def test_label_selector_semantics(selector: str, matches: bool) -> None:
    assert parse_label_selector(selector).matches(LABELS) is matches


@pytest.mark.parametrize("selector", ["app=(", "app in web", "app in (web", "a,", "=x", "replicas>x"])
def test_malformed_label_selector_is_400(selector: str) -> None:
    with pytest.raises(ApiError) as err:
        parse_label_selector(selector)
    assert err.value.code == 400


def test_field_selector_rejects_unsupported_fields() -> None:
    assert parse_field_selector("metadata.name=a", ()).matches({"metadata": {"name": "a"}})
    assert parse_field_selector("metadata.namespace!=x", ()).matches({"metadata": {"namespace": "y"}})
    with pytest.raises(ApiError) as err:
        parse_field_selector("spec.foo=a", ())
    assert err.value.code == 400 and "field label not supported" in err.value.message


async def test_selectors_filter_lists(server: KubeAPIServer, api: client.ApiClient) -> None:
    for name, ns, labels in [("a", "default", {"app": "web", "tier": "front"}), ("b", "default", {"app": "db"}),
                             ("c", "other", {"app": "web"})]:
        server.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns, "labels": labels},
                       "spec": {"ports": [{"port": 80}]}})
    core = client.CoreV1Api(api)

    async def names(**kw: str) -> list[str]:
        return [s.metadata.name for s in (await core.list_service_for_all_namespaces(**kw)).items]

    assert await names(label_selector="app=web") == ["a", "c"]
    assert await names(label_selector="app in (web,db),!tier") == ["b", "c"]
    assert await names(label_selector="app notin (web)") == ["b"]
    assert await names(field_selector="metadata.namespace=other") == ["c"]
    assert await names(field_selector="metadata.name!=a,metadata.namespace=default") == ["b"]
    assert await names(label_selector="app", field_selector="spec.type=ClusterIP") == ["a", "b", "c"]
    with pytest.raises(ApiException) as err:
        await names(field_selector="spec.selector=x")
    assert err.value.status == 400


async def test_limit_and_continue_page_through(server: KubeAPIServer, api: client.ApiClient) -> None:
    for i in range(5):
        server.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c%d" % i, "namespace": "default"}})
    core = client.CoreV1Api(api)
    seen, token = [], None
    for _ in range(5):
        page = await core.list_namespaced_config_map("default", limit=2, _continue=token)
        seen += [c.metadata.name for c in page.items]
        token = page.metadata._continue
        if not token:
            break
    assert seen == ["c0", "c1", "c2", "c3", "c4"]
