"""Pure manifest parsing: documents, lists, ignored kinds, and diagnostics that name things."""
from __future__ import annotations

from pathlib import PurePosixPath

import pytest

from fleet.manifests import has_errors, is_manifest_path, merge_files, parse_file
from fleet.objects import EndpointSlice, Namespace, Service
from fleet.snapshot import Diagnostic

SERVICE = """\
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: demo}
spec:
  ports: [{name: http, port: 80}]
"""


def test_multi_document_file_with_empty_documents() -> None:
    text = "---\n" + SERVICE + "---\n---\n# only a comment\n---\n" + """\
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: echo-1
  namespace: demo
  labels: {kubernetes.io/service-name: echo}
endpoints: [{addresses: [127.0.0.1]}]
"""
    objects, diags = parse_file("zone-a/echo.yaml", text)
    assert diags == []
    assert [type(o) for o in objects] == [Service, EndpointSlice]
    assert objects[1].service_name == "echo"


def test_list_items_are_objects() -> None:
    text = """\
apiVersion: v1
kind: List
items:
  - {apiVersion: v1, kind: Namespace, metadata: {name: demo}}
  - {apiVersion: apps/v1, kind: Deployment, metadata: {name: echo, namespace: demo}}
  - {apiVersion: v1, kind: Service, metadata: {name: echo, namespace: demo}}
"""
    objects, diags = parse_file("list.yaml", text)
    assert diags == []
    assert [(type(o), o.meta.name) for o in objects] == [(Namespace, "demo"), (Service, "echo")]


def test_unknown_kinds_are_ignored_silently() -> None:
    text = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
data: {a: b}
"""
    assert parse_file("deploy.yaml", text) == ([], [])


def test_yaml_syntax_error_is_one_diagnostic_with_the_line() -> None:
    text = SERVICE + "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: x\n   namespace: y\n"
    objects, diags = parse_file("bad.yaml", text)
    assert len(diags) == 1
    assert diags[0].path == "bad.yaml" and diags[0].object == "line 11"  # the over-indented key
    assert diags[0].message.startswith("YAML syntax error: ")
    assert has_errors(diags)


def test_json_file_and_json_syntax_error() -> None:
    objects, diags = parse_file("svc.json", '{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"}}')
    assert diags == [] and objects[0].meta.name == "n"
    _, diags = parse_file("svc.json", '{"apiVersion": "v1",\n "kind": }')
    assert [(d.object, d.message.split(":")[0]) for d in diags] == [("line 2", "JSON syntax error")]


def test_invalid_known_object_names_kind_namespace_and_field() -> None:
    text = SERVICE.replace("port: 80", "port: 0")
    objects, diags = parse_file("zone-a/echo.yaml", text)
    assert objects == []
    assert [str(d) for d in diags] == [
        "zone-a/echo.yaml: Service/demo/echo: spec.ports[0].port: 0 is out of range 1..65535"]


def test_good_objects_of_a_file_are_returned_beside_its_errors() -> None:
    text = SERVICE + "---\n" + SERVICE.replace("echo", "other").replace("port: 80", "port: x")
    objects, diags = parse_file("f.yaml", text)
    assert [o.meta.name for o in objects] == ["echo"]
    assert [d.object for d in diags] == ["Service/demo/other"]


@pytest.mark.parametrize("text, obj, message", [
    ("- a\n- b\n", "line 1", "expected a Kubernetes object (a mapping), got list"),
    ("metadata: {name: x}\n", "line 1", "apiVersion and kind: required"),
    ("kind: Service\nmetadata: {name: x, namespace: d}\n", "Service/d/x", "apiVersion: required"),
    ("apiVersion: v1\nkind: List\nitems: 3\n", "line 1", "items: expected a list"),
])
def test_documents_that_are_not_objects(text: str, obj: str, message: str) -> None:
    _, diags = parse_file("x.yaml", text)
    assert len(diags) == 1
    assert diags[0].object == obj and diags[0].message.startswith(message)


def test_known_kind_under_an_unknown_group_is_a_warning_not_an_error() -> None:
    text = "apiVersion: extensions/v1beta1\nkind: Ingress\nmetadata: {name: web, namespace: demo}\n"
    objects, diags = parse_file("old.yaml", text)
    assert objects == []
    assert [(d.object, d.severity) for d in diags] == [("Ingress/demo/web", "warning")]
    assert "networking.k8s.io" in diags[0].message
    assert not has_errors(diags)


@pytest.mark.parametrize("path, wanted", [
    ("a.yaml", True), ("sub/dir/b.yml", True), ("c.json", True), ("C.YAML", True),
    ("readme.md", False), ("a.yaml.bak", False), (".hidden.yaml", False),
    ("..data/a.yaml", False), ("..2024_01_01/a.yaml", False), (".git/x.yaml", False),
])
def test_manifest_file_names(path: str, wanted: bool) -> None:
    assert is_manifest_path(PurePosixPath(path)) is wanted


def test_duplicates_across_files_keep_the_first_by_sorted_path() -> None:
    first, _ = parse_file("a.yaml", SERVICE)
    second, _ = parse_file("b.yaml", SERVICE.replace("port: 80", "port: 81"))
    other, _ = parse_file("b.yaml", SERVICE.replace("echo", "api"))
    objects, origins, diags = merge_files({"b.yaml": second + other, "a.yaml": first})
    assert [(o.meta.name, o.ports[0].port) for o in objects] == [("echo", 80), ("api", 80)]
    assert origins == {("Service", "demo", "echo"): "a.yaml", ("Service", "demo", "api"): "b.yaml"}
    assert diags == [Diagnostic("b.yaml", "Service/demo/echo",
                                "duplicate of the object in a.yaml; this one is ignored")]


def test_duplicate_within_one_file_keeps_the_first() -> None:
    objects, diags = parse_file("a.yaml", SERVICE + "---\n" + SERVICE.replace("port: 80", "port: 81"))
    assert diags == []
    merged, _, dups = merge_files({"a.yaml": objects})
    assert [o.ports[0].port for o in merged] == [80]
    assert [d.object for d in dups] == ["Service/demo/echo"]
