"""The patch flavours as pure functions (RFC 7386, RFC 6902, strategic merge)."""
from __future__ import annotations

import pytest

from kubefake import ApiError
from kubefake.patch import json_patch, merge_patch, strategic_merge_patch


@pytest.mark.parametrize("target, patch, result", [  # from RFC 7386 appendix A
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    (["a"], {"a": "b"}, {"a": "b"}),
])
def test_merge_patch_rfc7386(target: object, patch: object, result: object) -> None:
    assert merge_patch(target, patch) == result


def test_json_patch_operations() -> None:
    doc = {"a": {"b": [1, 2]}, "c": "x"}
    out = json_patch(doc, [
        {"op": "add", "path": "/a/b/-", "value": 3},
        {"op": "add", "path": "/a/b/0", "value": 0},
        {"op": "replace", "path": "/c", "value": "y"},
        {"op": "copy", "from": "/c", "path": "/d"},
        {"op": "move", "from": "/d", "path": "/e~1f"},
        {"op": "remove", "path": "/a/b/1"},
        {"op": "test", "path": "/a/b", "value": [0, 2, 3]},
    ])
    assert out == {"a": {"b": [0, 2, 3]}, "c": "y", "e/f": "y"}
    assert doc == {"a": {"b": [1, 2]}, "c": "x"}  # the input is untouched


@pytest.mark.parametrize("ops", [
    [{"op": "remove", "path": "/missing"}],
    [{"op": "replace", "path": "/a/5", "value": 1}],
    [{"op": "test", "path": "/c", "value": "nope"}],
])
def test_json_patch_failures_are_422(ops: list) -> None:
    with pytest.raises(ApiError) as err:
        json_patch({"a": [1], "c": "x"}, ops)
    assert err.value.code == 422


def test_strategic_merge_merges_lists_by_key_and_honours_directives() -> None:
    svc = {"spec": {"ports": [{"name": "a", "port": 80}, {"name": "b", "port": 443}],
                    "selector": {"app": "x", "tier": "y"}},
           "metadata": {"finalizers": ["one"]}}
    out = strategic_merge_patch(svc, {
        "spec": {"$setElementOrder/ports": [{"port": 443}, {"port": 8080}],
                 "ports": [{"port": 8080, "name": "c"}, {"port": 80, "$patch": "delete"}],
                 "selector": {"$patch": "replace", "app": "z"}},
        "metadata": {"finalizers": ["two"], "$deleteFromPrimitiveList/finalizers": ["one"]},
    })
    assert out["spec"]["ports"] == [{"name": "b", "port": 443}, {"name": "c", "port": 8080}]
    assert out["spec"]["selector"] == {"app": "z"}
    assert out["metadata"]["finalizers"] == ["two"]


def test_strategic_merge_replaces_lists_without_a_merge_key() -> None:
    ing = {"spec": {"rules": [{"host": "a"}, {"host": "b"}]}}
    assert strategic_merge_patch(ing, {"spec": {"rules": [{"host": "c"}]}}) == {"spec": {"rules": [{"host": "c"}]}}
