"""Plan the API writes that make one live member cluster hold what derive_imports wants.

Pure: the cluster's desired DerivedCluster, its actual ClusterObjects and the conditions
of its ServiceExports in, a list of Writes out. Only the fields fleetgate owns are
compared (the API server's defaults and allocations, other controllers' labels are not
ours), so a cluster that already matches plans nothing and a second pass writes nothing.
Objects without `app.kubernetes.io/managed-by=fleetgate` are never planned for, except
the user-created ServiceImport derive_imports adopts and ServiceExport status.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Mapping, Protocol, TypeVar

from fleet.objects import (Condition, EndpointSlice, KubeObject, Meta, Service,
                           ServiceExport, ServiceImport)
from fleet.snapshot import ClusterObjects

from .derive.names import LABEL_MANAGED_BY, MANAGED_BY
from .derived import DerivedCluster, ImportObjects
from .render import (condition_to_dict, endpoint_slice_to_dict, owner_references_to_list, service_import_to_dict,
                     service_to_dict)

Raw = dict[str, Any]
ObjKey = tuple[str, str]

# Write order within a pass: an import before the objects that name it as owner, and
# deletions of dependents before their owner's.
CREATE, UPDATE, STATUS, DELETE = "create", "update", "status", "delete"


@dataclass(frozen=True, slots=True)
class Write:
    """One API request. `body`: the object (create) or a JSON merge patch (update/status);
    `uid`/`resource_version` are those of the object the write was planned from ("" when
    absent), sent as preconditions so a stale plan is a 409, never a lost update."""
    op: str
    kind: str  # ServiceImport | Service | EndpointSlice | ServiceExport
    namespace: str
    name: str
    body: Raw | None = None
    uid: str = ""
    resource_version: str = ""
    # the desired object this write makes the API server hold (for what the controller
    # owns): the answer is checked against it instead of parsed (controller/answers.py)
    expect: KubeObject | None = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        return f"{self.op} {self.kind}/{self.namespace}/{self.name}"


def is_managed(obj: KubeObject) -> bool:
    return obj.meta.labels.get(LABEL_MANAGED_BY) == MANAGED_BY


# --- what we own of each kind, rendered the same way for desired and actual ------------

_SERVER_OWNED_SERVICE_FIELDS = ("clusterIP", "clusterIPs", "ipFamilies")


def _service_spec(svc: Service) -> Raw:
    spec = service_to_dict(svc)["spec"]
    for field in _SERVER_OWNED_SERVICE_FIELDS:
        spec.pop(field, None)
    spec.setdefault("internalTrafficPolicy", "Cluster")  # the API server's default
    return spec


def _import_spec(si: ServiceImport) -> Raw:
    return service_import_to_dict(si)["spec"]


def _slice_body(es: EndpointSlice) -> Raw:
    raw = endpoint_slice_to_dict(es)
    return {"ports": raw["ports"], "endpoints": raw["endpoints"]}


def _meta_differs(desired: KubeObject, actual: KubeObject, *, owners: bool) -> bool:
    """Our labels and annotations missing or different, or (for objects we made) other owners.
    Equal label sets parsed or derived are one map (fleet.rawfields.shared_map): the same
    map is no difference."""
    want, have = desired.meta.labels, actual.meta.labels
    if want is not have and any(have.get(k) != v for k, v in want.items()):
        return True
    want, have = desired.meta.annotations, actual.meta.annotations
    if want is not have and any(have.get(k) != v for k, v in want.items()):
        return True
    return owners and desired.meta.owner_references != actual.meta.owner_references


def _meta_patch(desired: KubeObject, actual: KubeObject, *, owners: bool) -> Raw:
    meta: Raw = {"resourceVersion": actual.meta.resource_version}
    if desired.meta.labels:
        meta["labels"] = dict(desired.meta.labels)
    if desired.meta.annotations:
        meta["annotations"] = dict(desired.meta.annotations)
    if owners:
        meta["ownerReferences"] = owner_references_to_list(desired.meta.owner_references)
    return meta


def _spec_patch(desired: Raw, actual: Raw) -> Raw:
    """Merge patch turning `actual` into `desired` for the keys we own: absent ones nulled."""
    patch: Raw = dict(desired)
    for key in actual:
        if key not in desired:
            patch[key] = None
    return patch


def _create_body(raw: Raw) -> Raw:
    """A rendered object without what the API server assigns (uid, resourceVersion...)."""
    meta = raw["metadata"]
    for field in ("uid", "resourceVersion", "generation", "creationTimestamp"):
        meta.pop(field, None)
    return raw


_Owned = TypeVar("_Owned", Service, EndpointSlice)


def _owned_by(obj: Service | EndpointSlice, uid: str) -> Meta:
    """derive_imports names a not-yet-created import by a synthetic uid; the real one wins."""
    refs = obj.meta.owner_references
    if all(o.uid == uid or o.kind != "ServiceImport" for o in refs):
        return obj.meta  # derived from the import as it exists: already the real uid
    return replace(obj.meta, owner_references=tuple(
        replace(o, uid=uid) if o.kind == "ServiceImport" else o for o in refs))


def _with_owner(obj: _Owned, uid: str) -> _Owned:
    meta = _owned_by(obj, uid)
    return obj if meta is obj.meta else replace(obj, meta=meta)


# --- per kind --------------------------------------------------------------------------


def _same_import_spec(a: ServiceImport, b: ServiceImport) -> bool:
    """The fields _import_spec renders are equal (then so are the renders)."""
    return (a.type == b.type and a.ports == b.ports and a.ips == b.ips and a.ip_families == b.ip_families
            and a.session_affinity == b.session_affinity and a.session_affinity_config == b.session_affinity_config
            and a.internal_traffic_policy == b.internal_traffic_policy
            and a.traffic_distribution == b.traffic_distribution)


def _plan_import(desired: ServiceImport, actual: ServiceImport | None) -> list[Write]:
    ns, name = desired.meta.namespace, desired.meta.name
    if actual is None:
        body = _create_body(service_import_to_dict(desired))
        del body["status"]  # a status subresource: the API server drops it; a STATUS write follows
        return [Write(CREATE, "ServiceImport", ns, name, body, expect=desired)]
    writes = []
    # an unlabelled actual import is a user's: derive_imports adopted it, so it is ours now
    meta_differs = _meta_differs(desired, actual, owners=False)
    if meta_differs or not _same_import_spec(desired, actual):  # equal fields render equal
        spec, have = _import_spec(desired), _import_spec(actual)
        if spec != have or meta_differs:
            writes.append(Write(UPDATE, "ServiceImport", ns, name,
                                {"metadata": _meta_patch(desired, actual, owners=False),
                                 "spec": _spec_patch(spec, have)},
                                actual.meta.uid, actual.meta.resource_version, expect=desired))
    if desired.clusters != actual.clusters:
        writes.append(Write(STATUS, "ServiceImport", ns, name,
                            {"status": {"clusters": [{"cluster": c} for c in desired.clusters]}},
                            actual.meta.uid, actual.meta.resource_version, expect=desired))
    return writes


def _same_service_spec(a: Service, b: Service) -> bool:
    """The fields _service_spec renders are equal (then so are the renders; the API
    server's internalTrafficPolicy default counted as _service_spec counts it)."""
    return (a.type == b.type and a.ports == b.ports and a.selector == b.selector
            and a.session_affinity == b.session_affinity and a.session_affinity_config == b.session_affinity_config
            and (a.internal_traffic_policy or "Cluster") == (b.internal_traffic_policy or "Cluster")
            and a.traffic_distribution == b.traffic_distribution and a.external_name == b.external_name)


def _plan_service(desired: Service, actual: Service | None) -> list[Write]:
    ns, name = desired.meta.namespace, desired.meta.name
    if actual is None:
        body = _create_body(service_to_dict(desired))
        spec = body["spec"]
        for field in _SERVER_OWNED_SERVICE_FIELDS[:2]:
            spec.pop(field, None)  # the API server allocates the ClusterIP
        if desired.headless:
            spec["clusterIP"] = "None"
        return [Write(CREATE, "Service", ns, name, body, expect=desired)]
    if not is_managed(actual):
        return []  # someone else's Service of that name: left alone (derive_imports warns)
    if actual.headless != desired.headless:
        # spec.clusterIP is immutable: a type change (ClusterSetIP <-> Headless) recreates it
        return [Write(DELETE, "Service", ns, name, None, actual.meta.uid, actual.meta.resource_version)]
    meta_differs = _meta_differs(desired, actual, owners=True)
    if not meta_differs and _same_service_spec(desired, actual):  # equal fields render equal
        return []
    spec, have = _service_spec(desired), _service_spec(actual)
    if spec == have and not meta_differs:
        return []
    return [Write(UPDATE, "Service", ns, name,
                  {"metadata": _meta_patch(desired, actual, owners=True), "spec": _spec_patch(spec, have)},
                  actual.meta.uid, actual.meta.resource_version, expect=desired)]


def _plan_slice(desired: EndpointSlice, actual: EndpointSlice | None) -> list[Write]:
    ns, name = desired.meta.namespace, desired.meta.name
    if actual is None:
        return [Write(CREATE, "EndpointSlice", ns, name, _create_body(endpoint_slice_to_dict(desired)),
                      expect=desired)]
    if not is_managed(actual):
        return []
    if actual.address_type != desired.address_type:  # immutable
        return [Write(DELETE, "EndpointSlice", ns, name, None, actual.meta.uid, actual.meta.resource_version)]
    if desired.ports == actual.ports and desired.endpoints == actual.endpoints:  # equal fields render equal
        if not _meta_differs(desired, actual, owners=True):
            return []
    body, have = _slice_body(desired), _slice_body(actual)
    if body == have and not _meta_differs(desired, actual, owners=True):
        return []
    return [Write(UPDATE, "EndpointSlice", ns, name,
                  {"metadata": _meta_patch(desired, actual, owners=True), **body},
                  actual.meta.uid, actual.meta.resource_version, expect=desired)]


def _condition_key(c: Condition) -> tuple[str, str, str, str, int]:
    return (c.type, c.status, c.reason, c.message, c.observed_generation)


def _plan_export_status(export: ServiceExport, conditions: tuple[Condition, ...], now: str) -> list[Write]:
    if sorted(map(_condition_key, conditions)) == sorted(map(_condition_key, export.conditions)):
        return []
    before = {c.type: c for c in export.conditions}
    out = []
    for c in conditions:
        old = before.get(c.type)
        # lastTransitionTime moves only when the status does (metav1.Condition semantics)
        stamp = old.last_transition_time if old is not None and old.status == c.status else ""
        row = condition_to_dict(c)
        row["lastTransitionTime"] = stamp or now
        out.append(row)
    return [Write(STATUS, "ServiceExport", export.meta.namespace, export.meta.name,
                  {"status": {"conditions": out}}, export.meta.uid, export.meta.resource_version)]


# --- one exported name -------------------------------------------------------------------


class Lookup(Protocol):
    def get(self, key: ObjKey, /) -> Any: ...


class Actual(Protocol):
    """What plan_key reads of a cluster: one object at a time (ClusterObjects, or the
    live writer's view of its source's store as it is now)."""

    @property
    def service_imports(self) -> Lookup: ...

    @property
    def services(self) -> Lookup: ...

    @property
    def endpoint_slices(self) -> Lookup: ...

    @property
    def service_exports(self) -> Lookup: ...


def plan_key(key: ObjKey, desired: ImportObjects | None, actual: Actual, *,
             owned: Iterable[tuple[str, ObjKey]], wanted: Callable[[str, ObjKey], bool],
             conditions: tuple[Condition, ...] | None, now: str) -> list[Write]:
    """The writes of one exported name in one cluster: plan_cluster's, restricted to it.

    `owned` are the cluster's managed Services and EndpointSlices that belong to `key` (by
    name or label, see controller/keyed.py); those no import of the cluster `wanted` are
    deleted, dependents first, then the import itself when no longer desired. The union
    over every key is plan_cluster's plan (tests/controller/test_keyed_property.py)."""
    deletes: list[Write] = []
    owned = sorted(owned)  # EndpointSlice before Service: dependents first
    for kind, okey in owned:
        objects = actual.endpoint_slices if kind == "EndpointSlice" else actual.services
        obj = objects.get(okey)
        if obj is not None and is_managed(obj) and not wanted(kind, okey):
            deletes.append(Write(DELETE, kind, okey[0], okey[1], None, obj.meta.uid, obj.meta.resource_version))
    have_si = actual.service_imports.get(key)
    writes: list[Write] = []
    if desired is None:
        if have_si is not None and is_managed(have_si) and not wanted("ServiceImport", key):
            deletes.append(Write(DELETE, "ServiceImport", key[0], key[1], None, have_si.meta.uid,
                                 have_si.meta.resource_version))
    else:
        writes = _plan_objects(desired, have_si, actual)
    export = actual.service_exports.get(key)
    if export is not None and conditions is not None:
        writes += _plan_export_status(export, conditions, now)
    return deletes + writes


def _plan_objects(objs: ImportObjects, have_si: ServiceImport | None, actual: Actual) -> list[Write]:
    """One desired import, its `amcs-` Service and slices against what the cluster holds."""
    planned = _plan_import(objs.service_import, have_si)
    if have_si is not None:
        uid = have_si.meta.uid
        svc_key = (objs.service.meta.namespace, objs.service.meta.name)
        planned += _plan_service(_with_owner(objs.service, uid), actual.services.get(svc_key))
        for s in objs.slices:
            have = actual.endpoint_slices.get((s.meta.namespace, s.meta.name))
            planned += _plan_slice(_with_owner(s, uid), have)
    return planned


# --- the plan ----------------------------------------------------------------------------


# import key -> the objects (by identity) it was last planned from, when that plan was empty
PlanMemo = dict[tuple[str, ...], tuple[Any, ...]]


def _same(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b))


