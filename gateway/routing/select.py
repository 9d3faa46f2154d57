"""Which backend serves a request: canaries and weighted destinations, as pure functions.

Randomness is an argument (Envoy's `route(headers, random_value)`), so tests choose it and
production passes `random.random()`. Health is asked through a callback so this module
stays free of I/O and mutable state.
"""
from __future__ import annotations

from typing import Callable, Mapping
from urllib.parse import parse_qsl

from .backends import Backend
from .policy import CanaryRule, RoutePolicy
from .table import Route


class RequestView:
    """What selection may look at: the few request headers the table cares about (lowercase
    names), the cookie header and the query string; parsed lazily, at most once.

    A plain slotted class rather than a dataclass: one is made per request whose policy
    reads the request, and the dataclass __init__ (a default factory check, a store per
    field) cost ~15 % more."""

    __slots__ = ("headers", "query_string", "remote_addr", "host", "uri", "_cookies", "_query")

    def __init__(self, headers: Mapping[str, str] | None = None, query_string: str = "", remote_addr: str = "",
                 host: str = "", uri: str = "") -> None:
        self.headers: Mapping[str, str] = {} if headers is None else headers
        self.query_string = query_string
        self.remote_addr = remote_addr
        self.host = host
        self.uri = uri
        self._cookies: dict[str, str] | None = None
        self._query: dict[str, str] | None = None

    def __repr__(self) -> str:
        return "RequestView(headers=%r, query_string=%r, remote_addr=%r, host=%r, uri=%r)" % (
            self.headers, self.query_string, self.remote_addr, self.host, self.uri)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RequestView):
            return NotImplemented
        return ((self.headers, self.query_string, self.remote_addr, self.host, self.uri)
                == (other.headers, other.query_string, other.remote_addr, other.host, other.uri))

    __hash__ = None  # type: ignore[assignment]  # mutable (its lazy parts), like the dataclass was

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
        value = req.headers.get(c.header)
        if value is not None:  # (absent: _NEXT, without the call)
            r = _match(value, c.header_value, c.header_pattern)
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
        # a rule that decides wins; else the weights of the undecided ones, in order, share
        # rand (drawn as the loop goes: the first whose cumulative share exceeds rand)
        drawn: CanaryRule | None = None
        acc = 0.0
        for c in policy.canaries:
            if c.cookie is None and c.query is None:  # a header rule or none: _rule_outcome in line
                value = req.headers.get(c.header) if c.header is not None else None
                outcome = _NEXT if value is None else _match(value, c.header_value, c.header_pattern)
            else:
                outcome = _rule_outcome(c, req)
            if outcome == _YES:
                if c.backend is not None and usable(c.backend):
                    return c.backend, c.ingress
                break  # a forced canary that cannot serve: the main backend
            if outcome == _NEXT and c.weight > 0 and drawn is None:
                acc += c.weight / c.weight_total
                if rand < acc:
                    drawn = c
        else:
            if drawn is not None and drawn.backend is not None and usable(drawn.backend):
                return drawn.backend, drawn.ingress
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
