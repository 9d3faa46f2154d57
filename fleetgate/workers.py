"""`--workers N`: one /metrics for all the workers, summed.

Each worker counts its own traffic (the gateway's plain-dict collector, the DNS counters,
prometheus_client's own). prometheus_client's multiprocess mode covers only its own metric
classes, not custom collectors, so the workers aggregate at scrape time instead, for any
collector: worker 0 (the one with the admin listener) asks every other worker for its
metric families over a Unix socket in a private directory (mode 0700, made by the parent
before forking), and merges samples of equal name and labels:

- counters, histogram buckets, `_sum` and `_count`, and gauges that are amounts
  (connections, memory, file descriptors) are summed;
- gauges that are a state, a version or a time take the largest value (MAX_GAUGES and
  MAX_SUFFIXES: build and python info, config generation, reload, start and certificate
  timestamps, draining, member sync, source up, endpoint health, sync lag, max fds);
- `_created` samples take the earliest.

A worker that does not answer within PEER_TIMEOUT counts with the last families it sent
(so summed counters never go backwards, which Prometheus would read as a reset), and
`fleetgate_worker_up{worker}` says 0 for it. The peers send JSON, not pickle: a local
socket is still not a reason to execute what arrives on it.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

log = logging.getLogger("fleetgate.workers")

PEER_TIMEOUT = 2.0
MAX_GAUGES = frozenset({
    "fleetgate_draining", "fleetgate_member_sync_missing", "fleetgate_source_up",
    "fleetgate_upstream_endpoint_healthy", "fleetgate_controller_sync_lag_seconds", "process_max_fds",
})
MAX_SUFFIXES = ("_info", "_generation", "_timestamp_seconds", "_start_time_seconds")
_MAX_TYPES = frozenset({"info", "stateset"})


def socket_path(directory: str, worker: int) -> str:
    return str(Path(directory) / f"worker-{worker}.sock")


def encode(families: Iterable[Metric], *, worker: int) -> bytes:
    """One worker's families as JSON (name, type, help, unit, samples as [name, labels, value])."""
    return json.dumps({"worker": worker, "pid": os.getpid(), "families": [
        {"name": m.name, "type": m.type, "help": m.documentation, "unit": m.unit,
         "samples": [[s.name, s.labels, s.value] for s in m.samples]} for m in families]}).encode()


@dataclass
class Report:
    """What one worker sent: its index, its pid and its families."""
    worker: int
    pid: int
    families: list[Metric]
    at: float = field(default_factory=time.monotonic)


def decode(data: bytes) -> Report:
    doc = json.loads(data)
    families = []
    for f in doc["families"]:
        m = Metric(f["name"], f["help"], f["type"], f.get("unit") or "")
        for name, labels, value in f["samples"]:
            m.add_sample(name, {str(k): str(v) for k, v in labels.items()}, float(value))
        families.append(m)
    return Report(int(doc["worker"]), int(doc["pid"]), families)


def takes_max(family: Metric) -> bool:
    """A gauge that is a state, version or time: the workers' largest value, not their sum."""
    return (family.type in _MAX_TYPES
            or (family.type == "gauge" and (family.name in MAX_GAUGES or family.name.endswith(MAX_SUFFIXES))))


def merge(reports: Iterable[list[Metric]]) -> list[Metric]:
    """The families of every worker as one process's (see the module docstring for the rules).

    Families and samples keep the order they were first seen in, so a histogram's buckets
    of one label set stay together and in `le` order."""
    merged: dict[str, Metric] = {}
    index: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], int]] = {}
    for families in reports:
        for family in families:
            into = merged.get(family.name)
            if into is None:
                into = merged[family.name] = Metric(family.name, family.documentation, family.type, family.unit)
                index[family.name] = {}
            seen = index[family.name]
            use_max = takes_max(family)
            for s in family.samples:
                key = (s.name, tuple(sorted(s.labels.items())))
                at = seen.get(key)
                if at is None:
                    seen[key] = len(into.samples)
                    into.add_sample(s.name, dict(s.labels), s.value)
                    continue
                old = into.samples[at]
                if s.name.endswith("_created"):
                    value = min(old.value, s.value)
                elif use_max:
                    value = max(old.value, s.value)
                else:
                    value = old.value + s.value
                into.samples[at] = old._replace(value=value)
    return list(merged.values())


