"""fleet.yaml loading: defaults, relative paths, and one clear error per mistake."""
from __future__ import annotations

from pathlib import Path

import pytest

from fleet.config import (ClusterSpec, FleetConfigError, SourceSpec, load_fleet_config)


@pytest.fixture
def folders(tmp_path: Path) -> Path:
    for name in ("hub", "a", "b"):
        (tmp_path / name).mkdir()
    (tmp_path / "kube").mkdir()
    (tmp_path / "kube" / "b.yaml").write_text("apiVersion: v1\nkind: Config\n")
    return tmp_path


def load(root: Path, text: str):
    path = root / "fleet.yaml"
    path.write_text(text)
    return load_fleet_config(path)


def error_of(root: Path, text: str) -> str:
    with pytest.raises(FleetConfigError) as info:
        load(root, text)
    message = str(info.value)
    assert message.startswith(str(root / "fleet.yaml") + ": "), message
    return message


def test_defaults_and_relative_paths(folders: Path) -> None:
    config = load(folders, "hub: {manifests: hub/}\nclusters:\n  - {name: zone-a, zone: az-1, manifests: a}\n")
    assert config.zone == "clusterset.local"
    assert config.clusterset_ip_range == "242.0.0.0/16"
    assert config.hub == SourceSpec(manifests=folders / "hub")
    assert config.hub_cluster is None
    assert config.clusters == (ClusterSpec("zone-a", "az-1", SourceSpec(manifests=folders / "a")),)
    assert config.path == folders / "fleet.yaml"


def test_relative_paths_are_relative_to_the_fleet_yaml_folder(folders: Path, monkeypatch) -> None:
    monkeypatch.chdir("/")
    config = load(folders, "clusters:\n  - {name: a, manifests: ./a}\n")
    assert config.clusters[0].source.manifests is not None
    assert config.clusters[0].source.manifests.resolve() == (folders / "a").resolve()
    assert config.hub is None and config.hub_cluster is None


def test_kubeconfig_context_zone_and_range(folders: Path) -> None:
    config = load(folders, """\
zone: Fleet.Example.
clustersetIPRange: 10.96.0.0/12
hub: {cluster: zone-b}
clusters:
  - name: zone-a
    manifests: a
  - name: zone-b
    kubeconfig: kube/b.yaml
    context: ctx-b
""")
    assert config.zone == "fleet.example"
    assert config.clusterset_ip_range == "10.96.0.0/12"
    assert config.hub is None and config.hub_cluster == "zone-b"
    assert config.clusters[1].source == SourceSpec(kubeconfig=folders / "kube/b.yaml", context="ctx-b")
    assert config.clusters[0].zone is None
    assert config.cluster("zone-b") is config.clusters[1]


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(FleetConfigError, match="nope.yaml: file not found"):
        load_fleet_config(str(path))


def test_yaml_syntax_error_names_the_line(folders: Path) -> None:
    message = error_of(folders, "clusters:\n  - name: a\n    manifests: [a\n  zone: x: y\n")
    assert "line " in message and "YAML syntax error" in message


def test_duplicate_yaml_key_is_an_error(folders: Path) -> None:
    message = error_of(folders, "zone: a.local\nzone: b.local\nclusters: [{name: a, manifests: a}]\n")
    assert "line 2" in message and "duplicate key 'zone'" in message


@pytest.mark.parametrize("text, field", [
    ("zones: x\nclusters: [{name: a, manifests: a}]\n", "zones: unknown key"),
    ("clusters: [{name: a, manifests: a, region: r}]\n", "clusters[0].region: unknown key"),
    ("hub: {manifests: hub, path: x}\nclusters: [{name: a, manifests: a}]\n", "hub.path: unknown key"),
    ("hub: {cluster: a, manifests: hub}\nclusters: [{name: a, manifests: a}]\n", "hub.manifests: unknown key"),
])
def test_unknown_keys_are_errors(folders: Path, text: str, field: str) -> None:
    assert field in error_of(folders, text)


def test_duplicate_cluster_name(folders: Path) -> None:
    message = error_of(folders, "clusters:\n  - {name: a, manifests: a}\n  - {name: a, manifests: b}\n")
    assert "clusters[1].name: duplicate cluster name 'a'" in message


@pytest.mark.parametrize("name", ["Zone-A", "zone_a", "-a", "a-", "a.b", "x" * 64, "''"])
def test_cluster_name_must_be_an_rfc1123_label(folders: Path, name: str) -> None:
    message = error_of(folders, f"clusters:\n  - {{name: {name}, manifests: a}}\n")
    assert "clusters[0].name" in message


def test_cluster_name_required(folders: Path) -> None:
    assert "clusters[0].name: required" in error_of(folders, "clusters:\n  - {manifests: a}\n")


