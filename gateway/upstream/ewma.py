"""Peak-EWMA endpoint choice (`load-balance: ewma`), as pure state and arithmetic.

ingress-nginx's balancer/ewma.lua keeps, per endpoint, a moving average of the upstream
response time whose weight is time-based: a sample taken `td` seconds after the last one
counts for `1 - exp(-td / 10 s)`, and when scored the average decays toward zero with the
time since it was last touched (an endpoint left alone long enough is tried again). It
picks two distinct random endpoints and keeps the lower score. Finagle's PeakEwma (which
ewma.lua cites) adds the two parts that make it react to a slow endpoint at once: a
sample above the average replaces it (the "peak"), and the score is multiplied by the
requests in flight + 1. This module does all of that with `now` and the random value
passed in, so tests drive it with a fake clock.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Protocol, Sequence, TypeVar

DECAY_TIME = 10.0  # seconds, as ewma.lua's DECAY_TIME
# The estimate of an endpoint with no sample yet among endpoints that have none either:
# small but positive, so the in-flight factor still spreads concurrent requests.
FLOOR = 1e-6


class _Keyed(Protocol):
    @property
    def key(self) -> str: ...


K = TypeVar("K", bound=_Keyed)


@dataclass(slots=True)
class _Stat:
    value: float  # seconds
    touched: float  # `now` of the last sample


@dataclass
class PeakEwma:
    """Response-time estimates by endpoint key (one per worker, like the other balancer state)."""
    decay_time: float = DECAY_TIME
    stats: dict[str, _Stat] = field(default_factory=dict)

    def _decayed(self, stat: _Stat, sample: float, now: float) -> float:
        """ewma.lua's decay_ewma: weight the old value by exp(-elapsed / decay time)."""
        elapsed = max(0.0, now - stat.touched)
        w = math.exp(-elapsed / self.decay_time)
        return stat.value * w + sample * (1.0 - w)

    def observe(self, key: str, rtt: float, now: float) -> None:
        """A response from `key` completed `rtt` seconds after it was sent. A sample above
        the (decayed) average becomes the average at once (peak); a lower one pulls it down
        by the time-based weight, so recovery is cautious."""
        rtt = max(0.0, rtt)
        stat = self.stats.get(key)
        if stat is None:
            self.stats[key] = _Stat(rtt, now)
            return
        current = self._decayed(stat, 0.0, now)
        stat.value = rtt if rtt > current else self._decayed(stat, rtt, now)
        stat.touched = now

    def estimate(self, key: str, now: float) -> float | None:
        """The average as seen now (decayed toward zero since the last sample, as ewma.lua
        scores without updating); None when the endpoint has no sample."""
        stat = self.stats.get(key)
        return None if stat is None else self._decayed(stat, 0.0, now)

    def score(self, estimate: float, in_flight: int) -> float:
        return max(estimate, FLOOR) * (in_flight + 1)

    def pick(self, eps: Sequence[K], active: Mapping[str, int], now: float, rand: float) -> K:
        """Power of two choices: two distinct endpoints drawn from `rand`, the lower score
        wins (the first drawn on a tie). An endpoint without a sample is scored with the
        mean estimate of the candidates that have one, as ewma.lua seeds a new endpoint
        with its backend's average, so a new endpoint neither takes everything nor starves."""
        n = len(eps)
        if n == 1:
            return eps[0]
        i = int(rand * n) % n
        j = (i + 1 + int(rand * 7919) % (n - 1)) % n  # a second, different draw
        a, b = eps[i], eps[j]
        ea, eb = self.estimate(a.key, now), self.estimate(b.key, now)
        if ea is None or eb is None:
            fill = self.mean(eps, now)
            ea = fill if ea is None else ea
            eb = fill if eb is None else eb
        sa, sb = self.score(ea, active.get(a.key, 0)), self.score(eb, active.get(b.key, 0))
        return b if sb < sa else a

    def mean(self, eps: Sequence[K], now: float) -> float:
        """Mean current estimate over the endpoints of `eps` with a sample (0 with none)."""
        known = [e for e in (self.estimate(ep.key, now) for ep in eps) if e is not None]
        return sum(known) / len(known) if known else 0.0
