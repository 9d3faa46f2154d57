"""manifests/: every YAML parses, every kustomization builds with `kubectl kustomize`, and
what the overlays build hangs together (names, selectors, ports, probes, RBAC, CRDs) and
matches what the fleetgate components read (fleet.yaml, kubeconfigs, IngressClass).
The CRDs' schemas are checked in test_crds.py, RBAC in test_manifests_rbac.py (both
build with the helpers here).

No Kubernetes API is needed: these are static checks of the objects `kubectl apply -k`
would send. kubectl (with kustomize built in) builds them; where it is not installed the
tests that need a build skip, saying how to install it.
"""
from __future__ import annotations

import functools
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio.client import Configuration
from kubernetes_asyncio.config import load_kube_config

from fleet.config import load_fleet_config
from fleet.objects import IngressClass, is_known, parse_object
from tests.tools import require_tool

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
OVERLAYS = ("hub", "member")
KUSTOMIZATIONS = sorted(p.parent.relative_to(MANIFESTS).as_posix()
                        for p in MANIFESTS.rglob("kustomization.yaml"))
NAMESPACE = "fleetgate-system"
IMAGE = "ghcr.io/fleetgate/fleetgate:0.1.0"
FLEET_DIR = "/etc/fleetgate"
# Created by the operator (manifests/README.md), never by the manifests: they hold
# credentials for the member clusters.
OPERATOR_SECRETS = {"fleetgate-gateway-kubeconfigs", "fleetgate-controller-kubeconfigs"}

# kind -> (apiVersion, namespaced): every kind the manifests may contain.
KINDS = {
    "Namespace": ("v1", False),
    "ServiceAccount": ("v1", True),
    "Secret": ("v1", True),
    "ConfigMap": ("v1", True),
    "Service": ("v1", True),
    "Deployment": ("apps/v1", True),
    "PodDisruptionBudget": ("policy/v1", True),
    "IngressClass": ("networking.k8s.io/v1", False),
    "Role": ("rbac.authorization.k8s.io/v1", True),
    "RoleBinding": ("rbac.authorization.k8s.io/v1", True),
    "ClusterRole": ("rbac.authorization.k8s.io/v1", False),
    "ClusterRoleBinding": ("rbac.authorization.k8s.io/v1", False),
    "CustomResourceDefinition": ("apiextensions.k8s.io/v1", False),
}



# --- loading -------------------------------------------------------------------------

def _yaml_files() -> list[Path]:
    return sorted(MANIFESTS.rglob("*.yaml"))


