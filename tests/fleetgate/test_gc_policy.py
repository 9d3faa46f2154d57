"""The composition root's gc policy: frozen after each rebuild, yet no cyclic garbage kept for good."""
from __future__ import annotations

import gc
import time
import weakref

import pytest

from fleetgate import process


class Node:
    """One object in a reference cycle with itself (like a response and its connection)."""

    def __init__(self) -> None:
        self.me = self


def test_a_cycle_frozen_while_alive_is_collected_once_enough_cpu_was_used(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(process, "REFREEZE_MIN_CPU", 0.2)
    monkeypatch.setattr(process, "_last_full", (time.process_time(), 0.0))  # one just ended
    try:
        node = Node()
        dead = weakref.ref(node)
        with process.frozen_after_rebuild():  # in flight while frozen, no CPU used since: no collection
            pass
        assert gc.isenabled() and gc.get_freeze_count() > 0
        del node
        gc.collect()
        assert dead() is not None, "a frozen cycle is beyond every collection"
        spent = time.process_time() + 0.25
        while time.process_time() < spent:  # bounded: a quarter of a second of CPU
            sum(range(1000))
        with process.frozen_after_rebuild():
            pass
        assert dead() is None, "REFREEZE_MIN_CPU of work since the last full collection: one freed the cycle"
        ended, cost = process._last_full
        assert ended >= spent and cost >= 0
        with process.frozen_after_rebuild():  # right after: no second collection
            pass
        assert process._last_full == (ended, cost)
    finally:
        gc.unfreeze()
