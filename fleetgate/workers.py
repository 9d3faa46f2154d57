"""`--workers N`: one /metrics for all the workers, summed.

Each worker counts its own traffic (the gateway's plain-dict collector, the DNS counters,
prometheus_client's own). prometheus_client's multiprocess mode covers only its own metric
classes, not custom collectors, so the workers aggregate at scrape time instead, for any
collector: worker 0 (the one with the admin listener) asks every other worker for its
exposition (the text it would serve itself) over a Unix socket in a private directory
(mode 0700, made by the parent before forking), and merges samples of equal name and
labels (prometheus_client writes labels sorted, so equal series are equal text):

- counters, histogram buckets, `_sum` and `_count`, and gauges that are amounts
  (connections, memory, file descriptors) are summed;
- gauges that are a state, a version or a time take the largest value (MAX_GAUGES and
  MAX_SUFFIXES: build and python info, config generation, reload, start and certificate
  timestamps, draining, member sync, source up, endpoint health, sync lag, max fds);
- `_created` samples take the earliest.

Merging text keyed by the series' text is a dict update per line: 12,000 series from each
of 4 workers merge in tens of milliseconds, on worker 0's loop, once per scrape.

A worker that does not answer within PEER_TIMEOUT counts with the last exposition it sent
(so summed counters never go backwards, which Prometheus would read as a reset), and
`fleetgate_worker_up{worker}` says 0 for it.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from prometheus_client.utils import floatToGoString

log = logging.getLogger("fleetgate.workers")

PEER_TIMEOUT = 2.0
MAX_GAUGES = frozenset({
    "fleetgate_draining", "fleetgate_member_sync_missing", "fleetgate_source_up",
    "fleetgate_upstream_endpoint_healthy", "fleetgate_controller_sync_lag_seconds", "process_max_fds",
})
MAX_SUFFIXES = ("_info", "_generation", "_timestamp_seconds", "_start_time_seconds")
_MAX_TYPES = frozenset({"info", "stateset"})
_WHO = re.compile(r"# fleetgate worker (\d+) pid (\d+)")


def socket_path(directory: str, worker: int) -> str:
    return str(Path(directory) / f"worker-{worker}.sock")


def takes_max(name: str, kind: str) -> bool:
    """A gauge that is a state, version or time: the workers' largest value, not their sum."""
    return kind in _MAX_TYPES or (kind == "gauge" and (name in MAX_GAUGES or name.endswith(MAX_SUFFIXES)))


class _Family:
    __slots__ = ("head", "rule", "samples")

    def __init__(self, name: str, kind: str, head: list[str]) -> None:
        self.head = head  # its HELP and TYPE lines
        self.rule = min if name.endswith("_created") else max if takes_max(name, kind) else None
        self.samples: dict[str, float] = {}  # the series' text (name{labels}) -> value


def _series(line: str) -> tuple[str, float]:
    """`name{labels} value [timestamp]` -> (`name{labels}`, value); a timestamp is dropped."""
    brace = line.rfind("}")
    if brace >= 0:
        return line[:brace + 1], float(line[brace + 1:].split()[0])
    key, _, rest = line.partition(" ")
    return key, float(rest.split()[0])


def merge(expositions: Iterable[str]) -> str:
    """Every worker's exposition as one process's (see the module docstring for the rules).

    Families and series keep the order they were first seen in, so a histogram's buckets
    of one label set stay together and in `le` order."""
    families: dict[str, _Family] = {}
    for text in expositions:
        family = families.setdefault("", _Family("", "untyped", []))  # samples before any TYPE
        help_line: str | None = None
        for line in text.splitlines():
            if not line:
                continue
            if line[0] == "#":
                if line.startswith("# HELP "):
                    help_line = line
                elif line.startswith("# TYPE "):
                    _, _, name, kind = line.split(" ", 3)
                    family = families.get(name)  # type: ignore[assignment]
                    if family is None:
                        family = families[name] = _Family(name, kind, [help_line, line] if help_line else [line])
                    help_line = None
                continue
            key, value = _series(line)
            old = family.samples.get(key)
            if old is None:
                family.samples[key] = value
            elif family.rule is None:
                family.samples[key] = old + value
            else:
                family.samples[key] = family.rule(old, value)
    out: list[str] = []
    for family in families.values():
        out += family.head
        out += [f"{key} {floatToGoString(value)}" for key, value in family.samples.items()]
    return "\n".join(out) + "\n"


def sample_sum(text: str, name: str) -> float:
    """The sum of the samples named `name` in an exposition."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name):len(name) + 1] in ("{", " "):
            total += _series(line)[1]
    return total


@dataclass
class Report:
    """What one worker sent: its index, its pid and its exposition."""
    worker: int
    pid: int
    text: str
    at: float = field(default_factory=time.monotonic)


def encode(exposition: bytes, *, worker: int) -> bytes:
    """One worker's answer: a comment naming it, then its exposition."""
    return b"# fleetgate worker %d pid %d\n" % (worker, os.getpid()) + exposition


def decode(data: bytes) -> Report:
    text = data.decode()
    first, _, _ = text.partition("\n")
    who = _WHO.fullmatch(first)
    if who is None:
        raise ValueError("not a worker's exposition")
    return Report(int(who.group(1)), int(who.group(2)), text)


class MetricsPeer:
    """Worker i > 0: answers each connection on its Unix socket with its exposition."""

    def __init__(self, path: str, worker: int, exposition: Callable[[], bytes]) -> None:
        self.path = path
        self.worker = worker
        self.exposition = exposition  # AdminServer.exposition
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> "MetricsPeer":
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self._server = await asyncio.start_unix_server(self._answer, path=self.path)
        return self

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(encode(self.exposition(), worker=self.worker))
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
    """Worker 0: its own exposition merged with every peer's, for AdminServer.aggregate."""

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

    async def reports(self, own: bytes) -> list[Report]:
        """Every worker's exposition, worker 0 (`own`) first; a peer that did not answer now
        comes with its last answer, or not at all before its first."""
        await asyncio.gather(*(self._ask(i) for i in self.paths))
        return [Report(0, os.getpid(), own.decode())] + [self.last[i] for i in sorted(self.last)]

    async def aggregate(self, own: bytes) -> bytes:
        reports = await self.reports(own)
        up = ["# HELP fleetgate_worker_up 1 when the worker answered this scrape (0: its last answer is counted)",
              "# TYPE fleetgate_worker_up gauge", 'fleetgate_worker_up{worker="0"} 1.0']
        up += [f'fleetgate_worker_up{{worker="{i}"}} {1.0 if self.up[i] else 0.0}' for i in sorted(self.paths)]
        return (merge(r.text for r in reports) + "\n".join(up) + "\n").encode()

    async def debug(self, own: bytes, metric: str | None) -> list[dict[str, Any]]:
        """`/debug/workers[?metric=NAME]`: per worker its pid, whether it answered, and with
        `metric`, the sum of its samples of that name (which worker served what)."""
        reports = {r.worker: r for r in await self.reports(own)}
        rows: list[dict[str, Any]] = []
        for i in range(len(self.paths) + 1):
            r = reports.get(i)
            row: dict[str, Any] = {"worker": i, "pid": r.pid if r else None, "up": i == 0 or self.up[i]}
            if metric:
                row[metric] = sample_sum(r.text, metric) if r else None
            rows.append(row)
        return rows
