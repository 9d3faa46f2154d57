"""LiveSource: one cluster's objects from its API server (a kubeconfig + context).

One Reflector per resource (list, then watch; fleet/reflector.py) feeds one ObjectStore.
Changes are coalesced: however many events a burst brings, the Fleet hears one on_change
per event-loop turn and the ClusterObjects are built once, when it reads them. Objects
show only after every resource has been listed once (no half-loaded cluster); after
that a cluster whose API server stops answering keeps its last known objects, reports
`reachable = False` (Fleet.unreachable(), /readyz detail, fleetgate_source_up) and never
holds up the others: start() returns after the first attempt, whatever its outcome.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Iterable, Mapping, Sequence

from .config import FleetConfigError, SourceSpec
from .kube import INGRESSES, RESOURCES, KubeClient, Raw, Resource, kubeconfig_contexts
from .metrics import SOURCE_UP
from .objects import KubeObject
from .objectstore import ObjectStore
from .reflector import Reflector
from .snapshot import EMPTY_CLUSTER, ClusterObjects, Diagnostic
from .tasks import cancel_and_wait

log = logging.getLogger(__name__)

START_TIMEOUT = 10.0  # start() waits at most this long for the first lists


class _Writes:
    """Events that reached one object's store entry while writes of it are in flight."""

    __slots__ = ("events", "writers")

    def __init__(self) -> None:
        self.events = 0
        self.writers = 0


class InFlight:
    """One write of one object, from before its request to after its answer is handled
    (LiveSource.writing). `moved`: some event for the object (a watch event, DELETED
    included, a relist of its kind, another answer) reached the store since it began."""

    __slots__ = ("_entry", "_start", "_writing", "_key")

    def __init__(self, writing: dict[tuple[str, str, str], _Writes], key: tuple[str, str, str]) -> None:
        entry = writing.get(key)
        if entry is None:
            entry = writing[key] = _Writes()
        entry.writers += 1
        self._entry, self._start, self._writing, self._key = entry, entry.events, writing, key

    @property
    def moved(self) -> bool:
        return self._entry.events != self._start

    def done(self) -> None:
        entry = self._entry
        entry.writers -= 1
        if entry.writers == 0 and self._writing.get(self._key) is entry:
            del self._writing[self._key]


