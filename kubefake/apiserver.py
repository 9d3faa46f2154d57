"""An in-process Kubernetes API server for tests: real HTTP, real watch streams, faults.

One KubeAPIServer stands in for one member cluster. kubernetes_asyncio and kubectl talk
to it over loopback exactly as to a real server (discovery, CRUD, selectors, patches,
status subresources, resourceVersion conflicts, watch with bookmarks and 410 Gone,
ownerReference garbage collection); tests seed state directly with `create()` and
inject faults with `fail_next()`, `delay()`, `drop_watches()`, `compact()`, `restart()`.

    async with KubeAPIServer() as zone_a:
        zone_a.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web",
                       "namespace": "shop"}, "spec": {"ports": [{"port": 80}]}})
        zone_a.kubeconfig(tmp_path / "zone-a.yaml", context="zone-a")
        ...  # point the code under test at the kubeconfig; assert on zone_a.objects("svcim")
"""
from __future__ import annotations

import asyncio
import json
import logging
import random
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any, Awaitable, Callable, Mapping

import yaml

from .errors import ApiError, failure_status
from .httpserver import HTTPServer, Request, Response, Result
from .resources import Registry, ResourceType, default_crds
from .routes import ApiHandlers
from .selectors import matcher, parse_field_selector, parse_label_selector
from .store import Obj, ObjectStore, clone

