"""One live cluster's objects, kept from list and watch results (pure: no I/O, no asyncio).

Raw objects are parsed into frozen views once, when their resourceVersion changes; a
relist that returns what we already hold keeps every view (and so the snapshot) as it
was. A malformed object keeps its last good view and becomes a diagnostic. ClusterObjects
are built on demand and only for kinds that changed, so a burst of events costs one build.
Each kind's objects are a persistent map (immutables.Map): a snapshot is the map itself, not
a copy, and a change makes a new map sharing all but the changed path with the last one. So
a change costs O(log n) in the size of the fleet, and an old snapshot someone still holds (a
plan in flight, a derivation) pins only what differs from the current one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from immutables import Map

from .changes import KindView
from .objects import KubeObject, ObjectError, describe, parse_object
from .rawfields import intern, shared
from .snapshot import ClusterObjects, Diagnostic, ObjKey

Raw = Mapping[str, Any]


@dataclass
class _Kind:
    objects: Map[ObjKey, KubeObject] = field(default_factory=Map)  # persistent: views share it
    problems: dict[ObjKey, Diagnostic] = field(default_factory=dict)
    view: Mapping[ObjKey, KubeObject] | None = None  # the last view, None after a change
    last: KindView | None = None  # the last view made (the next one links to it)
    moved: set[ObjKey] = field(default_factory=set)  # keys changed since `last`
    namespaces: frozenset[str] = frozenset()
    spaces: dict[str, int] = field(default_factory=dict)  # namespace -> objects of this kind in it


def _space(kind: str, key: ObjKey) -> str:
    """The namespace an object's existence implies (a Namespace implies itself)."""
    return key[1] if kind == "Namespace" else key[0]


def _key(raw: Raw, namespaced: bool) -> ObjKey | None:
    meta = raw.get("metadata")
    if not isinstance(meta, Mapping) or not meta.get("name"):
        return None
    return (intern(str(meta.get("namespace") or "default")) if namespaced else "", shared(str(meta["name"])))


def _rv(raw: Raw) -> str:
    meta = raw.get("metadata")
    return str(meta.get("resourceVersion") or "") if isinstance(meta, Mapping) else ""


