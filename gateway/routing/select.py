"""Which backend serves a request: canaries and weighted destinations, as pure functions.

Randomness is an argument (Envoy's `route(headers, random_value)`), so tests choose it and
production passes `random.random()`. Health is asked through a callback so this module
stays free of I/O and mutable state.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping
from urllib.parse import parse_qsl

from .backends import Backend
from .policy import CanaryRule, RoutePolicy
from .table import Route


@dataclass(slots=True)
class RequestView:
    """What selection may look at: the few request headers the table cares about (lowercase
    names), the cookie header and the query string; parsed lazily, at most once."""
    headers: Mapping[str, str] = field(default_factory=dict)
    query_string: str = ""
    remote_addr: str = ""
    host: str = ""
    uri: str = ""
    _cookies: dict[str, str] | None = None
    _query: dict[str, str] | None = None

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def cookie(self, name: str) -> str | None:
        if self._cookies is None:
            self._cookies = parse_cookies(self.headers.get("cookie", ""))
        return self._cookies.get(name)

    def arg(self, name: str) -> str | None:
        if self._query is None:
            self._query = dict(parse_qsl(self.query_string, keep_blank_values=True))
        return self._query.get(name)


def parse_cookies(header: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name and name not in out:
            out[name] = value.strip().strip('"')
    return out


# Outcome of one rule for one canary: route to it, exclude it, or look at the next rule.
_YES, _NO, _NEXT = 1, 0, -1


def _match(value: str | None, exact: str | None, pattern) -> int:  # type: ignore[no-untyped-def]
    if value is None:
        return _NEXT
    if exact is not None:
        return _YES if value == exact else _NEXT
    if pattern is not None:
        return _YES if pattern.match(value) else _NEXT
    if value == "always":
        return _YES
    if value == "never":
        return _NO
    return _NEXT


def _rule_outcome(c: CanaryRule, req: RequestView) -> int:
    """header, then cookie, then query (MSE), each deciding or passing on."""
    if c.header is not None:
        r = _match(req.header(c.header), c.header_value, c.header_pattern)
        if r != _NEXT:
            return r
    if c.cookie is not None:
        v = req.cookie(c.cookie)
        if v == "always":
            return _YES
        if v == "never":
            return _NO
    if c.query is not None:
        r = _match(req.arg(c.query), c.query_value, c.query_pattern)
        if r != _NEXT:
            return r
    return _NEXT


def choose_backend(route: Route, req: RequestView, rand: float,
                   usable: Callable[[Backend], bool]) -> tuple[Backend | None, str]:
    """The backend for this request and the label it is counted under (the canary
    Ingress, or the route's own). A canary or destination without a usable endpoint falls
    back to the main backend."""
    policy: RoutePolicy = route.policy
    if policy.canaries:
        weighted: list[CanaryRule] = []
        for c in policy.canaries:
            outcome = _rule_outcome(c, req)
            if outcome == _YES:
                if c.backend is not None and usable(c.backend):
                    return c.backend, c.ingress
                break  # a forced canary that cannot serve: the main backend
            if outcome == _NEXT and c.weight > 0:
                weighted.append(c)
        else:
            acc = 0.0
            for c in weighted:
                acc += c.weight / c.weight_total
                if rand < acc:
                    if c.backend is not None and usable(c.backend):
                        return c.backend, c.ingress
                    break
    if policy.destinations:
        acc_w = 0
        target = rand * 100
        for d in policy.destinations:
            acc_w += d.weight
            if target < acc_w:
                if d.backend is not None and usable(d.backend):
                    return d.backend, route.ingress
                break
        for d in policy.destinations:  # the drawn one cannot serve: any that can
            if d.backend is not None and usable(d.backend):
                return d.backend, route.ingress
    return route.backend, route.ingress
