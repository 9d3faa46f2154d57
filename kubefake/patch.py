"""The three PATCH flavours of the Kubernetes API, on plain JSON values.

JSON merge patch is RFC 7386, JSON patch is RFC 6902. Strategic merge patch is the
merge patch plus list merging by key for the list fields kubectl's client-side apply
touches (containers by name, service ports by port, ...) and the `$patch`,
`$setElementOrder/`, `$retainKeys` and `$deleteFromPrimitiveList/` directives.
"""
from __future__ import annotations

from typing import Any

from .errors import ApiError


def clone(value: Any) -> Any:
    """A copy of a JSON tree (dicts and lists copied, leaves shared), cheaper than deepcopy."""
    kind = type(value)
    if kind is dict:
        return {k: clone(v) for k, v in value.items()}
    if kind is list:
        return [clone(v) for v in value]
    if kind is tuple:
        return tuple(clone(v) for v in value)
    return value

# list field name → candidate merge keys (the first present in the patch items wins)
MERGE_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "volumes": ("name",),
    "env": ("name",),
    "volumeMounts": ("mountPath",),
    "volumeDevices": ("devicePath",),
    "imagePullSecrets": ("name",),
    "hostAliases": ("ip",),
    "ports": ("port", "containerPort"),
    "ownerReferences": ("uid",),
    "conditions": ("type",),
    "topologySpreadConstraints": ("topologyKey",),
    "resourceClaims": ("name",),
}
MERGE_PRIMITIVE_LISTS = frozenset({"finalizers"})


class PatchError(ApiError):
    def __init__(self, message: str, code: int = 422) -> None:
        super().__init__(code, message)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return clone(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# --- RFC 6902 -------------------------------------------------------------------------

def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _split(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise PatchError("invalid JSON pointer %r" % pointer)
    return [_unescape(t) for t in pointer[1:].split("/")]


def _index(container: list[Any], token: str, *, for_add: bool) -> int:
    if for_add and token == "-":
        return len(container)
    if not token.isdigit() or (token != "0" and token.startswith("0")):
        raise PatchError("invalid array index %r" % token)
    i = int(token)
    if i > len(container) or (not for_add and i == len(container)):
        raise PatchError("array index %d out of range" % i)
    return i


def _parent(doc: Any, tokens: list[str]) -> Any:
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict):
            if token not in node:
                raise PatchError("path element %r not found" % token)
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, for_add=False)]
        else:
            raise PatchError("path element %r is not a container" % token)
    return node


def _get(doc: Any, pointer: str) -> Any:
    tokens = _split(pointer)
    if not tokens:
        return doc
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError("path %r not found" % pointer)
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, for_add=False)]
    raise PatchError("path %r not found" % pointer)


def _add(doc: Any, pointer: str, value: Any) -> Any:
    tokens = _split(pointer)
    if not tokens:
        return value
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, for_add=True), value)
    else:
        raise PatchError("cannot add at %r" % pointer)
    return doc


def _remove(doc: Any, pointer: str) -> Any:
    tokens = _split(pointer)
    if not tokens:
        raise PatchError("cannot remove the whole document")
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError("path %r not found" % pointer)
        del parent[last]
    elif isinstance(parent, list):
        del parent[_index(parent, last, for_add=False)]
    else:
        raise PatchError("cannot remove %r" % pointer)
    return doc


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902 on a copy of target; any failing operation fails the whole patch."""
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a list of operations", code=400)
    doc = clone(target)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError("invalid JSON patch operation %r" % (op,), code=400)
        kind, path = op["op"], op["path"]
        if kind in ("add", "replace", "test") and "value" not in op:
            raise PatchError("operation %r needs a value" % kind, code=400)
        if kind == "add":
            doc = _add(doc, path, clone(op["value"]))
        elif kind == "remove":
            doc = _remove(doc, path)
        elif kind == "replace":
            _get(doc, path)
            doc = _add(_remove(doc, path), path, clone(op["value"])) if path else op["value"]
        elif kind in ("move", "copy"):
            value = clone(_get(doc, op.get("from", "")))
            if kind == "move":
                if path.startswith(op["from"] + "/"):
                    raise PatchError("cannot move a value into itself")
                doc = _remove(doc, op["from"])
            doc = _add(doc, path, value)
        elif kind == "test":
            if _get(doc, path) != op["value"]:
                raise PatchError("testing value %s failed" % path)
        else:
            raise PatchError("unknown JSON patch operation %r" % kind, code=400)
    return doc


# --- strategic merge patch ------------------------------------------------------------

def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """Merge patch with keyed list merging and the strategic directives."""
    return _smp(clone(target), patch)


def _smp(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return clone(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: clone(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return None
    result = dict(target) if isinstance(target, dict) else {}
    retain = patch.get("$retainKeys")
    orders = {k[len("$setElementOrder/"):]: v for k, v in patch.items()
              if k.startswith("$setElementOrder/")}
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key[len("$deleteFromPrimitiveList/"):]
            if isinstance(result.get(field), list):
                result[field] = [x for x in result[field] if x not in value]
            continue
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list):
            result[key] = _merge_list(key, result.get(key), value, orders.get(key))
        else:
            merged = _smp(result.get(key), value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
    for key, order in orders.items():
        if key not in patch and isinstance(result.get(key), list):
            result[key] = _merge_list(key, result[key], [], order)
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _merge_key(field: str, items: list[Any]) -> str | None:
    dicts = [x for x in items if isinstance(x, dict)]
    for key in MERGE_KEYS.get(field, ()):
        if dicts and all(key in x for x in dicts):
            return key
    return None


def _merge_list(field: str, current: Any, patch: list[Any], order: Any) -> list[Any]:
    current = current if isinstance(current, list) else []
    if field in MERGE_PRIMITIVE_LISTS and all(not isinstance(x, dict) for x in patch):
        merged = current + [x for x in patch if x not in current]
        return _ordered(merged, order, None)
    key = _merge_key(field, patch) or _merge_key(field, order or []) or None
    if key is None:
        if any(isinstance(x, dict) and x.get("$patch") == "replace" for x in patch):
            return [x for x in patch if not (isinstance(x, dict) and "$patch" in x)]
        return clone(patch) if patch or order is None else current
    out = [clone(x) for x in current]
    if any(isinstance(x, dict) and x.get("$patch") == "replace" for x in patch):
        out = []
    for item in patch:
        if not isinstance(item, dict):
            continue
        if item.get("$patch") == "replace" and set(item) == {"$patch"}:
            continue
        pos = next((i for i, x in enumerate(out) if isinstance(x, dict) and x.get(key) == item.get(key)), None)
        if item.get("$patch") == "delete":
            if pos is not None:
                del out[pos]
            continue
        if pos is None:
            out.append(_smp({}, item))
        else:
            out[pos] = _smp(out[pos], item)
    return _ordered(out, order, key)


def _ordered(items: list[Any], order: Any, key: str | None) -> list[Any]:
    """Apply `$setElementOrder`: listed items first in that order, the rest after."""
    if not isinstance(order, list):
        return items

    def ident(x: Any) -> Any:
        return x.get(key) if key is not None and isinstance(x, dict) else x

    wanted = [ident(x) for x in order]
    rank = {w: i for i, w in enumerate(wanted) if not isinstance(w, (dict, list))}
    return sorted(items, key=lambda x: rank.get(ident(x), len(rank)))
