"""Typed reads of raw Kubernetes fields: each names the field it rejects (ObjectError).

What fleet/objects.py parses every object with, so a malformed object becomes a message
naming the field instead of a crash.
"""
from __future__ import annotations

from sys import intern
from typing import Any, Callable

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
