"""CPU of one endpoint change on the controller's keyed path at fleet scale, without I/O.

Three members in ObjectStores as the live sources keep them (m0 exports N Services with
10 endpoints each; all three import), then `--changes` times: one watch event moves one
endpoint of one slice in m0, and we time the pure steps it goes through: the store and the
snapshot (a KindView copy of the moved kind), derive_imports(previous=...), and per member
KeyedCluster marking the moved keys and reconcile.plan_key planning them (against members
that hold nothing yet, so every plan is a full one: an upper bound). What is left on
the real path is I/O: the watch event's JSON, the write's HTTP and its answer
(bench/controller_scale.py measures that end to end).

    python bench/controller_keyed.py [--services 10000 --changes 200]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from controller_scale import member_objects  # noqa: E402

from controller.derive import derive_imports  # noqa: E402
from controller.keyed import KeyedCluster  # noqa: E402
from fleet.objectstore import ObjectStore  # noqa: E402
from fleet.snapshot import ClusterName, FleetSnapshot, MemberCluster  # noqa: E402

MEMBERS = ("m0", "m1", "m2")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--services", type=int, default=10000)
    parser.add_argument("--changes", type=int, default=200)
    args = parser.parse_args()
    n = args.services
    stores = [ObjectStore() for _ in MEMBERS]
    for m, store in enumerate(stores):
        objs = member_objects(m, n, 10)
        for kind in ("Namespace", "Service", "EndpointSlice", "ServiceExport"):
            items = [dict(o, metadata=dict(o["metadata"], resourceVersion=str(i + 1)))
                     for i, o in enumerate(objs) if o["kind"] == kind]
            store.replace(kind, items, namespaced=kind != "Namespace")

    def snapshot(version: int) -> FleetSnapshot:
        return FleetSnapshot(hub=stores[0].snapshot(), version=version, members=tuple(
            MemberCluster(ClusterName(name), None, s.snapshot()) for name, s in zip(MEMBERS, stores)))

    started = time.perf_counter()
    derived = derive_imports(snapshot(1), allocate=False, unallocated=MEMBERS)
    print(f"{n} exported services x 10 endpoints, 3 members; derive from scratch "
          f"{time.perf_counter() - started:.1f} s")
    keyed = [KeyedCluster() for _ in MEMBERS]
    for name, k, store in zip(MEMBERS, keyed, stores):
        k.set_desired(derived.per_cluster[name].by_service, None)
        k.set_actual(store.snapshot())
    slices = [o for o in member_objects(0, n, 10) if o["kind"] == "EndpointSlice"]
    steps: list[tuple[float, float, float, int]] = []
    for j in range(args.changes):
        raw = copy.deepcopy(slices[(j * 7919) % n])
        raw["metadata"]["resourceVersion"] = str(10**7 + j)
        raw["endpoints"][0]["addresses"] = [f"10.250.{j // 250}.{j % 250 + 1}"]
        t0 = time.perf_counter()
        stores[0].apply("EndpointSlice", "MODIFIED", raw)
        snap = snapshot(j + 2)
        t1 = time.perf_counter()
        derived = derive_imports(snap, allocate=False, unallocated=MEMBERS, previous=derived)
        t2 = time.perf_counter()
        writes = 0
        for name, k, member in zip(MEMBERS, keyed, snap.members):
            dirty = k.set_desired(derived.per_cluster[name].by_service, derived.changed)
            dirty |= k.set_actual(member.objects)
            for gkey in dirty:
                writes += len(k.plan(gkey, derived.export_conditions.get((name, *gkey)), "now"))
        steps.append((t1 - t0, t2 - t1, time.perf_counter() - t2, writes))
    med = [statistics.median(s[i] for s in steps) * 1000 for i in range(3)]
    print(f"per change (median of {len(steps)}): store + snapshot {med[0]:.2f} ms, derive {med[1]:.2f} ms, "
          f"mark + plan in 3 members {med[2]:.2f} ms; total {sum(med):.2f} ms (target <= 5 ms with I/O)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
