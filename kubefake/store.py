"""The versioned object store behind the test API server, with watch fan-out.

One global resourceVersion counter, a bounded history of committed events (what a watch
from an older resourceVersion replays) and synchronous fan-out to subscribers, so a
list followed by a watch from its resourceVersion can neither miss nor repeat an event.
No I/O and no asyncio: the HTTP layer turns deliveries into streams.

Committed objects are never mutated: reads and writes hand out the stored object itself
(read-only; a caller that changes one copies it first with `clone`), and a write takes
ownership of the object it is given when `owned=True` (the HTTP layer's freshly decoded
bodies), so a request copies an object at most once.
"""
from __future__ import annotations

import ipaddress
import itertools
import random
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

from . import strategy
from .errors import ApiError, already_exists, conflict, gone, invalid, not_found
from .patch import clone
from .resources import CRD_KEY, NAMESPACE_KEY, Registry, ResourceKey, ResourceType, from_crd
from .selectors import Matcher

Obj = dict[str, Any]
Deliver = Callable[[str, Obj], None]

_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


@dataclass(slots=True)
class Event:
    """A committed change; never mutated after commit, nor are `obj` and `old` (not a
    frozen dataclass only because one is made per write, and frozen ones are slower to make)."""

    type: str  # ADDED, MODIFIED or DELETED
    rv: int
    resource: ResourceKey
    namespace: str
    obj: Obj
    old: Obj | None


class Subscription:
    """One watcher: turns committed events into what its selector lets it see."""

    def __init__(self, resource: ResourceKey, namespace: str | None, match: Matcher,
                 deliver: Deliver) -> None:
        self.resource = resource
        self.namespace = namespace
        self.match = match
        self.deliver = deliver

    def view(self, ev: Event) -> tuple[str, Obj] | None:
        """The event as this watcher sees it: an object leaving the selector is DELETED."""
        if ev.resource != self.resource or (self.namespace and ev.namespace != self.namespace):
            return None
        if ev.type in ("ADDED", "DELETED"):
            return (ev.type, ev.obj) if self.match(ev.obj) else None
        now, before = self.match(ev.obj), ev.old is not None and self.match(ev.old)
        if now and before:
            return ("MODIFIED", ev.obj)
        if now:
            return ("ADDED", ev.obj)
        if before:
            return ("DELETED", ev.obj)
        return None


def _now() -> datetime:
    return datetime.now(timezone.utc)


_last_stamp: tuple[datetime, str] = (datetime.min.replace(tzinfo=timezone.utc), "")


