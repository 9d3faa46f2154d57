"""derive_imports: the whole derivation, incremental by object identity.

Pure: a FleetSnapshot in, a DerivedFleet out (ServiceImports, `amcs-` Services and MCS
EndpointSlices per consumer cluster, plus the conditions for every ServiceExport). Rules
and wording follow /shared/spec/mcs.md (KEP-1645 and the mcs-api conformance suite)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, Collection, Iterable, Mapping

from immutables import Map

from fleet.changes import KindView, changed_keys
from fleet.objects import Condition, EndpointSlice, Service, ServiceExport, ServiceImport
from fleet.snapshot import ClusterObjects, Diagnostic, FleetSnapshot

from ..derived import ByName, DerivedCluster, DerivedFleet, ImportObjects
from .conflicts import Export, Resolved, export_conditions, invalid_conditions, parse_timestamp, resolve
from .ipalloc import allocate_clusterset_ips
from .names import LABEL_MANAGED_BY, MANAGED_BY, amcs_name
from .objects import Sources, build_objects, source_slice_service, with_import, with_sources


# derive_imports keeps its working state in the DerivedFleet it returns. Given that
# result back (`previous`), it finds what moved by object identity (sources keep the
# same frozen view for an unchanged object across snapshots), marks the exported names
# those objects feed as dirty, and recomputes only them. A from-scratch derivation is
# the same code run from an empty state with every name dirty, so both give the same
# result by construction (tests/controller/test_imports_incremental.py checks it).

GroupKey = tuple[str, str]  # (namespace, name) of an exported Service / its ServiceImport


@dataclass(frozen=True, slots=True)
class _Inputs:
    """The maps of one member cluster that the derivation reads."""
    exports: Mapping[tuple[str, str], ServiceExport]
    services: Mapping[tuple[str, str], Service]
    slices: Mapping[tuple[str, str], EndpointSlice]
    imports: Mapping[tuple[str, str], ServiceImport]
    namespaces: frozenset[str]


_NO_INPUTS = _Inputs(MappingProxyType({}), MappingProxyType({}), MappingProxyType({}),
                     MappingProxyType({}), frozenset())


def _inputs(objs: ClusterObjects) -> _Inputs:
    return _Inputs(objs.service_exports, objs.services, objs.endpoint_slices, objs.service_imports,
                   objs.namespace_names)


@dataclass(frozen=True, slots=True)
class _Group:
    """Everything one exported name contributes to the result."""
    resolved: Resolved | None                   # None: no valid export anywhere
    invalid: tuple[tuple[int, Diagnostic], ...]  # (member index, diagnostic) of invalid exports
    invalid_conditions: tuple[tuple[tuple[str, str, str], tuple[Condition, ...]], ...]
    conditions: tuple[tuple[tuple[str, str, str], tuple[Condition, ...]], ...]  # all of its exports
    diagnostics: tuple[Diagnostic, ...]          # about consumers' `amcs-` Services
    want: tuple[str, ...] | None                 # ipFamilies to allocate for, None: no allocation
    consumers: int = 0                           # member clusters importing it (its exports' conditions say)


@dataclass(frozen=True, slots=True)
class _State:
    settings: tuple[Any, ...]
    inputs: tuple[_Inputs, ...]
    # per member: exported name -> its source slices; persistent (a change copies no index)
    sources: tuple[Map[GroupKey, Mapping[tuple[str, str], EndpointSlice]], ...]
    groups: Mapping[GroupKey, _Group]
    wants: Mapping[GroupKey, tuple[str, ...]]
    allocation: Mapping[GroupKey, tuple[str, ...]] | None
    alloc_diagnostics: tuple[Diagnostic, ...]
    ips: Mapping[GroupKey, tuple[str, ...]]      # the result's clusterset_ips
    per_consumer: Mapping[str, ByName]  # iterated in GroupKey order
    conditions: Mapping[tuple[str, str, str], tuple[Condition, ...]]
    invalid_diagnostics: Mapping[tuple[int, str, str], Diagnostic]
    group_diagnostics: Mapping[GroupKey, tuple[Diagnostic, ...]]
    # (consumer, name) -> the inputs its objects in per_consumer were built from (_Built);
    # persistent: a change copies no index
    built: Map[tuple[str, GroupKey], "_Built"]


def _amcs_owners(ns: str, derived: str, groups: Mapping[GroupKey, Any], exported: set[GroupKey]) -> list[GroupKey]:
    """The exported names whose `amcs-` Service is `ns/derived`."""
    if not derived.startswith("amcs-"):
        return []
    if len(derived) < 63:
        return [(ns, derived[5:])]
    return [g for g in (*groups, *exported) if g[0] == ns and amcs_name(g[1]) == derived]


def _derive_group(gkey: GroupKey, members: tuple[str, ...], inputs: tuple[_Inputs, ...]
                  ) -> tuple[Resolved | None, tuple[tuple[int, Diagnostic], ...],
                             tuple[tuple[tuple[str, str, str], tuple[Condition, ...]], ...]]:
    """Conflict resolution of one exported name across the members that export it."""
    ns, name = gkey
    exps: list[Export] = []
    invalid: list[tuple[int, Diagnostic]] = []
    conds: list[tuple[tuple[str, str, str], tuple[Condition, ...]]] = []
    for i, (member, inp) in enumerate(zip(members, inputs)):
        export = inp.exports.get(gkey)
        if export is None:
            continue
        svc = inp.services.get(gkey)
        if svc is None or svc.type == "ExternalName":
            if svc is None:
                msg = (f"spec: no Service {ns}/{name} in {member} to export "
                       "(it takes effect when the Service appears)")
                conds.append(((member, ns, name), invalid_conditions(export, "NoService", msg)))
            else:
                msg = (f"spec.type: Service {ns}/{name} in {member} is ExternalName, "
                       "which cannot be exported")
                conds.append(((member, ns, name), invalid_conditions(export, "InvalidServiceType", msg)))
            invalid.append((i, Diagnostic(member, f"ServiceExport/{ns}/{name}", msg, "warning")))
            continue
        exps.append(Export(member, export, svc, parse_timestamp(export.meta.creation_timestamp)))
    return (resolve(ns, name, exps) if exps else None), tuple(invalid), tuple(conds)


def _empty_state(settings: tuple[Any, ...], n_members: int, consumers: Iterable[str]) -> _State:
    return _State(settings, (_NO_INPUTS,) * n_members, (Map(),) * n_members, {}, {}, None, (), {},
                  {c: ByName() for c in consumers}, {}, {}, {}, Map())


def _same_export_input(a: ServiceExport | None, b: ServiceExport | None) -> bool:
    """Two versions of a ServiceExport the derivation reads alike: it reads an export's
    existence, creationTimestamp (conflict order) and generation (observedGeneration), never
    its status. The answer to our status write (and its watch echo) moves only the status
    and resourceVersion: no name is derived again for it."""
    return (a is not None and b is not None and a.meta.creation_timestamp == b.meta.creation_timestamp
            and a.meta.generation == b.meta.generation and a.meta.uid == b.meta.uid)


def _same_import_input(a: ServiceImport | None, b: ServiceImport | None) -> bool:
    """Two versions of a consumer's ServiceImport the derivation reads alike: it reads the
    existing import's uid (the owner of the `amcs-` objects), labels (managed or a user's),
    annotations and ownerReferences (kept when adopted), never its spec or status. The
    answers to our writes of its status and ips move only those and the resourceVersion."""
    if a is None or b is None:
        return False
    ma, mb = a.meta, b.meta
    return (ma.uid == mb.uid and (ma.labels is mb.labels or ma.labels == mb.labels)
            and (ma.annotations is mb.annotations or ma.annotations == mb.annotations)
            and ma.owner_references == mb.owner_references)


def _find_dirty(state: _State, new_inputs: tuple[_Inputs, ...]
                ) -> tuple[set[GroupKey], set[GroupKey], list[Map[GroupKey, Mapping[tuple[str, str], EndpointSlice]]]]:
    """The exported names fed by an object that moved (by identity), those of them whose
    conflict resolution may have moved (an export or a Service of that name: _derive_group
    reads nothing else), and the slice indexes. A consumer's import, its `amcs-` Service
    (the answers to our writes), a source slice or a namespace moves a name's objects, not
    its resolution."""
    dirty: set[GroupKey] = set()
    resolve: set[GroupKey] = set()
    sources = list(state.sources)
    groups = state.groups
    for i, (old, new) in enumerate(zip(state.inputs, new_inputs)):
        exports = [k for k in changed_keys(old.exports, new.exports)
                   if not _same_export_input(old.exports.get(k), new.exports.get(k))]
        dirty.update(exports)
        resolve.update(exports)
        dirty.update(k for k in changed_keys(old.imports, new.imports)
                     if not _same_import_input(old.imports.get(k), new.imports.get(k)))
        for key in changed_keys(old.services, new.services):
            dirty.add(key)
            resolve.add(key)
            dirty.update(_amcs_owners(key[0], key[1], groups, dirty))
        moved = changed_keys(old.slices, new.slices)
        if moved:
            index = sources[i]
            copied: dict[GroupKey, dict[tuple[str, str], EndpointSlice]] = {}
            for key in moved:
                for s, add in ((old.slices.get(key), False), (new.slices.get(key), True)):
                    svc = source_slice_service(s) if s is not None else None
                    if s is None or svc is None:
                        continue
                    gkey = (key[0], svc)
                    mine = copied.get(gkey)
                    if mine is None:
                        mine = copied[gkey] = dict(index.get(gkey, {}))
                    if add:
                        mine[key] = s
                    else:
                        mine.pop(key, None)
            if copied:  # a persistent map: the next index shares all but these entries with this one
                with index.mutate() as changing:
                    for gkey, mine in copied.items():
                        if mine:
                            changing[gkey] = mine
                        else:
                            changing.pop(gkey, None)
                    sources[i] = changing.finish()
            dirty.update(copied)
        if old.namespaces != new.namespaces:
            spaces = old.namespaces ^ new.namespaces
            dirty.update(g for g in groups if g[0] in spaces)
    return dirty, resolve, sources


# (member, its namespaces, its ServiceImports, its Services, is a consumer, takes allocated ClusterSetIPs)
_View = tuple[str, frozenset[str], Mapping[tuple[str, str], ServiceImport], Mapping[tuple[str, str], Service], bool,
              bool]


# What one consumer's objects of one name were built from (build_objects' every input):
# the resolved name, the ClusterSetIPs, the consumer's own ServiceImport, whether it is
# adopted, and each exporter's source slices of the name. Objects are held (per_consumer and
# here) as long as the entry, so comparing them by identity is sound.
_Built = tuple[Resolved, tuple[str, ...], "ServiceImport | None", bool, tuple[Any, ...]]


def _same_built(a: _Built, b: _Built) -> bool:
    """The very same inputs (by identity, the ips by value): the held entry stands for both."""
    return (a[0] is b[0] and a[2] is b[2] and a[3] == b[3] and a[1] == b[1] and len(a[4]) == len(b[4])
            and all(x is y for x, y in zip(a[4], b[4])))


def _same_import(a: _Built, b: _Built) -> bool:
    """The inputs of the ServiceImport and `amcs-` Service (all but the source slices) are the same."""
    return (a[0] is b[0] and (a[2] is b[2] or _same_import_input(a[2], b[2])) and a[3] == b[3]
            and a[1] == b[1])


def _consumer_objects(res: Resolved, res_ips: tuple[str, ...], views: list[_View],
                      by_member: Mapping[str, Sources], explicit: bool = False,
                      held: Mapping[str, ByName] | None = None,
                      built: Mapping[tuple[str, GroupKey], _Built] | None = None
                      ) -> tuple[dict[str, ImportObjects], list[Diagnostic], int, dict[str, _Built]]:
    """One exported name's objects in each consumer, diagnostics, how many members import it,
    and what each consumer's objects were built from.

    `explicit` (fleet.yaml mcs.importMode: explicit): only a consumer holding a ServiceImport
    of that name that a user made (not labelled managed-by fleetgate) imports it. A
    consumer whose inputs are the very ones its `held` objects were `built` from keeps
    them: an answer to a write in one consumer (its ServiceImport, its `amcs-` Service's
    ClusterIP) rebuilds that consumer's objects, not every consumer's."""
    gkey = (res.namespace, res.name)
    objects: dict[str, ImportObjects] = {}
    inputs: dict[str, _Built] = {}
    diags: list[Diagnostic] = []
    shared: ImportObjects | None = None
    derived_name = amcs_name(res.name)
    n_consumers = 0
    sources = tuple(by_member[ex.cluster].get(gkey) for ex in res.exports)
    rebuilt: dict[int, ImportObjects] = {}  # held objects -> with new sources (shared ones stay shared)
    for cname, namespaces, imports_map, services_map, is_consumer, allocated in views:
        if res.namespace not in namespaces:
            continue
        n_consumers += 1
        if not is_consumer:
            continue
        existing = imports_map.get(gkey)
        if explicit and (existing is None or existing.meta.labels.get(LABEL_MANAGED_BY) == MANAGED_BY):
            continue
        derived_svc = services_map.get((res.namespace, derived_name))
        own_ips = res_ips if allocated else ()
        if derived_svc is not None:
            if res.type == "ClusterSetIP" and derived_svc.cluster_ips and not derived_svc.headless:
                own_ips = tuple(derived_svc.cluster_ips)  # live mode: the API server's ClusterIPs
            if derived_svc.meta.labels.get(LABEL_MANAGED_BY) != MANAGED_BY:
                diags.append(Diagnostic(
                    cname, f"Service/{res.namespace}/{derived_name}",
                    "exists without app.kubernetes.io/managed-by=fleetgate; "
                    "fleetgate will not take it over", "warning"))
        mine: _Built = (res, own_ips, existing, not explicit, sources)
        inputs[cname] = mine
        before = built.get((cname, gkey)) if built is not None else None
        kept = held[cname].get(gkey) if before is not None and held is not None else None
        if kept is not None and before is not None and _same_import(before, mine):
            if all(x is y for x, y in zip(before[4], sources)):
                objects[cname] = kept
            else:  # only source slices moved (an endpoint change): the import and Service stay
                again = rebuilt.get(id(kept))
                if again is None:
                    again = rebuilt[id(kept)] = with_sources(kept, res, by_member)
                objects[cname] = again
            continue
        if kept is not None and before is not None and before[0] is res and before[3] == mine[3] \
                and all(x is y for x, y in zip(before[4], sources)):
            # only this consumer's ServiceImport moved (an answer to our write of it) or its
            # `amcs-` Service's ClusterIPs (the answer to our create): the objects are kept
            # but for the import, their owner's uid and the Service's ips (with_import)
            objects[cname] = with_import(kept, res, own_ips, existing, adopt=not explicit,
                                         ips_moved=before[1] != own_ips)
            continue
        if existing is None and own_ips == res_ips:
            if shared is None:
                shared = build_objects(res, res_ips, None, by_member)
            objects[cname] = shared
        else:
            objects[cname] = build_objects(res, own_ips, existing, by_member, adopt=not explicit)
    return objects, diags, n_consumers, inputs


_MISSING: Any = object()


class _Cow:
    """A map of the last _State, copied on the first write that changes something: a value
    equal to the one held is not a write, so a change that moves only endpoints copies none
    of the fleet-wide maps (10,000 entries each at 10,000 services)."""

    __slots__ = ("map", "_own")

    def __init__(self, base: Mapping[Any, Any]) -> None:
        self.map: Mapping[Any, Any] = base
        self._own = False

    def _writable(self) -> dict[Any, Any]:
        if not self._own:
            self.map, self._own = dict(self.map), True
        return self.map  # type: ignore[return-value]

    def get(self, key: Any, default: Any = None) -> Any:
        return self.map.get(key, default)

    def set(self, key: Any, value: Any) -> None:
        held = self.map.get(key, _MISSING)
        if held is value or (held is not _MISSING and held == value):
            return
        self._writable()[key] = value

    def pop(self, key: Any) -> None:
        if key in self.map:
            del self._writable()[key]

    def assign(self, old_keys: Iterable[Any], new: Mapping[Any, Any]) -> None:
        """Replace the entries `old_keys` by `new` (an entry kept with an equal value is no write)."""
        for key in old_keys:
            if key not in new:
                self.pop(key)
        for key, value in new.items():
            self.set(key, value)


class _Step:
    """The maps of the next _State, copied from the last one on first write."""

    def __init__(self, state: _State, consumers: tuple[str, ...]) -> None:
        self.state = state
        self.groups = _Cow(state.groups)
        self.ips = _Cow(state.ips)
        self.conditions = _Cow(state.conditions)
        self.invalid_diagnostics = _Cow(state.invalid_diagnostics)
        self.group_diagnostics = _Cow(state.group_diagnostics)
        self.per_consumer: dict[str, ByName] = {c: state.per_consumer[c] for c in consumers}
        self.built = state.built.mutate()  # (consumer, name) -> _Built, as per_consumer is placed
        self.copied: dict[str, Any] = {}  # consumers written to: an immutables MapMutation each
        self.moved: dict[str, set[GroupKey]] = {}  # the names placed, per consumer written to
        self.added: set[str] = set()  # consumers where a name came or went: their order is made anew

    def settle(self, gkey: GroupKey, old: _Group | None, conds: tuple[Any, ...],
               invalid: tuple[tuple[int, Diagnostic], ...], diags: list[Diagnostic]) -> None:
        """One name's conditions and diagnostics become these (what `old` had goes)."""
        self.conditions.assign([k for k, _ in old.conditions] if old is not None else (), dict(conds))
        self.invalid_diagnostics.assign([(i, *gkey) for i, _ in old.invalid] if old is not None else (),
                                        {(i, *gkey): d for i, d in invalid})
        self.group_diagnostics.assign((gkey,), {gkey: tuple(diags)} if diags else {})

    def place(self, gkey: GroupKey, objects: Mapping[str, ImportObjects],
              inputs: Mapping[str, "_Built"]) -> None:
        """Set (or remove, when absent from `objects`) one name's objects in every consumer,
        with what they were built from. A consumer whose objects are the very ones it holds
        (an answer in another consumer redid the name) is not written to: its map, and so
        its DerivedCluster, stays as it was."""
        built = self.built
        for cname, mine in self.per_consumer.items():
            now = objects.get(cname)
            bkey = (cname, gkey)
            if now is None:
                if bkey in built:
                    del built[bkey]
            else:
                before = built.get(bkey)
                if before is None or not _same_built(before, inputs[cname]):
                    built[bkey] = inputs[cname]
            writable = self.copied.get(cname)
            held = (writable if writable is not None else mine.map).get(gkey)
            if held is now:
                continue
            had = held is not None
            if writable is None:
                writable = self.copied[cname] = mine.map.mutate()
                self.moved[cname] = set()
            self.moved[cname].add(gkey)
            if now is None:
                del writable[gkey]
                self.added.add(cname)
            else:
                writable[gkey] = now
                if not had:
                    self.added.add(cname)

    def sorted_consumers(self) -> dict[str, ByName]:
        for cname, writable in self.copied.items():
            names = None if cname in self.added else self.per_consumer[cname].names_known
            self.per_consumer[cname] = ByName(writable.finish(), names)
        return self.per_consumer


