"""HTTP handlers of the test API server: paths → store operations → JSON or streams.

Every handler raises ApiError for failures; the server turns it into a Status response.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from dataclasses import dataclass
from typing import Any, Awaitable

import yaml

from . import discovery, render
from .errors import ApiError, bad_request, gone
from .httpserver import Request, Response, Result, StreamResponse
from .patch import json_patch, merge_patch, strategic_merge_patch
from .resources import CRD_KEY, NAMESPACE_KEY, Registry, ResourceType
from .selectors import Matcher, matcher, parse_field_selector, parse_label_selector
from .store import ObjectStore, Obj
from .strategy import check_kind

log = logging.getLogger(__name__)

# real registries answer DELETE with the object for these, with a Status for the rest
_DELETE_RETURNS_OBJECT = {("", "services"), ("", "pods"), NAMESPACE_KEY, CRD_KEY}
_TRUE = ("1", "true", "True")


@dataclass(frozen=True, slots=True)
class Target:
    rt: ResourceType
    version: str
    namespace: str | None  # None: cluster-scoped, or every namespace
    name: str | None
    subresource: str | None
    watch_path: bool  # the deprecated /watch/ prefix


def _missing() -> ApiError:
    return ApiError(404, "the server could not find the requested resource")


def parse_target(registry: Registry, group: str, version: str, rest: list[str]) -> Target:
    """Resolve the part of a path after /api/v1 or /apis/g/v."""
    watch_path = bool(rest) and rest[0] == "watch"
    if watch_path:
        rest = rest[1:]
    if not rest:
        raise _missing()
    namespace: str | None = None
    if rest[0] == "namespaces" and len(rest) >= 3:
        inner = registry.by_path(group, version, rest[2])
        if group == "" and len(rest) == 3 and (inner is None or not inner.namespaced):
            rest = ["namespaces", rest[1], rest[2]]  # a Namespace's own subresource
        else:
            namespace, rest = rest[1], rest[2:]
    if len(rest) > 3:
        raise _missing()
    plural, name, sub = rest[0], rest[1] if len(rest) > 1 else None, rest[2] if len(rest) > 2 else None
    rt = registry.by_path(group, version, plural)
    if rt is None or (namespace is not None and not rt.namespaced):
        raise _missing()
    if rt.namespaced and namespace is None and name is not None:
        raise _missing()
    if sub is not None and not (sub == "status" and rt.status):
        raise _missing()
    return Target(rt, version, namespace, name, sub, watch_path)


def _json(obj: Any, status: int = 200, media: str = "application/json") -> Response:
    return Response(body=render.encode(obj).encode(), status=status, content_type=media)


def _accepts(request: Request, marker: str) -> bool:
    return marker in request.headers.get("Accept", "")


_decode = json.JSONDecoder().decode


def _read_body(request: Request) -> Any:
    raw = request.body
    if not raw.strip():
        raise bad_request("the request body is empty")
    try:
        if "yaml" in request.content_type:
            return yaml.safe_load(raw)
        if raw[:3] != b"\xef\xbb\xbf" and b"\x00" not in raw[:4]:  # else UTF-16/32 or a BOM: json.loads
            try:
                text = raw.decode()
            except UnicodeDecodeError:
                pass
            else:
                return _decode(text)  # what json.loads does once it knows the bytes are UTF-8
        return json.loads(raw)
    except (ValueError, yaml.YAMLError) as exc:
        raise bad_request("couldn't decode the request body: %s" % exc)


def _object_body(body: Any) -> Obj:
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    meta = body.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise bad_request("metadata must be an object")
    return body


def _int_param(query: Any, name: str) -> int | None:
    value = query.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise bad_request("invalid %s %r" % (name, value))


class _Close:
    def __init__(self, abort: bool) -> None:
        self.abort = abort


def _wake(waiter: "asyncio.Future[None]") -> None:
    if not waiter.done():
        waiter.set_result(None)


class WatchStream:
    """One open watch response; closing it ends the response (or drops the connection).

    Events pile up in `pending` and wake the response's loop once per batch: a future
    and a timer per wait, not a task per event as asyncio.wait_for on a queue would be."""

    def __init__(self, request: Request) -> None:
        self.pending: list[Any] = []
        self.request = request
        self._waiter: asyncio.Future[None] | None = None

    def put(self, item: Any) -> None:
        self.pending.append(item)
        if self._waiter is not None:
            _wake(self._waiter)

    def close(self, *, abort: bool) -> None:
        self.put(_Close(abort))

    async def wait(self, timeout: float | None) -> None:
        """Until something is pending, or `timeout` seconds have passed."""
        if self.pending:
            return
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(timeout, _wake, waiter) if timeout is not None else None
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()


class ApiHandlers:
    def __init__(self, store: ObjectStore, *, bookmark_interval: float,
                 namespace_grace: float) -> None:
        self.store = store
        self.namespace_grace = namespace_grace
        self.registry = store.registry
        self.bookmark_interval = bookmark_interval
        self.streams: set[WatchStream] = set()
        self.wire = render.Wire()

    # --- entry ---------------------------------------------------------------------

    def dispatch(self, request: Request) -> Response | Awaitable[Result]:
        """The answer, or for a watch the coroutine that streams it."""
        segs = [s for s in request.path.split("/") if s]
        if segs in (["version"],):
            return _json(discovery.VERSION_INFO)
        if segs and segs[0] in ("healthz", "livez", "readyz"):
            return Response(text="ok")
        if segs == ["api"]:
            return self._discovery(request, core=True)
        if segs == ["apis"]:
            return self._discovery(request, core=False)
        if len(segs) >= 2 and segs[0] == "api":
            group, version, rest = "", segs[1], segs[2:]
        elif len(segs) >= 3 and segs[0] == "apis":
            group, version, rest = segs[1], segs[2], segs[3:]
        elif len(segs) == 2 and segs[0] == "apis":
            doc = discovery.api_group(self.registry, segs[1])
            if doc is None:
                raise ApiError(404, "the server could not find the requested resource")
            return _json(doc)
        else:
            return Response(status=404, text="404 page not found\n")
        if not rest:
            doc = discovery.resource_list(self.registry, group, version)
            if doc is None:
                raise ApiError(404, "the server could not find the requested resource")
            return _json(doc)
        target = parse_target(self.registry, group, version, rest)
        return self._resource(request, target)

    def _discovery(self, request: Request, *, core: bool) -> Response:
        accept = request.headers.get("Accept", "")
        for media_version in ("v2", "v2beta1"):
            if discovery.AGGREGATED_MEDIA % media_version in accept.replace(" ", ""):
                doc = discovery.aggregated(self.registry, core=core, media_version=media_version)
                return _json(doc, media=discovery.AGGREGATED_MEDIA % media_version)
        if core:
            return _json(discovery.api_versions(request.host))
        return _json(discovery.api_group_list(self.registry))

    def _resource(self, request: Request, t: Target) -> Response | Awaitable[Result]:
        method = request.method
        if method == "GET" and t.name is None:
            if t.watch_path or request.query.get("watch") in _TRUE:
                return self.watch(request, t)
            return self.list_objects(request, t)
        if method == "GET" and t.watch_path:
            return self.watch(request, t)
        if method == "GET":
            return self.get(request, t)
        if method == "POST" and t.name is None and (t.namespace is not None or not t.rt.namespaced):
            return self.create(request, t)
        if method == "PUT" and t.name is not None:
            return self.replace(request, t)
        if method == "PATCH" and t.name is not None:
            return self.patch(request, t)
        if method == "DELETE" and t.name is not None:
            return self.delete(request, t)
        if method == "DELETE" and t.subresource is None:
            return self.delete_collection(request, t)
        raise ApiError(405, "the server does not allow this method on the requested resource")

    # --- reads ---------------------------------------------------------------------

    def _matcher(self, request: Request, t: Target) -> Matcher:
        labels = parse_label_selector(request.query.get("labelSelector"))
        fields = parse_field_selector(request.query.get("fieldSelector"), t.rt.field_labels)
        match = matcher(labels, fields)
        if t.name is not None:
            inner, name = match, t.name
            return lambda obj: obj["metadata"]["name"] == name and inner(obj)
        return match

    def _shown(self, request: Request, t: Target, obj: Obj, status: int = 200) -> Response:
        if _accepts(request, "as=Table"):
            table = render.table(t.rt, t.version, [obj], self.store.resource_version,
                                 include=request.query.get("includeObject", "Metadata"))
            return _json(table, status, render.TABLE_MEDIA)
        return Response(body=self.wire.object(obj, t.rt, t.version), status=status)

    def get(self, request: Request, t: Target) -> Response:
        assert t.name is not None
        return self._shown(request, t, self.store.get(t.rt, t.namespace or "", t.name))

    def list_objects(self, request: Request, t: Target) -> Response:
        match = self._matcher(request, t)
        rv = _int_param(request.query, "resourceVersion")
        if rv and request.query.get("resourceVersionMatch") == "Exact":
            self.store.check_fresh(rv)
        items, list_rv = self.store.list_objects(t.rt, t.namespace, match)
        token = request.query.get("continue")
        if token:
            try:
                state = json.loads(base64.urlsafe_b64decode(token.encode()))
                list_rv, start = int(state["rv"]), tuple(state["start"])
            except (ValueError, KeyError, TypeError, binascii.Error):
                raise bad_request("invalid continue token")
            if list_rv < self.store.compacted:
                raise gone("The provided continue parameter is too old to display a consistent "
                           "list result. You can start a new list without the continue parameter.")
            items = [o for o in items if (o["metadata"].get("namespace", ""), o["metadata"]["name"]) > start]
        limit = _int_param(request.query, "limit")
        next_token, remaining = None, None
        if limit and limit > 0 and len(items) > limit:
            items, rest = items[:limit], items[limit:]
            last = items[-1]["metadata"]
            state = {"rv": list_rv, "start": [last.get("namespace", ""), last["name"]]}
            next_token = base64.urlsafe_b64encode(json.dumps(state).encode()).decode()
            remaining = len(rest)
        if _accepts(request, "as=Table"):
            table = render.table(t.rt, t.version, items, list_rv,
                                 include=request.query.get("includeObject", "Metadata"))
            if next_token:
                table["metadata"]["continue"] = next_token
            return _json(table, media=render.TABLE_MEDIA)
        return _json(render.list_body(t.rt, t.version, items, list_rv, next_token, remaining))

    async def watch(self, request: Request, t: Target) -> StreamResponse:
        match = self._matcher(request, t)
        q = request.query
        rv = _int_param(q, "resourceVersion")
        send_initial = q.get("sendInitialEvents") in _TRUE
        since = None if (not rv or send_initial) else rv
        bookmarks = q.get("allowWatchBookmarks") in _TRUE
        timeout = _int_param(q, "timeoutSeconds")
        as_table = _accepts(request, "as=Table")
        stream = WatchStream(request)
        resp = StreamResponse(status=200, headers={"Content-Type": "application/json",
                                                   "Cache-Control": "no-cache, private"})

        def line(kind: str, obj: Obj) -> bytes:
            if kind in ("ERROR", "BOOKMARK"):
                return render.event_line(kind, obj)
            if as_table:
                return render.event_line(kind, render.table(t.rt, t.version, [obj],
                                                            int(obj["metadata"]["resourceVersion"])))
            return self.wire.event(kind, obj, t.rt, t.version)

        try:
            sub, first = self.store.watch(t.rt, t.namespace, match, since,
                                          lambda kind, obj: stream.put((kind, obj)))
        except ApiError as exc:
            if exc.code != 410:
                raise
            await resp.prepare(request)
            await resp.write(line("ERROR", exc.status()))
            await resp.write_eof()
            return resp
        self.streams.add(stream)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout else None
        next_bookmark = loop.time() + self.bookmark_interval
        try:
            await resp.prepare(request)
            if first:
                await resp.write(b"".join(line(kind, obj) for kind, obj in first))
            if send_initial and bookmarks:
                mark = render.bookmark(t.rt, t.version, self.store.resource_version, initial_end=True)
                await resp.write(line("BOOKMARK", mark))
            while True:
                now = loop.time()
                if deadline is not None and now >= deadline:
                    break
                if bookmarks and now >= next_bookmark and not stream.pending:
                    mark = render.bookmark(t.rt, t.version, self.store.resource_version)
                    await resp.write(line("BOOKMARK", mark))
                    next_bookmark = now + self.bookmark_interval
                waits = [w - now for w in (deadline, next_bookmark if bookmarks else None) if w is not None]
                await stream.wait(max(min(waits), 0.001) if waits else None)
                if not stream.pending:
                    continue
                batch, stream.pending = stream.pending, []
                closing = next((i for i, x in enumerate(batch) if isinstance(x, _Close)), None)
                events = batch if closing is None else batch[:closing]
                if events:
                    await resp.write(b"".join(line(kind, obj) for kind, obj in events))
                if closing is not None:
                    if batch[closing].abort:
                        if request.transport is not None:
                            request.transport.abort()
                        return resp
                    break
            await resp.write_eof()
        except (ConnectionResetError, ConnectionError):
            log.debug("watch client went away: %s", request.path_qs)
        finally:
            self.store.unwatch(sub)
            self.streams.discard(stream)
        return resp

    # --- writes --------------------------------------------------------------------

    def _place(self, t: Target, obj: Obj) -> None:
        """Fill or check the object's namespace and name against the URL."""
        meta = obj["metadata"]
        if t.rt.namespaced:
            if meta.get("namespace") and meta["namespace"] != t.namespace:
                raise bad_request("the namespace of the provided object does not match the "
                                  "namespace sent on the request")
            meta["namespace"] = t.namespace
        if t.name is not None:
            if meta.get("name") and meta["name"] != t.name:
                raise bad_request("the name of the object (%s) does not match the name on the "
                                  "URL (%s)" % (meta["name"], t.name))
            meta["name"] = t.name

    def create(self, request: Request, t: Target) -> Response:
        obj = _object_body(_read_body(request))
        check_kind(t.rt, t.version, obj)
        self._place(t, obj)
        created = self.store.create(t.rt, obj, dry_run="dryRun" in request.query, owned=True)
        return self._shown(request, t, created, 201)

    def replace(self, request: Request, t: Target) -> Response:
        obj = _object_body(_read_body(request))
        check_kind(t.rt, t.version, obj)
        self._place(t, obj)
        updated = self.store.update(t.rt, obj, status_only=t.subresource == "status",
                                    dry_run="dryRun" in request.query, owned=True)
        return self._shown(request, t, updated)

    def patch(self, request: Request, t: Target) -> Response:
        assert t.name is not None
        media = request.content_type
        body = _read_body(request)
        dry_run = "dryRun" in request.query
        if media == "application/apply-patch+yaml":
            return self._apply(request, t, _object_body(body), dry_run)
        current = render.as_version(self.store.get(t.rt, t.namespace or "", t.name), t.rt, t.version)
        if media == "application/json-patch+json":
            patched = json_patch(current, body)
        elif media == "application/merge-patch+json":
            patched = merge_patch(current, body)
        elif media == "application/strategic-merge-patch+json":
            if t.rt.custom:
                raise ApiError(415, "the body of the request was in an unknown format - accepted "
                               "media types include: application/json-patch+json, "
                               "application/merge-patch+json, application/apply-patch+yaml")
            patched = strategic_merge_patch(current, body)
        else:
            raise ApiError(415, "the body of the request was in an unknown format - accepted media "
                           "types include: application/json-patch+json, application/merge-patch+json, "
                           "application/apply-patch+yaml, application/strategic-merge-patch+json")
        patched = _object_body(patched)
        check_kind(t.rt, t.version, patched)
        self._place(t, patched)
        # a merge patch's result shares what it left alone with the stored object
        merged = media == "application/merge-patch+json"
        updated = self.store.update(t.rt, patched, status_only=t.subresource == "status", dry_run=dry_run,
                                    owned=not merged, shares_stored=merged)
        return self._shown(request, t, updated)

    def _apply(self, request: Request, t: Target, obj: Obj, dry_run: bool) -> Response:
        """Server-side apply, approximated: create, or merge the applied fields in."""
        if not request.query.get("fieldManager"):
            raise ApiError(422, "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required "
                           "value: is required for apply patch", reason="Invalid")
        check_kind(t.rt, t.version, obj)
        self._place(t, obj)
        assert t.name is not None
        try:
            current = render.as_version(self.store.get(t.rt, t.namespace or "", t.name), t.rt, t.version)
        except ApiError as exc:
            if exc.code != 404 or t.subresource:
                raise
            obj["metadata"].pop("resourceVersion", None)
            return self._shown(request, t, self.store.create(t.rt, obj, dry_run=dry_run, owned=True), 201)
        patched = merge_patch(current, obj)
        updated = self.store.update(t.rt, patched, status_only=t.subresource == "status", dry_run=dry_run)
        return self._shown(request, t, updated)

    def _delete_options(self, request: Request) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if request.can_read_body:
            raw = request.body
            if raw.strip():
                try:
                    options = json.loads(raw)
                except ValueError:
                    raise bad_request("invalid DeleteOptions body")
        for key in ("propagationPolicy", "dryRun", "gracePeriodSeconds"):
            if key in request.query:
                options[key] = request.query[key]
        if options.get("orphanDependents") in (True, "true"):
            options.setdefault("propagationPolicy", "Orphan")
        policy = options.get("propagationPolicy") or "Background"
        if policy not in ("Background", "Foreground", "Orphan"):
            raise bad_request("unsupported propagationPolicy %r" % policy)
        options["propagationPolicy"] = policy
        return options

    def delete(self, request: Request, t: Target) -> Response:
        assert t.name is not None
        options = self._delete_options(request)
        pre = options.get("preconditions") or {}
        terminate = t.rt.key == NAMESPACE_KEY
        obj = self.store.delete(t.rt, t.namespace or "", t.name, propagation=options["propagationPolicy"],
                                dry_run=bool(options.get("dryRun")), uid=pre.get("uid"),
                                resource_version=pre.get("resourceVersion"), terminate=terminate)
        if terminate and not options.get("dryRun"):
            asyncio.get_running_loop().call_later(self.namespace_grace, self.store.finalize_namespace, t.name)
        # a real server answers 200 even while finalizers hold the object (see delete.go)
        status = 200
        still_there = obj["metadata"].get("deletionTimestamp") is not None and not options.get("dryRun")
        if t.rt.custom or t.rt.key in _DELETE_RETURNS_OBJECT or still_there:
            return self._shown(request, t, obj, status)
        details: dict[str, Any] = {"name": t.name, "kind": t.rt.plural, "uid": obj["metadata"]["uid"]}
        if t.rt.group:
            details["group"] = t.rt.group
        return _json({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                      "details": details}, status)

    def delete_collection(self, request: Request, t: Target) -> Response:
        options = self._delete_options(request)
        items, _ = self.store.list_objects(t.rt, t.namespace, self._matcher(request, t))
        deleted = []
        for obj in items:
            meta = obj["metadata"]
            try:
                deleted.append(self.store.delete(t.rt, meta.get("namespace", ""), meta["name"],
                                                 propagation=options["propagationPolicy"],
                                                 dry_run=bool(options.get("dryRun"))))
            except ApiError as exc:
                if exc.code != 404:  # already collected by a cascade
                    raise
        return _json(render.list_body(t.rt, t.version, deleted, self.store.resource_version))
