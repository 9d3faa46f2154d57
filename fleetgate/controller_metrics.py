"""The controller's sync metrics, read from the outside of controller/ (which another
change owned when these were added): `fleetgate_controller_objects_written_total{cluster}`
from each member worker's write count, and `fleetgate_controller_sync_lag_seconds`.

Sync lag is how long the controller has had writes pending or in flight without catching
up: 0 while every member worker is idle, else the time since it was first seen busy. A
poll every SAMPLE seconds watches the writer's `idle` (a bounded, cheap check), so the
value is accurate to that interval; a controller stuck behind an unreachable API server
or a client-side rate limit shows a lag that grows until it catches up.
"""
from __future__ import annotations

import asyncio
import time
from typing import Iterator, Mapping, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

SAMPLE = 0.25


class _Worker(Protocol):
    writes: int


class _Writer(Protocol):
    @property
    def idle(self) -> bool: ...
    @property
    def workers(self) -> Mapping[str, _Worker]: ...


class ControllerSyncMetrics(Collector):
    """Collects from a LiveWriter (None: a fleet without live members, nothing to write,
    lag 0); `start()` the poll, `close()` it."""

    def __init__(self, writer: _Writer | None) -> None:
        self.writer = writer
        self.busy_since: float | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> "ControllerSyncMetrics":
        if self.writer is not None:
            self._task = asyncio.get_running_loop().create_task(self._poll(), name="controller-sync-lag")
        return self

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    def sample(self) -> None:
        if self.writer is None or self.writer.idle:
            self.busy_since = None
        elif self.busy_since is None:
            self.busy_since = time.monotonic()

    async def _poll(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(SAMPLE)

    def lag(self) -> float:
        self.sample()
        return 0.0 if self.busy_since is None else time.monotonic() - self.busy_since

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        written = CounterMetricFamily("fleetgate_controller_objects_written",
                                      "Writes (create, patch, delete) the API server accepted, by member cluster",
                                      labels=["cluster"])
        for name, worker in sorted((self.writer.workers if self.writer is not None else {}).items()):
            written.add_metric([name], worker.writes)
        yield written
        yield GaugeMetricFamily("fleetgate_controller_sync_lag_seconds",
                                "Seconds the controller has had writes pending without catching up (0: in sync)",
                                value=self.lag())

    def describe(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        return iter(())
