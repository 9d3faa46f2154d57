"""Work keyed by service equals the whole-fleet answer after every step of random changes.

Hypothesis draws a random fleet and a random sequence of changes (exporters' Services,
slices and exports; consumers' ServiceImports, `amcs-` Services and stale or orphaned
copies of our own derived objects). After every step the keyed path (derive_imports with
`previous`, KeyedCluster marking only the keys that moved, reconcile.plan_key on those)
must hold exactly what a from-scratch derivation and a whole-cluster plan give.
"""
from __future__ import annotations

import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.derive import derive_imports
from controller.keyed import KeyedCluster
from controller.reconcile import Write, plan_cluster
from controller.render import endpoint_slice_to_dict, service_import_to_dict, service_to_dict
from tests.controller.random_fleet_support import CLUSTERS, RandomFleet

NOW = "2026-01-01T00:00:00Z"


def as_rows(writes: list[Write]) -> list[tuple[str, ...]]:
    return sorted((w.op, w.kind, w.namespace, w.name, repr(w.body), w.uid, w.resource_version) for w in writes)


def copy_of_ours(world: RandomFleet, rng: random.Random, derived: Any, counter: list[int]) -> str:
    """Put one derived object (ours, possibly outdated later) into a consumer, as an API server would."""
    consumer = rng.choice(CLUSTERS)
    objs = list(derived.per_cluster[consumer].by_service.values())
    if not objs:
        return "nothing to copy"
    o = rng.choice(objs)
    raws = [service_import_to_dict(o.service_import), service_to_dict(o.service)] + [
        endpoint_slice_to_dict(s) for s in o.slices]
    raw = rng.choice(raws)
    counter[0] += 1
    raw["metadata"]["resourceVersion"] = str(counter[0])
    raw["metadata"]["uid"] = f"uid-{counter[0]}"
    if raw["kind"] == "ServiceImport":
        raw["metadata"].setdefault("labels", {})["app.kubernetes.io/managed-by"] = "fleetgate"
    world.put(consumer, raw)
    return f"copy {raw['kind']} {raw['metadata']['name']} into {consumer}"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), steps=st.lists(st.integers(0, 2**31), min_size=1, max_size=30))
def test_keyed_planning_equals_a_fresh_derivation_and_a_whole_plan(seed: int, steps: list[int]) -> None:
    world = RandomFleet(seed)
    snap = world.snapshot()
    derived = derive_imports(snap, allocate=True)
    keyed = {c: KeyedCluster(c) for c in CLUSTERS}
    plans: dict[str, dict[tuple[str, str], list[Write]]] = {c: {} for c in CLUSTERS}
    counter = [0]
    did: list[str] = []
    for i, step_seed in enumerate([0] + steps):
        if i:
            rng = random.Random(step_seed)
            world.rng = rng
            did.append(copy_of_ours(world, rng, derived, counter) if rng.random() < 0.3 else world.step())
            snap = world.snapshot()
            derived = derive_imports(snap, allocate=True, previous=derived)
        fresh = derive_imports(snap, allocate=True)
        assert derived == fresh and derived.diagnostics == fresh.diagnostics, did
        for c in CLUSTERS:
            k = keyed[c]
            dirty = k.set_desired(derived.per_cluster[c].by_service, derived.changed, derived.export_conditions)
            dirty |= k.set_actual(snap.member(c).objects)  # type: ignore[union-attr]
            assert dict(k.desired) == dict(fresh.per_cluster[c].by_service), did
            for gkey in dirty:
                plans[c][gkey] = k.plan(gkey, derived.export_conditions.get((c, *gkey)), NOW)
            conditions = {(ns, n): conds for (cl, ns, n), conds in fresh.export_conditions.items() if cl == c}
            whole = plan_cluster(fresh.per_cluster[c], snap.member(c).objects,  # type: ignore[union-attr]
                                 conditions=conditions, now=NOW)
            keyed_writes = [w for ws in plans[c].values() for w in ws]
            assert as_rows(keyed_writes) == as_rows(whole), (c, did)


def test_a_full_resync_plans_what_the_keyed_path_holds() -> None:
    """Every key dirty (start, relist, leader change) gives the same writes as the keyed path."""
    world = RandomFleet(7)
    derived = derive_imports(world.snapshot())
    for _ in range(20):
        world.step()
        derived = derive_imports(world.snapshot(), previous=derived)
    snap = world.snapshot()
    derived = derive_imports(snap, previous=derived)
    for c in CLUSTERS:
        k = KeyedCluster()
        k.set_desired(derived.per_cluster[c].by_service, None)
        k.set_actual(snap.member(c).objects)  # type: ignore[union-attr]
        writes = [w for g in k.all_keys() for w in k.plan(g, derived.export_conditions.get((c, *g)), NOW)]
        conditions = {(ns, n): conds for (cl, ns, n), conds in derived.export_conditions.items() if cl == c}
        whole = plan_cluster(derived.per_cluster[c], snap.member(c).objects,  # type: ignore[union-attr]
                             conditions=conditions, now=NOW)
        assert as_rows(writes) == as_rows(whole)
        assert whole, "the random fleet plans something in every consumer"
