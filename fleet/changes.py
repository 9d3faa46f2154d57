"""Which keys of a map changed, by object identity: the incremental builders' one question."""
from __future__ import annotations

from itertools import compress
from operator import is_not
from typing import Any, Mapping

_MISSING = object()


def changed_keys(old: Mapping[Any, Any], new: Mapping[Any, Any]) -> list[Any]:
    """Keys added, removed or bound to another object (identity, not equality).

    For maps whose keys are derived from their values, like ClusterObjects' indexes and
    DerivedCluster.by_service: the same object at the same position has the same key.
    Sources keep an unchanged object's view and its position, so this is usually one
    pairwise pass in C; when keys were added, removed or reordered it costs one lookup per key.
    """
    if old is new:
        return []
    if len(old) == len(new):
        pairs = list(compress(zip(new.keys(), old.keys()), map(is_not, new.values(), old.values())))
        if all(k1 == k2 for k1, k2 in pairs):
            return [k for k, _ in pairs]
    changed = [k for k, v in new.items() if old.get(k, _MISSING) is not v]
    added = sum(1 for k in changed if k not in old) if changed else 0
    if len(new) - added != len(old):  # something was removed
        changed += [k for k in old if k not in new]
    return changed