def derive_imports(snapshot: FleetSnapshot, *, clusters: Collection[str] | None = None,
                   allocate: bool = True, unallocated: Collection[str] = (),
                   previous: DerivedFleet | None = None) -> DerivedFleet:
    """Everything the MCS controller should make true, as values.

    `clusters` limits the per-cluster objects to those consumers; export conditions always
    cover the whole fleet. Consumers in `unallocated` (live clusters, whose API server
    assigns the `amcs-` Service's ClusterIPs) take ClusterSetIPs only from their existing
    `amcs-` Services; with `allocate=False` every consumer does, and nothing is allocated
    from clustersetIPRange. `previous` (the last result) makes the cost
    proportional to what changed (objects compared by identity), so a change at 10,000
    services stays cheap; the result is the same with or without it.
    """
    members: tuple[str, ...] = tuple(m.name for m in snapshot.members)
    consumers: tuple[str, ...] = tuple(m.name for m in snapshot.members if clusters is None or m.name in clusters)
    no_ips = frozenset(unallocated)
    explicit = snapshot.import_mode == "explicit"
    settings = (members, consumers, allocate, snapshot.clusterset_ip_range if allocate else None, no_ips, explicit)
    state: _State | None = previous._state if previous is not None else None
    if state is None or state.settings != settings:
        state = _empty_state(settings, len(members), consumers)
        previous = None
    new_inputs = tuple(_inputs(m.objects) for m in snapshot.members)

    # 1. what moved, by identity: the exported names it feeds are dirty
    dirty, resolve, sources = _find_dirty(state, new_inputs)
    by_member: dict[str, Sources] = dict(zip(members, sources))

    # 2. conflict resolution of the names whose exports or Services moved (the other dirty
    # names keep their last group's, step 4; one without a group resolves to nothing still)
    wanting = _Cow(state.wants)
    resolved: dict[GroupKey, tuple[Resolved | None, tuple[tuple[int, Diagnostic], ...], tuple[Any, ...]]] = {}
    for gkey in resolve:
        res, invalid, conds = resolved[gkey] = _derive_group(gkey, members, new_inputs)
        if res is not None and res.type == "ClusterSetIP":
            wanting.set(gkey, res.families)
        else:
            wanting.pop(gkey)
    wants = wanting.map

    # 3. ClusterSetIPs: reallocated only when the set of ClusterSetIP names changes
    allocation, alloc_diagnostics = state.allocation, state.alloc_diagnostics
    redo = set(dirty)
    if allocate and (previous is None or (wants is not state.wants and wants != state.wants)):
        alloc_list: list[Diagnostic] = []
        allocation = allocate_clusterset_ips(wants, snapshot.clusterset_ip_range, alloc_list)
        alloc_diagnostics = tuple(alloc_list)
        old_alloc, new_alloc = state.allocation or {}, allocation or {}
        redo.update(g for g in state.groups if old_alloc.get(g, ()) != new_alloc.get(g, ()))
    if previous is not None and not redo:
        new_state = replace(state, inputs=new_inputs, sources=tuple(sources))
        return replace(previous, changed=frozenset(), _state=new_state)
    allocated = allocate and allocation is not None

    # 4. per dirty name: objects in every consumer, conditions, diagnostics
    step = _Step(state, consumers)
    views: list[_View] = [(m.name, m.objects.namespace_names, m.objects.service_imports, m.objects.services,
                           m.name in step.per_consumer, m.name not in no_ips) for m in snapshot.members]
    for gkey in redo:
        old_group = step.groups.get(gkey)
        if gkey in resolved:
            res, invalid, invalid_conds = resolved[gkey]
        elif old_group is not None:  # its resolution did not move (step 2), only its objects or ClusterSetIPs
            res, invalid, invalid_conds = old_group.resolved, old_group.invalid, old_group.invalid_conditions
        else:
            continue
        objects: dict[str, ImportObjects] = {}
        inputs: dict[str, _Built] = {}
        diags: list[Diagnostic] = []
        conds = invalid_conds
        if res is not None and old_group is not None and old_group.resolved is not None \
                and res is not old_group.resolved and res == old_group.resolved:
            res = old_group.resolved  # the same object: the memo of each consumer's objects compares by identity
        if res is None:
            step.ips.pop(gkey)
        else:
            res_ips = (allocation or {}).get(gkey, ())
            if allocated:
                step.ips.set(gkey, res_ips)
            objects, diags, n_consumers, inputs = _consumer_objects(res, res_ips, views, by_member, explicit,
                                                                    step.state.per_consumer, step.state.built)
            if old_group is not None and old_group.resolved is res and old_group.consumers == n_consumers \
                    and old_group.invalid_conditions is invalid_conds:
                conds = old_group.conditions  # made from the very same inputs (an answer moved its objects)
            else:
                conds = conds + tuple(((ex.cluster, res.namespace, res.name),
                                       export_conditions(res, ex, n_consumers)) for ex in res.exports)
        step.place(gkey, objects, inputs)
        step.settle(gkey, old_group, conds, invalid, diags)
        if res is None and not invalid:
            step.groups.pop(gkey)
        else:
            step.groups.set(gkey, _Group(res, invalid, invalid_conds, conds, tuple(diags), wants.get(gkey),
                                         n_consumers if res is not None else 0))

    per_consumer = step.sorted_consumers()
    new_state = _State(settings, new_inputs, tuple(sources), step.groups.map, wants, allocation, alloc_diagnostics,
                       step.ips.map if allocated else {}, per_consumer, step.conditions.map,
                       step.invalid_diagnostics.map, step.group_diagnostics.map, step.built.finish())
    old_per_cluster = previous.per_cluster if previous is not None else {}
    per_cluster: dict[str, DerivedCluster] = {}
    for cname in consumers:
        before = old_per_cluster.get(cname)
        if before is not None and cname not in step.copied:
            per_cluster[cname] = before
        else:
            # a KindView over it: changed_keys (the writer, the DNS zone) then costs the names
            # placed, not a pass over every name
            base = before.by_service if before is not None else None
            per_cluster[cname] = DerivedCluster(by_service=KindView(
                per_consumer[cname], base if type(base) is KindView else None,  # type: ignore[arg-type]
                step.moved.get(cname, ())))
    invalid_diags, group_diags = step.invalid_diagnostics.map, step.group_diagnostics.map
    diagnostics = (tuple(invalid_diags[k] for k in sorted(invalid_diags)) + alloc_diagnostics
                   + tuple(d for k in sorted(group_diags) for d in group_diags[k]))
    return DerivedFleet(per_cluster=MappingProxyType(per_cluster),
                        export_conditions=MappingProxyType(step.conditions.map),
                        diagnostics=diagnostics,
                        clusterset_ips=MappingProxyType(new_state.ips),
                        changed=frozenset(redo) if previous is not None else None,
                        _state=new_state)
