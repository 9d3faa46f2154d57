"""Pure parsing of a folder of Kubernetes manifests into frozen objects and diagnostics.

No I/O here: the caller (fleet/files.py) lists and reads files; these functions turn text
into objects and problems that a test or `fleetgate validate` can assert on.
"""
from __future__ import annotations

import json
from pathlib import PurePath
from typing import Any, Iterable, Mapping, Sequence

import yaml

from .objects import PARSERS, KubeObject, ObjectError, describe, is_known, parse_object
from .snapshot import Diagnostic

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
_KNOWN_KINDS = {kind: group for (group, kind) in PARSERS}
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def is_manifest_path(relative: PurePath) -> bool:
    """A file we read: a YAML/JSON name with no hidden part (ConfigMap mounts keep their
    real files under `..data`/`..<timestamp>`; the visible names are symlinks into it)."""
    return (relative.suffix.lower() in MANIFEST_SUFFIXES
            and not any(part.startswith(".") for part in relative.parts))


def _documents(path: str, text: str) -> tuple[list[tuple[int, Any]], list[Diagnostic]]:
    """(line, document) pairs; a syntax error stops the file and is one diagnostic."""
    if path.lower().endswith(".json"):
        try:
            return [(1, json.loads(text))], []
        except json.JSONDecodeError as exc:
            return [], [Diagnostic(path, f"line {exc.lineno}", f"JSON syntax error: {exc.msg}")]
    docs: list[tuple[int, Any]] = []
    loader = _Loader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            docs.append((node.start_mark.line + 1, loader.construct_document(node)))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f"line {mark.line + 1}" if mark is not None else "line ?"
        return docs, [Diagnostic(path, line, f"YAML syntax error: {exc.problem or exc.context}")]
    except yaml.YAMLError as exc:
        return docs, [Diagnostic(path, "line ?", f"YAML syntax error: {exc}")]
    finally:
        loader.dispose()
    return docs, []


def _parse_raw(path: str, line: int, raw: Any, out: list[KubeObject],
               diags: list[Diagnostic], *, in_list: bool = False) -> None:
    if raw is None:
        return  # an empty document (a stray `---`)
    if not isinstance(raw, Mapping):
        diags.append(Diagnostic(path, f"line {line}",
                                f"expected a Kubernetes object (a mapping), got {type(raw).__name__}"))
        return
    kind, api_version = raw.get("kind"), raw.get("apiVersion")
    if not kind or not api_version:
        missing = " and ".join(k for k, v in (("apiVersion", api_version), ("kind", kind)) if not v)
        diags.append(Diagnostic(path, describe(raw) if kind else f"line {line}",
                                f"{missing}: required (not a Kubernetes object)"))
        return
    if kind == "List" and not in_list:
        items = raw.get("items")
        if items is not None and not isinstance(items, list):
            diags.append(Diagnostic(path, f"line {line}", "items: expected a list"))
            return
        for item in items or ():
            _parse_raw(path, line, item, out, diags, in_list=True)
        return
    if not is_known(raw):
        group = _KNOWN_KINDS.get(str(kind))
        if group is not None:  # a kind we read, under an apiVersion we do not
            diags.append(Diagnostic(path, describe(raw),
                                    f"apiVersion {api_version}: {kind} is read only from API group "
                                    f"{group or 'core (v1)'}; ignored",
                                    severity="warning"))
        return  # Deployments, ConfigMaps, ...: not ours, not a problem
    try:
        out.append(parse_object(raw))
    except ObjectError as exc:
        diags.append(Diagnostic(path, describe(raw), str(exc)))


def parse_file(path: PurePath | str, text: str) -> tuple[list[KubeObject], list[Diagnostic]]:
    """Objects of the kinds we read, and the problems found, in one file's text."""
    name = str(path)
    objects: list[KubeObject] = []
    docs, diags = _documents(name, text)
    for line, raw in docs:
        _parse_raw(name, line, raw, objects, diags)
    return objects, diags


def has_errors(diagnostics: Iterable[Diagnostic]) -> bool:
    """Errors (not warnings) make a file's change invalid: its last good objects stay."""
    return any(d.severity == "error" for d in diagnostics)


def object_id(obj: KubeObject) -> str:
    return f"{obj.kind}/{obj.meta.namespace}/{obj.meta.name}"


Origins = dict[tuple[str, str, str], str]  # (kind, namespace, name) -> file path


def merge_files(per_file: Mapping[str, Sequence[KubeObject]]) -> tuple[list[KubeObject], Origins, list[Diagnostic]]:
    """All files' objects and the file each came from; a kind/namespace/name seen twice
    keeps the first (by sorted path, then file order) and reports the later one."""
    origins: Origins = {}
    objects: list[KubeObject] = []
    diags: list[Diagnostic] = []
    for path in sorted(per_file):
        for obj in per_file[path]:
            key = (obj.kind, obj.meta.namespace, obj.meta.name)
            where = origins.get(key)
            if where is not None:
                diags.append(Diagnostic(path, object_id(obj),
                                        f"duplicate of the object in {where}; this one is ignored"))
                continue
            origins[key] = path
            objects.append(obj)
    return objects, origins, diags
