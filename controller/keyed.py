"""Work keyed by exported name: which `(namespace, name)` keys of one cluster need planning.

The live writer keeps one KeyedCluster per member. Two things move a key: its derived
objects (derive_imports says which names it recomputed: DerivedFleet.changed) and the
cluster's own objects (a watch event on a ServiceImport, an `amcs-` Service, an MCS
EndpointSlice or a ServiceExport). Both are found without walking the fleet: the derived
side by the names derive_imports reports, the cluster side by identity (fleet.changes),
one C-speed pass per kind. Planning one key (reconcile.plan_key) then reads only that
key's objects, so the cost of a change does not grow with the number of services.

Pure: no I/O, no clock; the writer feeds it and asks it to plan.
"""
from __future__ import annotations

from typing import Iterable, Mapping

from fleet.changes import changed_keys
from fleet.objects import Condition, KubeObject
from fleet.snapshot import EMPTY_CLUSTER, ClusterObjects

from .derive.names import LABEL_MANAGED_BY, MANAGED_BY
from .derived import ImportObjects
from .reconcile import Actual, Write, plan_key

GroupKey = tuple[str, str]
ObjKey = tuple[str, str]
Owned = tuple[str, ObjKey]  # (kind, key) of a Service or EndpointSlice

LABEL_MCS_SERVICE_NAME = "multicluster.kubernetes.io/service-name"
_EMPTY: Mapping[GroupKey, ImportObjects] = {}


def owner_of(kind: str, key: ObjKey, obj: KubeObject) -> GroupKey | None:
    """The exported name a managed Service or EndpointSlice belongs to (None: not ours).

    An `amcs-` Service by its name (short names are `amcs-<name>`), else by the
    service-name label our objects carry; anything else of ours is its own bucket, which
    no import wants, so planning that key deletes it (as plan_cluster does)."""
    if obj.meta.labels.get(LABEL_MANAGED_BY) != MANAGED_BY:
        return None
    ns, name = key
    if kind == "Service" and name.startswith("amcs-") and len(name) < 63:
        return (ns, name[5:])
    label = obj.meta.labels.get(LABEL_MCS_SERVICE_NAME)
    return (ns, label) if label else (ns, name)


class KeyedCluster:
    """One cluster's desired objects by key, its actual objects, and who owns what."""

    def __init__(self, cluster: str = "") -> None:
        self.cluster = cluster  # its name in DerivedFleet.export_conditions' keys
        self.desired: Mapping[GroupKey, ImportObjects] = _EMPTY
        self.conditions: Mapping[tuple[str, str, str], tuple[Condition, ...]] = {}
        self.actual: ClusterObjects = EMPTY_CLUSTER
        self._wanted: dict[Owned, GroupKey] = {}  # Service/EndpointSlice keys some import wants
        self._owner: dict[Owned, GroupKey] = {}  # managed Service/EndpointSlice -> its key
        self._owned: dict[GroupKey, set[Owned]] = {}

    # --- what moved -----------------------------------------------------------------------

    def set_desired(self, by_service: Mapping[GroupKey, ImportObjects], changed: Iterable[GroupKey] | None,
                    conditions: Mapping[tuple[str, str, str], tuple[Condition, ...]] | None = None
                    ) -> set[GroupKey]:
        """New desired objects; `changed` the names derive_imports recomputed (None: any).
        Returns the keys to plan.

        With `conditions` (DerivedFleet.export_conditions, the whole fleet's), a recomputed
        name is planned here only if this cluster's desired objects (by equality) or export
        conditions for it moved: a write in one member recomputes the name for every member,
        and planning it in the others would find what their last plan found. (The cluster's
        own objects moving marks a name through set_actual.)"""
        old, self.desired = self.desired, by_service
        old_conds = self.conditions
        if conditions is not None:
            self.conditions = conditions
        keys = set(changed_keys(old, by_service) if changed is None else changed)
        dirty: set[GroupKey] = set()
        cluster = self.cluster
        for gkey in keys:
            before, now = old.get(gkey), by_service.get(gkey)
            if before is now or (before is not None and now is not None and before == now):
                if conditions is None:
                    dirty.add(gkey)
                else:
                    ckey = (cluster, *gkey)
                    was, will = old_conds.get(ckey), conditions.get(ckey)
                    if was is not will and was != will:
                        dirty.add(gkey)
                continue
            dirty.add(gkey)
            for owned in _wants(before):
                if self._wanted.get(owned) == gkey:
                    del self._wanted[owned]
                    holder = self._owner.get(owned)
                    if holder is not None:
                        dirty.add(holder)  # no longer wanted here: its owner may delete it
            for owned in _wants(now):
                self._wanted[owned] = gkey
        return dirty

    def set_actual(self, objects: ClusterObjects) -> set[GroupKey]:
        """The cluster's objects now (a watch moved some). Returns the keys to plan."""
        old, self.actual = self.actual, objects
        if old is objects:
            return set()
        dirty: set[GroupKey] = set()
        dirty.update(changed_keys(old.service_imports, objects.service_imports))
        dirty.update(changed_keys(old.service_exports, objects.service_exports))
        for kind, before, now in (("Service", old.services, objects.services),
                                  ("EndpointSlice", old.endpoint_slices, objects.endpoint_slices)):
            for key in changed_keys(before, now):
                owned = (kind, key)
                prev = self._owner.pop(owned, None)
                if prev is not None:
                    dirty.add(prev)
                    mine = self._owned.get(prev)
                    if mine is not None:
                        mine.discard(owned)
                        if not mine:
                            del self._owned[prev]
                obj = now.get(key)
                holder = owner_of(kind, key, obj) if obj is not None else None
                if holder is not None:
                    self._owner[owned] = holder
                    self._owned.setdefault(holder, set()).add(owned)
                    dirty.add(holder)
                wanted_by = self._wanted.get(owned)
                if wanted_by is not None:
                    dirty.add(wanted_by)
        return dirty

    def all_keys(self) -> set[GroupKey]:
        """Every key there is something to say about (a full resync plans them all)."""
        return (set(self.desired) | set(self._owned) | set(self.actual.service_imports)
                | set(self.actual.service_exports))

    # --- planning -------------------------------------------------------------------------

    def wanted(self, kind: str, key: ObjKey) -> bool:
        if kind == "ServiceImport":
            return key in self.desired
        return (kind, key) in self._wanted

    def plan(self, gkey: GroupKey, conditions: tuple[Condition, ...] | None, now: str,
             actual: Actual | None = None) -> list[Write]:
        """The writes that make this cluster hold `gkey`'s desired objects (reconcile.plan_key);
        `actual` reads objects fresher than the last set_actual (the writer's own answers)."""
        return plan_key(gkey, self.desired.get(gkey), actual if actual is not None else self.actual,
                        owned=tuple(self._owned.get(gkey, ())),
                        wanted=self.wanted, conditions=conditions, now=now)


def _wants(objs: ImportObjects | None) -> list[Owned]:
    if objs is None:
        return []
    svc = objs.service.meta
    return [("Service", (svc.namespace, svc.name))] + [
        ("EndpointSlice", (s.meta.namespace, s.meta.name)) for s in objs.slices]
