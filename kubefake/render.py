"""How stored objects go on the wire: per-version apiVersion, lists, Tables, watch lines.

Storage is version-free, so serving v1alpha1 or v1beta1 of the same ServiceExport is
only a matter of the apiVersion field (the MCS versions share one schema).

A stored object is never mutated once committed, so its JSON in a given version is made
once (`Wire`) and reused for the write's answer and for every watcher's event line.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from .resources import ResourceType

Obj = dict[str, Any]

TABLE_MEDIA = "application/json;as=Table;v=v1;g=meta.k8s.io"

# compact, like the real server's JSON; no cycle check (a third of the encoding's cost): stored
# objects are JSON trees (decoded, or copied by patch.clone, which a cycle would not survive)
encode = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode


def as_version(obj: Obj, rt: ResourceType, version: str) -> Obj:
    """A shallow copy of obj presented in `version` (top-level fields are not shared)."""
    out = dict(obj)
    out["apiVersion"] = rt.api_version(version)
    out["kind"] = rt.kind
    return {"apiVersion": out.pop("apiVersion"), "kind": out.pop("kind"), **out}


def list_body(rt: ResourceType, version: str, items: list[Obj], rv: int,
              continue_token: str | None = None, remaining: int | None = None) -> Obj:
    meta: Obj = {"resourceVersion": str(rv)}
    if continue_token:
        meta["continue"] = continue_token
        if remaining is not None:
            meta["remainingItemCount"] = remaining
    rendered = []
    for item in items:
        shown = as_version(item, rt, version)
        if not rt.custom:
            # built-in list items come without apiVersion/kind on a real server
            shown.pop("apiVersion")
            shown.pop("kind")
        rendered.append(shown)
    return {"apiVersion": rt.api_version(version), "kind": rt.kind + "List",
            "metadata": meta, "items": rendered}


def human_duration(seconds: float) -> str:
    """kubectl's AGE format (apimachinery's duration.HumanDuration)."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return "%ds" % s
    minutes = s // 60
    if minutes < 10:
        return "%dm%ds" % (minutes, s % 60) if s % 60 else "%dm" % minutes
    if minutes < 180:
        return "%dm" % minutes
    hours = s // 3600
    if hours < 8:
        return "%dh%dm" % (hours, minutes % 60) if minutes % 60 else "%dh" % hours
    if hours < 48:
        return "%dh" % hours
    if hours < 24 * 8:
        return "%dd%dh" % (hours // 24, hours % 24) if hours % 24 else "%dd" % (hours // 24)
    if hours < 24 * 365 * 2:
        return "%dd" % (hours // 24)
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return "%dy%dd" % (hours // 24 // 365, days) if days else "%dy" % (hours // 24 // 365)
    return "%dy" % (hours // 24 // 365)


def _age(obj: Obj, now: datetime) -> str:
    stamp = (obj.get("metadata") or {}).get("creationTimestamp")
    if not stamp:
        return "<unknown>"
    created = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    return human_duration((now - created).total_seconds())


def table(rt: ResourceType, version: str, objs: list[Obj], rv: int, *, include: str = "Metadata",
          now: datetime | None = None) -> Obj:
    """A meta.k8s.io/v1 Table with NAME and AGE, what `kubectl get` prints."""
    now = now or datetime.now(timezone.utc)
    rows = []
    for obj in objs:
        row: Obj = {"cells": [obj["metadata"]["name"], _age(obj, now)]}
        if include == "Object":
            row["object"] = as_version(obj, rt, version)
        elif include != "None":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": obj["metadata"]}
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": str(rv)},
        "columnDefinitions": [
            {"name": "Name", "type": "string", "format": "name", "priority": 0,
             "description": "Name must be unique within a namespace."},
            {"name": "Age", "type": "string", "format": "", "priority": 0,
             "description": "Time since the object was created."},
        ],
        "rows": rows,
    }


def event_line(kind: str, obj: Obj) -> bytes:
    return encode({"type": kind, "object": obj}).encode() + b"\n"


_KINDS = {kind: kind.encode() for kind in ("ADDED", "MODIFIED", "DELETED")}


class Wire:
    """The JSON of stored objects per version served, made once per object.

    Keyed by the object's identity: an entry holds the object, so its id cannot be reused
    while the entry lives, and stored objects are never mutated (store.py). Bounded: the
    oldest entries go first (a watcher far behind re-encodes, nothing more)."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._entries: dict[tuple[int, str], tuple[Obj, bytes]] = {}

    def object(self, obj: Obj, rt: ResourceType, version: str) -> bytes:
        key = (id(obj), version)
        entry = self._entries.get(key)
        if entry is not None and entry[0] is obj:
            return entry[1]
        data = encode(as_version(obj, rt, version)).encode()
        entries = self._entries
        if len(entries) >= self._size:
            del entries[next(iter(entries))]
        entries[key] = (obj, data)
        return data

    def event(self, kind: str, obj: Obj, rt: ResourceType, version: str) -> bytes:
        """One watch event line (ADDED, MODIFIED or DELETED of a stored object)."""
        return b'{"type":"%s","object":%s}\n' % (_KINDS.get(kind) or kind.encode(), self.object(obj, rt, version))


def bookmark(rt: ResourceType, version: str, rv: int, *, initial_end: bool = False) -> Obj:
    meta: Obj = {"resourceVersion": str(rv), "creationTimestamp": None}
    if initial_end:
        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
    return {"kind": rt.kind, "apiVersion": rt.api_version(version), "metadata": meta}
