"""Ingress annotations → RoutePolicy, with every bad value reported, never fatal.

Users write the same annotation under several prefixes (ingress-nginx, Alibaba MSE,
Higress) plus ours; all are accepted. An invalid value becomes a diagnostic and the
annotation is ignored: the route keeps serving with the default.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Callable, Mapping

from .policy import RoutePolicy

PREFIXES = ("nginx.ingress.kubernetes.io/", "mse.ingress.kubernetes.io/", "higress.io/",
            "fleetgate.io/")


@dataclass(frozen=True, slots=True)
class AnnotationProblem:
    annotation: str
    message: str
    severity: str = "error"


def _seconds(value: str) -> float:
    """nginx-style timeouts: a number of seconds, optionally with an `s` or `ms` suffix."""
    v = value.strip().lower()
    if v.endswith("ms"):
        seconds = float(v[:-2]) / 1000
    else:
        seconds = float(v.rstrip("s"))
    if not 0 < seconds <= 86400:
        raise ValueError("must be between 0 and 86400 seconds")
    return seconds


_SIZE = re.compile(r"^\s*(\d+)\s*([kKmMgG]?)\s*$")


def _size(value: str) -> int | None:
    """nginx sizes: `1m`, `512k`, `0` (= unlimited)."""
    m = _SIZE.match(value)
    if not m:
        raise ValueError("expected a size such as 8m, 512k or 0")
    number = int(m.group(1)) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[m.group(2).lower()]
    return None if number == 0 else number


def _tries(value: str) -> int:
    n = int(value)
    if not 0 <= n <= 20:
        raise ValueError("must be between 0 and 20")
    return max(n, 1)


def _bool(value: str) -> bool:
    if value.strip().lower() in ("true", "on", "1"):
        return True
    if value.strip().lower() in ("false", "off", "0"):
        return False
    raise ValueError("expected true or false")


# annotation name (without prefix) -> (policy field, parser). `use-regex` is read by the
# builder (it changes matching, not the data plane), so it is listed with no field.
_POLICY_FIELDS: dict[str, tuple[str | None, Callable[[str], object]]] = {
    "proxy-connect-timeout": ("connect_timeout", _seconds),
    "proxy-read-timeout": ("read_timeout", _seconds),
    "proxy-send-timeout": ("send_timeout", _seconds),
    "proxy-next-upstream-tries": ("next_upstream_tries", _tries),
    "proxy-body-size": ("max_body_size", _size),
    "use-regex": (None, _bool),
}

KNOWN = frozenset(_POLICY_FIELDS)


def ours(annotations: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """Our annotations by bare name -> (full key, value). When several prefixes set the same
    name, the first prefix in PREFIXES order wins."""
    out: dict[str, tuple[str, str]] = {}
    for prefix in PREFIXES:
        for key, value in annotations.items():
            if key.startswith(prefix):
                out.setdefault(key[len(prefix):], (key, value))
    return out


def use_regex(annotations: Mapping[str, str]) -> bool:
    entry = ours(annotations).get("use-regex")
    if entry is None:
        return False
    try:
        return _bool(entry[1])
    except ValueError:
        return False


def parse_policy(annotations: Mapping[str, str],
                 known_elsewhere: frozenset[str] = frozenset()) -> tuple[RoutePolicy, list[AnnotationProblem]]:
    """The RoutePolicy an Ingress's annotations ask for, and the problems found.

    `known_elsewhere` names annotations other modules understand (so they are not
    reported as unknown)."""
    policy = RoutePolicy()
    problems: list[AnnotationProblem] = []
    unknown: list[str] = []
    for name, (key, value) in ours(annotations).items():
        spec = _POLICY_FIELDS.get(name)
        if spec is None:
            if name not in known_elsewhere:
                unknown.append(key)
            continue
        field_name, parser = spec
        try:
            parsed = parser(value)
        except (ValueError, TypeError) as exc:
            problems.append(AnnotationProblem(key, f"invalid value {value!r}: {exc}; ignored"))
            continue
        if field_name is not None:
            policy = replace(policy, **{field_name: parsed})
    if unknown:
        problems.append(AnnotationProblem(", ".join(sorted(unknown)), "unknown annotation(s) ignored",
                                          severity="warning"))
    return policy, problems
