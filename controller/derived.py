"""The derived MCS objects as published: the controller's public type.

What derive_imports makes and the DerivedPublisher hands out, once per snapshot, to the
file-mode /debug/imports, the live writer and the DNS zone builder. The DNS package
imports this module and nothing else of the controller.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Protocol

from immutables import Map

from fleet.objects import Condition, EndpointSlice, Service, ServiceImport
from fleet.snapshot import Diagnostic, FleetSnapshot


class DerivedCluster:
    """What one consumer cluster should hold: imports, their `amcs-` Services and slices.

    An immutable value. derive_imports makes it from `by_service` (exported name -> its
    objects, in name order) and the flat tuples are made on first use: a reader of
    by_service alone (the DNS responder) does not pay for three 10,000-element tuples on
    every change.
    """

    __slots__ = ("by_service", "_tuples")

    def __init__(self, service_imports: tuple[ServiceImport, ...] = (), services: tuple[Service, ...] = (),
                 endpoint_slices: tuple[EndpointSlice, ...] = (), *,
                 by_service: Mapping[tuple[str, str], "ImportObjects"] | None = None) -> None:
        self.by_service: Mapping[tuple[str, str], ImportObjects] = by_service if by_service is not None else {}
        self._tuples: tuple[tuple[ServiceImport, ...], tuple[Service, ...], tuple[EndpointSlice, ...]] | None = \
            None if by_service is not None else (tuple(service_imports), tuple(services), tuple(endpoint_slices))

    def _flat(self) -> tuple[tuple[ServiceImport, ...], tuple[Service, ...], tuple[EndpointSlice, ...]]:
        if self._tuples is None:
            objs = self.by_service.values()
            self._tuples = (tuple([o.service_import for o in objs]), tuple([o.service for o in objs]),
                            tuple([s for o in objs for s in o.slices]))
        return self._tuples

    @property
    def service_imports(self) -> tuple[ServiceImport, ...]:
        return self._flat()[0]

    @property
    def services(self) -> tuple[Service, ...]:
        return self._flat()[1]

    @property
    def endpoint_slices(self) -> tuple[EndpointSlice, ...]:
        return self._flat()[2]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DerivedCluster):
            return NotImplemented
        return self is other or self._flat() == other._flat()

    def __hash__(self) -> int:
        return hash(self._flat())

    def __repr__(self) -> str:
        imports, services, slices = self._flat()
        return (f"DerivedCluster(service_imports={imports!r}, services={services!r}, "
                f"endpoint_slices={slices!r})")


class ByName(Mapping[tuple[str, str], "ImportObjects"]):
    """Exported name -> its objects, as derive_imports keeps them for one consumer: a
    persistent map (immutables.Map), so a change to one name shares every other entry with
    the version before instead of copying them all (10,000 at 10,000 services, per change
    and consumer), iterated in name order. The sorted names are made on first iteration and
    handed on while no name comes or goes (an endpoint change moves none)."""

    __slots__ = ("map", "_names")

    def __init__(self, entries: "Map[tuple[str, str], ImportObjects] | None" = None,
                 names: tuple[tuple[str, str], ...] | None = None) -> None:
        self.map: Map[tuple[str, str], ImportObjects] = entries if entries is not None else Map()
        self._names = names

    @property
    def names(self) -> tuple[tuple[str, str], ...]:
        if self._names is None:
            self._names = tuple(sorted(self.map))
        return self._names

    @property
    def names_known(self) -> tuple[tuple[str, str], ...] | None:
        return self._names

    def __getitem__(self, key: tuple[str, str]) -> "ImportObjects":
        return self.map[key]

    def get(self, key: tuple[str, str], default: Any = None) -> Any:
        return self.map.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self.map

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.map)

    def __repr__(self) -> str:
        return f"ByName({dict(self.items())!r})"


@dataclass(frozen=True, slots=True)
class DerivedFleet:
    per_cluster: Mapping[str, DerivedCluster]
    export_conditions: Mapping[tuple[str, str, str], tuple[Condition, ...]]
    diagnostics: tuple[Diagnostic, ...] = ()
    # (namespace, name) -> the ClusterSetIPs allocated for it (empty for Headless)
    clusterset_ips: Mapping[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    # the exported names whose objects, conditions or diagnostics this derivation may have
    # changed since the `previous` one it was given; None: any (a derivation from scratch).
    # The live writer plans only these keys (and those whose objects moved in a consumer).
    changed: frozenset[tuple[str, str]] | None = field(default=None, repr=False, compare=False)
    # working state for the next derive_imports(previous=...); not part of the result's meaning
    _state: Any = field(default=None, repr=False, compare=False)



@dataclass(frozen=True, slots=True)
class ImportObjects:
    """The objects of one import in one consumer (shared by every consumer that adopts none)."""
    service_import: ServiceImport
    service: Service
    slices: tuple[EndpointSlice, ...]


@dataclass(frozen=True, slots=True)
class DerivedSnapshot:
    """One fleet snapshot and what was derived from it (published together)."""
    snapshot: FleetSnapshot
    derived: DerivedFleet


DerivedFollower = Callable[[DerivedSnapshot], None]


class DerivedFeed(Protocol):
    """Where derived objects come from (controller.publisher.DerivedPublisher)."""

    @property
    def current(self) -> DerivedSnapshot | None:
        """The latest derivation, None before the first snapshot."""

    def follow(self, callback: DerivedFollower) -> Callable[[], None]:
        """Call `callback` with the current derivation now (if any) and every later one."""