class LiveSource:
    """A Source over a Kubernetes API server (see the module docstring)."""

    def __init__(self, name: str, spec: SourceSpec, *, kinds: Iterable[str] = tuple(RESOURCES),
                 start_timeout: float = START_TIMEOUT) -> None:
        if spec.kubeconfig is None:
            raise ValueError(f"source {name}: a LiveSource needs a kubeconfig")
        self.name = name
        self.spec = spec
        self.start_timeout = start_timeout
        self.client = KubeClient(spec.kubeconfig, spec.context)
        self._resources: tuple[Resource, ...] = tuple(RESOURCES[k] for k in kinds)
        where = str(spec.kubeconfig) + (f" (context {spec.context})" if spec.context else "")
        self._store = ObjectStore(where)
        self._reflectors = tuple(Reflector(self.client, r, self, source=name) for r in self._resources)
        self._tasks: list[asyncio.Task[None]] = []
        self._on_change: Callable[[], None] | None = None
        self._notify_pending = False
        self._loaded = False
        self._reachable = True
        self._hints: dict[tuple[str, str, str], Callable[[Raw], KubeObject | None]] = {}  # hint()
        self._writing: dict[tuple[str, str, str], _Writes] = {}  # writing(): objects with a write in flight

    @classmethod
    def factory(cls, name: str, spec: SourceSpec) -> "LiveSource":
        """The Fleet's live_factory: checks the kubeconfig and context now, so a typo is a
        one-line error at start rather than a cluster that never loads."""
        assert spec.kubeconfig is not None
        try:
            contexts, current = kubeconfig_contexts(spec.kubeconfig)
        except (OSError, ValueError) as exc:
            raise FleetConfigError(f"{spec.kubeconfig}: cannot read kubeconfig: {exc}") from None
        except Exception as exc:  # YAML errors
            raise FleetConfigError(f"{spec.kubeconfig}: not a valid kubeconfig: {exc}") from None
        wanted = spec.context or current
        if not wanted:
            raise FleetConfigError(f"{spec.kubeconfig}: no current-context; set context: in fleet.yaml")
        if wanted not in contexts:
            raise FleetConfigError(f"{spec.kubeconfig}: context {wanted!r} not found "
                                   f"(has: {', '.join(contexts) or 'none'})")
        return cls(name, spec)

    # --- the Source protocol -----------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._loaded

    @property
    def reachable(self) -> bool:
        return self._reachable

    @property
    def objects(self) -> ClusterObjects:
        """Built here, on read, so a burst of events costs one build."""
        return self._store.snapshot() if self._loaded else EMPTY_CLUSTER

    @property
    def diagnostics(self) -> tuple[Diagnostic, ...]:
        diags = self._store.diagnostics()
        if not self._reachable:
            diags = (Diagnostic(self._store.origin, f"cluster/{self.name}",
                                f"API server unreachable; {self._kept()}", "warning"),) + diags
        return diags

    async def start(self, on_change: Callable[[], None]) -> None:
        """Start every reflector; return once each has listed or failed once (bounded)."""
        if self._tasks:
            raise RuntimeError(f"LiveSource {self.name} already started")
        self._on_change = on_change
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(r.run(), name=f"fleet-live:{self.name}:{r.resource.plural}")
                       for r in self._reflectors]
        try:
            await asyncio.wait_for(asyncio.gather(*(r.attempted.wait() for r in self._reflectors)),
                                   self.start_timeout)
        except asyncio.TimeoutError:
            log.warning("source %s: no answer from the API server within %.0fs; going on without it",
                        self.name, self.start_timeout)
        SOURCE_UP.labels(source=self.name).set(1 if self._reachable else 0)
        log.info("source %s: %s (%s)", self.name,
                 "loaded %d objects" % len(self._store) if self._loaded else "not loaded yet",
                 "reachable" if self._reachable else "unreachable")

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        await cancel_and_wait(*tasks)
        self._on_change = None
        await self.client.close()

    def hint(self, kind: str, namespace: str, name: str, reuse: Callable[[Raw], KubeObject | None] | None) -> None:
        """While a write of this object is in flight: `reuse(raw)` gives what parse_object(raw)
        would, or None (then the event is parsed); None removes the hint. The writer's own
        answer and its watch echo then cost a comparison, not a parse (controller/answers.py)."""
        if reuse is None:
            self._hints.pop((kind, namespace, name), None)
        else:
            self._hints[(kind, namespace, name)] = reuse

    def writing(self, kind: str, namespace: str, name: str) -> InFlight:
        """A write of this object begins (call `done()` on the result once its answer is
        handled): `moved` then says whether any event for the object reached the store in
        between. The writer stores an answer only when none did: comparing the store's object
        with the one the write began from is not enough, as a create's ADDED then DELETED
        (kubectl, the GC) leaves None, as before, and the late answer would bring back an
        object the API server no longer has."""
        return InFlight(self._writing, (kind, namespace, name))

    def current(self, kind: str, namespace: str, name: str) -> KubeObject | None:
        """One object as this source holds it now (answers fed back by `event` included)."""
        return self._store.get(kind, (namespace, name)) if self._loaded else None

    # --- what reflectors report (the Sink protocol) ---------------------------------------

    def replace(self, resource: Resource, items: list[Raw]) -> None:
        self._origin()
        for key, writes in self._writing.items():  # a relist: an answer in flight may be older
            if key[0] == resource.kind:
                writes.events += 1
        if self._store.replace(resource.kind, items, namespaced=resource.namespaced):
            self._changed()

    def event(self, resource: Resource, kind: str, raw: Raw, parsed: KubeObject | None = None) -> None:
        """A watch event, or a write's answer (`parsed`: its view, when the writer has it).
        An event for an object with a `hint` is offered to it before it is parsed; one for an
        object being written is counted (`writing`)."""
        if self._writing or (parsed is None and self._hints and kind != "DELETED"):
            md = raw.get("metadata") or {}
            key = (resource.kind, str(md.get("namespace") or ""), str(md.get("name") or ""))
            writes = self._writing.get(key)
            if writes is not None:
                writes.events += 1
            if parsed is None and kind != "DELETED":
                hint = self._hints.get(key)
                if hint is not None:
                    parsed = hint(raw)
        if self._store.apply(resource.kind, kind, raw, namespaced=resource.namespaced, parsed=parsed):
            self._changed()

    def state(self, resource: Resource) -> None:
        """A reflector's listed/failing state moved: recompute loaded and reachable."""
        changed = False
        if not self._loaded and all(r.listed for r in self._reflectors):
            self._loaded = changed = True
            log.info("source %s: every resource listed: %d objects", self.name, len(self._store))
        reachable = not any(r.failing for r in self._reflectors)
        if reachable != self._reachable:
            self._reachable, changed = reachable, True
            SOURCE_UP.labels(source=self.name).set(1 if reachable else 0)
            if reachable:
                log.info("source %s: API server answers again", self.name)
            else:
                error = next(r.error for r in self._reflectors if r.failing)
                log.warning("source %s: API server unreachable (%s); %s", self.name, error, self._kept())
        if changed:
            self._schedule()

    # --- internals -----------------------------------------------------------------------

    def _kept(self) -> str:
        """What an unreachable source still serves, in words."""
        if not self._loaded:
            return "no objects loaded yet"
        count = len(self._store)
        return f"serving its {count} last known object{'s' if count != 1 else ''}" if count else \
            "it had no objects; serving none"

    def _origin(self) -> None:
        if self.client.server:
            self._store.set_origin(self.client.server)

    def _changed(self) -> None:
        if self._loaded:  # before the first complete load nobody sees the objects
            self._schedule()

    def _schedule(self) -> None:
        """One on_change per event-loop turn, however many events the turn brought."""
        if self._notify_pending or self._on_change is None:
            return
        self._notify_pending = True
        asyncio.get_running_loop().call_soon(self._notify)

    def _notify(self) -> None:
        self._notify_pending = False
        if self._on_change is None:
            return
        try:
            self._on_change()
        except Exception:
            log.exception("source %s: change callback failed", self.name)

    # --- writing ----------------------------------------------------------------------------

    async def patch_ingress_status(self, namespace: str, name: str,
                                   ingress: Sequence[Mapping[str, Any]]) -> None:
        """Set status.loadBalancer.ingress of one Ingress (merge patch on /status). The
        answer goes into the store at once, so the next snapshot already shows it."""
        patch = {"status": {"loadBalancer": {"ingress": [dict(i) for i in ingress]}}}
        updated = await self.client.merge_patch_status(INGRESSES, INGRESSES.versions[0], namespace, name, patch)
        self.event(INGRESSES, "MODIFIED", updated)

    @property
    def reflectors(self) -> tuple[Reflector, ...]:
        return self._reflectors

    def served_version(self, resource: Resource) -> str:
        """The API version this cluster's reflector found served (CRDs may serve only
        v1alpha1); the first one fleetgate knows when it has not listed `resource`."""
        for r in self._reflectors:
            if r.resource is resource and r.version:
                return str(r.version)
        return resource.versions[0]