def plan_cluster(desired: DerivedCluster | None, actual: ClusterObjects, *,
                 conditions: Mapping[ObjKey, tuple[Condition, ...]], now: str,
                 memo: PlanMemo | None = None) -> list[Write]:
    """Every write that makes `actual` hold `desired` (see the module docstring).

    The `amcs-` Service and slices of an import are planned once the import exists in
    `actual`, so their ownerReference carries the API server's uid for it; the next pass
    (after the create is seen) plans them. `now` stamps changed conditions.

    `memo` (kept by the caller between passes) skips every import, and every export's
    status, whose desired and actual objects are the very ones of a plan that found
    nothing to write: sources and derive_imports keep unchanged objects identical, so a
    change to one service among 10,000 compares that one, not all of them (measured: a
    converged 10,000-service cluster took 1.1 s to plan without it).
    """
    writes: list[Write] = []
    wanted: dict[str, set[ObjKey]] = {"ServiceImport": set(), "Service": set(), "EndpointSlice": set()}
    by_service = desired.by_service if desired is not None else {}
    for key, objs in by_service.items():
        si = objs.service_import
        svc_key = (objs.service.meta.namespace, objs.service.meta.name)
        slice_keys = [(s.meta.namespace, s.meta.name) for s in objs.slices]
        wanted["ServiceImport"].add(key)
        wanted["Service"].add(svc_key)
        wanted["EndpointSlice"].update(slice_keys)
        have_si = actual.service_imports.get(key)
        have_svc = actual.services.get(svc_key)
        have_slices = [actual.endpoint_slices.get(k) for k in slice_keys]
        stamp = (objs, have_si, have_svc, *have_slices)
        if memo is not None:
            before = memo.get(key)
            if before is not None and _same(before, stamp):
                continue
        planned = _plan_import(si, have_si)
        if have_si is not None:
            uid = have_si.meta.uid
            planned += _plan_service(_with_owner(objs.service, uid), have_svc)
            for s, have in zip(objs.slices, have_slices):
                planned += _plan_slice(_with_owner(s, uid), have)
        if memo is not None:
            if planned or have_si is None:
                memo.pop(key, None)
            else:
                memo[key] = stamp
        writes += planned
    deletes: list[Write] = []
    for kind, objects in (("EndpointSlice", actual.endpoint_slices), ("Service", actual.services),
                          ("ServiceImport", actual.service_imports)):
        for key, obj in objects.items():
            if key not in wanted[kind] and is_managed(obj):
                deletes.append(Write(DELETE, kind, key[0], key[1], None, obj.meta.uid, obj.meta.resource_version))
    for key, export in actual.service_exports.items():
        conds = conditions.get(key)
        if conds is None:
            continue
        status_key = ("status",) + key
        if memo is not None:
            before = memo.get(status_key)
            if before is not None and before[0] is export and before[1] is conds:
                continue
        planned = _plan_export_status(export, conds, now)
        if memo is not None:
            if planned:
                memo.pop(status_key, None)
            else:
                memo[status_key] = (export, conds)
        writes += planned
    if memo is not None and len(memo) > 2 * (len(by_service) + len(actual.service_exports)) + 64:
        live: set[tuple[str, ...]] = set(by_service) | {("status",) + k for k in actual.service_exports}
        for k in [k for k in memo if k not in live]:
            del memo[k]
    return deletes + writes
