"""DerivedPublisher: derives each fleet snapshot once and hands the result to its followers.

The file-mode /debug/imports, the live writer and the DNS zone builder all follow one
publisher, so under `fleetgate up` a snapshot costs one (incremental) derivation, not one
per component. Consumers served by an API server take their ClusterSetIPs from it (mcs.md:
only file mode allocates from clustersetIPRange); when every member is live nothing is
allocated at all.
"""
from __future__ import annotations

import contextlib
import logging
from typing import Callable, ContextManager

from fleet.snapshot import FleetSnapshot
from fleet.view import Followers, FleetView, Unfollow, not_following

from .derive import derive_imports
from .derived import DerivedFleet, DerivedFollower, DerivedSnapshot

log = logging.getLogger("fleetgate.controller")

Guard = Callable[[], ContextManager[None]]


class DerivedPublisher:
    """Follows a fleet; each new snapshot is derived once and published (a DerivedFeed)."""

    def __init__(self, fleet: FleetView, *, guard: Guard = contextlib.nullcontext) -> None:
        self.fleet = fleet
        self.guard = guard  # wraps each derivation and its followers (the root's gc policy)
        self.derivations = 0  # how many snapshots were derived: one per snapshot
        self._current: DerivedSnapshot | None = None
        self._followers: Followers[DerivedSnapshot] = Followers("controller: derived objects")
        self._unfollow: Unfollow = not_following

    @property
    def current(self) -> DerivedSnapshot | None:
        return self._current

    def start(self) -> "DerivedPublisher":
        self._unfollow = self.fleet.follow(self._on_snapshot)
        return self

    async def close(self) -> None:
        self._unfollow()
        self._unfollow = not_following
        self._followers.clear()

    def follow(self, callback: DerivedFollower) -> Unfollow:
        """Call `callback` with the current derivation now (if any) and every later one."""
        if self._current is not None:
            callback(self._current)
        return self._followers.add(callback)

    def _on_snapshot(self, snapshot: FleetSnapshot) -> None:
        live = tuple(self.fleet.live_members())
        allocate = any(m.name not in live for m in snapshot.members) or not snapshot.members
        previous = self._current.derived if self._current is not None else None
        with self.guard():
            derived: DerivedFleet = derive_imports(snapshot, allocate=allocate, unallocated=live,
                                                   previous=previous)
            self.derivations += 1
            for d in derived.diagnostics:
                log.warning("controller: %s", d)
            self._current = DerivedSnapshot(snapshot, derived)
            self._followers.publish(self._current)