class MetricsPeer:
    """Worker i > 0: answers each connection on its Unix socket with its families (JSON)."""

    def __init__(self, path: str, worker: int, families: Callable[[], list[Metric]]) -> None:
        self.path = path
        self.worker = worker
        self.families = families  # AdminServer.families
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> "MetricsPeer":
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self._server = await asyncio.start_unix_server(self._answer, path=self.path)
        return self

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(encode(self.families(), worker=self.worker))
            await writer.drain()
        except (ConnectionError, OSError) as exc:
            log.debug("worker %d: metrics peer gone: %r", self.worker, exc)
        finally:
            writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


async def fetch(path: str, timeout: float = PEER_TIMEOUT) -> Report:
    """One peer's report; OSError, TimeoutError or ValueError when it cannot give one."""
    async def exchange() -> bytes:
        reader, writer = await asyncio.open_unix_connection(path)
        try:
            return await reader.read()
        finally:
            writer.close()
    return decode(await asyncio.wait_for(exchange(), timeout))


class WorkerMetrics:
    """Worker 0: its own families merged with every peer's, for AdminServer.aggregate."""

    def __init__(self, directory: str, workers: int, *, timeout: float = PEER_TIMEOUT) -> None:
        self.paths = {i: socket_path(directory, i) for i in range(1, workers)}
        self.timeout = timeout
        self.last: dict[int, Report] = {}  # each peer's last answer: used while it does not answer
        self.up: dict[int, bool] = {i: False for i in self.paths}

    async def _ask(self, worker: int) -> None:
        try:
            report = await fetch(self.paths[worker], self.timeout)
        except (OSError, asyncio.TimeoutError, ValueError, KeyError) as exc:
            if self.up.get(worker, True):
                log.warning("worker %d: no metrics (%r); counting its last answer", worker, exc)
            self.up[worker] = False
            return
        self.last[worker] = report
        self.up[worker] = True

    async def reports(self, own: list[Metric]) -> list[Report]:
        """Every worker's families, worker 0 (`own`) first; a peer that did not answer now
        comes with its last answer, or not at all before its first."""
        await asyncio.gather(*(self._ask(i) for i in self.paths))
        return [Report(0, os.getpid(), own)] + [self.last[i] for i in sorted(self.last)]

    async def aggregate(self, own: list[Metric]) -> list[Metric]:
        reports = await self.reports(own)
        up = GaugeMetricFamily("fleetgate_worker_up", "1 when the worker answered this scrape "
                               "(0: its last answer is counted)", labels=["worker"])
        up.add_metric(["0"], 1)
        for i in sorted(self.paths):
            up.add_metric([str(i)], 1 if self.up[i] else 0)
        return merge([r.families for r in reports]) + [up]

    async def debug(self, own: list[Metric], metric: str | None) -> list[dict[str, Any]]:
        """`/debug/workers[?metric=NAME]`: per worker its pid, whether it answered, and with
        `metric`, the sum of its samples of that name (which worker served what)."""
        reports = {r.worker: r for r in await self.reports(own)}
        rows: list[dict[str, Any]] = []
        for i in range(len(self.paths) + 1):
            r = reports.get(i)
            row: dict[str, Any] = {"worker": i, "pid": r.pid if r else None, "up": i == 0 or self.up[i]}
            if metric:
                row[metric] = sum(s.value for f in r.families for s in f.samples if s.name == metric) if r else None
            rows.append(row)
        return rows
