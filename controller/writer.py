"""Live mode: write the derived MCS objects and ServiceExport status to live member clusters.

The LiveWriter follows the DerivedPublisher (each snapshot derived once for every
component; a live member's `amcs-` ClusterIPs come from its API server) and wakes every
live member's worker. A worker plans against its source's current objects
(reconcile.plan_cluster, pure), sends the writes one at a time and puts each answer into
the source's store at once, so its next plan already sees it and a snapshot that predates
a write never makes it write again. Members are independent: one worker per cluster, so
an API server that hangs or is down (retried with backoff) never holds up the others.
"""
from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone
from typing import Callable, Mapping, Protocol

from prometheus_client import Counter

from fleet.kube import (ENDPOINT_SLICES, SERVICE_EXPORTS, SERVICE_IMPORTS, SERVICES, KubeError, Raw,
                        Resource, Unreachable)
from fleet.objects import KubeObject
from fleet.tasks import cancel_and_wait
from fleet.view import FleetView, LiveCluster, Unfollow, not_following

from .clusterid import publish_cluster_id
from .derived import DerivedFeed, DerivedFleet, DerivedSnapshot
from .leader import LeaderElector, LeaderOptions, options_from_env
from .reconcile import CREATE, DELETE, STATUS, PlanMemo, Write, plan_cluster

log = logging.getLogger("fleetgate.controller.writer")

RETRY_BASE = 0.2
RETRY_CAP = 5.0
PASSES_PER_WAKE = 4  # plan/write rounds per wake-up; more waits for the next snapshot

RESOURCES: Mapping[str, Resource] = {r.kind: r for r in (SERVICE_IMPORTS, SERVICES, ENDPOINT_SLICES,
                                                         SERVICE_EXPORTS)}

RECONCILES = Counter("fleetgate_controller_reconcile_total",
                     "Live-mode write passes per member cluster, by result (ok: every write "
                     "accepted; error: some failed and are retried).", ["result"])


