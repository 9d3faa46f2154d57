"""Client-side write limits per member cluster: client-go's QPS/burst token bucket.

A cold start at 10,000 services is tens of thousands of writes per consumer; a small API
server should not get them all at once. `qps <= 0` means no limit (the default: the
concurrency cap, --max-concurrent-writes, already bounds the requests in flight).
"""
from __future__ import annotations

import asyncio
import time
from typing import Callable


class TokenBucket:
    """`burst` tokens, refilled at `qps` per second; `delay()` is pure given the clock."""

    def __init__(self, qps: float, burst: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.qps = qps
        self.burst = max(1, burst)
        self.clock = clock
        self._tokens = float(self.burst)
        self._stamp = clock()

    def delay(self) -> float:
        """Take one token; how long the caller must wait before using it (0: now)."""
        if self.qps <= 0:
            return 0.0
        now = self.clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.qps)
        self._stamp = now
        self._tokens -= 1.0  # may go negative: later callers queue behind this one
        return 0.0 if self._tokens >= 0 else -self._tokens / self.qps

    async def acquire(self) -> None:
        wait = self.delay()
        if wait > 0:
            await asyncio.sleep(wait)
