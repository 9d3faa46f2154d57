"""The composition root's gc policy: frozen after each rebuild, yet no cyclic garbage kept for good."""
from __future__ import annotations

import gc
import weakref

import pytest

from fleetgate import process


class Node:
    """One object in a reference cycle with itself (like a response and its connection)."""

    def __init__(self) -> None:
        self.me = self


def test_a_cycle_frozen_while_alive_is_collected_once_the_frozen_objects_grow(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(process, "REFREEZE_FLOOR", 0)
    monkeypatch.setattr(process, "_frozen_after_full", 0)
    try:
        with process.frozen_after_rebuild():  # a first full collection sets the baseline
            pass
        assert gc.isenabled() and gc.get_freeze_count() > 0
        node = Node()
        dead = weakref.ref(node)
        with process.frozen_after_rebuild():  # in flight while frozen: no growth, no collection
            pass
        del node
        gc.collect()
        assert dead() is not None, "a frozen cycle is beyond every collection"
        grown = int(process.REFREEZE_GROWTH * gc.get_freeze_count()) - gc.get_freeze_count() + 1000
        kept = [[i] for i in range(grown)]  # the live objects of a growing fleet
        with process.frozen_after_rebuild():
            pass
        assert dead() is None, "frozen objects grew by half: one full collection freed the cycle"
        assert len(kept) == grown and gc.get_freeze_count() >= grown
    finally:
        gc.unfreeze()
