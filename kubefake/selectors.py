"""Label and field selectors with the grammar and semantics of the Kubernetes API.

Parsed once per request into matchers; a malformed selector raises ApiError(400), as the
real server does.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from .errors import bad_request

_TOKEN = re.compile(r"\s*(==|!=|=|!|\(|\)|,|<|>|[A-Za-z0-9_./-]+)")
_SET_OPS = ("in", "notin")


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!exists", "gt", "lt"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return present
        if self.op == "!exists":
            return not present
        if self.op in ("=", "in"):
            return present and value in self.values
        if self.op in ("!=", "notin"):
            return not present or value not in self.values
        if not present:
            return False
        try:
            number = int(value or "")
        except ValueError:
            return False
        bound = int(self.values[0])
        return number > bound if self.op == "gt" else number < bound


@dataclass(frozen=True, slots=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise bad_request("unable to parse requirement: invalid label selector %r" % text)
        out.append(m.group(1))
        pos = m.end()
    return out


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse `a=b,c!=d,e in (f,g),!h,i` into a LabelSelector."""
    if not text or not text.strip():
        return LabelSelector()
    toks = _tokens(text)
    reqs: list[Requirement] = []
    i = 0

    def fail(why: str) -> Exception:
        return bad_request("unable to parse requirement: %s in label selector %r" % (why, text))

    def word(at: int) -> str:
        if at >= len(toks) or not re.match(r"^[A-Za-z0-9_./-]+$", toks[at]):
            raise fail("expected a key or value")
        return toks[at]

    while i < len(toks):
        if toks[i] == "!":
            reqs.append(Requirement(word(i + 1), "!exists"))
            i += 2
        else:
            key = word(i)
            i += 1
            op = toks[i] if i < len(toks) else ","
            if op == ",":
                reqs.append(Requirement(key, "exists"))
            elif op in ("=", "==", "!="):
                value = toks[i + 1] if i + 1 < len(toks) and toks[i + 1] not in (",",) else ""
                if value in ("(", ")", "=", "==", "!=", "!", "<", ">"):
                    raise fail("expected a value")
                reqs.append(Requirement(key, "!=" if op == "!=" else "=", (value,)))
                i += 2 if value else 1
            elif op in _SET_OPS:
                if i + 1 >= len(toks) or toks[i + 1] != "(":
                    raise fail("expected '(' after %s" % op)
                i += 2
                values: list[str] = []
                while i < len(toks) and toks[i] != ")":
                    if toks[i] != ",":
                        values.append(word(i))
                    i += 1
                if i >= len(toks):
                    raise fail("missing ')'")
                i += 1
                reqs.append(Requirement(key, op, tuple(values)))
            elif op in ("<", ">"):
                bound = word(i + 1)
                if not re.match(r"^-?\d+$", bound):
                    raise fail("%s needs an integer" % op)
                reqs.append(Requirement(key, "gt" if op == ">" else "lt", (bound,)))
                i += 2
            else:
                raise fail("unexpected %r" % op)
        if i < len(toks):
            if toks[i] != ",":
                raise fail("expected ','")
            i += 1
            if i >= len(toks):
                raise fail("trailing ','")
    return LabelSelector(tuple(reqs))


@dataclass(frozen=True, slots=True)
class FieldSelector:
    terms: tuple[tuple[str, bool, str], ...] = ()  # (field path, equal?, value)

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return all((field_value(obj, path) == value) == equal for path, equal, value in self.terms)


def field_value(obj: Mapping[str, Any], path: str) -> str:
    node: Any = obj
    for part in path.split("."):
        if not isinstance(node, Mapping):
            return ""
        node = node.get(part)
    if node is None:
        return ""
    if isinstance(node, bool):
        return "true" if node else "false"
    return str(node)


def parse_field_selector(text: str | None, allowed: Iterable[str]) -> FieldSelector:
    """Parse `metadata.name=x,metadata.namespace!=y`; unknown fields are a 400."""
    if not text or not text.strip():
        return FieldSelector()
    allowed = set(allowed) | {"metadata.name", "metadata.namespace"}
    terms = []
    for part in text.split(","):
        part = part.strip()
        m = re.match(r"^([^=!]+)(==|!=|=)(.*)$", part)
        if not m:
            raise bad_request("invalid selector: '%s'; can't understand '%s'" % (text, part))
        path, op, value = m.group(1).strip(), m.group(2), m.group(3).strip()
        if path not in allowed:
            raise bad_request('field label not supported: %s' % path)
        terms.append((path, op != "!=", value))
    return FieldSelector(tuple(terms))


Matcher = Callable[[Mapping[str, Any]], bool]


def matcher(labels: LabelSelector, fields: FieldSelector) -> Matcher:
    """One predicate over whole objects combining both selectors."""
    if not labels.requirements and not fields.terms:
        return lambda obj: True

    def match(obj: Mapping[str, Any]) -> bool:
        return labels.matches((obj.get("metadata") or {}).get("labels")) and fields.matches(obj)

    return match