def timestamp(when: datetime) -> str:
    """RFC 3339 to the second, formatted once per second (every create asks)."""
    global _last_stamp
    second = when.replace(microsecond=0)
    if second != _last_stamp[0]:
        _last_stamp = (second, second.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    return _last_stamp[1]


def new_uid(rng: random.Random) -> str:
    """A version-4 UUID from rng, as str(uuid.UUID(int=..., version=4)) spells it, without
    building the UUID object."""
    n = rng.getrandbits(128)
    n = (n & ~(0xc000 << 48) | 0x8000 << 48) & ~(0xf000 << 64) | 4 << 76
    h = "%032x" % n
    return "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])


def _spec_part(obj: Obj, ignore_status: bool) -> Obj:
    return {k: v for k, v in obj.items()
            if k not in ("metadata", "apiVersion", "kind") and not (ignore_status and k == "status")}


def _without_rv(obj: Obj) -> Obj:
    meta = dict(obj.get("metadata") or {})
    meta.pop("resourceVersion", None)
    return {**obj, "metadata": meta}


class ServiceIPs:
    """Sequential ClusterIP allocation from the service CIDR, skipping IPs in use."""

    def __init__(self, store: "ObjectStore", cidr: str) -> None:
        self._store = store
        self._net = ipaddress.ip_network(cidr)
        self._cursor = 0  # hosts before it were in use when last looked at (a hint)

    def _used(self) -> set[str]:
        return self._store.service_ips  # kept on every commit: allocation is not a scan

    def in_use(self, ip: str) -> bool:
        return ip in self._used()

    def allocate(self) -> str:
        """The first free host, searched from where the last search ended, then from the
        start (a deleted Service's IP is found again), so 10,000 Services cost no scan each."""
        used = self._used()
        first = int(self._net.network_address) + (0 if self._net.num_addresses <= 2 else 1)
        count = self._net.num_addresses - (0 if self._net.num_addresses <= 2 else 2)
        for i in itertools.chain(range(self._cursor, count), range(0, min(self._cursor, count))):
            ip = str(ipaddress.ip_address(first + i))
            if ip not in used:
                self._cursor = i + 1
                return ip
        raise ApiError(500, "range is full: no ClusterIPs left in %s" % self._net)


class ObjectStore:
    def __init__(self, registry: Registry, *, clock: Callable[[], datetime] = _now,
                 history_limit: int = 10000, service_cidr: str = "10.96.0.0/16",
                 rng: random.Random | None = None) -> None:
        self.registry = registry
        self._clock = clock
        self._rng = rng or random.Random()
        self._objects: dict[ResourceKey, dict[tuple[str, str], Obj]] = {}
        self._uids: dict[str, tuple[ResourceKey, str, str]] = {}
        self._dependents: dict[str, set[tuple[ResourceKey, str, str]]] = {}  # owner uid → objects
        self._rv = 1
        self._compacted = 1
        self._history: deque[Event] = deque()
        self._history_limit = history_limit
        self._subs: dict[ResourceKey, set[Subscription]] = {}  # watchers by the resource they watch
        self.service_ips: set[str] = set()  # spec.clusterIPs of every stored Service
        self._ips = ServiceIPs(self, service_cidr)

    # --- reading -------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        return self._rv

    @property
    def compacted(self) -> int:
        return self._compacted

    def history(self) -> list[Event]:
        """The committed events still held (oldest first, at most history_limit)."""
        return list(self._history)

    def iter_objects(self, key: ResourceKey, namespace: str | None = None) -> Iterator[Obj]:
        """Stored objects, not copies: callers must not mutate them."""
        for (ns, _), obj in sorted(self._objects.get(key, {}).items()):
            if namespace is None or ns == namespace:
                yield obj

    def get(self, rt: ResourceType, namespace: str, name: str) -> Obj:
        """The stored object, not a copy: callers must not mutate it."""
        obj = self._objects.get(rt.key, {}).get((namespace if rt.namespaced else "", name))
        if obj is None:
            raise not_found(rt.plural, rt.group, name)
        return obj

    def list_objects(self, rt: ResourceType, namespace: str | None, match: Matcher) -> tuple[list[Obj], int]:
        """Stored objects, not copies (as iter_objects), and the list's resourceVersion."""
        items = [o for o in self.iter_objects(rt.key, namespace) if match(o)]
        return items, self._rv

    def namespace_exists(self, name: str) -> bool:
        return ("", name) in self._objects.get(NAMESPACE_KEY, {})

    def namespace_terminating(self, name: str) -> bool:
        ns = self._objects.get(NAMESPACE_KEY, {}).get(("", name))
        return ns is not None and bool(ns["metadata"].get("deletionTimestamp"))

    # --- writing -------------------------------------------------------------------

    def create(self, rt: ResourceType, obj: Obj, *, dry_run: bool = False, seed: bool = False,
               owned: bool = False) -> Obj:
        """Store a new object; returns it as stored (read-only). `seed` keeps given
        uid/timestamp/status and adds namespaces; `owned`: obj is the store's to keep."""
        if not owned:
            obj = clone(obj)
        meta = obj.setdefault("metadata", {})
        meta.pop("managedFields", None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = self._generate_name(rt, meta)
        if not meta.get("name"):
            raise invalid(rt.kind, rt.group, "", [("metadata.name", "FieldValueRequired",
                                                    "Required value: name or generateName is required")])
        namespace = meta.get("namespace") or "" if rt.namespaced else ""
        if rt.namespaced and not namespace:
            raise ApiError(400, "the server could not find the requested resource: namespace is required")
        if not rt.namespaced:
            meta.pop("namespace", None)
        if namespace and self.namespace_terminating(namespace):
            raise ApiError(403, "%s \"%s\" is forbidden: unable to create new content in namespace "
                           "%s because it is being terminated" % (rt.plural, meta["name"], namespace),
                           details={"name": meta["name"], "kind": rt.plural})
        if namespace and not self.namespace_exists(namespace):
            if not seed:
                raise not_found("namespaces", "", namespace)
            self.create(self.registry.types[NAMESPACE_KEY],
                        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
                        seed=True, owned=True)
        if seed:
            meta.pop("resourceVersion", None)
        elif meta.get("resourceVersion"):
            raise ApiError(500, "resourceVersion should not be set on objects to be created")
        if not seed or not meta.get("uid"):
            meta["uid"] = new_uid(self._rng)
        if not seed or not meta.get("creationTimestamp"):
            meta["creationTimestamp"] = timestamp(self._clock())
        if not seed:
            meta.pop("deletionTimestamp", None)
            if rt.status:
                obj.pop("status", None)
        meta["generation"] = 1
        if (namespace, meta["name"]) in self._objects.get(rt.key, {}):
            raise already_exists(rt.plural, rt.group, meta["name"])
        strategy.prepare(rt, obj, None, self._ips)
        strategy.validate(rt, obj)
        if rt.key == CRD_KEY and not dry_run:
            self.registry.add(from_crd(obj))
        if dry_run:
            return obj
        return self._commit("ADDED", rt, namespace, obj, None)

    def update(self, rt: ResourceType, obj: Obj, *, status_only: bool = False,
               dry_run: bool = False, seed: bool = False, owned: bool = False,
               shares_stored: bool = False) -> Obj:
        """Replace an object; a stale metadata.resourceVersion is a 409 Conflict. Returns
        it as stored (read-only); `owned`: obj is the store's to keep (nothing shared);
        `shares_stored`: obj is the store's to keep but may share parts with stored objects
        (a merge patch's result), which stay read-only: only what the store changes is copied."""
        # what strategy.prepare changes in place must not be shared with a stored object
        share = rt.key not in strategy.PREPARED
        meta = obj.get("metadata") or {}
        namespace = meta.get("namespace") or "" if rt.namespaced else ""
        name = meta.get("name") or ""
        old = self._objects.get(rt.key, {}).get((namespace, name))
        if old is None:
            raise not_found(rt.plural, rt.group, name)
        sent_rv = meta.get("resourceVersion")
        if sent_rv and sent_rv != old["metadata"]["resourceVersion"]:
            raise conflict(rt.plural, rt.group, name)
        if status_only:
            new = {**old, "metadata": dict(old["metadata"])} if share else clone(old)
            if "status" in obj:
                new["status"] = obj["status"] if owned or (shares_stored and share) else clone(obj["status"])
            else:
                new.pop("status", None)
        else:
            if owned:
                new = obj
            elif shares_stored and share:
                new = {**obj, "metadata": dict(obj.get("metadata") or {})}
            else:
                new = clone(obj)
            new_meta = new.setdefault("metadata", {})
            new_meta.pop("managedFields", None)
            for field in ("uid", "creationTimestamp", "deletionTimestamp", "generation",
                          "deletionGracePeriodSeconds"):
                if field in old["metadata"]:
                    new_meta[field] = old["metadata"][field]
                else:
                    new_meta.pop(field, None)
            if not rt.namespaced:
                new_meta.pop("namespace", None)
            if rt.status and not seed:
                if "status" in old:
                    new["status"] = old["status"] if share else clone(old["status"])
                else:
                    new.pop("status", None)
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        strategy.prepare(rt, new, old, self._ips)
        strategy.validate(rt, new)
        if rt.key == CRD_KEY and new["spec"] != old["spec"]:
            names, old_names = new["spec"].get("names"), old["spec"].get("names")
            if new["spec"].get("group") != old["spec"].get("group") or \
                    (names or {}).get("plural") != (old_names or {}).get("plural"):
                raise invalid(rt.kind, rt.group, name, [("spec", "FieldValueInvalid", "field is immutable")])
        if _spec_part(new, rt.status) != _spec_part(old, rt.status):
            new["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
        if new == old:
            return old  # a no-op write commits nothing, like etcd
        if dry_run:
            return new
        if rt.key == CRD_KEY:
            self.registry.add(from_crd(new))
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            return self._remove(rt, namespace, name, "Background", current=new)
        return self._commit("MODIFIED", rt, namespace, new, old)

    def delete(self, rt: ResourceType, namespace: str, name: str, *, propagation: str = "Background",
               dry_run: bool = False, uid: str | None = None, resource_version: str | None = None,
               terminate: bool = False) -> Obj:
        """Delete now, or mark for deletion while finalizers remain; then cascade. Returns
        the object as stored (read-only): its last state, or the one marked for deletion.

        `terminate` (Namespaces only) marks the namespace Terminating like the real
        namespace lifecycle; finalize_namespace() later removes it with its contents.
        """
        namespace = namespace if rt.namespaced else ""
        old = self._objects.get(rt.key, {}).get((namespace, name))
        if old is None:
            raise not_found(rt.plural, rt.group, name)
        if uid and uid != old["metadata"]["uid"]:
            raise ApiError(409, "Precondition failed: UID in precondition: %s, UID in object meta: %s"
                           % (uid, old["metadata"]["uid"]), reason="Conflict")
        if resource_version and resource_version != old["metadata"]["resourceVersion"]:
            raise ApiError(409, "Precondition failed: ResourceVersion in precondition: %s, "
                           "ResourceVersion in object meta: %s"
                           % (resource_version, old["metadata"]["resourceVersion"]), reason="Conflict")
        if dry_run:
            return old
        if terminate and rt.key == NAMESPACE_KEY:
            if old["metadata"].get("deletionTimestamp"):
                return old
            new = clone(old)
            new["metadata"]["deletionTimestamp"] = timestamp(self._clock())
            new.setdefault("status", {})["phase"] = "Terminating"
            return self._commit("MODIFIED", rt, namespace, new, old)
        if old["metadata"].get("finalizers"):
            if old["metadata"].get("deletionTimestamp"):
                return old
            new = clone(old)
            new["metadata"]["deletionTimestamp"] = timestamp(self._clock())
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            return self._commit("MODIFIED", rt, namespace, new, old)
        return self._remove(rt, namespace, name, propagation)

    def finalize_namespace(self, name: str) -> None:
        """Remove a Terminating namespace and everything in it (the namespace controller)."""
        ns = self._objects.get(NAMESPACE_KEY, {}).get(("", name))
        if ns is not None and ns["metadata"].get("deletionTimestamp"):
            self._remove(self.registry.types[NAMESPACE_KEY], "", name, "Background")

    def compact(self) -> None:
        """Forget all history: watching from any older resourceVersion is now 410 Gone."""
        self._history.clear()
        self._compacted = self._rv

    # --- watching ------------------------------------------------------------------

    def watch(self, rt: ResourceType, namespace: str | None, match: Matcher, since: int | None,
              deliver: Deliver) -> tuple[Subscription, list[tuple[str, Obj]]]:
        """Subscribe; returns the events to send first (current state, or replayed history)."""
        sub = Subscription(rt.key, namespace, match, deliver)
        if since is None:
            first = [("ADDED", o) for o in self.iter_objects(rt.key, namespace) if match(o)]
        else:
            if since < self._compacted:
                raise gone("too old resource version: %d (%d)" % (since, self._compacted))
            first = [v for ev in self._history if ev.rv > since and (v := sub.view(ev))]
        self._subs.setdefault(rt.key, set()).add(sub)
        return sub, first

    def unwatch(self, sub: Subscription) -> None:
        self._subs.get(sub.resource, set()).discard(sub)

    def check_fresh(self, rv: int) -> None:
        if rv < self._compacted:
            raise gone("too old resource version: %d (%d)" % (rv, self._compacted))

    # --- internals -----------------------------------------------------------------

    def _generate_name(self, rt: ResourceType, meta: Obj) -> str:
        namespace = meta.get("namespace") or "" if rt.namespaced else ""
        for _ in range(100):
            suffix = "".join(self._rng.choice(_SUFFIX_ALPHABET) for _ in range(5))
            name = str(meta["generateName"])[:58] + suffix
            if (namespace, name) not in self._objects.get(rt.key, {}):
                return name
        raise ApiError(409, "could not generate a unique name", reason="AlreadyExists")

    def _commit(self, kind: str, rt: ResourceType, namespace: str, obj: Obj, old: Obj | None) -> Obj:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        key = (namespace, obj["metadata"]["name"])
        where = (rt.key, namespace, key[1])
        bucket = self._objects.setdefault(rt.key, {})
        if rt.key == ("", "services"):
            ips = (obj.get("spec") or {}).get("clusterIPs") or ()
            self.service_ips.difference_update(((old or {}).get("spec") or {}).get("clusterIPs") or ())
            if kind == "DELETED":
                self.service_ips.difference_update(ips)
            else:
                self.service_ips.update(ips)
        for ref in (old or {}).get("metadata", {}).get("ownerReferences") or ():
            self._dependents.get(ref.get("uid"), set()).discard(where)
        if kind == "DELETED":
            bucket.pop(key, None)
            self._uids.pop(obj["metadata"]["uid"], None)
        else:
            bucket[key] = obj
            self._uids[obj["metadata"]["uid"]] = where
            for ref in obj["metadata"].get("ownerReferences") or ():
                self._dependents.setdefault(ref.get("uid"), set()).add(where)
        ev = Event(kind, self._rv, rt.key, namespace, obj, old)
        self._history.append(ev)
        while len(self._history) > self._history_limit:
            self._compacted = self._history.popleft().rv
        for sub in list(self._subs.get(rt.key, ())):
            seen = sub.view(ev)
            if seen is not None:
                sub.deliver(*seen)
        return obj

    def _remove(self, rt: ResourceType, namespace: str, name: str, propagation: str,
                current: Obj | None = None) -> Obj:
        if rt.key == NAMESPACE_KEY:
            self._empty_namespace(name)
        if rt.key == CRD_KEY:
            self._drop_custom_resource(current or self._objects[rt.key][("", name)])
        old = self._objects[rt.key][(namespace, name)]
        final = current if current is not None else clone(old)  # current: update's own new object
        gone_obj = self._commit("DELETED", rt, namespace, final, old)
        self._collect_dependents(gone_obj["metadata"]["uid"], propagation)
        return gone_obj

    def _empty_namespace(self, namespace: str) -> None:
        for key, bucket in list(self._objects.items()):
            rt = self.registry.types.get(key)
            if rt is None or not rt.namespaced:
                continue
            for ns, name in [k for k in bucket if k[0] == namespace]:
                if (ns, name) in bucket:
                    self._remove(rt, ns, name, "Background")

    def _drop_custom_resource(self, crd: Obj) -> None:
        spec = crd.get("spec") or {}
        key = (spec.get("group", ""), (spec.get("names") or {}).get("plural", ""))
        rt = self.registry.types.get(key)
        if rt is None or not rt.custom:
            return
        for ns, name in list(self._objects.get(key, {})):
            if (ns, name) in self._objects.get(key, {}):
                self._remove(rt, ns, name, "Background")
        self.registry.remove(key)

    def _collect_dependents(self, uid: str, propagation: str) -> None:
        """Garbage-collect (or orphan) objects whose owners are all gone."""
        for key, ns, name in sorted(self._dependents.pop(uid, set())):
            rt = self.registry.types.get(key)
            obj = self._objects.get(key, {}).get((ns, name))
            if rt is None or obj is None:
                continue
            refs = obj["metadata"].get("ownerReferences") or []
            if propagation == "Orphan":
                new = clone(obj)
                new["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") != uid]
                if not new["metadata"]["ownerReferences"]:
                    del new["metadata"]["ownerReferences"]
                self._commit("MODIFIED", rt, ns, new, obj)
            elif not any(r.get("uid") in self._uids for r in refs if r.get("uid") != uid):
                self.delete(rt, ns, name)
