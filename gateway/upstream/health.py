"""Endpoint health: passive outlier detection and active-check thresholds, as one pure
state machine that takes `now` (no clocks, no I/O; the checker in checker.py drives it).

An endpoint is up unless ejected (passive) or marked unhealthy by active checks.
Passive: a connect failure, reset or timeout ejects at once; `consecutive_5xx` 5xx in a
row eject; ejection lasts 30 s × ejections (max 300 s); an endpoint is ejected only while
another endpoint of the same backend stays up (Envoy's max-ejection rule). Active: after
`unhealthy_threshold` failures unhealthy, after `healthy_threshold` successes healthy; a
success also ends a passive ejection.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

BASE_EJECTION = 30.0
MAX_EJECTION = 300.0


@dataclass
class EndpointHealth:
    ejected_until: float = 0.0
    ejections: int = 0
    consecutive_5xx: int = 0
    active_healthy: bool = True
    successes: int = 0
    failures: int = 0


class HealthState:
    def __init__(self) -> None:
        self.endpoints: dict[str, EndpointHealth] = {}
        # keys that are not up right now; the request path checks `if not down` first
        self.down: set[str] = set()

    def _get(self, key: str) -> EndpointHealth:
        h = self.endpoints.get(key)
        if h is None:
            h = self.endpoints[key] = EndpointHealth()
        return h

    def is_up(self, key: str, now: float) -> bool:
        if key not in self.down:
            return True
        h = self.endpoints[key]
        if h.active_healthy and h.ejected_until <= now:
            self.down.discard(key)  # ejection expired
            return True
        return False

    def _refresh(self, key: str, h: EndpointHealth, now: float) -> None:
        if h.active_healthy and h.ejected_until <= now:
            self.down.discard(key)
        else:
            self.down.add(key)

    def eject(self, key: str, peers: Iterable[str], now: float) -> bool:
        """Eject key at once (connect failure, reset, timeout) unless it is the last one up
        among its backend's endpoints. Returns whether it was ejected."""
        if not any(p != key and self.is_up(p, now) for p in peers):
            return False
        h = self._get(key)
        if h.ejected_until > now:
            return True
        h.ejections += 1
        h.ejected_until = now + min(BASE_EJECTION * h.ejections, MAX_EJECTION)
        h.consecutive_5xx = 0
        self.down.add(key)
        return True

    def record_status(self, key: str, status: int, peers: Iterable[str], threshold: int, now: float) -> None:
        if status >= 500:
            h = self._get(key)
            h.consecutive_5xx += 1
            if h.consecutive_5xx >= threshold:
                self.eject(key, peers, now)
        else:
            h2 = self.endpoints.get(key)
            if h2 is not None:
                h2.consecutive_5xx = 0

    def check_result(self, key: str, ok: bool, *, healthy_threshold: int, unhealthy_threshold: int,
                     now: float) -> None:
        """One active check result."""
        h = self._get(key)
        if ok:
            h.failures = 0
            h.successes += 1
            if not h.active_healthy and h.successes >= healthy_threshold:
                h.active_healthy = True
            if h.active_healthy and h.ejected_until > now:
                h.ejected_until = 0.0  # a success un-ejects
        else:
            h.successes = 0
            h.failures += 1
            if h.active_healthy and h.failures >= unhealthy_threshold:
                h.active_healthy = False
        self._refresh(key, h, now)

    def mark_unhealthy_now(self, key: str, now: float) -> None:
        """A non-2xx/3xx active HTTP answer marks unhealthy at once."""
        h = self._get(key)
        h.successes = 0
        h.failures += 1
        h.active_healthy = False
        self._refresh(key, h, now)

    def retain(self, keys: set[str]) -> None:
        for key in [k for k in self.endpoints if k not in keys]:
            del self.endpoints[key]
            self.down.discard(key)
