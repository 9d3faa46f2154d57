"""The provider interface: how cluster objects reach fleetgate, from files or a live API.

A Source yields one cluster's objects; the Fleet (fleet/fleet.py) owns one Source per
cluster (the hub may share a member's), rebuilds one FleetSnapshot per burst of changes and
hands it to subscribers. File folders and kubeconfigs implement the same Source, so the
gateway, controller and DNS responder never know where objects came from.
"""
from __future__ import annotations

from typing import Callable, Protocol, runtime_checkable

from .snapshot import ClusterObjects, Diagnostic


@runtime_checkable
class Source(Protocol):
    """One cluster's objects. Implementations: FileSource (fleet/files.py), LiveSource."""

    name: str  # cluster name, or "hub" for a hub that is not a member

    @property
    def loaded(self) -> bool:
        """True once the first complete load (files read / initial list) has finished."""

    @property
    def reachable(self) -> bool:
        """False while the last attempt to read the source failed (objects are the last known)."""

    @property
    def objects(self) -> ClusterObjects:
        """The last good objects; never a half-applied change."""

    @property
    def diagnostics(self) -> tuple[Diagnostic, ...]:
        """Problems with the current input (bad files/objects), newest state only."""

    async def start(self, on_change: Callable[[], None]) -> None:
        """Load once, then keep following changes in the background, calling on_change
        (from the event loop) after each change of `objects` or `diagnostics`."""

    async def stop(self) -> None:
        """Stop following changes and release resources."""
