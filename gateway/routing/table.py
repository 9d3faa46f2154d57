"""The route table: data the data plane reads on every request, immutable but for one memo.

Built by gateway.routing.build from a FleetSnapshot; swapped whole when the fleet changes.
Requests hold the Route they matched, so a swap never changes an in-flight request.
Lookups are dict hits and a walk up the path's segments: no config logic at request time.
The one mutable part is `RouteTable.route_memo`, which the request path fills (see there).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from .backends import Backend, UpstreamEndpoint
from .certificates import TLSCertificate
from .plan import WarmPlan, warm_plan
from .policy import RoutePolicy

# Backend and UpstreamEndpoint live in backends.py; the data plane imports them from here
# too, as the types a Route and a RouteTable hand it.
__all__ = ["Backend", "EMPTY_TABLE", "Route", "RouteTable", "UpstreamEndpoint", "VirtualHost",
           "describe_table", "find_vhost", "match_path", "route"]


@dataclass(frozen=True, slots=True)
class Route:
    host: str | None
    path: str
    path_type: str  # Exact | Prefix | ImplementationSpecific | Regex | Default
    ingress: str  # "namespace/name", the metrics label
    backend: Backend | None
    policy: RoutePolicy = field(default_factory=RoutePolicy)
    created: str = ""
    # the policies as a precomputed table (plan.py; None: the general path), derived
    warm: WarmPlan | None = field(init=False, default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "warm", warm_plan(self.backend, self.policy, self.ingress))


@dataclass(frozen=True, slots=True)
class VirtualHost:
    """Routes of one host, indexed for lookup."""
    exact: Mapping[str, Route]
    prefix: Mapping[str, Route]  # keyed by the path without trailing slash ("/" stays "/")
    regex: tuple[tuple[re.Pattern[str], int, Route], ...]  # (pattern, length, route), longest first


@dataclass(frozen=True)
class RouteTable:
    hosts: Mapping[str, VirtualHost]
    wildcards: Mapping[str, VirtualHost]  # "*.example.com" stored as "example.com"
    any_host: VirtualHost | None
    default: Route | None
    routes: tuple[Route, ...] = ()
    version: int = 0
    # lowercase names of request headers some route's policy reads (canary, cluster-by-header,
    # hashing, cookies, CORS); the parser keeps only these, and only when there are any
    request_headers: frozenset[bytes] = frozenset()
    # host name ("*.example.com" for a wildcard) -> certificate from an Ingress `tls` entry
    tls: Mapping[str, TLSCertificate] = field(default_factory=dict)
    # THE ONE MUTABLE PART of a table: (raw Host bytes, raw path bytes) -> route, a memo of
    # route() that the request path fills and clears (bounded by its writer). Safe because
    # route() depends on nothing else; it is never copied and dies with the table.
    route_memo: dict[tuple[bytes, bytes], "Route | None"] = field(default_factory=dict, compare=False, repr=False)


EMPTY_TABLE = RouteTable(hosts={}, wildcards={}, any_host=None, default=None)


def find_vhost(table: RouteTable, host: str) -> VirtualHost | None:
    vh = table.hosts.get(host)
    if vh is not None:
        return vh
    if table.wildcards:
        dot = host.find(".")
        if dot > 0:
            vh = table.wildcards.get(host[dot + 1:])
            if vh is not None:
                return vh
    return table.any_host


def match_path(vh: VirtualHost, path: str) -> Route | None:
    """Longest match wins; Exact beats Prefix at equal length; Prefix is element-wise."""
    best = vh.exact.get(path)
    if best is not None:
        return best
    best_len = -1
    if vh.prefix:
        p = path.rstrip("/") or "/"
        while True:
            best = vh.prefix.get(p)
            if best is not None:
                best_len = len(p)
                break
            if p == "/":
                break
            cut = p.rfind("/")
            p = p[:cut] if cut > 0 else "/"
    for pattern, length, route in vh.regex:
        if length <= best_len:
            break
        if pattern.match(path):
            return route
    return best


def route(table: RouteTable, host: str, path: str) -> Route | None:
    """The route for a request (host already normalized, path without query), else the
    table's default route, else None (404)."""
    vh = table.hosts.get(host)
    if vh is None:
        vh = find_vhost(table, host)
    if vh is not None:
        r = match_path(vh, path)
        if r is not None:
            return r
    return table.default


def describe_table(table: RouteTable, health: Mapping[str, bool] | None = None) -> dict[str, Any]:
    """JSON for /debug/routes."""
    def backend_json(b: Backend | None) -> Any:
        if b is None:
            return None
        return {
            "service": b.service, "namespace": b.namespace, "port": b.port,
            "clusters": [
                {"cluster": c.cluster, "zone": c.zone, "service": b.service, "port": b.port,
                 "weight": len(c.endpoints),
                 "endpoints": [{"address": e.address, "port": e.port,
                                "healthy": True if health is None else health.get(e.key, True)}
                               for e in c.endpoints]}
                for c in b.clusters],
        }

    def route_json(r: Route) -> dict[str, Any]:
        out: dict[str, Any] = {"host": r.host or "*", "path": r.path, "pathType": r.path_type,
                               "ingress": r.ingress, "backend": backend_json(r.backend)}
        extra = r.policy.describe()
        if extra:
            out["policy"] = extra
        return out

    return {"version": table.version, "routes": [route_json(r) for r in table.routes],
            "defaultBackend": route_json(table.default) if table.default else None}
