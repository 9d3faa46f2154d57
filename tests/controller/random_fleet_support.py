"""Random small fleets and random changes to them, for incremental-vs-fresh property tests.

A RandomFleet keeps every member's parsed objects by (kind, namespace, name) and changes
only the objects a step touches, so unchanged objects keep their identity across snapshots
exactly as the file and live sources do. Seeded: a failure names its seed and step.
"""
from __future__ import annotations

import random
from dataclasses import replace
from typing import Any, Callable

from fleet.objects import Condition, KubeObject, ServiceExport, ServiceImport, parse_object
from fleet.snapshot import ClusterObjects, FleetSnapshot
from tests.controller.mcs_support import endpoint, endpoint_slice, export, fleet, namespace, service

CLUSTERS = ("zone-a", "zone-b", "zone-c")
NAMESPACES = ("demo", "shop")
NAMES = ("web", "db", "api")
RANGE = "242.0.0.0/29,fd00:242::/125"  # six addresses each: probe chains collide
PORT_SETS = ((("http", 80, "TCP"),), (("http", 80, "TCP"), ("grpc", 9000, "TCP")),
             (("mysql", 3306, "TCP"),), (("dns", 53, "UDP"), ("http", 8080, "TCP")), (("", 81, "TCP"),))

Key = tuple[str, str, str]  # (kind, namespace, name)


class RandomFleet:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.objects: dict[str, dict[Key, KubeObject]] = {c: {} for c in CLUSTERS}
        self.version = 0
        for _ in range(40):
            self.step()

    # --- snapshots --------------------------------------------------------------------

    def snapshot(self) -> FleetSnapshot:
        self.version += 1
        return fleet({c: ClusterObjects.build(list(objs.values())) for c, objs in self.objects.items()},
                     version=self.version, ip_range=RANGE)

    # --- changes ----------------------------------------------------------------------

    def put(self, cluster: str, raw: dict[str, Any]) -> None:
        obj = parse_object(raw)
        self.objects[cluster][(obj.kind, obj.meta.namespace, obj.meta.name)] = obj

    def drop(self, cluster: str, kind: str) -> None:
        keys = [k for k in self.objects[cluster] if k[0] == kind]
        if keys:
            del self.objects[cluster][self.rng.choice(sorted(keys))]

    def drop_named(self, cluster: str, kind: str, ns: str, name: str) -> None:
        self.objects[cluster].pop((kind, ns, name), None)

    def step(self) -> str:
        """Apply one random change; returns what it did (for failure messages)."""
        rng = self.rng
        cl, ns, name = rng.choice(CLUSTERS), rng.choice(NAMESPACES), rng.choice(NAMES)
        actions: list[tuple[str, Callable[[], None]]] = [
            ("namespace", lambda: self.put(cl, namespace(ns))),
            ("drop namespace", lambda: self.drop(cl, "Namespace")),
            ("service", lambda: self.put(cl, service(
                name, ns, ports=rng.choice(PORT_SETS), headless=rng.random() < 0.35,
                **({"ipFamilies": rng.choice((["IPv4"], ["IPv6"], ["IPv4", "IPv6"]))}
                   if rng.random() < 0.3 else {})))),
            ("external", lambda: self.put(cl, service(name, ns, stype="ExternalName"))),
            ("drop service", lambda: self.drop(cl, "Service")),
            ("export", lambda: self.put(cl, export(name, ns, created=rng.choice(
                ("", "2024-01-01T00:00:00Z", "2024-06-01T00:00:00Z")), generation=rng.randint(1, 3)))),
            ("service and export", lambda: (self.put(cl, service(name, ns, ports=rng.choice(PORT_SETS))),
                                            self.put(cl, export(name, ns)))),
            ("service and export", lambda: (self.put(cl, service(name, ns, headless=True)),
                                            self.put(cl, export(name, ns)))),
            ("drop export", lambda: self.drop(cl, "ServiceExport")),
            ("slice", lambda: self.put(cl, self._slice(name, ns))),
            ("slice", lambda: self.put(cl, self._slice(name, ns))),
            ("slice", lambda: self.put(cl, self._slice(name, ns))),
            ("drop slice", lambda: self.drop(cl, "EndpointSlice")),
            ("amcs service", lambda: self.put(cl, service(f"amcs-{name}", ns, clusterIP="10.96.0.9",
                                                          clusterIPs=["10.96.0.9"]))),
            ("service import", lambda: self.put(cl, {
                "apiVersion": "multicluster.x-k8s.io/v1beta1", "kind": "ServiceImport",
                "metadata": {"name": name, "namespace": ns, "labels": {"team": "x"}},
                "spec": {"type": "ClusterSetIP", "ports": [{"name": "http", "port": 80}]}})),
            ("drop service import", lambda: self.drop(cl, "ServiceImport")),
            # what the answers to the controller's own writes move: status and resourceVersion
            ("export status", lambda: self.restatus(cl, "ServiceExport", ns, name)),
            ("import status", lambda: self.restatus(cl, "ServiceImport", ns, name)),
        ]
        what, act = rng.choice(actions)
        act()
        return f"{what} {cl} {ns}/{name}"

    def restatus(self, cluster: str, kind: str, ns: str, name: str) -> None:
        """A new version of an existing export or import with another status (an import:
        also other spec.ips), its identity, labels and annotations kept."""
        obj = self.objects[cluster].get((kind, ns, name))
        if obj is None:
            return
        rng = self.rng
        self.version += 1
        meta = replace(obj.meta, resource_version=str(self.version))
        if isinstance(obj, ServiceExport):
            status = rng.choice(("True", "False"))
            new: KubeObject = replace(obj, meta=meta, conditions=(
                Condition(type="Ready", status=status, reason="R" + status, message="m"),))
        else:
            assert isinstance(obj, ServiceImport)
            new = replace(obj, meta=meta, clusters=tuple(c for c in CLUSTERS if rng.random() < 0.5),
                          ips=rng.choice(((), ("242.0.0.1",), ("242.0.0.2",))))
        self.objects[cluster][(kind, ns, name)] = new

    def _slice(self, name: str, ns: str) -> dict[str, Any]:
        rng = self.rng
        family = "IPv6" if rng.random() < 0.25 else "IPv4"
        eps = []
        for i in range(rng.randint(0, 3)):
            ip = f"fd00:{rng.randint(1, 9)}::{rng.randint(1, 99)}" if family == "IPv6" \
                else f"10.{rng.randint(0, 3)}.{rng.randint(0, 3)}.{rng.randint(1, 9)}"
            eps.append(endpoint(ip, hostname=rng.choice((None, f"{name}-{i}", f"{name}-0")),
                                ready=rng.choice((True, None, False))))
        return endpoint_slice(name, eps, ns, name=f"{name}-{family.lower()}-{rng.randint(0, 1)}",
                              family=family, ports=rng.choice(PORT_SETS))
