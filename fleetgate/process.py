"""Process-wide settings, set once by the composition root: event loop, gc, signals, logs.

No component sets any of these: a library that freezes the gc or installs a signal
handler would do it for every other component sharing the process under `up`.
"""
from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
import time
from typing import Awaitable, Callable, Iterator

log = logging.getLogger("fleetgate")

# After each derivation and the zone and tables built from it, move every object alive
# (the zone, the derivation state, the fleet's views: ~700k objects at 10,000 services) out
# of the cyclic GC's reach. A full collection over them took 0.4-0.8 s (bench/dns_vs_knot.py)
# and would stall answers and the next change whenever allocation counts trigger one;
# frozen, it takes ~0. They are acyclic and freed by reference counting when replaced
# (600 swaps: no growth). The collector is also paused during a rebuild (collections there
# scan the growing heap: about half of a from-scratch build). bench/ turns it off to
# measure the difference.
FREEZE_GC = True


REFREEZE_CPU_RATIO = 100  # a full collection once the process used 100x its last one's CPU since (<= 1 %)
REFREEZE_MIN_CPU = 5.0  # seconds of CPU between full collections at least
_last_full: tuple[float, float] = (0.0, 0.0)  # (process CPU when the last full collection ended, its cost)


@contextlib.contextmanager
def frozen_after_rebuild() -> Iterator[None]:
    """The gc policy around one rebuild (see FREEZE_GC): paused during, frozen after.

    A freeze also takes whatever is alive at that moment: an HTTP exchange in flight, a
    task's frames. When they end, their reference cycles are garbage no collection scans
    (bench/controller_scale.py --gc-check found 110k such objects after a cold start at
    1,000 services; collecting the young generations before each freeze did not help). So
    now and then everything is unfrozen and collected once: when the process has used
    REFREEZE_CPU_RATIO times the last full collection's CPU since it ended. Collections
    then cost at most 1/REFREEZE_CPU_RATIO of the CPU, and the garbage kept is what that
    much work makes; an idle process makes none and collects none. (Counting frozen objects
    is no trigger: gc.get_freeze_count() walks the whole frozen list, 28 ms per 100k objects,
    and gc.get_count() cannot tell frozen objects that died since.) The one such cycle the
    controller made, the writer's checked view of a snapshot, is gone (controller/writer.py
    _Stale): a converged 1,000-service controller now has no garbage at all, so this is a
    safety net, kept rare (each collection stalls: ~0.3 s at 1,000 services, more at 10,000)."""
    global _last_full
    if not FREEZE_GC:
        yield
        return
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        yield
        gc.freeze()  # before enable: the rebuild's objects leave the young generation unscanned
        ended, cost = _last_full
        now = time.process_time()
        if now - ended >= max(REFREEZE_MIN_CPU, REFREEZE_CPU_RATIO * cost):
            gc.unfreeze()
            found = gc.collect()
            gc.freeze()
            done = time.process_time()
            _last_full = (done, done - now)
            log.info("gc: a full collection found %d unreachable objects (%.0f ms CPU)", found, (done - now) * 1000)
    finally:
        if paused:
            gc.enable()


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JSON_FIELDS = ("component", "cluster", "ingress", "object")  # on every JSON line, null when unknown
_COMPONENTS = {"dnsplugin": "dns", "health": "gateway", "mirror": "gateway", "demo": "fleetgate"}


def component_of(logger: str, default: str) -> str:
    """`fleetgate.gateway.status` -> gateway, `dnsplugin.server` -> dns, `fleet.live` -> fleet;
    the bare `fleetgate` logger is the command itself (`default`)."""
    parts = logger.split(".")
    if parts[0] == "fleetgate":
        parts = parts[1:]
    if not parts or not parts[0]:
        return default
    return _COMPONENTS.get(parts[0], parts[0])


class ContextFilter(logging.Filter):
    """Gives every record the JSON_FIELDS. `extra={"cluster": ...}` wins; otherwise they
    are read from what the message already carries: the `source %s: ...` and `cluster %s:
    ...` conventions name a member cluster (or the hub), and a Diagnostic argument names its object
    (an Ingress object is the ingress too). Nothing is parsed out of formatted text."""

    def __init__(self, command: str) -> None:
        super().__init__()
        self.command = command

    def filter(self, record: logging.LogRecord) -> bool:
        d = record.__dict__
        if d.get("component") is None:
            d["component"] = component_of(record.name, self.command)
        args = record.args if isinstance(record.args, tuple) else ()
        if d.get("cluster") is None:
            msg = record.msg if isinstance(record.msg, str) else ""
            named = msg.startswith(("source %s", "cluster %s"))
            d["cluster"] = args[0] if named and args and isinstance(args[0], str) else None
        if d.get("object") is None:
            d["object"] = next((str(getattr(a, "object")) for a in args
                                if type(a).__name__ == "Diagnostic"), None)
        if d.get("ingress") is None:
            obj = d["object"]
            d["ingress"] = obj.split("/", 1)[1] if isinstance(obj, str) and obj.startswith("Ingress/") else None
        return True


def setup_logging(level: str, fmt: str = "text", command: str = "fleetgate") -> None:
    """The process's one log handler, on stderr: `text` (one readable line) or `json` (one
    JSON object per line through python-json-logger: time (ISO 8601, UTC), level, logger, message and the
    JSON_FIELDS on every line)."""
    handler = logging.StreamHandler()
    handler.addFilter(ContextFilter(command))
    if fmt == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(JsonFormatter(
            "%(levelname)s %(name)s %(message)s " + " ".join(f"%({f})s" for f in JSON_FIELDS),
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp="time"))  # ISO 8601, UTC
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))


def new_loop() -> asyncio.AbstractEventLoop:
    """uvloop: the event loop every fleetgate process runs on."""
    try:
        import uvloop
        return uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - uvloop is a dependency
        return asyncio.new_event_loop()


class StartupError(Exception):
    """A problem that stops a command at start: printed as one line, exit 2."""


def run_until_signal(main: Callable[[asyncio.Event], Awaitable[None]]) -> int:
    """Run main(stop_event) on a fresh uvloop; SIGTERM/SIGINT set the event."""
    loop = new_loop()
    asyncio.set_event_loop(loop)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        loop.run_until_complete(main(stop))
        return 0
    except StartupError as exc:
        print(f"fleetgate: {exc}", file=sys.stderr)
        return 2
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
