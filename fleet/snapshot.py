"""Immutable fleet snapshots: what every pure builder (routes, zones, imports) reads.

A ClusterObjects is one cluster's objects at one moment, indexed by kind and
(namespace, name); a FleetSnapshot is the hub plus every member cluster. Sources produce
new ClusterObjects; they never mutate one that has been handed out.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Iterable, Mapping, NewType, TypeVar

from .objects import (EndpointSlice, Ingress, IngressClass, KubeObject, Lease, Namespace,
                      Secret, Service, ServiceExport, ServiceImport)

ClusterName = NewType("ClusterName", str)
ObjKey = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped kinds

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem found in the fleet's input, printed as `path: kind/namespace/name: message`."""
    path: str
    object: str
    message: str
    severity: str = "error"  # "error" | "warning"

    def __str__(self) -> str:
        return f"{self.path}: {self.object}: {self.message}"


_EMPTY: Mapping[ObjKey, object] = MappingProxyType({})


@dataclass(frozen=True)
class ClusterObjects:
    """One cluster's objects, indexed by kind name and (namespace, name)."""
    by_kind: Mapping[str, Mapping[ObjKey, KubeObject]] = field(default_factory=dict)
    namespace_names: frozenset[str] = frozenset()
    # (kind, namespace, name) -> where the object came from (a file path, or an API URL);
    # lets builders report diagnostics against the file a user must edit.
    origins: Mapping[tuple[str, str, str], str] = field(default_factory=dict)
    source: str = ""

    @staticmethod
    def build(objects: Iterable[KubeObject], *, origins: Mapping[tuple[str, str, str], str] | None = None,
              source: str = "") -> "ClusterObjects":
        """Index objects; a later object with the same kind and key replaces an earlier one."""
        index: dict[str, dict[ObjKey, KubeObject]] = {}
        for obj in objects:
            index.setdefault(obj.kind, {})[(obj.meta.namespace, obj.meta.name)] = obj
        names = {ns for objs in index.values() for (ns, _) in objs if ns}
        names.update(name for (_, name) in index.get("Namespace", {}))
        return ClusterObjects({k: MappingProxyType(v) for k, v in index.items()}, frozenset(names),
                              dict(origins or {}), source)

    def origin(self, obj: KubeObject) -> str:
        """The file (or API) an object came from, for diagnostics."""
        return self.origins.get((obj.kind, obj.meta.namespace, obj.meta.name)) or self.source or "?"

    def of(self, kind: str) -> Mapping[ObjKey, KubeObject]:
        return self.by_kind.get(kind, _EMPTY)  # type: ignore[return-value,arg-type]

    def all(self) -> Iterable[KubeObject]:
        for objs in self.by_kind.values():
            yield from objs.values()

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_kind.values())

    # typed accessors, so builders read naturally
    @property
    def namespaces(self) -> Mapping[ObjKey, Namespace]:
        return self.of("Namespace")  # type: ignore[return-value]

    @property
    def services(self) -> Mapping[ObjKey, Service]:
        return self.of("Service")  # type: ignore[return-value]

    @property
    def endpoint_slices(self) -> Mapping[ObjKey, EndpointSlice]:
        return self.of("EndpointSlice")  # type: ignore[return-value]

    @property
    def ingresses(self) -> Mapping[ObjKey, Ingress]:
        return self.of("Ingress")  # type: ignore[return-value]

    @property
    def ingress_classes(self) -> Mapping[ObjKey, IngressClass]:
        return self.of("IngressClass")  # type: ignore[return-value]

    @property
    def secrets(self) -> Mapping[ObjKey, Secret]:
        return self.of("Secret")  # type: ignore[return-value]

    @property
    def service_exports(self) -> Mapping[ObjKey, ServiceExport]:
        return self.of("ServiceExport")  # type: ignore[return-value]

    @property
    def service_imports(self) -> Mapping[ObjKey, ServiceImport]:
        return self.of("ServiceImport")  # type: ignore[return-value]

    @property
    def leases(self) -> Mapping[ObjKey, Lease]:
        return self.of("Lease")  # type: ignore[return-value]

    def slices_for(self, namespace: str, service: str) -> list[EndpointSlice]:
        """EndpointSlices labelled kubernetes.io/service-name=service in namespace."""
        return [s for (ns, _), s in self.endpoint_slices.items()
                if ns == namespace and s.service_name == service]

    def has_namespace(self, namespace: str) -> bool:
        """A namespace exists when a Namespace object or any object in it exists (file mode rule)."""
        return namespace in self.namespace_names


EMPTY_CLUSTER = ClusterObjects()


@dataclass(frozen=True, slots=True)
class MemberCluster:
    name: ClusterName
    zone: str | None
    objects: ClusterObjects


@dataclass(frozen=True)
class FleetSnapshot:
    """The whole fleet at one moment: the hub's objects and every member cluster's."""
    hub: ClusterObjects
    members: tuple[MemberCluster, ...]
    zone: str = "clusterset.local"
    clusterset_ip_range: str = "242.0.0.0/16"
    version: int = 0
    diagnostics: tuple[Diagnostic, ...] = ()
    import_mode: str = "all"  # fleet.yaml mcs.importMode: "all" | "explicit"

    def member(self, name: str) -> MemberCluster | None:
        for m in self.members:
            if m.name == name:
                return m
        return None

    @property
    def member_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.members)
