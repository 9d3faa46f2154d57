"""FleetView: what every component receives instead of the Fleet itself.

One typed seam between the plumbing and the components: the current snapshot, one way to
follow it, readiness for /readyz, and the live capabilities a component may need, named
(`live_members`, `live_hub`) so no component probes a Source with `hasattr`.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, Generic, Mapping, Protocol, Sequence, TypeVar

from .config import FleetConfig
from .provider import Source
from .snapshot import FleetSnapshot

if TYPE_CHECKING:  # fleet.kube imports kubernetes_asyncio; only live fleets load it
    from .kube import KubeClient, Raw, Resource
    from .live import InFlight
    from .objects import KubeObject

log = logging.getLogger(__name__)

Follower = Callable[[FleetSnapshot], None]
Unfollow = Callable[[], None]
T = TypeVar("T")


def not_following() -> None:
    """What a component holds as its unfollow before it follows a fleet (and after)."""


class Followers(Generic[T]):
    """The callbacks following one publisher (the Fleet's snapshots, the derived objects):
    one follower's failure is logged and never stops the others."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._callbacks: list[Callable[[T], None]] = []

    def add(self, callback: Callable[[T], None]) -> Unfollow:
        self._callbacks.append(callback)

        def unfollow() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)
        return unfollow

    def publish(self, value: T) -> None:
        for callback in list(self._callbacks):
            try:
                callback(value)
            except Exception:
                log.exception("%s: follower %r failed", self.what, callback)

    def clear(self) -> None:
        self._callbacks.clear()


class LiveCluster(Source, Protocol):
    """A cluster served by its API server: what the writers need beyond a Source."""

    @property
    def client(self) -> "KubeClient":
        """The cluster's API client (the controller writes with it)."""

    def served_version(self, resource: "Resource") -> str:
        """The API version the cluster serves for `resource` (MCS CRDs may serve only v1alpha1)."""

    def current(self, kind: str, namespace: str, name: str) -> "KubeObject | None":
        """One object as the source holds it now (answers fed back by `event` included)."""

    def event(self, resource: "Resource", kind: str, raw: "Raw", parsed: "KubeObject | None" = None) -> None:
        """Feed a write's answer into the store, so the next snapshot already shows it
        (`parsed`: the view of `raw` when the caller has it, parse_object(raw) unchecked)."""

    def hint(self, kind: str, namespace: str, name: str,
             reuse: "Callable[[Raw], KubeObject | None] | None") -> None:
        """How to make the view of this object's next event without parsing it (or None: no hint)."""

    def writing(self, kind: str, namespace: str, name: str) -> "InFlight":
        """A write of this object begins: the result's `moved` says whether an event for it
        reached the store since (call its `done()` after the answer is handled)."""

    async def patch_ingress_status(self, namespace: str, name: str,
                                   ingress: Sequence[Mapping[str, Any]]) -> None:
        """Set status.loadBalancer.ingress of one Ingress."""


class FleetView(Protocol):
    """The fleet as a component sees it (fleet.fleet.Fleet implements it)."""

    @property
    def config(self) -> FleetConfig: ...

    @property
    def snapshot(self) -> FleetSnapshot: ...

    @property
    def ready(self) -> bool:
        """Every source has loaded once."""

    def missing(self) -> list[str]:
        """Sources not loaded yet (for /readyz)."""

    def unreachable(self) -> list[str]:
        """Sources whose last read failed (they serve their last known objects)."""

    def follow(self, callback: Follower) -> Unfollow:
        """Call `callback` with the current snapshot now and with every later one."""

    def live_members(self) -> Mapping[str, LiveCluster]:
        """The member clusters served by an API server, by name."""

    def live_hub(self) -> LiveCluster | None:
        """The hub when an API server serves it (a member or a separate source)."""
