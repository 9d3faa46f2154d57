"""manifests/argocd/: the Argo CD Applications (one per cluster role) parse, and point at
overlays that exist in this repository and deploy what that role needs.

Static checks only: no Argo CD or Kubernetes API is needed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ARGOCD = ROOT / "manifests" / "argocd"
# role -> (file, the base every overlay of that role must include)
ROLES = {
    "hub": ("hub-application.yaml", ("../../base/gateway", "../../base/controller")),
    "member": ("member-application.yaml", ("../../base/crds", "../../base/dns")),
}


def application(role: str) -> dict[str, Any]:
    text = (ARGOCD / ROLES[role][0]).read_text()
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    assert len(docs) == 1, f"{ROLES[role][0]}: expected one document, found {len(docs)}"
    return docs[0]


def kustomization(path: str) -> dict[str, Any]:
    file = ROOT / path / "kustomization.yaml"
    assert file.is_file(), f"{path}: no kustomization.yaml (Argo CD would find nothing to build)"
    return yaml.safe_load(file.read_text())


def test_every_file_in_argocd_is_one_of_the_role_applications() -> None:
    assert sorted(p.name for p in ARGOCD.glob("*.yaml")) == sorted(f for f, _ in ROLES.values())


@pytest.mark.parametrize("role", sorted(ROLES))
def test_application_has_the_fields_argo_cd_requires(role: str) -> None:
    app = application(role)
    assert app["apiVersion"] == "argoproj.io/v1alpha1"
    assert app["kind"] == "Application"
    assert app["metadata"]["name"].startswith("fleetgate-")
    assert app["metadata"]["namespace"] == "argocd"
    spec = app["spec"]
    assert spec["project"]
    source = spec["source"]
    assert source["repoURL"].startswith("https://") and source["targetRevision"]
    destination = spec["destination"]
    assert ("server" in destination) != ("name" in destination), "destination: exactly one of server or name"
    assert spec["syncPolicy"]["automated"]["prune"] is True


@pytest.mark.parametrize("role", sorted(ROLES))
def test_source_path_is_an_overlay_in_this_repo_with_the_roles_components(role: str) -> None:
    path = application(role)["spec"]["source"]["path"]
    assert not Path(path).is_absolute() and ".." not in Path(path).parts
    resources = kustomization(path).get("resources", [])
    for base in ROLES[role][1]:
        assert base in resources, f"{path} does not deploy {base}"
        assert (ROOT / path / base).resolve().is_dir(), f"{path}: {base} does not exist"


@pytest.mark.parametrize("role", sorted(ROLES))
def test_destination_namespace_is_the_one_the_overlay_creates(role: str) -> None:
    path = application(role)["spec"]["source"]["path"]
    assert "../../base/common" in kustomization(path)["resources"]
    namespace = yaml.safe_load((ROOT / "manifests" / "base" / "common" / "namespace.yaml").read_text())
    assert application(role)["spec"]["destination"]["namespace"] == namespace["metadata"]["name"]


def test_member_application_is_named_for_the_cluster_its_overlay_serves() -> None:
    app = application("member")
    overlay = kustomization(app["spec"]["source"]["path"])
    literals = next(g["literals"] for g in overlay["configMapGenerator"] if g["name"] == "fleetgate-cluster")
    cluster = next(v.split("=", 1)[1] for v in literals if v.startswith("cluster-name="))
    assert app["metadata"]["name"] == f"fleetgate-member-{cluster}"
    assert app["spec"]["destination"].get("name", cluster) == cluster