class Leader(Protocol):
    @property
    def is_leader(self) -> bool: ...


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class ClusterWorker:
    """Sends one member cluster's writes, one at a time, while there are any."""

    def __init__(self, owner: "LiveWriter", name: str, source: LiveCluster) -> None:
        self.owner = owner
        self.name = name
        self.source = source
        self.writes = 0
        self.cluster_id: str | None = None  # publish_cluster_id's outcome, once it has one
        self.memo: PlanMemo = {}  # what the last plans found converged (reconcile.plan_cluster)
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"controller-writer:{self.name}")

    async def close(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _publish_cluster_id(self) -> None:
        if self.cluster_id is not None or not self.owner.may_write() or not self.source.loaded:
            return
        try:
            self.cluster_id = await publish_cluster_id(self.source.client, self.name)
        except (KubeError, Unreachable) as exc:  # tried again at the next wake-up
            log.warning("cluster %s: cluster ID not published: %s", self.name, exc)

    async def _run(self) -> None:
        await self._publish_cluster_id()
        delay = RETRY_BASE
        passes = 0
        while passes < PASSES_PER_WAKE:
            todo = self.owner.plan(self.name)
            if not todo:
                return
            passes += 1
            wait = await self._send(todo)
            RECONCILES.labels(result="ok" if wait is None else "error").inc()
            if wait is not None:
                passes = 0  # a failed pass is retried until it succeeds
                await asyncio.sleep(max(delay, wait))
                delay = min(RETRY_CAP, delay * 2)
            else:
                delay = RETRY_BASE

    async def _send(self, todo: list[Write]) -> float | None:
        """Send `todo` in order; None when every write went through, else how long to wait."""
        wait: float | None = None
        for w in todo:
            if not self.owner.may_write():
                return None
            try:
                await self._write(w)
            except asyncio.CancelledError:
                raise
            except Unreachable as exc:
                log.warning("cluster %s: %s not written, API server unreachable: %s", self.name, w, exc)
                return RETRY_BASE  # the rest would fail too; back off
            except KubeError as exc:
                if exc.conflict:  # our view was stale: the watch brings the news, then plan again
                    log.info("cluster %s: %s: conflict (%s); planning again", self.name, w, exc.message)
                else:
                    log.warning("cluster %s: %s failed: %s", self.name, w, exc)
                wait = max(wait or 0.0, exc.retry_after or 0.0)
                continue
            self.writes += 1
        return wait

    async def _write(self, w: Write) -> None:
        resource = RESOURCES[w.kind]
        version = self.source.served_version(resource)
        client = self.source.client
        base = self.source.current(w.kind, w.namespace, w.name)
        try:
            if w.op == CREATE:
                assert w.body is not None
                body = {**w.body, "apiVersion": resource.api_version(version)}
                try:
                    raw = await client.create(resource, version, body)
                except KubeError as exc:
                    if exc.conflict:  # AlreadyExists: we had not seen it yet; learn it now
                        self._learn(resource, "ADDED", await client.get(resource, version, w.namespace, w.name), None)
                    raise
                log.info("cluster %s: created %s/%s/%s", self.name, w.kind, w.namespace, w.name)
                self._learn(resource, "ADDED", raw, base)
            elif w.op == DELETE:
                await client.delete(resource, version, w.namespace, w.name, uid=w.uid,
                                    resource_version=w.resource_version)
                log.info("cluster %s: deleted %s/%s/%s", self.name, w.kind, w.namespace, w.name)
                self._learn(resource, "DELETED", {"metadata": {"name": w.name, "namespace": w.namespace}}, base)
            else:
                assert w.body is not None
                raw = await client.merge_patch(resource, version, w.namespace, w.name, w.body,
                                               subresource="status" if w.op == STATUS else None)
                log.info("cluster %s: %s %s/%s/%s", self.name, "wrote status of" if w.op == STATUS else "updated",
                         w.kind, w.namespace, w.name)
                self._learn(resource, "MODIFIED", raw, base)
        except KubeError as exc:
            if exc.not_found and w.op != CREATE:  # already gone: the watch will say so too
                self._learn(resource, "DELETED", {"metadata": {"name": w.name, "namespace": w.namespace}}, base)
                if w.op == DELETE:
                    return
            raise

    def _learn(self, resource: Resource, event: str, raw: Raw, base: KubeObject | None) -> None:
        """Put an answer into the source's store, unless the watch already moved the object
        past the version this write was planned from (an older answer must not win)."""
        meta = raw.get("metadata") or {}
        now = self.source.current(resource.kind, str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        if now is not base:
            return
        self.source.event(resource, event, raw)


class LiveWriter:
    """Follows a fleet and writes to its live members (see the module docstring)."""

    def __init__(self, feed: DerivedFeed, sources: Mapping[str, LiveCluster], *, leader: Leader | None = None,
                 clock: Callable[[], str] = now_rfc3339) -> None:
        self.feed = feed
        self.leader = leader
        self.clock = clock
        self.derived: DerivedFleet | None = None
        self.workers = {name: ClusterWorker(self, name, source) for name, source in sources.items()}
        self._unfollow: Unfollow = not_following

    @property
    def writes(self) -> int:
        return sum(w.writes for w in self.workers.values())

    def may_write(self) -> bool:
        return self.leader is None or self.leader.is_leader

    def start(self) -> None:
        self._unfollow = self.feed.follow(self._on_derived)

    async def close(self) -> None:
        self._unfollow()
        self._unfollow = not_following
        for worker in self.workers.values():
            await worker.close()

    def wake(self) -> None:
        """Plan and write everywhere (a new snapshot, or leadership gained)."""
        if not self.may_write():
            return
        for worker in self.workers.values():
            worker.wake()

    def _on_derived(self, current: DerivedSnapshot) -> None:
        self.derived = current.derived
        self.wake()

    def plan(self, cluster: str) -> list[Write]:
        derived, source = self.derived, self.workers[cluster].source
        if derived is None or not source.loaded or not self.may_write():
            return []  # no plan from a cluster we have not listed: it would recreate everything
        conditions = {(ns, name): conds for (c, ns, name), conds in derived.export_conditions.items()
                      if c == cluster}
        return plan_cluster(derived.per_cluster.get(cluster), source.objects, conditions=conditions,
                            now=self.clock(), memo=self.workers[cluster].memo)


class LiveController:
    """The LiveWriter plus, with --leader-elect, the LeaderElector that gates it."""

    def __init__(self, writer: LiveWriter, elector: LeaderElector | None) -> None:
        self.writer = writer
        self.elector = elector

    async def close(self, *, release: bool = True) -> None:
        await self.writer.close()
        if self.elector is not None:
            await self.elector.close(release=release)


def start_live_controller(fleet: FleetView, feed: DerivedFeed, *, leader_elect: bool = False,
                          leader_options: LeaderOptions | None = None) -> LiveController | None:
    """Write `feed`'s derived objects to the fleet's live members (None when it has none);
    with leader_elect, only while holding the Lease on the hub, which must then be live."""
    members = fleet.live_members()
    elector = None
    if leader_elect:
        hub = fleet.live_hub()
        if hub is None:
            log.warning("--leader-elect: the hub is not a live cluster, so there is no Lease to hold; "
                        "writing without leader election")
        elif members:
            elector = LeaderElector(hub.client, leader_options or options_from_env())
    if not members:
        return None
    writer = LiveWriter(feed, members, leader=elector)
    if elector is not None:
        elector.on_change = lambda leader: writer.wake() if leader else None
        elector.start()
    writer.start()
    log.info("controller: writing derived MCS objects to %s%s", ", ".join(sorted(members)),
             " while holding the Lease" if elector is not None else "")
    return LiveController(writer, elector)
