"""List-then-watch for one resource of one cluster, kept going through every failure.

After kopf and client-go's reflector: list (paged), then watch from the list's
resourceVersion with bookmarks; a watch that ends is resumed from the last
resourceVersion seen (events or bookmarks); 410 Gone means list again; a failed request
is retried with jittered exponential backoff (capped at a few seconds, Retry-After
honoured). A resource the cluster does not serve (an MCS CRD not installed) or RBAC
forbids counts as listed and empty, and is looked at again rarely. In steady state the
only requests are watches.
"""
from __future__ import annotations

import asyncio
import logging
import random
from typing import Callable, Protocol

from .kube import KubeClient, KubeError, Raw, Resource, Unreachable, with_kind

log = logging.getLogger(__name__)

BACKOFF_BASE = 0.1
BACKOFF_CAP = 3.0
NOT_SERVED_BASE = 30.0  # a missing CRD or a forbidden resource: look again, rarely
NOT_SERVED_CAP = 300.0
WATCH_TIMEOUT = (240, 300)  # server-side watch timeout, seconds, randomized per watch
SHORT_WATCH = 1.0  # a watch that ends sooner than this backs off before the next one


class Backoff:
    """Exponential delays with jitter in [d/2, d]; `rand` is passed in for tests."""

    def __init__(self, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP,
                 rand: Callable[[], float] = random.random) -> None:
        self.base, self.cap, self.rand = base, cap, rand
        self.attempt = 0

    def next(self) -> float:
        delay = min(self.cap, self.base * float(2 ** self.attempt))
        self.attempt = min(self.attempt + 1, 32)
        return delay * (0.5 + 0.5 * self.rand())

    def reset(self) -> None:
        self.attempt = 0


class Sink(Protocol):
    """Where a reflector delivers what it learns (the LiveSource's object store)."""

    def replace(self, resource: Resource, items: list[Raw]) -> None: ...

    def event(self, resource: Resource, kind: str, raw: Raw) -> None: ...

    def state(self, resource: Resource) -> None: ...


class Reflector:
    """Keeps one resource of one cluster in the sink; run() until cancelled."""

    def __init__(self, client: KubeClient, resource: Resource, sink: Sink, *, source: str,
                 rand: Callable[[], float] = random.random) -> None:
        self.client = client
        self.resource = resource
        self.sink = sink
        self.source = source
        self.rand = rand
        self.version: str | None = None  # the API version being served to us
        self.resource_version = ""
        self.listed = False  # a complete list has been delivered (or the resource is absent)
        self.failing = False  # the last request got no usable answer
        self.error = ""
        self.attempted = asyncio.Event()  # the first list has succeeded or failed
        self.lists = 0
        self.watches = 0

    async def run(self) -> None:
        backoff = Backoff(rand=self.rand)
        absent = Backoff(NOT_SERVED_BASE, NOT_SERVED_CAP, rand=self.rand)
        while True:
            delay = 0.0
            try:
                if self.version is None or not self.resource_version:
                    await self._list()
                    absent.reset()
                lived = await self._watch()
                if lived >= SHORT_WATCH:
                    backoff.reset()  # a healthy watch that ended (timeout, drop): resume now
                else:
                    delay = backoff.next()  # ended at once: don't spin
            except asyncio.CancelledError:
                raise
            except KubeError as exc:
                if exc.gone:
                    log.info("source %s: %s: resourceVersion %s is too old; listing again",
                             self.source, self.resource.plural, self.resource_version or "-")
                    self.resource_version = ""
                    if backoff.attempt:
                        delay = backoff.next()
                    else:
                        backoff.attempt = 1  # the first relist is immediate, a second one waits
                elif exc.not_served:
                    self._absent(exc)
                    delay = absent.next()
                else:
                    self._failed(str(exc))
                    delay = max(backoff.next(), min(exc.retry_after or 0.0, 30.0))
            except Unreachable as exc:
                self._failed(str(exc))
                delay = backoff.next()
            except Exception as exc:  # a bug or a malformed answer must not end the reflector
                log.exception("source %s: %s: unexpected failure", self.source, self.resource.plural)
                self._failed(repr(exc))
                delay = backoff.next()
            if delay:
                await asyncio.sleep(delay)

    async def _list(self) -> None:
        last: KubeError | None = None
        for version in self.resource.versions:
            try:
                items, rv = await self.client.list(self.resource, version)
            except KubeError as exc:
                if exc.status == 404 and len(self.resource.versions) > 1:
                    last = exc  # this version is not served: try the next one
                    continue
                raise
            self.lists += 1
            if version != self.version:
                if self.version is not None or version != self.resource.versions[0]:
                    log.info("source %s: reading %s as %s", self.source, self.resource.plural,
                             self.resource.api_version(version))
                self.version = version
            self.resource_version = rv
            self.sink.replace(self.resource, items)
            self._ok(listed=True)
            return
        assert last is not None
        raise last

    async def _watch(self) -> float:
        """Watch until the stream ends; returns how long it lived (seconds)."""
        assert self.version is not None
        loop = asyncio.get_running_loop()
        stream = await self.client.watch(self.resource, self.version, self.resource_version,
                                         timeout_seconds=random.randint(*WATCH_TIMEOUT))
        self.watches += 1
        self._ok(listed=self.listed)
        opened = loop.time()
        try:
            async for kind, raw in stream:
                rv = str((raw.get("metadata") or {}).get("resourceVersion") or "")
                if kind != "BOOKMARK":
                    self.sink.event(self.resource, kind, with_kind(raw, self.resource, self.version))
                if rv:
                    self.resource_version = rv
        finally:
            stream.close()
        return loop.time() - opened

    def _ok(self, *, listed: bool) -> None:
        changed = self.failing or listed != self.listed
        self.failing, self.error, self.listed = False, "", listed
        self.attempted.set()
        if changed:
            self.sink.state(self.resource)

    def _failed(self, error: str) -> None:
        # the LiveSource logs the cluster going away once; per-resource detail is debug
        log.debug("source %s: %s: %s; retrying with backoff", self.source, self.resource.plural, error)
        changed = not self.failing
        self.failing, self.error = True, error
        self.attempted.set()
        if changed:
            self.sink.state(self.resource)

    def _absent(self, exc: KubeError) -> None:
        """Not served or forbidden: an empty, listed resource until it appears."""
        if not self.listed or self.version is not None:
            what = "forbidden" if exc.status == 403 else "not served"
            log.warning("source %s: %s is %s (%s); treating it as empty and looking again later",
                        self.source, self.resource.plural, what, exc.message)
        self.version, self.resource_version = None, ""
        self.sink.replace(self.resource, [])
        self._ok(listed=True)
