"""The route builder's memo changes cost, never results: after random changes to
EndpointSlices and Services, a memoized rebuild equals a build from scratch."""
from __future__ import annotations

import random

from fleet.objects import parse_object
from fleet.snapshot import ClusterObjects, FleetSnapshot, MemberCluster
from gateway.routing.build import BuildMemo, build
from gateway.routing.table import describe_table


def _ingress(i: int) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": f"ing{i}", "namespace": "d"},
            "spec": {"ingressClassName": "fleetgate", "rules": [{"host": f"h{i}.example", "http": {"paths": [
                {"path": "/", "pathType": "Prefix",
                 "backend": {"service": {"name": f"s{i % 7}", "port": {"number": 80}}}}]}}]}}


def _service(i: int) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"s{i}", "namespace": "d"},
            "spec": {"ports": [{"name": "http", "port": 80}]}}


def _slice(i: int, n: int, rnd: random.Random) -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"s{i}-x", "namespace": "d", "labels": {"kubernetes.io/service-name": f"s{i}"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8000 + i}],
            "endpoints": [{"addresses": [f"127.1.{i}.{j + 1}"], "conditions": {"ready": rnd.random() > 0.2}}
                          for j in range(n)]}


def test_memoized_rebuilds_equal_builds_from_scratch():
    rnd = random.Random(7)
    hub = ClusterObjects.build([parse_object(_ingress(i)) for i in range(20)])
    clusters = {c: {("Service", i): parse_object(_service(i)) for i in range(7)} for c in ("a", "b")}
    for c in clusters:
        for i in range(7):
            clusters[c][("EndpointSlice", i)] = parse_object(_slice(i, rnd.randint(0, 4), rnd))
    memo = BuildMemo()
    for step in range(60):
        c = rnd.choice(["a", "b"])
        i = rnd.randrange(7)
        if rnd.random() < 0.8:
            clusters[c][("EndpointSlice", i)] = parse_object(_slice(i, rnd.randint(0, 4), rnd))
        elif ("Service", i) in clusters[c]:
            del clusters[c][("Service", i)]
        else:
            clusters[c][("Service", i)] = parse_object(_service(i))
        snap = FleetSnapshot(hub=hub, members=tuple(
            MemberCluster(name, None, ClusterObjects.build(objs.values())) for name, objs in clusters.items()))
        memoized, _ = build(snap, memo=memo)
        fresh, _ = build(snap)
        assert describe_table(memoized) == describe_table(fresh), f"step {step}"
