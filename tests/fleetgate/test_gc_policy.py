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
    monkeypatch.setattr(process, "_grown", 1)
    try:
        with process.frozen_after_rebuild():  # a first full collection sets the baseline
            pass
        kept_by_full = process._frozen_after_full
        assert gc.isenabled() and kept_by_full > 0 and process._grown == 0
        node = Node()
        dead = weakref.ref(node)
        with process.frozen_after_rebuild():  # in flight while frozen: little growth, no collection
            pass
        assert process._frozen_after_full == kept_by_full
        del node
        gc.collect()
        assert dead() is not None, "a frozen cycle is beyond every collection"
        grown = int(process.REFREEZE_GROWTH * kept_by_full) + 1000
        with process.frozen_after_rebuild():
            kept = [[i] for i in range(grown)]  # the live objects of a growing fleet, made in a rebuild
        assert dead() is None, "the frozen objects grew by REFREEZE_GROWTH: one full collection freed the cycle"
        assert len(kept) == grown and process._frozen_after_full >= grown and process._grown == 0
    finally:
        gc.unfreeze()