@functools.cache
def _build(path: str) -> tuple[dict[str, Any], ...]:
    """`kubectl kustomize` of one folder under manifests/, parsed; fails with kubectl's error."""
    kubectl = require_tool("kubectl")
    proc = subprocess.run([kubectl, "kustomize", str(MANIFESTS / path)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, f"kubectl kustomize {path} failed:\n{proc.stderr}"
    return tuple(d for d in yaml.safe_load_all(proc.stdout) if d is not None)


def overlay(name: str) -> tuple[dict[str, Any], ...]:
    return _build(f"overlays/{name}")


def of_kind(objs: tuple[dict[str, Any], ...], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def generated(objs: tuple[dict[str, Any], ...], kind: str, prefix: str) -> dict[str, Any]:
    """A generator's output, whose name carries a content-hash suffix."""
    found = [o for o in objs if o["kind"] == kind
             and re.fullmatch(re.escape(prefix) + r"(-[a-z0-9]{10})?", o["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {prefix}[-hash], found {len(found)}"
    return found[0]


def pod_spec(deployment: dict[str, Any]) -> dict[str, Any]:
    return deployment["spec"]["template"]["spec"]


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = pod_spec(deployment)["containers"]
    assert len(containers) == 1, deployment["metadata"]["name"]
    return containers[0]


def projected(deployment: dict[str, Any], mount_path: str) -> list[dict[str, Any]]:
    """The sources of the projected volume mounted at mount_path."""
    spec = pod_spec(deployment)
    mounts = {m["mountPath"]: m["name"] for m in container(deployment)["volumeMounts"]}
    volume = next(v for v in spec["volumes"] if v["name"] == mounts[mount_path])
    return volume["projected"]["sources"]


# --- files and builds ----------------------------------------------------------------

def test_every_yaml_file_parses_into_mappings() -> None:
    files = _yaml_files()
    assert len(files) >= 20
    for path in files:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        assert docs, f"{path}: no documents"
        for doc in docs:
            assert isinstance(doc, dict), f"{path}: a document is a {type(doc).__name__}"


@pytest.mark.parametrize("path", KUSTOMIZATIONS)
def test_every_kustomization_builds(path: str) -> None:
    objs = _build(path)
    assert objs, f"{path} builds to nothing"


def test_layout_has_the_expected_bases_and_overlays() -> None:
    expected = {f"base/{b}" for b in ("common", "crds", "rbac", "gateway", "controller", "dns")}
    assert expected | {f"overlays/{o}" for o in OVERLAYS} <= set(KUSTOMIZATIONS)


@pytest.mark.parametrize("path", KUSTOMIZATIONS)
def test_every_file_beside_a_kustomization_is_used_by_it(path: str) -> None:
    folder = MANIFESTS / path
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    used = set(kustomization.get("resources", []))
    for generator in kustomization.get("configMapGenerator", []):
        used |= set(generator.get("files", []))
    for file in folder.glob("*.yaml"):
        if file.name != "kustomization.yaml":
            assert file.name in used, f"{file} is not listed in {path}/kustomization.yaml"


# --- object identity -----------------------------------------------------------------

@pytest.mark.parametrize("name", OVERLAYS)
def test_objects_have_kind_version_name_and_the_right_namespace(name: str) -> None:
    for obj in overlay(name):
        kind = obj.get("kind")
        assert kind in KINDS, f"unexpected kind {kind!r} in overlay {name}"
        api_version, namespaced = KINDS[kind]
        meta = obj.get("metadata") or {}
        assert obj.get("apiVersion") == api_version, f"{kind}/{meta.get('name')}"
        assert meta.get("name"), f"{kind} without metadata.name"
        if namespaced:
            assert meta.get("namespace") == NAMESPACE, f"{kind}/{meta['name']}"
        else:
            assert "namespace" not in meta, f"cluster-scoped {kind}/{meta['name']} has a namespace"
        assert meta.get("labels", {}).get("app.kubernetes.io/part-of") == "fleetgate", \
            f"{kind}/{meta['name']}"


@pytest.mark.parametrize("name", OVERLAYS)
def test_names_are_unique_per_kind_and_namespace(name: str) -> None:
    keys = [(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])
            for o in overlay(name)]
    assert len(keys) == len(set(keys)), sorted(k for k in keys if keys.count(k) > 1)


@pytest.mark.parametrize("name", OVERLAYS)
def test_no_object_carries_the_controllers_ownership_label(name: str) -> None:
    # The controller deletes what carries app.kubernetes.io/managed-by=fleetgate and
    # is no longer desired; its own deployment must never look like that.
    for obj in overlay(name):
        labels = obj["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/managed-by") != "fleetgate", obj["metadata"]["name"]


# Where the client's model types leave a nested schema untyped ("object").
_NESTED_MODELS = {("V1JSONSchemaProps", "items"): "V1JSONSchemaProps",
                  ("V1JSONSchemaProps", "additionalProperties"): "V1JSONSchemaProps"}
_PRIMITIVES = {"str": str, "int": int, "bool": bool}


def _unknown_fields(value: Any, type_name: str, path: str) -> list[str]:
    """Fields the Kubernetes API does not define (typos kustomize lets through), and
    primitives of the wrong type, by kubernetes_asyncio's generated model types."""
    if type_name.startswith("list["):
        if not isinstance(value, list):
            return [f"{path}: expected a list"]
        return [e for i, item in enumerate(value) for e in _unknown_fields(item, type_name[5:-1], f"{path}[{i}]")]
    if type_name.startswith("dict("):
        if not isinstance(value, dict):
            return [f"{path}: expected a mapping"]
        inner = type_name[type_name.index(",") + 1:-1].strip()
        return [e for k, v in value.items() for e in _unknown_fields(v, inner, f"{path}.{k}")]
    if type_name in _PRIMITIVES:
        ok = isinstance(value, _PRIMITIVES[type_name]) and not (type_name == "int" and isinstance(value, bool))
        return [] if ok else [f"{path}: expected {type_name}, got {value!r}"]
    model = getattr(k8s, type_name, None)
    if model is None:
        return []  # "object", dates, quantities: free-form here
    if not isinstance(value, dict):
        return [f"{path}: expected a {type_name} mapping"]
    by_json = {json: attr for attr, json in model.attribute_map.items()}
    out = []
    for key, child in value.items():
        if key not in by_json:
            out.append(f"{path}.{key}: not a field of {type_name}")
            continue
        nested = _NESTED_MODELS.get((type_name, key))
        child_type = nested if nested and isinstance(child, dict) else model.openapi_types[by_json[key]]
        out += _unknown_fields(child, child_type, f"{path}.{key}")
    return out


@pytest.mark.parametrize("name", OVERLAYS)
def test_objects_use_only_fields_the_kubernetes_api_defines(name: str) -> None:
    for obj in overlay(name):
        type_name = "V1" + obj["kind"]
        assert hasattr(k8s, type_name), type_name
        assert _unknown_fields(obj, type_name, f"{obj['kind']}/{obj['metadata']['name']}") == []


def test_field_check_catches_a_typo() -> None:
    dep = yaml.safe_load(yaml.safe_dump(one(overlay("hub"), "Deployment", "fleetgate-gateway")))
    container(dep)["readinesProbe"] = container(dep).pop("readinessProbe")
    pod_spec(dep)["securityContext"]["runAsNonRoot"] = "yes"
    assert set(_unknown_fields(dep, "V1Deployment", "d")) == {
        "d.spec.template.spec.securityContext.runAsNonRoot: expected bool, got 'yes'",
        "d.spec.template.spec.containers[0].readinesProbe: not a field of V1Container"}


def test_hub_and_member_overlays_can_share_one_cluster() -> None:
    # A hub that is also a member gets both overlays; an object both contain must agree.
    hub = {(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o for o in overlay("hub")}
    shared = [o for o in overlay("member")
              if (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]) in hub]
    assert {o["kind"] for o in shared} == {"Namespace", "ConfigMap"}
    for obj in shared:
        assert hub[(obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])] == obj


@pytest.mark.parametrize("name", OVERLAYS)
def test_objects_fleetgate_reads_parse(name: str) -> None:
    known = [o for o in overlay(name) if is_known(o)]
    assert {o["kind"] for o in known} >= {"Namespace", "Service"}
    for obj in known:
        parse_object(obj)


def test_overlays_split_components_between_hub_and_members() -> None:
    def deployments(name: str) -> set[str]:
        return {d["metadata"]["name"] for d in of_kind(overlay(name), "Deployment")}
    assert deployments("hub") == {"fleetgate-gateway", "fleetgate-controller"}
    assert deployments("member") == {"fleetgate-dns"}
    assert not of_kind(overlay("hub"), "CustomResourceDefinition")
    assert {c["metadata"]["name"] for c in of_kind(overlay("member"), "CustomResourceDefinition")} == {
        "serviceexports.multicluster.x-k8s.io", "serviceimports.multicluster.x-k8s.io",
        "clusterproperties.about.k8s.io"}


# --- Deployments and Services --------------------------------------------------------

def _port_names(c: dict[str, Any]) -> dict[str, tuple[int, str]]:
    return {p["name"]: (p["containerPort"], p.get("protocol", "TCP")) for p in c["ports"]}


@pytest.mark.parametrize("name", OVERLAYS)
def test_deployments_are_well_formed(name: str) -> None:
    objs = overlay(name)
    configmaps = {o["metadata"]["name"]: o for o in of_kind(objs, "ConfigMap")}
    secrets = {o["metadata"]["name"] for o in of_kind(objs, "Secret")}
    for dep in of_kind(objs, "Deployment"):
        dname = dep["metadata"]["name"]
        template_labels = dep["spec"]["template"]["metadata"]["labels"]
        selector = dep["spec"]["selector"]["matchLabels"]
        assert selector and selector.items() <= template_labels.items(), dname
        spec = pod_spec(dep)
        assert spec.get("automountServiceAccountToken", True), f"{dname}: in-cluster.kubeconfig needs the token"
        assert spec["securityContext"]["runAsNonRoot"] is True, dname
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", dname
        c = container(dep)
        assert c["image"] == IMAGE, dname
        assert c["command"] == ["fleetgate"], dname
        ports = _port_names(c)
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            get = c[probe]["httpGet"]
            assert get["path"] == path, f"{dname} {probe}"
            assert ports[get["port"]] == (9901, "TCP"), f"{dname} {probe} must use the admin port"
        assert ["--admin", "0.0.0.0:9901"] == c["args"][c["args"].index("--admin"):][:2], dname
        resources = c["resources"]
        assert {"cpu", "memory"} <= resources["requests"].keys(), dname
        assert "memory" in resources["limits"], dname
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False, dname
        assert sc["readOnlyRootFilesystem"] is True, dname
        assert sc["capabilities"]["drop"] == ["ALL"], dname
        assert "add" not in sc["capabilities"], dname
        volumes = {v["name"] for v in spec["volumes"]}
        assert {m["name"] for m in c["volumeMounts"]} <= volumes, dname
        # Everything a pod mounts or reads exists in the same build, except the Secrets
        # the operator creates.
        for source in projected(dep, FLEET_DIR):
            if "configMap" in source:
                assert source["configMap"]["name"] in configmaps, f"{dname}: {source}"
            else:
                ref = source["secret"]["name"]
                assert ref in secrets or ref in OPERATOR_SECRETS, f"{dname}: {source}"
        for env in c.get("env", []):
            ref = env.get("valueFrom", {}).get("configMapKeyRef")
            if ref:
                assert ref["key"] in configmaps[ref["name"]]["data"], f"{dname}: {env}"


def test_operator_created_secrets_are_documented() -> None:
    readme = (MANIFESTS / "README.md").read_text()
    for secret in OPERATOR_SECRETS:
        assert f"create secret generic {secret}" in readme


@pytest.mark.parametrize("name", OVERLAYS)
def test_services_select_pods_and_name_their_ports(name: str) -> None:
    objs = overlay(name)
    deployments = of_kind(objs, "Deployment")
    for svc in of_kind(objs, "Service"):
        selector = svc["spec"]["selector"]
        targets = [d for d in deployments
                   if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert len(targets) == 1, f"Service {svc['metadata']['name']} selects {len(targets)} Deployments"
        ports = _port_names(container(targets[0]))
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in ports, f"{svc['metadata']['name']}: {port}"
            assert ports[port["targetPort"]][1] == port["protocol"], f"{svc['metadata']['name']}: {port}"


def test_gateway_deployment_spreads_across_zones_and_keeps_one_up() -> None:
    objs = overlay("hub")
    dep = one(objs, "Deployment", "fleetgate-gateway")
    assert dep["spec"]["replicas"] >= 2
    assert container(dep)["args"] == [
        "gateway", "--fleet", "/etc/fleetgate/fleet.yaml", "--http", "0.0.0.0:8080",
        "--https", "0.0.0.0:8443", "--admin", "0.0.0.0:9901", "--drain-delay", "0", "--drain-timeout", "10"]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    spread = {t["topologyKey"]: t for t in pod_spec(dep)["topologySpreadConstraints"]}
    zone = spread["topology.kubernetes.io/zone"]
    assert zone["maxSkew"] == 1
    assert zone["labelSelector"]["matchLabels"].items() <= labels.items()
    pdb = one(objs, "PodDisruptionBudget", "fleetgate-gateway")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    ports = _port_names(container(dep))
    svc = one(objs, "Service", "fleetgate-gateway")
    assert svc["spec"]["type"] == "LoadBalancer"
    assert {p["port"]: ports[p["targetPort"]][0] for p in svc["spec"]["ports"]} == {80: 8080, 443: 8443}
    admin = one(objs, "Service", "fleetgate-gateway-admin")
    assert admin["spec"]["type"] == "ClusterIP"


def test_controller_runs_two_replicas_with_leader_election() -> None:
    objs = overlay("hub")
    dep = one(objs, "Deployment", "fleetgate-controller")
    assert dep["spec"]["replicas"] == 2
    args = container(dep)["args"]
    assert args[0] == "controller" and "--leader-elect" in args
    assert args[args.index("--fleet") + 1] == "/etc/fleetgate/fleet.yaml"
    assert one(objs, "Service", "fleetgate-controller-admin")["spec"]["ports"][0]["port"] == 9901


def test_dns_listens_unprivileged_behind_port_53_udp_and_tcp() -> None:
    objs = overlay("member")
    dep = one(objs, "Deployment", "fleetgate-dns")
    c = container(dep)
    args = c["args"]
    assert args[0] == "dns"
    assert args[args.index("--listen") + 1] == "0.0.0.0:1053"
    assert args[args.index("--cluster") + 1] == "$(CLUSTER_NAME)"
    assert args[args.index("--fleet") + 1] == "/etc/fleetgate/fleet.yaml"
    assert "CLUSTER_NAME" in {e["name"] for e in c["env"]}
    ports = _port_names(c)
    svc = one(objs, "Service", "fleetgate-dns")
    assert svc["spec"]["type"] == "ClusterIP"
    assert sorted((p["port"], p["protocol"], ports[p["targetPort"]]) for p in svc["spec"]["ports"]) == [
        (53, "TCP", (1053, "TCP")), (53, "UDP", (1053, "UDP"))]
    assert one(objs, "PodDisruptionBudget", "fleetgate-dns")["spec"]["minAvailable"] == 1


# --- what the components read --------------------------------------------------------

def _materialise_fleet_dir(objs: tuple[dict[str, Any], ...], deployment: str, into: Path,
                           members: list[str]) -> Path:
    """Lay out /etc/fleetgate as the kubelet would for that Deployment: ConfigMap keys from
    the build, and for an operator Secret the `<member>.kubeconfig` keys README asks for."""
    dep = one(objs, "Deployment", deployment)
    into.mkdir()
    for source in projected(dep, FLEET_DIR):
        if "configMap" in source:
            cm = one(objs, "ConfigMap", source["configMap"]["name"])
            for key, text in cm["data"].items():
                (into / key).write_text(text)
        else:
            assert source["secret"]["name"] in OPERATOR_SECRETS
            for member in members:
                (into / f"{member}.kubeconfig").write_text("apiVersion: v1\nkind: Config\n")
    return into / "fleet.yaml"


def test_hub_fleet_loads_with_every_kubeconfig_projected(tmp_path: Path) -> None:
    objs = overlay("hub")
    raw = yaml.safe_load(generated(objs, "ConfigMap", "fleetgate-fleet")["data"]["fleet.yaml"])
    members = [c["name"] for c in raw["clusters"]]
    for deployment in ("fleetgate-gateway", "fleetgate-controller"):
        fleet = load_fleet_config(_materialise_fleet_dir(objs, deployment, tmp_path / deployment, members))
        assert fleet.hub is not None and fleet.hub.kubeconfig is not None
        assert fleet.hub.kubeconfig.name == "in-cluster.kubeconfig"
        assert [c.name for c in fleet.clusters] == members
        for cluster in fleet.clusters:
            assert cluster.source.kubeconfig is not None
            assert cluster.source.kubeconfig.name == f"{cluster.name}.kubeconfig"


def test_member_fleet_names_the_cluster_the_responder_serves(tmp_path: Path) -> None:
    objs = overlay("member")
    fleet = load_fleet_config(_materialise_fleet_dir(objs, "fleetgate-dns", tmp_path / "dns", []))
    cluster_name = generated(objs, "ConfigMap", "fleetgate-cluster")["data"]["cluster-name"]
    assert [c.name for c in fleet.clusters] == [cluster_name]
    assert fleet.hub is None and fleet.hub_cluster is None, "the responder reads no Ingresses"
    hub_fleet = yaml.safe_load(generated(overlay("hub"), "ConfigMap", "fleetgate-fleet")["data"]["fleet.yaml"])
    assert cluster_name in [c["name"] for c in hub_fleet["clusters"]]
    assert fleet.zone == hub_fleet["zone"]


async def test_in_cluster_kubeconfig_is_read_by_kubernetes_asyncio(tmp_path: Path) -> None:
    cm = one(overlay("member"), "ConfigMap", "fleetgate-in-cluster-kubeconfig")
    text = cm["data"]["in-cluster.kubeconfig"]
    sa_dir = "/var/run/secrets/kubernetes.io/serviceaccount"
    assert f"{sa_dir}/token" in text and f"{sa_dir}/ca.crt" in text
    (tmp_path / "token").write_text("the-projected-token")
    (tmp_path / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    path = tmp_path / "in-cluster.kubeconfig"
    path.write_text(text.replace(sa_dir, str(tmp_path)))
    config = Configuration()
    await load_kube_config(config_file=str(path), client_configuration=config, persist_config=False)
    assert config.host == "https://kubernetes.default.svc"
    assert config.api_key["BearerToken"] == "Bearer the-projected-token"
    assert config.ssl_ca_cert == str(tmp_path / "ca.crt")


def test_ingress_class_is_understood_by_fleetgate() -> None:
    raw = one(overlay("hub"), "IngressClass", "fleetgate")
    parsed = parse_object(raw)
    assert isinstance(parsed, IngressClass)
    assert parsed.meta.name == "fleetgate"
    assert parsed.controller == "fleetgate.io/gateway"
    assert parsed.is_default is False


# --- CoreDNS --------------------------------------------------------------------------------

def test_coredns_stub_forwards_the_fleet_zone_to_the_responder() -> None:
    stub = yaml.safe_load((MANIFESTS / "coredns" / "clusterset-stub.yaml").read_text())
    assert stub["kind"] == "ConfigMap" and stub["metadata"]["namespace"] == "kube-system"
    (key, block), = stub["data"].items()
    assert key.endswith(".server"), "coredns-custom imports *.server files as server blocks"
    member_fleet = yaml.safe_load((MANIFESTS / "overlays" / "member" / "fleet.yaml").read_text())
    dns_port = {p["protocol"]: p["port"] for p in one(overlay("member"), "Service", "fleetgate-dns")["spec"]["ports"]}
    assert dns_port == {"UDP": 53, "TCP": 53}
    filled = block.replace("FLEETGATE_DNS_IP", "10.96.0.53")
    lines = [ln.strip() for ln in filled.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    assert lines[0] == f"{member_fleet['zone']}:53 {{"
    assert lines[-1] == "}" and filled.count("{") == filled.count("}") == 1
    assert "forward . 10.96.0.53:53" in lines
    assert "FLEETGATE_DNS_IP" not in filled
