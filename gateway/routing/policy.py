"""Per-route policy: the annotation-driven knobs the data plane reads per request.

Plain frozen data with defaults that match ingress-nginx; annotations.py fills it in.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    send_timeout: float = 60.0
    next_upstream_tries: int = 3
    max_body_size: int | None = None  # bytes; None = no limit

    def describe(self) -> dict[str, Any]:
        """Only the fields that differ from the defaults, for /debug/routes."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value != f.default:
                out[f.name] = value
        return out


DEFAULT_POLICY = RoutePolicy()
