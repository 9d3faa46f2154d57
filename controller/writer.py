"""Live mode: write the derived MCS objects and ServiceExport status to live member clusters.

The LiveWriter follows the DerivedPublisher (each snapshot derived once for every
component; a live member's `amcs-` ClusterIPs come from its API server). Work is keyed by
exported name: each derivation says which names it recomputed, each member's objects say
which names a watch event touched (controller/keyed.py), and only those keys are planned
(reconcile.plan_key) and written. A full resync (start, leadership gained) is the same
path with every key dirty.

Per member, up to `max_concurrent` keys are written at once and at most `max_concurrent`
writes are in flight; the writes of one key keep
their order (its ServiceImport before the Service and slices that name it as owner, the
Service before its slices, deletions dependents first; the other objects of a key whose
import exists go together, see ClusterWorker._send), and a key changed again while in flight is planned once more after,
against the answers it got: a burst to one key is one write, a lone change is written at
once. Each answer goes into the source's store at once, and a key is planned only from a
derivation that has seen its objects as the store holds them (else it waits for the
derivation under way): a plan never repeats a write the store has seen, nor mixes an old
derivation with newer objects (writer idle means derived and written). Members are independent (one queue each): an API server that
hangs or is down (retried with backoff) never holds up the others. A TokenBucket per
member (qps/burst) keeps a cold start from flooding a small API server.
"""
from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Mapping, Protocol

from prometheus_client import Counter

from fleet.kube import (ENDPOINT_SLICES, SERVICE_EXPORTS, SERVICE_IMPORTS, SERVICES, KubeError, Raw,
                        Resource, Unreachable)
from fleet.objects import KubeObject
from fleet.snapshot import ClusterObjects
from fleet.tasks import cancel_and_wait
from fleet.live import InFlight
from fleet.view import FleetView, LiveCluster, Unfollow, not_following

from .answers import reuse_answer
from .clusterid import publish_cluster_id
from .derived import DerivedFeed, DerivedFleet, DerivedSnapshot
from .keyed import GroupKey, KeyedCluster
from .leader import LeaderElector, LeaderOptions, options_from_env
from .ratelimit import TokenBucket
from .reconcile import CREATE, DELETE, STATUS, Write, plan_cluster

log = logging.getLogger("fleetgate.controller.writer")

RETRY_BASE = 0.2
RETRY_CAP = 5.0
PASSES_PER_CHANGE = 4  # plan/write rounds of one key per change to it; more waits for the next
BULK = 64  # a derivation marking more keys than this is bulk work (a cold start, a cluster loading):
# it queues behind the small changes, so a lone change is written at once even during a backlog
MAX_CONCURRENT_WRITES = 16

RESOURCES: Mapping[str, Resource] = {r.kind: r for r in (SERVICE_IMPORTS, SERVICES, ENDPOINT_SLICES,
                                                         SERVICE_EXPORTS)}

_VIEWS = {"ServiceImport": "service_imports", "Service": "services", "EndpointSlice": "endpoint_slices",
          "ServiceExport": "service_exports"}  # a written kind -> its ClusterObjects view

RECONCILES = Counter("fleetgate_controller_reconcile_total",
                     "Live-mode write passes per exported name and member cluster, by result (ok: "
                     "every write accepted; conflict: a write met a newer object (409) and the name is "
                     "planned again; error: one failed otherwise and the name is retried).", ["result"])


_RESULTS = {result: RECONCILES.labels(result=result) for result in ("ok", "conflict", "error")}


class Leader(Protocol):
    @property
    def is_leader(self) -> bool: ...


_stamp: tuple[int, str] = (-1, "")