def test_both_manifests_and_kubeconfig(folders: Path) -> None:
    message = error_of(folders, "clusters:\n  - {name: a, manifests: a, kubeconfig: kube/b.yaml}\n")
    assert "clusters[0]: set exactly one of manifests or kubeconfig, not both" in message


def test_neither_manifests_nor_kubeconfig(folders: Path) -> None:
    message = error_of(folders, "clusters:\n  - {name: a, zone: z}\n")
    assert "clusters[0]: set exactly one of manifests or kubeconfig" in message
    message = error_of(folders, "hub: {}\nclusters:\n  - {name: a, manifests: a}\n")
    assert "hub: set exactly one of manifests or kubeconfig" in message


def test_manifests_folder_missing(folders: Path) -> None:
    message = error_of(folders, "clusters:\n  - {name: a, manifests: missing/}\n")
    assert "clusters[0].manifests: folder" in message and "missing" in message
    message = error_of(folders, "hub: {manifests: nohub}\nclusters:\n  - {name: a, manifests: a}\n")
    assert "hub.manifests: folder" in message


def test_kubeconfig_file_missing_and_context_without_kubeconfig(folders: Path) -> None:
    assert "clusters[0].kubeconfig: file" in error_of(
        folders, "clusters:\n  - {name: a, kubeconfig: kube/none.yaml}\n")
    assert "clusters[0].context: only valid with kubeconfig" in error_of(
        folders, "clusters:\n  - {name: a, manifests: a, context: x}\n")


def test_hub_cluster_must_be_a_member(folders: Path) -> None:
    message = error_of(folders, "hub: {cluster: zone-c}\nclusters:\n  - {name: a, manifests: a}\n")
    assert "hub.cluster: 'zone-c' is not one of the clusters (a)" in message


def test_separate_hub_name_is_reserved(folders: Path) -> None:
    message = error_of(folders, "hub: {manifests: hub}\nclusters:\n  - {name: hub, manifests: a}\n")
    assert "hub: a separate hub needs the name 'hub'" in message
    assert load(folders, "hub: {cluster: hub}\nclusters:\n  - {name: hub, manifests: a}\n").hub_cluster == "hub"


@pytest.mark.parametrize("cidr", ["242.0.0.0", "242.0.0.1/16", "300.0.0.0/8", "nonsense", "10.0.0.0/33"])
def test_bad_clusterset_ip_range(folders: Path, cidr: str) -> None:
    message = error_of(folders, f"clustersetIPRange: '{cidr}'\nclusters:\n  - {{name: a, manifests: a}}\n")
    assert "clustersetIPRange:" in message and "not a CIDR range" in message


def test_ipv6_clusterset_ip_range(folders: Path) -> None:
    config = load(folders, "clustersetIPRange: fd00:242::/64\nclusters:\n  - {name: a, manifests: a}\n")
    assert config.clusterset_ip_range == "fd00:242::/64"


@pytest.mark.parametrize("zone", ["bad zone", "-x.local", "a..local", "a" * 64 + ".local", "x!.local"])
def test_zone_must_be_a_dns_name(folders: Path, zone: str) -> None:
    message = error_of(folders, f"zone: '{zone}'\nclusters:\n  - {{name: a, manifests: a}}\n")
    assert "zone:" in message and "not a valid DNS name" in message


@pytest.mark.parametrize("text", ["", "zone: x.local\n", "clusters: []\n", "clusters:\n"])
def test_no_clusters(folders: Path, text: str) -> None:
    assert "clusters:" in error_of(folders, text) and "at least one cluster" in error_of(folders, text)


@pytest.mark.parametrize("text, field", [
    ("- a\n", "expected a mapping at the top"),
    ("clusters: {a: 1}\n", "clusters: expected a list"),
    ("clusters: [a]\n", "clusters[0]: expected a mapping"),
    ("clusters: [{name: 5, manifests: a}]\n", "clusters[0].name: expected a non-empty string"),
])
def test_wrong_shapes(folders: Path, text: str, field: str) -> None:
    assert field in error_of(folders, text)


def test_the_folder_holding_fleet_yaml_loads_as_the_file_does(folders: Path) -> None:
    by_file = load(folders, "hub: {manifests: hub/}\nclusters:\n  - {name: zone-a, manifests: a}\n")
    assert load_fleet_config(folders) == by_file
    assert load_fleet_config(str(folders) + "/") == by_file


def test_a_folder_without_fleet_yaml_says_so(folders: Path) -> None:
    with pytest.raises(FleetConfigError) as info:
        load_fleet_config(folders / "hub")
    assert str(info.value) == (f"{folders / 'hub'}: a folder without a fleet.yaml; give the fleet.yaml itself "
                               "or the folder that holds it")
