"""Which keys of a map changed, by object identity: the incremental builders' one question."""
from __future__ import annotations

from itertools import compress
from operator import is_not
from typing import Any, Iterable, Iterator, Mapping

_MISSING = object()
CHAIN = 4  # how many views back a KindView remembers what moved


class KindView(Mapping[Any, Any]):
    """A frozen map of one kind's objects (a persistent map, or a dict no one changes
    after) that knows which keys moved since the view
    before it (a live source's watch events), so changed_keys costs what moved, not the
    size of the map. The link is a hint: only the last CHAIN views keep it, so old views
    are freed; without it changed_keys compares by identity as for any mapping."""

    __slots__ = ("_d", "base", "moved", "get", "keys", "values", "items")

    def __init__(self, objects: Mapping[Any, Any], base: "KindView | None" = None,
                 moved: Iterable[Any] = ()) -> None:
        self._d = objects
        self.base = base
        self.moved = frozenset(moved)
        self.get = objects.get  # type: ignore[method-assign]
        self.keys = objects.keys  # type: ignore[method-assign]
        self.values = objects.values  # type: ignore[method-assign]
        self.items = objects.items  # type: ignore[method-assign]
        view, depth = base, 1
        while view is not None and depth < CHAIN:
            view, depth = view.base, depth + 1
        if view is not None:
            view.base = None  # forget older links: the views before it may be freed

    def __getitem__(self, key: Any) -> Any:
        return self._d[key]

    def __contains__(self, key: object) -> bool:
        return key in self._d

    def __iter__(self) -> Iterator[Any]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def __repr__(self) -> str:
        return f"KindView({self._d!r})"

    def moved_since(self, old: Mapping[Any, Any]) -> set[Any] | None:
        """The keys that moved between `old` and this view, or None when `old` is not a
        recent ancestor (then compare by identity)."""
        moved: set[Any] = set()
        view: KindView | None = self
        while view is not None:
            if view is old:
                return moved
            moved |= view.moved
            view = view.base
        return None


def changed_keys(old: Mapping[Any, Any], new: Mapping[Any, Any]) -> list[Any]:
    """Keys added, removed or bound to another object (identity, not equality).

    For maps whose keys are derived from their values, like ClusterObjects' indexes and
    DerivedCluster.by_service: the same object at the same position has the same key.
    Sources keep an unchanged object's view and its position, so this is usually one
    pairwise pass in C; when keys were added, removed or reordered it costs one lookup per key.
    """
    if old is new:
        return []
    if type(new) is KindView:
        moved = new.moved_since(old)
        if moved is not None:
            return [k for k in moved if old.get(k, _MISSING) is not new.get(k, _MISSING)]
    if len(old) == len(new):
        pairs = list(compress(zip(new.keys(), old.keys()), map(is_not, new.values(), old.values())))
        if all(k1 == k2 for k1, k2 in pairs):
            return [k for k, _ in pairs]
    changed = [k for k, v in new.items() if old.get(k, _MISSING) is not v]
    added = sum(1 for k in changed if k not in old) if changed else 0
    if len(new) - added != len(old):  # something was removed
        changed += [k for k in old if k not in new]
    return changed
