"""Active health checks: one small task per checked endpoint, feeding HealthState.

Opt-in per Ingress (any `health-check-*` annotation); passive outlier detection needs no
configuration and is always on. Each probe is a TCP connect, or an HTTP/1.1 GET of the
path that must answer 2xx/3xx; intervals are jittered by ±10 % so probes of many
gateways and endpoints do not synchronise.
"""
from __future__ import annotations

import asyncio
import logging
import random
from typing import Mapping

from ..routing.policy import HealthCheck
from ..routing.table import UpstreamEndpoint
from .health import HealthState

log = logging.getLogger("fleetgate.health")


async def probe(endpoint: UpstreamEndpoint, check: HealthCheck, timeout: float) -> int | None:
    """None when the endpoint is unreachable; 0 for a TCP success; else the HTTP status."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(endpoint.address, endpoint.port), timeout)
    except (OSError, asyncio.TimeoutError):
        return None
    try:
        if check.path is None:
            return 0
        writer.write(f"GET {check.path} HTTP/1.1\r\nHost: {endpoint.address}:{endpoint.port}\r\n"
                     "User-Agent: fleetgate-health-check\r\nConnection: close\r\n\r\n".encode())
        line = await asyncio.wait_for(reader.readline(), timeout)
        parts = line.split()
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            return 599
        return int(parts[1])
    except (OSError, asyncio.TimeoutError):
        return None
    finally:
        writer.close()


class ActiveChecker:
    def __init__(self, health: HealthState) -> None:
        self.health = health
        self.tasks: dict[str, tuple[asyncio.Task[None], HealthCheck]] = {}
        self.probes = 0

    def update(self, targets: Mapping[str, tuple[UpstreamEndpoint, HealthCheck]]) -> None:
        """Follow a new set of checked endpoints (called after each table swap)."""
        for key in [k for k in self.tasks if k not in targets or self.tasks[k][1] != targets[k][1]]:
            self.tasks.pop(key)[0].cancel()
        for key, (endpoint, check) in targets.items():
            if key not in self.tasks:
                self.tasks[key] = (asyncio.get_running_loop().create_task(self._run(endpoint, check)), check)

    async def _run(self, endpoint: UpstreamEndpoint, check: HealthCheck) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(random.uniform(0, check.interval))  # spread the first probes
        while True:
            status = await probe(endpoint, check, timeout=min(check.interval, 2.0))
            self.probes += 1
            now = loop.time()
            if status is None or (status >= 400 or 100 <= status < 200):
                if status is not None:
                    self.health.mark_unhealthy_now(endpoint.key, now)
                else:
                    self.health.check_result(endpoint.key, False, healthy_threshold=check.healthy_threshold,
                                             unhealthy_threshold=check.unhealthy_threshold, now=now)
            else:
                self.health.check_result(endpoint.key, True, healthy_threshold=check.healthy_threshold,
                                         unhealthy_threshold=check.unhealthy_threshold, now=now)
            await asyncio.sleep(check.interval * random.uniform(0.9, 1.1))

    def close(self) -> None:
        for task, _ in self.tasks.values():
            task.cancel()
        self.tasks.clear()
