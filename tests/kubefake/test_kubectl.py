"""kubectl against the test server: apply, get, patch, delete (a handful of invocations)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubefake import KubeAPIServer
from kubefake.kubectl import kubectl as run_kubectl
from tests.tools import require_tool


MANIFEST = """\
apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
  labels: {app: web}
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: 8080}
---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceExport
metadata:
  name: web
  namespace: shop
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: shop
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
endpoints:
- addresses: [10.1.0.5]
  conditions: {ready: true}
ports:
- {name: http, port: 8080, protocol: TCP}
"""


async def kubectl(kubeconfig: Path, *args: str) -> str:
    require_tool("kubectl")
    return await run_kubectl(*args, kubeconfig=kubeconfig, cache_dir=kubeconfig.parent / "cache")


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    path = tmp_path / "shop.yaml"
    path.write_text(MANIFEST)
    return path


async def test_kubectl_apply_get_patch_delete(server: KubeAPIServer, kubeconfig: Path, manifest: Path) -> None:
    out = await kubectl(kubeconfig, "apply", "-f", str(manifest), "--validate=false")
    assert "serviceexport.multicluster.x-k8s.io/web created" in out
    assert server.get("Service", "web", "shop")["spec"]["clusterIP"].startswith("10.96.")
    assert server.get("EndpointSlice", "web-1", "shop")["endpoints"][0]["addresses"] == ["10.1.0.5"]

    listed = json.loads(await kubectl(kubeconfig, "get", "svcex", "-n", "shop", "-o", "json"))
    assert [(i["apiVersion"], i["metadata"]["name"]) for i in listed["items"]] == [("multicluster.x-k8s.io/v1beta1", "web")]

    await kubectl(kubeconfig, "patch", "svcex", "web", "-n", "shop", "--type", "merge",
                  "-p", '{"metadata":{"labels":{"exported":"yes"}}}')
    assert server.get("svcex", "web", "shop")["metadata"]["labels"] == {"exported": "yes"}

    # re-applying a changed Service goes through a strategic merge patch
    manifest.write_text(MANIFEST.replace("targetPort: 8080", "targetPort: 9090"))
    out = await kubectl(kubeconfig, "apply", "-f", str(manifest), "--validate=false")
    assert "service/web configured" in out and "serviceexport.multicluster.x-k8s.io/web unchanged" in out
    assert server.get("Service", "web", "shop")["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": 9090, "protocol": "TCP"}]

    await kubectl(kubeconfig, "delete", "-f", str(manifest))
    assert server.get("Namespace", "shop") is None and server.objects("Service", "shop") == []


async def test_kubectl_get_prints_a_table(server: KubeAPIServer, kubeconfig: Path) -> None:
    server.create({"apiVersion": "multicluster.x-k8s.io/v1beta1", "kind": "ServiceImport",
                   "metadata": {"name": "web", "namespace": "shop"}, "spec": {"type": "ClusterSetIP"}})
    out = await kubectl(kubeconfig, "get", "svcim", "-A")
    header, row = out.splitlines()[:2]
    assert header.split() == ["NAMESPACE", "NAME", "AGE"]
    assert row.split()[:2] == ["shop", "web"]
