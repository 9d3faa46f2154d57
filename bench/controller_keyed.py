"""CPU of one endpoint change on the controller's keyed path at fleet scale, without I/O.

Three members in ObjectStores as the live sources keep them (m0 exports N Services with
10 endpoints each; all three import), then `--changes` times: one watch event moves one
endpoint of one slice in m0, and we time the pure steps it goes through: the store and the
snapshot (a KindView copy of the moved kind), derive_imports(previous=...), and per member
KeyedCluster marking the moved keys and reconcile.plan_key planning them (against members
that hold nothing yet, so every plan is a full one: an upper bound). What is left on
the real path is I/O: the watch event's JSON, the write's HTTP and its answer
(bench/controller_scale.py measures that end to end).

With `--converged`, the consumers first hold what the API servers answer at the end of a
cold start (every derived object, with uids, resourceVersions and the `amcs-` ClusterIPs),
and the fleet is derived again against them, as the live controller holds it; `--tracemalloc
N` then prints the N largest allocation sites of that state and of the change phase
(the controller's heap without its HTTP client).

    python bench/controller_keyed.py [--services 10000 --changes 200 --converged --tracemalloc 25]
"""
from __future__ import annotations

import argparse
import copy
import gc
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from controller_scale import member_objects  # noqa: E402

from controller.derive import derive_imports  # noqa: E402
from controller.derived import DerivedFleet  # noqa: E402
from controller.render import endpoint_slice_to_dict, service_import_to_dict, service_to_dict  # noqa: E402
from controller.keyed import KeyedCluster  # noqa: E402
from fleet.objectstore import ObjectStore  # noqa: E402
from fleet.snapshot import ClusterName, FleetSnapshot, MemberCluster  # noqa: E402

MEMBERS = ("m0", "m1", "m2")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--services", type=int, default=10000)
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--converged", action="store_true",
                        help="consumers hold every derived object first (as after a cold start)")
    parser.add_argument("--tracemalloc", type=int, default=0, metavar="N",
                        help="print the N largest allocation sites (implies --converged)")
    args = parser.parse_args()
    n = args.services
    if args.tracemalloc:
        args.converged = True
        tracemalloc.start(1)
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
    if args.converged:
        started = time.perf_counter()
        derived = converge(stores, derived, snapshot)
        print(f"consumers hold every derived object ({sum(len(s) for s in stores)} objects); "
              f"derived again in {time.perf_counter() - started:.1f} s")
        if args.tracemalloc:
            top(args.tracemalloc, "the converged state")
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
    if args.tracemalloc:
        top(args.tracemalloc, f"after {len(steps)} changes")
    return 0


def answer(raw: dict, uid: str, *, cluster_ip: str | None = None) -> dict:
    """What an API server answers to a create of `raw`: its fields and the server's."""
    meta = raw["metadata"]
    meta.update(uid=uid, resourceVersion=uid.rsplit("-", 1)[1], creationTimestamp="2026-01-01T00:00:00Z")
    if cluster_ip is not None:
        raw["spec"].update(clusterIP=cluster_ip, clusterIPs=[cluster_ip], ipFamilies=["IPv4"],
                           internalTrafficPolicy="Cluster")
    return raw


def converge(stores: list[ObjectStore], derived: DerivedFleet, snapshot: Callable[[int], FleetSnapshot]
             ) -> DerivedFleet:
    """Fill each consumer's store with its derived objects as created (imports first, then
    the `amcs-` Services with ClusterIPs and the slices owned by the real import uids), and
    derive until nothing moves, as the live controller's cold start ends."""
    version = 100
    for rounds in range(3):
        for m, (name, store) in enumerate(zip(MEMBERS, stores)):
            objs = list(derived.per_cluster[name].by_service.values())
            imports = [answer(service_import_to_dict(o.service_import), f"{name}-si-{i}")
                       for i, o in enumerate(objs)]
            store.replace("ServiceImport", imports)
            if rounds == 0:
                continue
            services = list(store.snapshot().services.values())
            mine = [answer(service_to_dict(o.service), f"{name}-svc-{i}",
                           cluster_ip=f"10.{96 + m}.{i // 250}.{i % 250 + 1}") for i, o in enumerate(objs)]
            slices = [answer(endpoint_slice_to_dict(s), f"{name}-es-{i}")
                      for i, o in enumerate(objs) for s in o.slices]
            store.replace("Service", [service_to_dict(s) for s in services if not s.meta.name.startswith("amcs-")]
                          + mine)
            store.replace("EndpointSlice", [endpoint_slice_to_dict(s) for s in store.snapshot().endpoint_slices.values()
                                            if not s.meta.name.startswith("amcs-")] + slices)
        version += 1
        derived = derive_imports(snapshot(version), allocate=False, unallocated=MEMBERS, previous=derived)
    gc.collect()
    return derived


def top(count: int, what: str) -> None:
    gc.collect()
    snap = tracemalloc.take_snapshot()
    stats = snap.statistics("lineno")
    total = sum(s.size for s in stats)
    print(f"tracemalloc, {what}: {total / 2**20:.1f} MB in {sum(s.count for s in stats)} blocks; "
          f"the {count} largest sites:")
    for s in stats[:count]:
        frame = s.traceback[0]
        print(f"  {s.size / 2**20:7.1f} MB {s.count:9d}  {frame.filename.split('/work/main/')[-1]}:{frame.lineno}")


if __name__ == "__main__":
    sys.exit(main())
