"""KeyedCluster.set_desired marks a recomputed name in one cluster only when that cluster's
objects or export conditions for it moved: a write in one member recomputes the name for
every member, and the others have nothing to plan (tests/controller/test_keyed_property.py
checks the whole path against a from-scratch plan)."""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from controller.keyed import KeyedCluster

KEY = ("demo", "web")
OTHER = ("demo", "api")


def objects(name: str) -> Any:
    """Enough of an ImportObjects for marking: its Service and slices name what it wants."""
    meta = SimpleNamespace(namespace="demo", name=f"amcs-{name}")
    return SimpleNamespace(service=SimpleNamespace(meta=meta), slices=())


def test_a_name_recomputed_for_another_member_is_not_planned_here() -> None:
    k = KeyedCluster("zone-a")
    web, api = objects("web"), objects("api")
    conds = {("zone-a", *KEY): ("ready",), ("zone-b", *KEY): ("ready",)}
    assert k.set_desired({KEY: web, OTHER: api}, None, conds) == {KEY, OTHER}
    # zone-b's conditions for web moved: derive_imports reports web as changed
    moved_elsewhere = {**conds, ("zone-b", *KEY): ("not ready",)}
    assert k.set_desired({KEY: web, OTHER: api}, {KEY}, moved_elsewhere) == set()
    # this member's conditions moved (an equal tuple made anew is no move)
    assert k.set_desired({KEY: web, OTHER: api}, {KEY}, {**moved_elsewhere, ("zone-a", *KEY): ("ready",)}) == set()
    assert k.set_desired({KEY: web, OTHER: api}, {KEY}, {**moved_elsewhere, ("zone-a", *KEY): ("gone",)}) == {KEY}
    # this member's objects moved
    assert k.set_desired({KEY: objects("web"), OTHER: api}, {KEY}, k.conditions) == {KEY}


def test_without_conditions_every_recomputed_name_is_planned() -> None:
    k = KeyedCluster()
    web = objects("web")
    k.set_desired({KEY: web}, None)
    assert k.set_desired({KEY: web}, {KEY}) == {KEY}