def now_rfc3339() -> str:
    """The time in seconds (a condition's lastTransitionTime), formatted once a second:
    every plan asks for it."""
    global _stamp
    second = int(time.time())
    if _stamp[0] != second:
        _stamp = (second, datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    return _stamp[1]


class _Stale:
    """Whether an object a plan read has moved since the derivation, shared by a _Checked and
    its kinds. No kind refers back to its _Checked: a replaced one is freed at once by
    reference counting. As a cycle it was left to the cyclic gc, which the gc policy's freeze
    may have put it beyond, pinning the whole snapshot it was made from (--gc-check: all the
    garbage found after a cold start was such snapshots)."""

    __slots__ = ("stale",)

    def __init__(self) -> None:
        self.stale = False


class _CheckedKind:
    """One kind as the last derivation saw it; notes when the store has moved past it."""

    def __init__(self, flag: _Stale, source: LiveCluster, seen: Mapping[tuple[str, str], KubeObject],
                 kind: str) -> None:
        self.flag, self.source, self.seen, self.kind = flag, source, seen, kind

    def get(self, key: tuple[str, str], /) -> Any:
        obj = self.seen.get(key)
        if self.source.current(self.kind, key[0], key[1]) is not obj:
            self.flag.stale = True
        return obj


class _Checked:
    """reconcile.Actual over the objects the last derivation was made from, checked against
    the source's store now: `stale` once a read object has moved since (a write's answer,
    a watch event). A plan must not mix a derivation with objects it has not seen: the
    ServiceImport's spec.ips comes from the `amcs-` Service's ClusterIP, a user's import in
    importMode explicit decides whether anything is wanted at all. A stale key waits for the
    derivation under way (the store's change scheduled it), which marks the key again."""

    def __init__(self, seen: ClusterObjects, source: LiveCluster) -> None:
        self.seen = seen
        self.source = source
        self.flag = flag = _Stale()
        self.service_imports = _CheckedKind(flag, source, seen.service_imports, "ServiceImport")
        self.services = _CheckedKind(flag, source, seen.services, "Service")
        self.endpoint_slices = _CheckedKind(flag, source, seen.endpoint_slices, "EndpointSlice")
        self.service_exports = _CheckedKind(flag, source, seen.service_exports, "ServiceExport")

    @property
    def stale(self) -> bool:
        return self.flag.stale

    @stale.setter
    def stale(self, value: bool) -> None:
        self.flag.stale = value


class ClusterWorker:
    """One member cluster's keyed queue and its writers (see the module docstring)."""

    def __init__(self, owner: "LiveWriter", name: str, source: LiveCluster, *,
                 max_concurrent: int = MAX_CONCURRENT_WRITES, limiter: TokenBucket | None = None) -> None:
        self.owner = owner
        self.name = name
        self.source = source
        self.max_concurrent = max(1, max_concurrent)
        # writes in flight to this member (a key's pass may send several at once, _send)
        self._in_flight = asyncio.Semaphore(self.max_concurrent)
        self.limiter = limiter or TokenBucket(0, 1)
        self.writes = 0
        self.cluster_id: str | None = None  # publish_cluster_id's outcome, once it has one
        self.keyed = KeyedCluster(name)
        self._seen: ClusterObjects | None = None  # this member's objects the last derivation saw
        self._checked: _Checked | None = None  # the last derivation's objects, checked (_reconcile)
        self._waiting: set[GroupKey] = set()  # planned from a derivation older than their objects
        self._written: dict[GroupKey, list[tuple[str, tuple[str, str]]]] = {}  # objects a key's last
        # pass wrote (their answers moved the store): checked before its next plan (_unseen)
        self.stale_plans = 0
        self.answers_reused: dict[str, int] = {}  # by kind: answers and echoes stored unparsed (_learn)
        self.planned = 0  # writes in every plan made, sent or not (one found stale is not)
        self._pending: dict[GroupKey, None] = {}  # dirty keys of bulk work, oldest first
        self._urgent: dict[GroupKey, None] = {}  # dirty keys of small changes: planned first
        self._busy: set[GroupKey] = set()
        self._passes: dict[GroupKey, int] = {}  # write passes since the key last changed
        self._backoff: dict[GroupKey, float] = {}
        self._timers: dict[GroupKey, asyncio.TimerHandle] = {}
        self._paused_until = 0.0  # the API server was unreachable: nothing before this
        self._pause_delay = RETRY_BASE
        self._tasks: set[asyncio.Task[None]] = set()
        self._runners = 0  # _run loops not yet returned (a done task leaves _tasks a turn later)
        self._id_task: asyncio.Task[None] | None = None
        self._resync = True  # the next derivation marks every key dirty

    # --- what moved -----------------------------------------------------------------------

    def on_derived(self, current: DerivedSnapshot) -> None:
        derived = current.derived
        desired = derived.per_cluster.get(self.name)
        changed: Iterable[GroupKey] | None = None if self._resync else derived.changed
        dirty = self.keyed.set_desired(desired.by_service if desired is not None else {}, changed,
                                       derived.export_conditions)
        member = current.snapshot.member(self.name)
        self._seen = member.objects if member is not None else None
        resync = False
        if self.source.loaded and member is not None:
            dirty |= self.keyed.set_actual(member.objects)
            if self._resync:
                dirty |= self.keyed.all_keys()
                self._resync, resync = False, True
        if self._waiting:  # set_actual marks them too; this does not rely on it
            dirty |= self._waiting
            self._waiting = set()
        for key in dirty:
            self._passes.pop(key, None)
        self.mark(dirty, bulk=resync or len(dirty) > BULK)

    def resync(self) -> None:
        """Plan every key again (leadership gained)."""
        self._passes.clear()
        self.mark(self.keyed.all_keys(), bulk=True)

    def mark(self, keys: Iterable[GroupKey], *, bulk: bool = False) -> None:
        queue = self._pending if bulk else self._urgent
        for key in keys:
            queue[key] = None
        self.wake()

    def wake(self) -> None:
        if not self.owner.may_write() or not self.source.loaded:
            return
        loop = asyncio.get_running_loop()
        if self.cluster_id is None and self._id_task is None:
            self._id_task = loop.create_task(self._publish_cluster_id(), name=f"controller-id:{self.name}")
        if not self._pending and not self._urgent:
            return
        want = min(self.max_concurrent, len(self._pending) + len(self._urgent))
        while self._runners < want:
            # counted here and uncounted as _run returns: a task's done callback runs a loop
            # turn after it finished, and a key marked in between would find no writer
            self._runners += 1
            task = loop.create_task(self._run(), name=f"controller-writer:{self.name}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        tasks = list(self._tasks) + ([self._id_task] if self._id_task is not None else [])
        self._tasks.clear()
        self._id_task = None
        await cancel_and_wait(*tasks)
        self._runners = 0  # a task cancelled before it ran never uncounted itself

    @property
    def current(self) -> bool:
        """The last derivation saw this member's objects as the store holds them now: no
        snapshot or derivation pending (a write's answer or a watch event not derived yet)."""
        return self._seen is self.source.objects

    @property
    def idle(self) -> bool:
        """Nothing pending, nothing in flight, nothing left to derive (tests, benchmarks and
        the sync-lag metric wait for it: an answer not derived yet may still need a write)."""
        return not self._pending and not self._urgent and not self._busy and not self._waiting and self.current

    # --- writing --------------------------------------------------------------------------

    async def _publish_cluster_id(self) -> None:
        try:
            if self.owner.may_write():
                self.cluster_id = await publish_cluster_id(self.source.client, self.name)
        except (KubeError, Unreachable) as exc:  # tried again at the next wake-up
            log.warning("cluster %s: cluster ID not published: %s", self.name, exc)
        finally:
            self._id_task = None

    def _next(self) -> GroupKey | None:
        for queue in (self._urgent, self._pending):
            for key in queue:
                if key not in self._busy:
                    del queue[key]
                    self._pending.pop(key, None)  # planned now: its bulk mark is served too
                    return key
        return None

    async def _run(self) -> None:
        try:
            await self._run_keys()
        finally:
            self._runners -= 1

    async def _run_keys(self) -> None:
        loop = asyncio.get_running_loop()
        while self.owner.may_write():
            wait = self._paused_until - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            key = self._next()
            if key is None:
                return
            self._busy.add(key)
            try:
                await self._reconcile(key)
            except Exception:  # a bug must not lose the key (nor this writer): log, retry later
                log.exception("cluster %s: %s/%s: planning or writing failed; retrying", self.name, *key)
                self._retry(key, RETRY_CAP)
            finally:
                self._busy.discard(key)

    async def _reconcile(self, key: GroupKey) -> None:
        derived = self.owner.derived
        if derived is None:
            return
        passes = self._passes.get(key, 0)
        if passes >= PASSES_PER_CHANGE:
            log.warning("cluster %s: %s/%s still differs after %d write passes; waiting for its next change",
                        self.name, key[0], key[1], passes)
            return
        written = self._written.pop(key, None)
        if written is not None and self._unseen(written):
            # the derivation at hand has not seen this key's last answers: a plan from it
            # would be found stale (_Checked) after rendering every object; wait as it would
            self._written[key] = written
            self.stale_plans += 1
            self._waiting.add(key)
            return
        actual = self._checked
        if actual is None or actual.seen is not self.keyed.actual:
            actual = self._checked = _Checked(self.keyed.actual, self.source)
        actual.stale = False  # one plan at a time: planning never awaits
        todo = self.keyed.plan(key, derived.export_conditions.get((self.name, *key)), self.owner.clock(),
                               actual)
        self.planned += len(todo)
        if actual.stale:  # planned again at the next derivation (the store's change scheduled it)
            self.stale_plans += 1
            self._waiting.add(key)
            return
        if not todo:
            self._backoff.pop(key, None)
            return
        self._passes[key] = passes + 1
        self._written[key] = [(w.kind, (w.namespace, w.name)) for w in todo]
        failed = await self._send(todo)
        _RESULTS["ok" if failed is None else failed[0]].inc()
        if failed is None:
            self._backoff.pop(key, None)
            return
        wait = failed[1]
        delay = self._backoff.get(key, RETRY_BASE)
        self._backoff[key] = min(RETRY_CAP, delay * 2)
        self._passes[key] = 0  # a failed pass is retried until it succeeds
        self._retry(key, max(delay, wait))

    def _unseen(self, written: list[tuple[str, tuple[str, str]]]) -> bool:
        """Some object written is not, in the store, what the last derivation saw."""
        seen, current = self.keyed.actual, self.source.current
        return any(getattr(seen, _VIEWS[kind]).get(okey) is not current(kind, *okey) for kind, okey in written)

    def _retry(self, key: GroupKey, delay: float) -> None:
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()

        def fire() -> None:
            self._timers.pop(key, None)
            self.mark((key,))
        self._timers[key] = asyncio.get_running_loop().call_later(delay, fire)

    async def _send(self, todo: list[Write]) -> tuple[str, float] | None:
        """Send one key's writes: None when every write went through, else a failure
        ("conflict" or "error") and how long to wait before planning the key again.

        Writes of one object go in order, stopping at its first failure. Once the key's
        ServiceImport exists (no create of it, no deletion in the plan), the writes of its
        different objects (the import's status, the `amcs-` Service and then its slices,
        the export's status) depend on nothing but that import, so they go at once: a key's
        pass then costs one round trip, not one per object (at a cold start the writes of
        a key's second pass, sent one after the other, were its longest wait). A plan
        that creates the import or deletes anything goes one write at a time, in order."""
        if len(todo) < 2 or any(w.op == DELETE or (w.op == CREATE and w.kind == "ServiceImport") for w in todo):
            return await self._send_in_order(todo)
        groups: dict[tuple[str, str, str], list[Write]] = {}
        slices: list[Write] = []  # after the Service's writes: a Service before its slices
        for w in todo:
            if w.kind == "EndpointSlice":
                slices.append(w)
            else:
                groups.setdefault((w.kind, w.namespace, w.name), []).append(w)
        service = next((k for k in groups if k[0] == "Service"), None)
        if slices:
            if service is None:
                groups.update(((w.kind, w.namespace, w.name), [w]) for w in slices)
            else:
                groups[service] = groups[service] + slices
        if len(groups) == 1:
            return await self._send_in_order(todo)
        results = await asyncio.gather(*(self._send_in_order(g) for g in groups.values()))
        failed = [r for r in results if r is not None]
        if not failed:
            return None
        # a conflict is planned again as soon as the watch brings the news; an error waits longest
        return max(failed, key=lambda r: (r[0] == "error", r[1]))

    async def _send_in_order(self, todo: list[Write]) -> tuple[str, float] | None:
        """Send writes one after the other, stopping at the first failure (see _send)."""
        for w in todo:
            if not self.owner.may_write():
                return None
            await self.limiter.acquire()
            try:
                async with self._in_flight:
                    await self._write(w)
            except asyncio.CancelledError:
                raise
            except Unreachable as exc:
                log.warning("cluster %s: %s not written, API server unreachable: %s", self.name, w, exc)
                loop = asyncio.get_running_loop()
                self._paused_until = max(self._paused_until, loop.time() + self._pause_delay)
                self._pause_delay = min(RETRY_CAP, self._pause_delay * 2)
                return "error", 0.0
            except KubeError as exc:
                if exc.conflict:  # our view was stale: the watch brings the news, then plan again
                    log.info("cluster %s: %s: conflict (%s); planning again", self.name, w, exc.message)
                else:
                    log.warning("cluster %s: %s failed: %s", self.name, w, exc)
                return "conflict" if exc.conflict else "error", exc.retry_after or 0.0
            self._pause_delay = RETRY_BASE
            self.writes += 1
        return None

    async def _write(self, w: Write) -> None:
        resource = RESOURCES[w.kind]
        version = self.source.served_version(resource)
        client = self.source.client
        base = self.source.current(w.kind, w.namespace, w.name)
        flight = self.source.writing(w.kind, w.namespace, w.name)
        if w.expect is not None:
            # the watch usually brings the write's echo before its answer is handled: the
            # echo is made from the same objects as the answer would be (controller/answers.py)
            self.source.hint(w.kind, w.namespace, w.name, self._reuser(w.kind, (w.expect, base)))
        try:
            if w.op == CREATE:
                assert w.body is not None
                body = {**w.body, "apiVersion": resource.api_version(version)}
                try:
                    answer = await client.create_later(resource, version, body)
                except KubeError as exc:
                    if exc.conflict:  # AlreadyExists: we had not seen it yet; learn it now
                        self._learn(resource, "ADDED", w.namespace, w.name,
                                    await client.get(resource, version, w.namespace, w.name), None, flight)
                    raise
                log.debug("cluster %s: created %s/%s/%s", self.name, w.kind, w.namespace, w.name)
                self._learn(resource, "ADDED", w.namespace, w.name, answer, base, flight, w.expect)
            elif w.op == DELETE:
                await client.delete(resource, version, w.namespace, w.name, uid=w.uid,
                                    resource_version=w.resource_version)
                log.debug("cluster %s: deleted %s/%s/%s", self.name, w.kind, w.namespace, w.name)
                self._learn(resource, "DELETED", w.namespace, w.name, _gone(w), base, flight)
            else:
                assert w.body is not None
                answer = await client.merge_patch_later(resource, version, w.namespace, w.name, w.body,
                                                        subresource="status" if w.op == STATUS else None)
                log.debug("cluster %s: %s %s/%s/%s", self.name, "wrote status of" if w.op == STATUS else "updated",
                         w.kind, w.namespace, w.name)
                self._learn(resource, "MODIFIED", w.namespace, w.name, answer, base, flight, w.expect)
        except KubeError as exc:
            if exc.not_found and w.op != CREATE:  # already gone: the watch will say so too
                self._learn(resource, "DELETED", w.namespace, w.name, _gone(w), base, flight)
                if w.op == DELETE:
                    return
            raise
        finally:
            flight.done()
            if w.expect is not None:
                self.source.hint(w.kind, w.namespace, w.name, None)

    def _reuser(self, kind: str, candidates: tuple[KubeObject | None, ...]) -> Callable[[Raw], KubeObject | None]:
        def reuse(raw: Raw) -> KubeObject | None:
            obj = reuse_answer(kind, raw, candidates)
            if obj is not None:
                self.answers_reused[kind] = self.answers_reused.get(kind, 0) + 1
            return obj
        return reuse

    def _learn(self, resource: Resource, event: str, namespace: str, name: str, answer: Raw | Callable[[], Raw],
               base: KubeObject | None, flight: InFlight, expect: KubeObject | None = None) -> None:
        """Put an answer into the source's store, unless any event for the object reached the
        store since the write began (`flight`; the watch's echo usually comes first, and then
        the answer is not even decoded: `answer` may be the function that decodes it). The
        watch is in order, so whatever came brings the write's echo or a later state: the
        answer, older or the same, must not win. Not by comparing the store's object with
        `base` alone: a create's ADDED then DELETED leaves None again, and a late answer
        would store an object the API server no longer has (nothing would re-create it).
        An answer that repeats `expect` (the desired object) or `base` where the parser reads
        is not parsed (controller/answers.py)."""
        if flight.moved or self.source.current(resource.kind, namespace, name) is not base:
            return
        raw = answer() if callable(answer) else answer
        meta = raw.get("metadata") or {}
        parsed = None
        if expect is not None and event != "DELETED":
            self.source.hint(resource.kind, namespace, name, None)
            parsed = self._reuser(resource.kind, (expect, base))(raw)
        self.source.event(resource, event, raw, parsed)
        if event != "DELETED":  # its watch event need not be decoded: the store has it
            self.source.client.expect_echo(resource, str(meta.get("resourceVersion") or ""))


def _gone(w: Write) -> Raw:
    """The DELETED event that a deletion's success (or a 404) stands for."""
    return {"metadata": {"name": w.name, "namespace": w.namespace}}


class LiveWriter:
    """Follows a fleet and writes to its live members (see the module docstring)."""

    def __init__(self, feed: DerivedFeed, sources: Mapping[str, LiveCluster], *, leader: Leader | None = None,
                 clock: Callable[[], str] = now_rfc3339, max_concurrent: int = MAX_CONCURRENT_WRITES,
                 qps: float = 0.0, burst: int = 0) -> None:
        self.feed = feed
        self.leader = leader
        self.clock = clock
        self.derived: DerivedFleet | None = None
        self.workers = {name: ClusterWorker(self, name, source, max_concurrent=max_concurrent,
                                            limiter=TokenBucket(qps, burst or max(1, int(qps * 2))))
                        for name, source in sources.items()}
        self._unfollow: Unfollow = not_following

    @property
    def writes(self) -> int:
        return sum(w.writes for w in self.workers.values())

    @property
    def idle(self) -> bool:
        return all(w.idle for w in self.workers.values())

    def may_write(self) -> bool:
        return self.leader is None or self.leader.is_leader

    def start(self) -> None:
        self._unfollow = self.feed.follow(self._on_derived)

    async def close(self) -> None:
        self._unfollow()
        self._unfollow = not_following
        for worker in self.workers.values():
            await worker.close()

    def resync(self) -> None:
        """Plan every key in every member again (leadership gained)."""
        if not self.may_write():
            return
        for worker in self.workers.values():
            worker.resync()

    def _on_derived(self, current: DerivedSnapshot) -> None:
        self.derived = current.derived
        for worker in self.workers.values():
            worker.on_derived(current)

    def plan(self, cluster: str) -> list[Write]:
        """The whole cluster's plan from scratch (reconcile.plan_cluster): what is left to
        write there, whatever the queue holds. O(fleet): for tests and checks, not the path."""
        derived, source = self.derived, self.workers[cluster].source
        if derived is None or not source.loaded or not self.may_write():
            return []  # no plan from a cluster we have not listed: it would recreate everything
        conditions = {(ns, name): conds for (c, ns, name), conds in derived.export_conditions.items()
                      if c == cluster}
        return plan_cluster(derived.per_cluster.get(cluster), source.objects, conditions=conditions,
                            now=self.clock())


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
                          leader_options: LeaderOptions | None = None,
                          max_concurrent: int = MAX_CONCURRENT_WRITES, qps: float = 0.0,
                          burst: int = 0) -> LiveController | None:
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
    writer = LiveWriter(feed, members, leader=elector, max_concurrent=max_concurrent, qps=qps, burst=burst)
    if elector is not None:
        elector.on_change = lambda leader: writer.resync() if leader else None
        elector.start()
    writer.start()
    log.info("controller: writing derived MCS objects to %s%s", ", ".join(sorted(members)),
             " while holding the Lease" if elector is not None else "")
    return LiveController(writer, elector)