class ObjectStore:
    """Views by kind and (namespace, name). `replace` and `apply` say whether anything
    (objects or diagnostics) changed; `snapshot()` builds only what did."""

    def __init__(self, origin: str = "") -> None:
        self.origin = origin  # the API server (or kubeconfig) diagnostics point at
        self._kinds: dict[str, _Kind] = {}
        self._objects: ClusterObjects = ClusterObjects(source=origin)
        self._stale = False  # some kind's objects (or the origin) moved since the last build

    def set_origin(self, origin: str) -> None:
        """Name the API server once it is known (diagnostics and ClusterObjects.source)."""
        if origin != self.origin:
            self.origin = origin
            self._stale = True

    def _kind(self, kind: str) -> _Kind:
        k = self._kinds.get(kind)
        if k is None:
            k = self._kinds[kind] = _Kind()
        return k

    def _parse(self, k: _Kind, key: ObjKey, raw: Raw) -> KubeObject | None:
        """The new view, or None (a diagnostic is recorded and the old view stays)."""
        try:
            obj = parse_object(raw)
        except ObjectError as exc:
            where = f"{self.origin} ({raw.get('apiVersion')})" if self.origin else str(raw.get("apiVersion"))
            k.problems[key] = Diagnostic(where, describe(raw), str(exc))
            return None
        k.problems.pop(key, None)
        return obj

    def replace(self, kind: str, items: Iterable[Raw], *, namespaced: bool = True) -> bool:
        """A fresh list of one kind: its objects become exactly these. True if anything changed."""
        k = self._kind(kind)
        before_problems = dict(k.problems)
        k.problems.clear()
        fresh: dict[ObjKey, KubeObject] = {}
        for raw in items:
            key = _key(raw, namespaced)
            if key is None:
                continue
            old = k.objects.get(key)
            if old is not None and old.meta.resource_version and old.meta.resource_version == _rv(raw):
                fresh[key] = old
                continue
            obj = self._parse(k, key, raw)
            if obj is not None:
                fresh[key] = old if old is not None and old == obj else obj
            elif old is not None:
                fresh[key] = old
        before = k.objects
        keys = [key for key, obj in fresh.items() if before.get(key) is not obj]
        gone = [key for key in before if key not in fresh]
        if keys or gone:  # a relist that moved a few objects shares the rest with the last map
            with before.mutate() as changing:
                for key in keys:
                    changing[key] = fresh[key]
                for key in gone:
                    del changing[key]
                k.objects = changing.finish()
            k.moved.update(keys)
            k.moved.update(gone)
        return self._mark(k, bool(keys or gone), before_problems != k.problems)

    def apply(self, kind: str, event: str, raw: Raw, *, namespaced: bool = True,
              parsed: KubeObject | None = None) -> bool:
        """One watch event (ADDED, MODIFIED, DELETED). True if anything changed. `parsed`:
        what parse_object(raw) gives, when the caller knows it (controller/answers.py)."""
        k = self._kind(kind)
        key = _key(raw, namespaced)
        if key is None:
            return False
        old = k.objects.get(key)
        if event == "DELETED":
            problem = k.problems.pop(key, None)
            if old is not None:
                k.objects = k.objects.delete(key)
                k.moved.add(key)
            return self._mark(k, old is not None, problem is not None)
        if event not in ("ADDED", "MODIFIED"):
            return False
        if old is not None and old.meta.resource_version and old.meta.resource_version == _rv(raw):
            return False  # a replay of what we hold
        before = k.problems.get(key)
        if parsed is not None:
            k.problems.pop(key, None)
            obj: KubeObject | None = parsed
        else:
            obj = self._parse(k, key, raw)
        moved = obj is not None and obj != old
        if moved:
            assert obj is not None
            k.objects = k.objects.set(key, obj)
            k.moved.add(key)
        return self._mark(k, moved, k.problems.get(key) != before)

    def _mark(self, k: _Kind, moved: bool, problems_moved: bool) -> bool:
        if moved:
            k.view = None
            self._stale = True
        return moved or problems_moved

    def get(self, kind: str, key: ObjKey) -> KubeObject | None:
        """One object as held now, without building a snapshot (a writer checks each write)."""
        k = self._kinds.get(kind)
        return k.objects.get(key) if k is not None else None

    def diagnostics(self) -> tuple[Diagnostic, ...]:
        return tuple(d for kind in sorted(self._kinds) for _, d in sorted(self._kinds[kind].problems.items()))

    def snapshot(self) -> ClusterObjects:
        """The current objects; the same ClusterObjects as last time if nothing moved."""
        if not self._stale:
            return self._objects
        by_kind: dict[str, Mapping[ObjKey, KubeObject]] = {}
        names: set[str] = set()
        for kind, k in self._kinds.items():
            if k.view is None:
                self._count_spaces(kind, k)
                k.view = k.last = KindView(k.objects, k.last, k.moved)  # no copy: the map is persistent
                k.moved = set()
            if k.view:
                by_kind[kind] = k.view
            names |= k.namespaces
        self._objects = ClusterObjects(by_kind, frozenset(names), {}, self.origin)
        self._stale = False
        return self._objects

    def __len__(self) -> int:
        return sum(len(k.objects) for k in self._kinds.values())

    @staticmethod
    def _count_spaces(kind: str, k: _Kind) -> None:
        """k.namespaces from the keys that moved since the last view, not from every object."""
        before, now, spaces = k.last, k.objects, k.spaces
        if before is None:
            spaces.clear()
            for key in now:
                space = _space(kind, key)
                spaces[space] = spaces.get(space, 0) + 1
        else:
            for key in k.moved:
                delta = (key in now) - (key in before)
                if delta:
                    space = _space(kind, key)
                    left = spaces.get(space, 0) + delta
                    if left:
                        spaces[space] = left
                    else:
                        del spaces[space]
        k.namespaces = frozenset(s for s in spaces if s)  # namespaces are few: this is cheap
