"""CPU the live controller spends per change at fleet scale, without API servers.

Builds a member cluster exporting N services (one endpoint each) and a consumer cluster
holding what the controller wrote there, as an API server would show it; then times the
pure steps a change goes through: derive_imports (from scratch, then incremental after
one endpoint moves) and reconcile.plan_cluster (a converged cluster without and with the
worker's memo, then the plan after the change). These run on the event loop that also
serves traffic in `fleetgate up`, so they bound both convergence and the stall a change
causes.

    python bench/controller_plan.py [--services 10000]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.derive import DerivedFleet, derive_imports  # noqa: E402
from controller.reconcile import PlanMemo, plan_cluster  # noqa: E402
from controller.render import endpoint_slice_to_dict, service_import_to_dict, service_to_dict  # noqa: E402
from fleet.objects import parse_object  # noqa: E402
from fleet.snapshot import ClusterName, ClusterObjects, FleetSnapshot, MemberCluster  # noqa: E402

NS = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}}


def exporter_objects(n: int, moved: int | None = None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [NS]
    for i in range(n):
        ip = f"10.{i // 250 % 250}.{i % 250}.{2 if i == moved else 1}"
        out += [
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"s{i}", "namespace": "demo"},
             "spec": {"type": "ClusterIP", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}},
            {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
             "metadata": {"name": f"s{i}-1", "namespace": "demo", "labels": {"kubernetes.io/service-name": f"s{i}"}},
             "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
             "endpoints": [{"addresses": [ip], "conditions": {"ready": True}}]},
            {"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceExport",
             "metadata": {"name": f"s{i}", "namespace": "demo", "generation": 1}},
        ]
    return out


def stored(derived: DerivedFleet) -> ClusterObjects:
    """The consumer as its API server would show it after the controller's writes."""
    raws: list[dict[str, Any]] = [NS]
    for n, objs in enumerate(derived.per_cluster["b"].by_service.values()):
        si = service_import_to_dict(objs.service_import)
        svc = service_to_dict(objs.service)
        svc["spec"]["clusterIP"] = svc["spec"].get("clusterIP") or f"10.96.{n // 250}.{n % 250 + 1}"
        svc["spec"]["clusterIPs"] = [svc["spec"]["clusterIP"]]
        svc["spec"].setdefault("internalTrafficPolicy", "Cluster")
        raws += [si, svc] + [endpoint_slice_to_dict(s) for s in objs.slices]
    for i, raw in enumerate(raws[1:]):
        raw["metadata"]["resourceVersion"] = str(i + 1)
    return ClusterObjects.build([parse_object(r) for r in raws])


def timed(what: str, fn: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    out = fn()
    print(f"{what:<58} {1000 * (time.perf_counter() - start):9.1f} ms")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, default=10_000)
    n = ap.parse_args().services
    a = ClusterObjects.build([parse_object(r) for r in exporter_objects(n)])
    empty_b = ClusterObjects.build([parse_object(NS)])

    def fleet(a_objs: ClusterObjects, b_objs: ClusterObjects) -> FleetSnapshot:
        return FleetSnapshot(hub=a_objs, members=(MemberCluster(ClusterName("a"), None, a_objs),
                                                  MemberCluster(ClusterName("b"), None, b_objs)))

    print(f"{n} exported services, one endpoint each; consumer b holds the controller's objects")
    first = derive_imports(fleet(a, empty_b), allocate=False)
    b = stored(first)  # the amcs- Services now have their (API-allocated) ClusterIPs
    derived = timed("derive_imports, from scratch", lambda: derive_imports(fleet(a, b), allocate=False))
    b = stored(derived)
    derived = derive_imports(fleet(a, b), allocate=False, previous=derived)
    want = derived.per_cluster["b"]
    timed("plan_cluster, converged, no memo", lambda: plan_cluster(want, b, conditions={}, now="t"))
    memo: PlanMemo = {}
    plan_cluster(want, b, conditions={}, now="t", memo=memo)
    writes = timed("plan_cluster, converged, memo warm", lambda: plan_cluster(want, b, conditions={}, now="t", memo=memo))
    assert writes == [], writes[:3]
    # one endpoint moves in the exporting cluster
    moved = {o.meta.name: o for o in a.endpoint_slices.values()}
    a2 = ClusterObjects.build([o for o in (*a.namespaces.values(), *a.services.values(), *a.service_exports.values())]
                              + [o for k, o in moved.items() if k != "s7-1"]
                              + [parse_object(r) for r in exporter_objects(8, moved=7)[-2:-1]])
    derived2 = timed("derive_imports, incremental, one endpoint moved",
                     lambda: derive_imports(fleet(a2, b), allocate=False, previous=derived))
    writes = timed("plan_cluster, memo warm, after the move",
                   lambda: plan_cluster(derived2.per_cluster["b"], b, conditions={}, now="t", memo=memo))
    print(f"writes planned after the move: {[str(w) for w in writes]}")


if __name__ == "__main__":
    main()
