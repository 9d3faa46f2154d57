"""The MCS API and ClusterProperty CRDs in manifests/base/crds: versions, short names,
status subresources, structural schemas faithful to kubernetes-sigs/mcs-api, and that the
objects the controller writes (and fleetgate parses) fit them while what the API rejects
does not. The schemas are checked with a small validator for the subset they use.
"""
from __future__ import annotations

import datetime as dt
import functools
import re
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from fleet.objects import ServiceExport, ServiceImport, parse_object

CRD_DIR = Path(__file__).resolve().parents[2] / "manifests" / "base" / "crds"
MCS = "multicluster.x-k8s.io"


@functools.cache
def crds() -> dict[str, dict[str, Any]]:
    """The CRDs by kind, read from their files (kustomize adds nothing to them); read-only."""
    out = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                out[doc["spec"]["names"]["kind"]] = doc
    return out


def schema(kind: str, version: str = "v1beta1") -> dict[str, Any]:
    versions = {v["name"]: v for v in crds()[kind]["spec"]["versions"]}
    return versions[version]["schema"]["openAPIV3Schema"]


@pytest.mark.parametrize("kind,group,short", [("ServiceExport", MCS, "svcex"),
                                              ("ServiceImport", MCS, "svcim"),
                                              ("ClusterProperty", "about.k8s.io", None)])
def test_crd_serves_both_versions_and_stores_v1beta1(kind: str, group: str, short: str | None) -> None:
    crd = crds()[kind]
    spec = crd["spec"]
    assert spec["group"] == group
    assert crd["metadata"]["name"] == f"{spec['names']['plural']}.{group}"
    assert spec["names"]["singular"] == kind.lower()
    assert spec["names"]["listKind"] == f"{kind}List"
    versions = {v["name"]: v for v in spec["versions"]}
    assert versions.keys() == {"v1alpha1", "v1beta1"}
    assert all(v["served"] for v in versions.values())
    assert [v["name"] for v in versions.values() if v["storage"]] == ["v1beta1"]
    for v in versions.values():
        assert v["additionalPrinterColumns"], v["name"]
        for column in v["additionalPrinterColumns"]:
            assert column["jsonPath"].startswith(".") and column["type"] in ("string", "date")
    if short is not None:
        assert spec["scope"] == "Namespaced"
        assert short in spec["names"]["shortNames"]
        assert all(v["subresources"] == {"status": {}} for v in versions.values())
        # Conversion strategy None only relabels apiVersion: the shapes must agree.
        assert versions["v1alpha1"]["schema"] == versions["v1beta1"]["schema"]
    else:
        assert spec["scope"] == "Cluster"


def _walk(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for key, child in node.get("properties", {}).items():
        yield from _walk(child, f"{path}.{key}")
    if "items" in node:
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}{{}}")


@pytest.mark.parametrize("kind", ["ServiceExport", "ServiceImport", "ClusterProperty"])
def test_crd_schemas_are_structural(kind: str) -> None:
    for version in ("v1alpha1", "v1beta1"):
        for path, node in _walk(schema(kind, version), kind):
            assert node.get("type") in ("object", "array", "string", "integer", "boolean"), path
            if node.get("x-kubernetes-list-type") == "map":
                keys = node["x-kubernetes-list-map-keys"]
                assert set(keys) <= set(node["items"]["required"]), path


def test_service_import_schema_follows_mcs_api() -> None:
    s = schema("ServiceImport")
    spec = s["properties"]["spec"]
    assert set(spec["properties"]) == {"ports", "ips", "type", "sessionAffinity", "sessionAffinityConfig",
                                       "ipFamilies", "internalTrafficPolicy", "trafficDistribution"}
    assert set(spec["required"]) == {"ports", "type"}
    assert spec["properties"]["type"]["enum"] == ["ClusterSetIP", "Headless"]
    assert spec["properties"]["ips"]["maxItems"] == 2
    assert spec["properties"]["ipFamilies"]["maxItems"] == 2
    port = spec["properties"]["ports"]["items"]
    assert set(port["properties"]) == {"name", "protocol", "appProtocol", "port"}, "no targetPort"
    assert port["properties"]["port"]["format"] == "int32"
    timeout = spec["properties"]["sessionAffinityConfig"]["properties"]["clientIP"]["properties"]
    assert timeout["timeoutSeconds"]["type"] == "integer"
    clusters = s["properties"]["status"]["properties"]["clusters"]
    assert clusters["items"]["required"] == ["cluster"]


