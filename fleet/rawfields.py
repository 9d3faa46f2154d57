"""Typed reads of raw Kubernetes fields: each names the field it rejects (ObjectError).

What fleet/objects.py parses every object with, so a malformed object becomes a message
naming the field instead of a crash.
"""
from __future__ import annotations

from itertools import chain
from sys import getrefcount, intern
from types import MappingProxyType
from typing import Any, Callable, Generic, Hashable, Mapping, TypeVar

SHARED_UP_TO = 64  # strings up to this long are kept once, however many objects repeat them


class ObjectError(ValueError):
    """A Kubernetes object that cannot be understood (the message names the field)."""


def as_map(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ObjectError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def as_list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ObjectError(f"{where}: expected a list, got {type(value).__name__}")
    return value


def as_str(value: Any, where: str, *, required: bool = False) -> str | None:
    if value is None:
        if required:
            raise ObjectError(f"{where}: required")
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ObjectError(f"{where}: expected a string, got {type(value).__name__}")
    return str(value)



def as_optional_str(value: Any, where: str) -> str | None:
    """An optional string whose empty value means unset (a zone, an appProtocol): None for
    "", as for an absent field. Kubernetes omits such a field when empty, and so do our
    renders (controller/render.py): a view parsed from a file that spells "" then equals the
    view of the same object as an API server sends it back."""
    return as_str(value, where) or None

def as_int(value: Any, where: str, *, required: bool = False, lo: int = 0,
         hi: int = 65535) -> int | None:
    if value is None:
        if required:
            raise ObjectError(f"{where}: required")
        return None
    if isinstance(value, bool):
        raise ObjectError(f"{where}: expected an integer, got a boolean")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ObjectError(f"{where}: expected an integer, got {value!r}") from None
    if isinstance(value, float) and value != number:
        raise ObjectError(f"{where}: expected an integer, got {value!r}")
    if not lo <= number <= hi:
        raise ObjectError(f"{where}: {number} is out of range {lo}..{hi}")
    return number


def as_bool(value: Any, where: str) -> bool | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ObjectError(f"{where}: expected a boolean, got {value!r}")


def checked(rule: Callable[[str], str | None], value: str, where: str) -> str:
    """value if Kubernetes would accept it there (fleet/validation.py), else ObjectError."""
    problem = rule(value)
    if problem is not None:
        raise ObjectError(f"{where}: {problem}")
    return value


def as_str_map(value: Any, where: str) -> dict[str, str]:
    return {str(k): "" if v is None else str(v) for k, v in as_map(value, where).items()}


def shared(value: str) -> str:
    """One copy of a short string that many objects repeat (a namespace, a label, a name,
    an address: each object's JSON brings its own copy, ~60 bytes each, a fifth of a
    controller's heap at 1,000 services). Interned strings are freed when unused."""
    return intern(value) if len(value) <= SHARED_UP_TO else value


def as_shared_str_map(value: Any, where: str) -> dict[str, str]:
    """as_str_map, its keys and short values `shared` (labels, annotations, selectors)."""
    return {intern(str(k)): "" if v is None else shared(str(v)) for k, v in as_map(value, where).items()}


V = TypeVar("V")


class SharedValues(Generic[V]):
    """One value per distinct key, for immutable values many objects repeat (an endpoint, a
    label set: each consumer's derived slice and the API server's answer for it hold equal
    ones). The table keeps nothing alive on its own: when it has doubled since the last
    sweep, entries only it holds go (amortised O(1) per put)."""

    __slots__ = ("values", "floor", "sweep_at")

    def __init__(self, floor: int = 4096) -> None:
        self.values: dict[Hashable, V] = {}
        self.floor = self.sweep_at = floor

    def get(self, key: Hashable) -> V | None:
        return self.values.get(key)

    def put(self, key: Hashable, value: V) -> V:
        if len(self.values) >= self.sweep_at:
            self.sweep()
        self.values[key] = value
        return value

    def sweep(self) -> None:
        values = self.values
        for key in [k for k, v in values.items() if getrefcount(v) <= _HELD_ONLY_HERE]:
            del values[key]
        self.sweep_at = max(self.floor, 2 * len(values))


def _held_only_here() -> int:
    """sys.getrefcount of a table value nothing else holds, read as SharedValues.sweep reads it."""
    probe = {0: object()}
    return [getrefcount(v) for _, v in probe.items()][0]


_HELD_ONLY_HERE = _held_only_here()
_MAPS: SharedValues[Mapping[str, str]] = SharedValues()
NO_MAP: Mapping[str, str] = MappingProxyType({})


def shared_map(entries: dict[str, str]) -> Mapping[str, str]:
    """A read-only view of `entries`, one per distinct content (in order): labels and
    annotations repeat across every consumer's derived objects and their parsed answers."""
    if not entries:
        return NO_MAP
    key = tuple(chain.from_iterable(entries.items()))
    found = _MAPS.get(key)
    return found if found is not None else _MAPS.put(key, MappingProxyType(entries))


def shared_str_map(value: Any, where: str) -> Mapping[str, str]:
    """as_shared_str_map as a shared read-only view (shared_map): metadata labels, annotations."""
    return shared_map(as_shared_str_map(value, where))
