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


@contextlib.contextmanager
def frozen_after_rebuild() -> Iterator[None]:
    """The gc policy around one rebuild (see FREEZE_GC): paused during, frozen after."""
    if not FREEZE_GC:
        yield
        return
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        yield
        gc.freeze()  # before enable: the rebuild's objects leave the young generation unscanned
    finally:
        if paused:
            gc.enable()


def setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


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