# A small validator for the schema subset the CRDs use: what the API server would reject,
# plus fields it would silently prune (reported too: pruning loses data).
def _violations(node: dict[str, Any], value: Any, path: str = "") -> list[str]:
    kind = node.get("type")
    out: list[str] = []
    if "enum" in node and value not in node["enum"]:
        return [f"{path}: {value!r} not in {node['enum']}"]
    if kind == "object":
        if not isinstance(value, dict):
            return [f"{path}: expected an object"]
        out += [f"{path}.{k}: required" for k in node.get("required", []) if k not in value]
        props, extra = node.get("properties"), node.get("additionalProperties")
        for key, child in value.items():
            if props is not None and key in props:
                out += _violations(props[key], child, f"{path}.{key}")
            elif isinstance(extra, dict):
                out += _violations(extra, child, f"{path}.{key}")
            elif props is not None:
                out.append(f"{path}.{key}: unknown field (pruned)")
    elif kind == "array":
        if not isinstance(value, list):
            return [f"{path}: expected an array"]
        if len(value) > node.get("maxItems", len(value)):
            out.append(f"{path}: more than {node['maxItems']} items")
        for i, item in enumerate(value):
            out += _violations(node["items"], item, f"{path}[{i}]")
    elif kind == "string":
        if not isinstance(value, str):
            return [f"{path}: expected a string"]
        if not node.get("minLength", 0) <= len(value) <= node.get("maxLength", len(value)):
            out.append(f"{path}: length {len(value)} out of range")
        if "pattern" in node and not re.search(node["pattern"], value):
            out.append(f"{path}: {value!r} does not match {node['pattern']}")
        if node.get("format") == "date-time":
            try:
                dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                out.append(f"{path}: {value!r} is not a date-time")
    elif kind == "integer":
        if not isinstance(value, int) or isinstance(value, bool):
            return [f"{path}: expected an integer"]
        if value < node.get("minimum", value):
            out.append(f"{path}: below {node['minimum']}")
        if node.get("format") == "int32" and not -2**31 <= value < 2**31:
            out.append(f"{path}: not an int32")
    return out


def _condition(type_: str, status: str, reason: str, message: str = "set by the controller") -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": reason, "message": message,
            "observedGeneration": 1, "lastTransitionTime": "2024-05-01T10:00:00Z"}


META = {"name": "db", "namespace": "shop"}
IMPORT_DUAL_STACK = {
    "apiVersion": f"{MCS}/v1beta1", "kind": "ServiceImport",
    "metadata": {**META, "annotations": {"multicluster.kubernetes.io/derived-service": "amcs-db"}},
    "spec": {"type": "ClusterSetIP", "ips": ["242.0.0.7", "fd00::7"], "ipFamilies": ["IPv4", "IPv6"],
             "ports": [{"name": "sql", "protocol": "TCP", "port": 5432, "appProtocol": "postgresql"}],
             "sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}},
             "internalTrafficPolicy": "Cluster", "trafficDistribution": "PreferClose"},
    "status": {"clusters": [{"cluster": "zone-a"}, {"cluster": "zone-b"}]},
}
IMPORT_HEADLESS = {
    "apiVersion": f"{MCS}/v1alpha1", "kind": "ServiceImport", "metadata": META,
    "spec": {"type": "Headless", "ports": [{"name": "sql", "port": 5432}]},
}
EXPORT_IN_CONFLICT = {
    "apiVersion": f"{MCS}/v1beta1", "kind": "ServiceExport", "metadata": META,
    "status": {"conditions": [
        _condition("Valid", "True", "Valid"),
        _condition("Ready", "True", "Exported"),
        _condition("Conflict", "True", "PortConflict,TypeConflict",
                   "spec.ports: zone-a (oldest export) wins port sql"),
    ]},
}


@pytest.mark.parametrize("obj", [IMPORT_DUAL_STACK, IMPORT_HEADLESS, EXPORT_IN_CONFLICT],
                         ids=["import-dual-stack", "import-headless", "export-in-conflict"])
def test_objects_the_controller_writes_fit_the_crds_and_parse(obj: dict[str, Any]) -> None:
    version = obj["apiVersion"].split("/")[1]
    assert _violations(schema(obj["kind"], version), obj) == []
    parsed = parse_object(obj)
    assert isinstance(parsed, (ServiceImport, ServiceExport))
    assert parsed.meta.name == "db"


def test_cluster_property_for_the_cluster_id_fits_its_crd() -> None:
    prop = {"apiVersion": "about.k8s.io/v1beta1", "kind": "ClusterProperty",
            "metadata": {"name": "cluster.clusterset.k8s.io"}, "spec": {"value": "zone-a"}}
    assert _violations(schema("ClusterProperty"), prop) == []
    assert _violations(schema("ClusterProperty"), {**prop, "spec": {"value": ""}})


@pytest.mark.parametrize("change,needle", [
    (lambda o: o["spec"].update(ips=["242.0.0.1", "242.0.0.2", "242.0.0.3"]), "more than 2"),
    (lambda o: o["spec"].update(type="LoadBalancer"), "not in"),
    (lambda o: o["spec"].pop("ports"), "spec.ports: required"),
    (lambda o: o["spec"]["ports"][0].update(targetPort=8080), "unknown field"),
    (lambda o: o["status"]["clusters"].append({}), "cluster: required"),
])
def test_crd_rejects_what_mcs_api_rejects(change: Any, needle: str) -> None:
    obj = yaml.safe_load(yaml.safe_dump(IMPORT_DUAL_STACK))
    change(obj)
    problems = _violations(schema("ServiceImport"), obj)
    assert any(needle in p for p in problems), problems


@pytest.mark.parametrize("condition,needle", [
    ({"reason": "Port Conflict"}, "does not match"),
    ({"reason": ""}, "length"),
    ({"status": "Yes"}, "not in"),
    ({"lastTransitionTime": "yesterday"}, "date-time"),
    ({"observedGeneration": -1}, "below"),
])
def test_export_conditions_are_metav1_conditions(condition: dict[str, Any], needle: str) -> None:
    obj = yaml.safe_load(yaml.safe_dump(EXPORT_IN_CONFLICT))
    obj["status"]["conditions"][2].update(condition)
    problems = _violations(schema("ServiceExport"), obj)
    assert any(needle in p for p in problems), problems
    del obj["status"]["conditions"][0]["message"]
    assert ".status.conditions[0].message: required" in _violations(schema("ServiceExport"), obj)
