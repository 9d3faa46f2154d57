"""The CRDs and RBAC (and the rest of each overlay) apply to a Kubernetes API server with
kubectl, and the applied CRDs serve ServiceExports/ServiceImports in both versions."""
from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest
import yaml
from kubernetes_asyncio import client, config

from kubefake import KubeAPIServer
from tests.tools import require_tool

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    exe = require_tool("kubectl")
    return subprocess.run([exe, "--kubeconfig", str(kubeconfig), *args], input=stdin, capture_output=True,
                          text=True, timeout=60, check=False)


@pytest.mark.parametrize("overlay", ["hub", "member"])
async def test_overlay_applies_to_an_api_server_without_crds(tmp_path, overlay):
    async with KubeAPIServer(install_crds=False) as api:
        kc = api.kubeconfig(tmp_path / "kubeconfig")
        built = await asyncio.to_thread(kubectl, kc, "kustomize", str(MANIFESTS / "overlays" / overlay))
        assert built.returncode == 0, built.stderr
        applied = await asyncio.to_thread(kubectl, kc, "apply", "--validate=false", "-f", "-", stdin=built.stdout)
        assert applied.returncode == 0, applied.stderr
        kinds = {(d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(built.stdout) if d}
        for kind, name in kinds:
            resource = {"Namespace": "namespaces", "ServiceAccount": "serviceaccounts", "Service": "services",
                        "ClusterRole": "clusterroles", "ClusterRoleBinding": "clusterrolebindings",
                        "Role": "roles", "RoleBinding": "rolebindings", "Deployment": "deployments",
                        "CustomResourceDefinition": "customresourcedefinitions",
                        "IngressClass": "ingressclasses"}.get(kind)
            if resource is not None:
                assert any(o["metadata"]["name"] == name for o in api.objects(resource)), (kind, name)
        if overlay == "member":  # members hold the MCS CRDs
            names = {c["metadata"]["name"] for c in api.objects("customresourcedefinitions")}
            assert {"serviceexports.multicluster.x-k8s.io", "serviceimports.multicluster.x-k8s.io"} <= names
        # a second apply leaves the CRDs and RBAC unchanged
        again = await asyncio.to_thread(kubectl, kc, "apply", "--validate=false", "-f", "-", stdin=built.stdout)
        assert again.returncode == 0, again.stderr
        rbac_and_crds = [line for line in again.stdout.splitlines()
                         if "rbac.authorization.k8s.io" in line or "customresourcedefinition" in line]
        assert rbac_and_crds and all(line.endswith("unchanged") for line in rbac_and_crds), again.stdout


async def test_applied_crds_serve_exports_in_both_versions(tmp_path):
    async with KubeAPIServer(install_crds=False) as api:
        kc = api.kubeconfig(tmp_path / "kubeconfig")
        built = await asyncio.to_thread(kubectl, kc, "kustomize", str(MANIFESTS / "base" / "crds"))
        assert built.returncode == 0, built.stderr
        applied = await asyncio.to_thread(kubectl, kc, "apply", "--validate=false", "-f", "-", stdin=built.stdout)
        assert applied.returncode == 0, applied.stderr
        api_client = await config.new_client_from_config(config_file=str(kc))
        async with api_client:
            core = client.CoreV1Api(api_client)
            await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="demo")))
            custom = client.CustomObjectsApi(api_client)
            await custom.create_namespaced_custom_object(
                "multicluster.x-k8s.io", "v1beta1", "demo", "serviceexports",
                {"apiVersion": "multicluster.x-k8s.io/v1beta1", "kind": "ServiceExport",
                 "metadata": {"name": "web", "namespace": "demo"}})
            old = await custom.get_namespaced_custom_object("multicluster.x-k8s.io", "v1alpha1", "demo",
                                                            "serviceexports", "web")
        assert old["metadata"]["name"] == "web"
        short = await asyncio.to_thread(kubectl, kc, "get", "svcex", "-n", "demo", "-o", "name")
        assert short.returncode == 0 and "web" in short.stdout, short.stderr