log = logging.getLogger(__name__)

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request the server received (for asserting what a client did)."""

    method: str
    path: str
    query: Mapping[str, str]
    content_type: str

    @property
    def is_write(self) -> bool:
        return self.method in WRITE_METHODS

    @property
    def is_watch(self) -> bool:
        return self.query.get("watch") in ("1", "true") or "/watch/" in self.path


@dataclass
class _Fault:
    remaining: int
    status: int
    method: str | None
    path: str | None
    retry_after: int | None

    def matches(self, request: Request) -> bool:
        return (self.method is None or request.method == self.method.upper()) and \
            (self.path is None or self.path in request.path_qs)


def _kubeconfig_doc(entries: list[tuple[str, str, str]], current: str,
                    namespace: str | None) -> dict[str, Any]:
    """entries are (context, cluster name, server URL)."""
    extra = {"namespace": namespace} if namespace else {}
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{"name": cluster, "cluster": {"server": url}} for _, cluster, url in entries],
        "users": [{"name": "test-user", "user": {"token": "test-token"}}],
        "contexts": [{"name": ctx, "context": {"cluster": cluster, "user": "test-user", **extra}}
                     for ctx, cluster, _ in entries],
        "current-context": current,
    }


def write_kubeconfig(path: str | Path, contexts: Mapping[str, str], *, current: str | None = None,
                     namespace: str | None = None) -> Path:
    """A kubeconfig with one context (and cluster of the same name) per server URL."""
    path = Path(path)
    entries = [(name, name, url) for name, url in contexts.items()]
    doc = _kubeconfig_doc(entries, current or entries[0][0], namespace)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


class KubeAPIServer:
    """A Kubernetes API server on a loopback port, backed by an in-memory store."""

    def __init__(self, *, install_crds: bool = True, bookmark_interval: float = 1.0,
                 namespace_grace: float = 0.2,
                 history_limit: int = 10000, service_cidr: str = "10.96.0.0/16",
                 clock: Callable[[], datetime] | None = None, random_seed: int | None = None) -> None:
        self.registry = Registry.builtin()
        self.store = ObjectStore(self.registry, clock=clock or (lambda: datetime.now(timezone.utc)),
                                 history_limit=history_limit, service_cidr=service_cidr,
                                 rng=random.Random(random_seed))
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        if install_crds:
            for crd in default_crds():
                self.create(crd)
        self._handlers = ApiHandlers(self.store, bookmark_interval=bookmark_interval,
                                    namespace_grace=namespace_grace)
        self._runner: HTTPServer | None = None
        self._host = "127.0.0.1"
        self._port = 0
        self._delay = 0.0
        self._undelayed = asyncio.Event()
        self._undelayed.set()
        self._faults: list[_Fault] = []
        self.requests: list[RecordedRequest] = []

    # --- lifecycle -----------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> "KubeAPIServer":
        if self._runner is not None:
            raise RuntimeError("KubeAPIServer is already running")
        runner = HTTPServer(self._handle)
        self._port = await runner.start(host, port)
        self._runner = runner
        self._host = host
        log.debug("test API server listening on %s", self.url)
        return self

    async def stop(self) -> None:
        """Stop serving; open watches end cleanly first. The data stays (see restart)."""
        if self._runner is None:
            return
        self.drop_watches()
        self.delay(0)
        await asyncio.sleep(0)
        runner, self._runner = self._runner, None
        await runner.close()

    async def restart(self, *, downtime: float = 0.0) -> None:
        """Drop every connection abruptly and serve again on the same port, same data."""
        self.drop_watches(abort=True)
        await asyncio.sleep(0)
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.close()
        if downtime:
            await asyncio.sleep(downtime)
        await self.start(self._host, self._port)

    async def __aenter__(self) -> "KubeAPIServer":
        if self._runner is None:
            await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return "http://%s:%d" % (self._host, self._port)

    def kubeconfig(self, path: str | Path, *, context: str = "test", cluster_name: str | None = None,
                   namespace: str | None = None) -> Path:
        """Write a kubeconfig for this server (plain http; the token is ignored)."""
        path = Path(path)
        doc = _kubeconfig_doc([(context, cluster_name or context, self.url)], context, namespace)
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    # --- fault injection -----------------------------------------------------------

    def drop_watches(self, *, abort: bool = False) -> int:
        """End every open watch stream (abort=True drops the connection instead)."""
        streams = list(self._handlers.streams)
        for stream in streams:
            stream.close(abort=abort)
        return len(streams)

    def fail_next(self, n: int = 1, status: int = 500, *, method: str | None = None,
                  path: str | None = None, retry_after: int | None = None) -> None:
        """Answer the next n matching requests with `status` and a Failure Status body."""
        self._faults.append(_Fault(n, status, method, path, retry_after))

    def delay(self, seconds: float) -> None:
        """Delay every response by `seconds` (0 turns it off)."""
        self._delay = max(0.0, seconds)
        if self._delay:
            self._undelayed.clear()
        else:
            self._undelayed.set()  # release requests held by the previous delay

    def compact(self) -> None:
        """Forget history: watches and Exact lists from older resourceVersions get 410."""
        self.store.compact()

    @property
    def open_watches(self) -> int:
        return len(self._handlers.streams)

    async def wait_for_watches(self, count: int = 1, *, timeout: float = 5.0) -> None:
        """Wait until at least `count` watch streams are open (polls with a deadline)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.open_watches < count:
            if loop.time() > deadline:
                raise TimeoutError("%d watches open, wanted %d" % (self.open_watches, count))
            await asyncio.sleep(0.01)

    def writes(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.is_write]

    def changes(self, since: int = 0) -> list[tuple[str, str, str, str, int]]:
        """(event, resource plural, namespace, name, resourceVersion) of every committed change after
        resourceVersion `since`, in commit order (what the writes did, for ordering tests)."""
        out = []
        for ev in self.store.history():
            if ev.rv > since:
                out.append((ev.type, ev.resource[1], ev.namespace,
                            str(ev.obj["metadata"]["name"]), ev.rv))
        return out

    @property
    def resource_version(self) -> int:
        """The store's current resourceVersion (a mark for `changes`)."""
        return self.store.resource_version

    # --- direct access for tests ---------------------------------------------------

    def resource(self, kind: str, api_version: str | None = None) -> ResourceType:
        """Find a resource type by kind, plural, short name or `plural.group`."""
        try:
            return self.registry.lookup(kind, api_version)
        except KeyError:
            raise KeyError("unknown resource %r" % kind) from None

    def _type_of(self, obj: Obj) -> ResourceType:
        rt = self.registry.by_kind(obj.get("apiVersion", ""), obj.get("kind", ""))
        if rt is None:
            raise KeyError("no resource serves %s %s" % (obj.get("apiVersion"), obj.get("kind")))
        return rt

    def _present(self, rt: ResourceType, obj: Obj, api_version: str | None) -> Obj:
        """A copy of a stored object for a test to keep (and change) as it likes."""
        version = (api_version or rt.api_version()).rpartition("/")[2]
        return {"apiVersion": rt.api_version(version), "kind": rt.kind,
                **{k: clone(v) for k, v in obj.items() if k not in ("apiVersion", "kind")}}

    def create(self, obj: Obj) -> Obj:
        """Store an object as given (status, uid, creationTimestamp kept; namespace made)."""
        rt = self._type_of(obj)
        obj = clone(obj)
        obj.setdefault("metadata", {})
        if rt.namespaced:
            obj["metadata"].setdefault("namespace", "default")
        return self._present(rt, self.store.create(rt, obj, seed=True, owned=True), obj["apiVersion"])

    def replace(self, obj: Obj) -> Obj:
        """Replace an object (status included), ignoring its resourceVersion."""
        rt = self._type_of(obj)
        obj = clone(obj)
        meta = obj.setdefault("metadata", {})
        meta.pop("resourceVersion", None)
        if rt.namespaced:
            meta.setdefault("namespace", "default")
        return self._present(rt, self.store.update(rt, obj, seed=True, owned=True), obj["apiVersion"])

    def apply(self, obj: Obj) -> Obj:
        """Create or replace."""
        rt = self._type_of(obj)
        meta = obj.get("metadata") or {}
        if self.get(rt.kind, meta.get("name", ""), meta.get("namespace", "default"),
                    api_version=obj.get("apiVersion")) is None:
            return self.create(obj)
        return self.replace(obj)

    def get(self, kind: str, name: str, namespace: str | None = None, *,
            api_version: str | None = None) -> Obj | None:
        """The stored object, or None."""
        rt = self.resource(kind, api_version)
        try:
            obj = self.store.get(rt, (namespace or "default") if rt.namespaced else "", name)
        except ApiError:
            return None
        return self._present(rt, obj, api_version)

    def objects(self, kind: str, namespace: str | None = None, *, api_version: str | None = None,
                label_selector: str | None = None, field_selector: str | None = None) -> list[Obj]:
        """Stored objects of a kind (all namespaces unless one is named), by namespace/name."""
        rt = self.resource(kind, api_version)
        match = matcher(parse_label_selector(label_selector),
                        parse_field_selector(field_selector, rt.field_labels))
        items, _ = self.store.list_objects(rt, namespace if rt.namespaced else None, match)
        return [self._present(rt, o, api_version) for o in items]

    def delete(self, kind: str, name: str, namespace: str | None = None, *,
               propagation: str = "Background") -> Obj | None:
        """Delete (cascading like the API); None when it did not exist."""
        rt = self.resource(kind)
        try:
            obj = self.store.delete(rt, (namespace or "default") if rt.namespaced else "", name,
                                    propagation=propagation)
        except ApiError:
            return None
        return self._present(rt, obj, None)

    # --- HTTP entry ----------------------------------------------------------------

    def _handle(self, request: Request) -> Response | Awaitable[Result]:
        """Answer at once, or (a watch, a held response) hand back what to await."""
        self.requests.append(RecordedRequest(request.method, request.path, dict(request.query),
                                             request.headers.get("Content-Type", "")))
        expect = request.headers.get("Expect")
        if expect and request.version == "1.1" and expect.lower() != "100-continue":
            return Response(status=417, text="Unknown Expect: %s" % expect)  # 100-continue: httpserver.py
        if self._delay:
            return self._held(request)
        return self._answer(request)

    async def _held(self, request: Request) -> Result:
        try:
            await asyncio.wait_for(self._undelayed.wait(), self._delay)
        except asyncio.TimeoutError:
            pass
        answer = self._answer(request)
        return answer if isinstance(answer, Response) else await self._awaited(request, answer)

    def _answer(self, request: Request) -> Response | Awaitable[Result]:
        fault = next((f for f in self._faults if f.matches(request)), None) if self._faults else None
        if fault is not None:
            fault.remaining -= 1
            if fault.remaining <= 0:
                self._faults.remove(fault)
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            body = failure_status(fault.status, "injected failure (%d)" % fault.status)
            return Response(body=json.dumps(body).encode(), status=fault.status, headers=headers)
        try:
            answer = self._handlers.dispatch(request)
        except Exception as exc:
            return self._failed(request, exc)
        return answer if isinstance(answer, Response) else self._awaited(request, answer)

    async def _awaited(self, request: Request, answer: Awaitable[Result]) -> Result:
        try:
            return await answer
        except Exception as exc:
            return self._failed(request, exc)

    def _failed(self, request: Request, exc: Exception) -> Response:
        if isinstance(exc, ApiError):
            return Response(body=json.dumps(exc.status()).encode(), status=exc.code)
        log.error("test API server failed on %s %s", request.method, request.path_qs, exc_info=exc)
        body = failure_status(500, "internal error in the test API server")
        return Response(body=json.dumps(body).encode(), status=500)
