"""LiveSource.writing: which events count as having moved an object while a write of it is
in flight (the live writer stores a write's answer only when none did: controller/writer.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from fleet.config import SourceSpec
from fleet.kube import ENDPOINT_SLICES, SERVICES
from fleet.live import LiveSource
from tests.controller.mcs_support import endpoint, endpoint_slice


def source(tmp_path: Path) -> LiveSource:
    """A LiveSource fed by hand (its client connects on first use, which never comes)."""
    return LiveSource("zone-b", SourceSpec(kubeconfig=tmp_path / "unused.yaml"))


def slice_raw(name: str, rv: str) -> dict[str, Any]:
    raw = endpoint_slice("web", [endpoint("10.0.0.1")], "default", name=name)
    raw["metadata"]["resourceVersion"] = rv
    return raw


def test_every_event_of_the_object_counts_deleted_and_relists_included(tmp_path: Path) -> None:
    src = source(tmp_path)
    flight = src.writing("EndpointSlice", "default", "web-1")
    src.event(SERVICES, "ADDED", {"metadata": {"name": "web-1", "namespace": "default", "resourceVersion": "1"},
                                  "spec": {"ports": [{"port": 80}]}})
    src.event(ENDPOINT_SLICES, "ADDED", slice_raw("web-2", "2"))
    assert not flight.moved, "another kind, another name: not this object"
    src.event(ENDPOINT_SLICES, "ADDED", slice_raw("web-1", "3"))
    assert flight.moved
    flight.done()

    added_then_deleted = src.writing("EndpointSlice", "default", "web-1")
    src.event(ENDPOINT_SLICES, "DELETED", slice_raw("web-1", "4"))
    assert added_then_deleted.moved, "a DELETED event counts"
    added_then_deleted.done()

    relisted = src.writing("EndpointSlice", "default", "web-1")
    src.replace(SERVICES, [])
    assert not relisted.moved
    src.replace(ENDPOINT_SLICES, [])
    assert relisted.moved, "a relist of its kind: the answer in flight may be older"
    relisted.done()
    assert not src._writing, "released once its writes are done"


def test_two_writes_of_one_object_each_see_the_events_since_their_own_start(tmp_path: Path) -> None:
    src = source(tmp_path)
    first = src.writing("EndpointSlice", "default", "web-1")
    src.event(ENDPOINT_SLICES, "ADDED", slice_raw("web-1", "1"))
    second = src.writing("EndpointSlice", "default", "web-1")
    assert first.moved and not second.moved
    first.done()
    src.event(ENDPOINT_SLICES, "MODIFIED", slice_raw("web-1", "2"))
    assert second.moved, "the entry outlives the first write while the second is in flight"
    second.done()
    assert not src._writing
