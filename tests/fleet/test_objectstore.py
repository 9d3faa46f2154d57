"""The live object store and the reflector's backoff, without any server (pure)."""
from __future__ import annotations

import copy

from fleet.objectstore import ObjectStore
from fleet.reflector import Backoff
from tests.live_support import endpoint_slice, service


def at(raw: dict, rv: str) -> dict:
    raw = copy.deepcopy(raw)
    raw["metadata"]["resourceVersion"] = rv
    return raw


def test_a_relist_of_what_is_held_keeps_every_view_and_the_snapshot() -> None:
    store = ObjectStore("http://api")
    assert store.replace("Service", [at(service("a"), "1"), at(service("b"), "2")])
    first = store.snapshot()
    assert not store.replace("Service", [at(service("a"), "1"), at(service("b"), "2")])
    assert store.snapshot() is first
    assert store.replace("Service", [at(service("a"), "1")])  # b went away while we were not looking
    assert set(store.snapshot().services) == {("demo", "a")}
    assert store.snapshot().services[("demo", "a")] is first.services[("demo", "a")]


def test_events_replays_and_deletes() -> None:
    store = ObjectStore()
    store.replace("EndpointSlice", [])
    assert store.apply("EndpointSlice", "ADDED", at(endpoint_slice("a", [("127.0.65.1", 80)]), "5"))
    before = store.snapshot()
    assert not store.apply("EndpointSlice", "MODIFIED", at(endpoint_slice("a", [("127.0.65.1", 80)]), "5"))
    assert store.snapshot() is before  # a replay of the same resourceVersion
    assert store.apply("EndpointSlice", "MODIFIED", at(endpoint_slice("a", [("127.0.65.2", 80)]), "6"))
    assert store.snapshot().endpoint_slices[("demo", "a-1")].endpoints[0].addresses == ("127.0.65.2",)
    assert store.apply("EndpointSlice", "DELETED", at(endpoint_slice("a", []), "7"))
    assert not store.apply("EndpointSlice", "DELETED", at(endpoint_slice("a", []), "7"))
    assert len(store.snapshot().endpoint_slices) == 0
    # namespaces exist by their objects, as in file mode
    assert not store.snapshot().has_namespace("demo")


def test_a_malformed_update_keeps_the_last_good_view_and_reports_it() -> None:
    store = ObjectStore("http://api")
    store.replace("Service", [at(service("a"), "1")])
    good = store.snapshot().services[("demo", "a")]
    bad = at(service("a"), "2")
    bad["spec"]["type"] = "Teleport"
    assert store.apply("Service", "MODIFIED", bad)
    assert store.snapshot().services[("demo", "a")] is good
    (diag,) = store.diagnostics()
    assert diag.object == "Service/demo/a" and "Teleport" in diag.message and diag.path.startswith("http://api")
    assert store.apply("Service", "MODIFIED", at(service("a"), "3"))
    assert store.diagnostics() == ()


def test_backoff_grows_with_jitter_to_a_cap_and_resets() -> None:
    top = Backoff(base=0.1, cap=3.0, rand=lambda: 1.0)
    assert [round(top.next(), 2) for _ in range(7)] == [0.1, 0.2, 0.4, 0.8, 1.6, 3.0, 3.0]
    bottom = Backoff(base=0.1, cap=3.0, rand=lambda: 0.0)
    assert [round(bottom.next(), 2) for _ in range(3)] == [0.05, 0.1, 0.2]  # jitter: half to full
    top.reset()
    assert top.next() == 0.1


def test_views_know_what_moved_so_changed_keys_reads_only_that() -> None:
    """A watch event marks its key: changed_keys between two recent views of a kind is the
    keys the events touched (the same answer as comparing every object), and a view more
    than CHAIN snapshots old falls back to the comparison and is unlinked (freed)."""
    from fleet.changes import CHAIN, KindView, changed_keys

    store = ObjectStore()
    store.replace("Service", [at(service(f"s{i}"), str(i + 1)) for i in range(50)])
    views = [store.snapshot().services]
    for step in range(CHAIN + 2):
        store.apply("Service", "MODIFIED", at(service(f"s{step}", port=81), f"{100 + step}"))
        store.apply("Service", "DELETED", at(service(f"s{40 + step}"), f"{200 + step}"))
        store.apply("Service", "ADDED", at(service(f"new{step}"), f"{300 + step}"))
        views.append(store.snapshot().services)
    last = views[-1]
    assert isinstance(last, KindView)
    for old in views[:-1]:
        by_identity = {k for k in set(old) | set(last) if old.get(k) is not last.get(k)}
        assert set(changed_keys(old, last)) == by_identity and by_identity
    assert last.moved_since(views[-2]) is not None and last.moved_since(views[-1 - CHAIN]) is not None
    assert last.moved_since(views[0]) is None  # beyond the chain: compared by identity above
    assert views[-1 - CHAIN].base is None
    assert dict(last.items()) == dict(store.snapshot().services) and len(last) == 50


def test_namespaces_follow_adds_and_deletes_without_a_rescan() -> None:
    store = ObjectStore()
    store.replace("Namespace", [at({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "empty"}}, "1")],
                  namespaced=False)
    store.replace("Service", [at(service("a"), "2")])
    assert store.snapshot().namespace_names == {"empty", "demo"}
    store.apply("Service", "ADDED", at(service("b", namespace="shop"), "3"))
    store.apply("Service", "ADDED", at(service("c", namespace="shop"), "4"))
    assert store.snapshot().namespace_names == {"empty", "demo", "shop"}
    store.apply("Service", "DELETED", at(service("b", namespace="shop"), "5"))
    assert store.snapshot().namespace_names == {"empty", "demo", "shop"}  # c is still there
    store.apply("Service", "DELETED", at(service("c", namespace="shop"), "6"))
    store.apply("Service", "MODIFIED", at(service("a", port=81), "7"))
    assert store.snapshot().namespace_names == {"empty", "demo"}
    store.replace("Service", [])
    assert store.snapshot().namespace_names == {"empty"}
