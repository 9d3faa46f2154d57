"""The writer's checked view of a cluster is freed by reference counting, never left to the gc."""
from __future__ import annotations

import gc
import weakref
from typing import Any

from controller.writer import _Checked
from fleet.objects import parse_object
from fleet.snapshot import ClusterObjects
from tests.controller.mcs_support import service


class Store:
    """The one LiveCluster method _Checked reads: the object as the store holds it now."""

    def __init__(self, objects: ClusterObjects) -> None:
        self.objects = objects

    def current(self, kind: str, namespace: str, name: str) -> Any:
        return self.objects.of(kind).get((namespace, name))


def test_a_replaced_checked_view_and_its_snapshot_are_freed_without_the_cyclic_gc() -> None:
    """A freeze (the gc policy) can take a _Checked while it is the writer's current one; if it
    were a reference cycle, replacing it would leave it, and the snapshot it holds, for good."""
    seen = ClusterObjects.build([parse_object(service("web"))])
    checked = _Checked(seen, Store(seen))  # type: ignore[arg-type]
    assert checked.services.get(("demo", "web")) is seen.services[("demo", "web")] and not checked.stale
    moved = ClusterObjects.build([parse_object(service("web", ports=(("http", 81, "TCP"),)))])
    stale = _Checked(seen, Store(moved))  # type: ignore[arg-type]
    stale.services.get(("demo", "web"))
    assert stale.stale
    stale.stale = False
    assert not stale.stale and not checked.stale
    views, gone = weakref.ref(checked), weakref.ref(seen)
    was = gc.isenabled()
    gc.disable()
    try:
        del checked, stale, seen
        assert views() is None and gone() is None, "freed by reference counting alone"
    finally:
        if was:
            gc.enable()
