"""The Fleet: one Source per cluster (+ the hub's), aggregated into FleetSnapshots.

Sources report changes; the Fleet rebuilds at once (next event-loop turn) after a quiet
spell, and coalesces a burst into one rebuild at most every COALESCE_DELAY: a lone change
is never held back by a batching interval, a storm costs at most 50 rebuilds a second. It skips the rebuild when no source's objects (by identity) or diagnostics changed,
and hands each new snapshot (version + 1) to its followers on the event loop.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Callable, Iterable, Mapping, Sequence

from .config import HUB_SOURCE_NAME, FleetConfig, FleetConfigError, SourceSpec
from .files import DEFAULT_POLL_INTERVAL, FileSource, FolderState
from .provider import Source
from .snapshot import (EMPTY_CLUSTER, ClusterName, ClusterObjects, Diagnostic, FleetSnapshot,
                       MemberCluster)
from .view import Follower, Followers, LiveCluster, Unfollow, not_following

__all__ = ["Fleet", "LiveFactory", "build_snapshot", "load_fleet_once", "not_following"]

log = logging.getLogger(__name__)

COALESCE_DELAY = 0.02  # seconds between two rebuilds at most (a lone change waits for none)

LiveFactory = Callable[[str, SourceSpec], LiveCluster]


def _no_live(config: FleetConfig, name: str) -> FleetConfigError:
    names = [c.name for c in config.clusters]
    where = f"clusters[{names.index(name)}]" if name in names else "hub"
    return FleetConfigError(f"{config.path}: {where}.kubeconfig: live sources need the live "
                            "(kubeconfig) provider, which is not available here; use manifests:")


def build_snapshot(config: FleetConfig, hub: ClusterObjects, members: Sequence[ClusterObjects],
                   diagnostics: tuple[Diagnostic, ...], version: int) -> FleetSnapshot:
    """The snapshot of one moment: `members` in fleet.yaml order."""
    return FleetSnapshot(
        hub=hub,
        members=tuple(MemberCluster(name=ClusterName(spec.name), zone=spec.zone, objects=objs)
                      for spec, objs in zip(config.clusters, members)),
        zone=config.zone, clusterset_ip_range=config.clusterset_ip_range,
        version=version, diagnostics=diagnostics, import_mode=config.import_mode)


class Fleet:
    """Owns the sources, publishes FleetSnapshots (a FleetView). Use `from_config`, then
    `await start()`."""

    def __init__(self, config: FleetConfig, members: Sequence[Source], hub: Source | None, *,
                 live: Iterable[LiveCluster] = ()) -> None:
        if len(members) != len(config.clusters):
            raise ValueError("one Source per cluster in the config is required")
        self.config = config
        self._members = tuple(members)
        self._hub = hub
        # each Source once: a separate hub first, then the members (a shared hub is a member)
        separate_hub = hub is not None and all(hub is not m for m in self._members)
        self._sources: tuple[Source, ...] = ((hub,) if separate_hub and hub else ()) + self._members
        self._live: dict[str, LiveCluster] = {s.name: s for s in live}
        self._followers: Followers[FleetSnapshot] = Followers("fleet")
        self._snapshot = build_snapshot(config, EMPTY_CLUSTER, [EMPTY_CLUSTER] * len(members), (), 0)
        self._inputs: tuple[ClusterObjects, ...] | None = None
        self._handle: asyncio.Handle | None = None
        self._last_rebuild = float("-inf")  # loop time of the last rebuild
        self._started = False
        self.rebuild_count = 0  # rebuilds run, published or skipped as unchanged

    @classmethod
    def from_config(cls, config: FleetConfig, *, live_factory: LiveFactory | None = None,
                    poll_interval: float = DEFAULT_POLL_INTERVAL) -> "Fleet":
        """One FileSource per manifests folder; kubeconfig sources come from live_factory."""
        live: list[LiveCluster] = []

        def make(name: str, spec: SourceSpec) -> Source:
            if spec.manifests is not None:
                return FileSource(name, spec.manifests, poll_interval=poll_interval)
            if live_factory is None:
                raise _no_live(config, name)
            source = live_factory(name, spec)
            live.append(source)
            return source

        members = [make(c.name, c.source) for c in config.clusters]
        hub: Source | None = None
        if config.hub_cluster is not None:
            hub = members[[c.name for c in config.clusters].index(config.hub_cluster)]
        elif config.hub is not None:
            hub = make(HUB_SOURCE_NAME, config.hub)
        return cls(config, members, hub, live=live)

    # --- state ------------------------------------------------------------------------

    @property
    def snapshot(self) -> FleetSnapshot:
        return self._snapshot

    @property
    def sources(self) -> tuple[Source, ...]:
        return self._sources

    @property
    def ready(self) -> bool:
        return self._started and all(s.loaded for s in self._sources)

    def missing(self) -> list[str]:
        return [s.name for s in self._sources if not s.loaded]

    def unreachable(self) -> list[str]:
        return [s.name for s in self._sources if not s.reachable]

    def diagnostics(self) -> tuple[Diagnostic, ...]:
        return self._snapshot.diagnostics

    def follow(self, callback: Follower) -> Unfollow:
        """Call `callback` with the current snapshot now and, on the loop, with every later
        one (the one way a component follows the fleet); returns the unfollow."""
        callback(self.snapshot)
        return self._followers.add(callback)

    def live_members(self) -> Mapping[str, LiveCluster]:
        names = {c.name for c in self.config.clusters}
        return {name: s for name, s in self._live.items() if name in names}

    def live_hub(self) -> LiveCluster | None:
        config = self.config
        name = config.hub_cluster or (HUB_SOURCE_NAME if config.hub is not None else None)
        return self._live.get(name) if name else None

    # --- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        """Start every source concurrently (each returns after its first load), then
        publish the first snapshot."""
        results = await asyncio.gather(*(s.start(self._on_source_change) for s in self._sources),
                                       return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            await asyncio.gather(*(s.stop() for s, r in zip(self._sources, results)
                                   if not isinstance(r, BaseException)), return_exceptions=True)
            raise errors[0]
        self._started = True
        self._cancel_pending()
        self._rebuild()
        log.info("fleet: started %d sources (%s); ready=%s", len(self._sources),
                 ", ".join(s.name for s in self._sources), self.ready)

    async def stop(self) -> None:
        self._started = False
        self._cancel_pending()
        results = await asyncio.gather(*(s.stop() for s in self._sources), return_exceptions=True)
        for source, result in zip(self._sources, results):
            if isinstance(result, BaseException):
                log.warning("fleet: stopping source %s failed: %r", source.name, result)

    def _cancel_pending(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _on_source_change(self) -> None:
        """Schedule one rebuild for the whole burst; changes during start wait for it."""
        if not self._started or self._handle is not None:
            return
        loop = asyncio.get_running_loop()
        wait = self._last_rebuild + COALESCE_DELAY - loop.time()
        self._handle = loop.call_later(wait, self._rebuild) if wait > 0 else loop.call_soon(self._rebuild)

    def _rebuild(self) -> None:
        self._handle = None
        self._last_rebuild = asyncio.get_running_loop().time()
        self.rebuild_count += 1
        hub = self._hub.objects if self._hub is not None else EMPTY_CLUSTER
        members = [s.objects for s in self._members]
        inputs = (hub, *members)
        diagnostics = tuple(d for s in self._sources for d in s.diagnostics)
        if (self._inputs is not None and len(inputs) == len(self._inputs)
                and all(a is b for a, b in zip(inputs, self._inputs))
                and diagnostics == self._snapshot.diagnostics):
            return
        self._inputs = inputs
        self._snapshot = build_snapshot(self.config, hub, members, diagnostics,
                                        self._snapshot.version + 1)
        log.info("fleet: snapshot %d (%d diagnostics)", self._snapshot.version, len(diagnostics))
        self._followers.publish(self._snapshot)


def load_fleet_once(config: FleetConfig) -> FleetSnapshot:
    """Read every manifests folder once, without an event loop (`fleetgate validate`,
    tests of pure builders). Same per-file rules as the running Fleet's first load."""
    states: dict[str, FolderState] = {}

    def read(name: str, spec: SourceSpec) -> FolderState:
        if spec.manifests is None:
            raise _no_live(config, name)
        state = FolderState(spec.manifests)
        state.scan()
        states[name] = state
        return state

    members = [read(c.name, c.source) for c in config.clusters]
    hub = None
    if config.hub_cluster is not None:
        hub = states[config.hub_cluster]
    elif config.hub is not None:
        hub = read(HUB_SOURCE_NAME, config.hub)
    ordered = ([hub] if hub is not None and config.hub is not None else []) + members
    diagnostics = tuple(d for s in ordered for d in s.diagnostics)
    return build_snapshot(config, hub.objects if hub is not None else EMPTY_CLUSTER,
                          [m.objects for m in members], diagnostics, 1)
