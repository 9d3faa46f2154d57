"""Per-route policy: the annotation-driven knobs the data plane reads per request.

Plain frozen data with defaults that match ingress-nginx; annotations.py fills it in and
build.py resolves the backends it names (backends.py: the resolved side, which imports
nothing from here). Nothing here changes after a table is built.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Mapping

from .backends import Backend


@dataclass(frozen=True, slots=True)
class CanaryRule:
    """One canary Ingress attached to a main route (ingress-nginx/MSE semantics)."""
    ingress: str
    service: str
    port: str
    header: str | None = None  # lowercase header name
    header_value: str | None = None
    header_pattern: re.Pattern[str] | None = None
    cookie: str | None = None
    query: str | None = None
    query_value: str | None = None
    query_pattern: re.Pattern[str] | None = None
    weight: int = 0
    weight_total: int = 100
    backend: Backend | None = None

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ingress": self.ingress, "service": self.service, "port": self.port}
        for name in ("header", "header_value", "cookie", "query", "query_value"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.header_pattern is not None:
            out["header_pattern"] = self.header_pattern.pattern
        if self.query_pattern is not None:
            out["query_pattern"] = self.query_pattern.pattern
        if self.weight:
            out["weight"] = f"{self.weight}/{self.weight_total}"
        return out


@dataclass(frozen=True, slots=True)
class WeightedService:
    """One line of the `destination` annotation: `30% svc.ns.svc.cluster.local:80`."""
    weight: int
    namespace: str
    service: str
    port: str
    backend: Backend | None = None


@dataclass(frozen=True, slots=True)
class ServiceRef:
    """`[ns/]name[:port]` as mirror-target-service and default-backend write it."""
    namespace: str
    service: str
    port: str  # number or name; "" = the Service's first port
    backend: Backend | None = None


@dataclass(frozen=True, slots=True)
class MirrorPolicy:
    service: ServiceRef | None = None  # mirror-target-service
    url_host: str | None = None  # nginx mirror-target: a URL
    url_port: int = 80
    url_path: str | None = None
    percentage: float = 100.0
    request_body: bool = True
    host: str | None = None  # mirror-host; default: original Host + "-shadow"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    on_error: bool = True
    on_timeout: bool = True
    on_status: frozenset[int] = frozenset()
    non_idempotent: bool = False
    off: bool = False
    tries: int = 3
    timeout: float | None = None  # proxy-next-upstream-timeout: seconds for all tries


@dataclass(frozen=True, slots=True)
class AffinityCookie:
    name: str = "INGRESSCOOKIE"
    path: str | None = None
    max_age: int | None = None


@dataclass(frozen=True, slots=True)
class CorsPolicy:
    allow_origin: tuple[str, ...] = ("*",)
    allow_methods: str = "GET, PUT, POST, DELETE, PATCH, OPTIONS"
    allow_headers: str = ("DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,"
                          "Content-Type,Range,Authorization")
    expose_headers: str | None = None
    allow_credentials: bool = True
    max_age: int = 1728000


@dataclass(frozen=True, slots=True)
class HealthCheck:
    path: str | None = None  # None: TCP connect only
    interval: float = 2.0
    healthy_threshold: int = 2
    unhealthy_threshold: int = 2
    grpc: str | None = None  # backend-protocol GRPC ("h2c") or GRPCS ("tls"): grpc.health.v1.Health/Check
    grpc_service: str = ""  # the service asked about ("": the server as a whole)


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    send_timeout: float = 60.0
    total_timeout: float | None = None  # mse/higress `timeout`, includes retries
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_body_size: int | None = None  # bytes; None = no limit
    # member-cluster control
    cluster_weights: Mapping[str, int] | None = None
    cluster_by_header: str | None = None  # lowercase header name
    cluster_priority: tuple[str, ...] | None = None
    local_zone: str | None = None
    # load balancing
    load_balance: str = "round_robin"  # round_robin | least_conn | random | ewma (peak EWMA)
    hash_by: str | None = None  # $request_uri, $host, $remote_addr, $http_<name>, $arg_<name>
    affinity: AffinityCookie | None = None
    # splitting
    canaries: tuple[CanaryRule, ...] = ()
    destinations: tuple[WeightedService, ...] = ()
    default_backend: ServiceRef | None = None
    mirror: MirrorPolicy | None = None
    # passive and active health
    consecutive_5xx: int = 5
    health_check: HealthCheck | None = None
    # request rewriting and answers generated by the gateway
    rewrite_target: str | None = None
    upstream_vhost: str | None = None
    app_root: str | None = None
    ssl_redirect: bool | None = None  # None: not annotated (build: on when the Ingress has tls)
    force_ssl_redirect: bool = False
    backend_protocol: str = "HTTP"
    cors: CorsPolicy | None = None
    whitelist: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None = None

    # True when the data plane must look at the request beyond host and path (canary,
    # cluster choice, hashing, rewriting...); False keeps the plain round-robin fast path.
    # Computed once here, read per request.
    per_request: bool = field(init=False, default=False, compare=False)
    # endpoint choice is plain round robin (no cluster policy, hashing or affinity)
    plain_pick: bool = field(init=False, default=True, compare=False)
    # some rule reads request headers, cookies or the query
    needs_view: bool = field(init=False, default=False, compare=False)
    # nothing per request at all: plain round robin, no policy, no total deadline
    fast: bool = field(init=False, default=True, compare=False)
    # the same for requests that came over TLS (HTTPS redirects do not apply to them)
    fast_tls: bool = field(init=False, default=True, compare=False)
    # upstream connections speak TLS (backend-protocol HTTPS): pools of their own
    upstream_tls: bool = field(init=False, default=False, compare=False)
    # the one-call send on a warm plain connection may be used (plain pick, plain upstream)
    fast_send: bool = field(init=False, default=True, compare=False)
    # a policy'd request (weighted clusters, hashing...) may still go on a warm plain
    # connection in one call: round robin (nothing counted per endpoint), plain upstream
    warm_send: bool = field(init=False, default=True, compare=False)
    # backend-protocol GRPC/GRPCS: HTTP/2 end to end (protocol/h2_grpc.py); HTTP/1 clients refused
    grpc: bool = field(init=False, default=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "plain_pick", not (
            self.cluster_weights or self.cluster_by_header or self.cluster_priority or self.local_zone
            or self.load_balance != "round_robin" or self.hash_by or self.affinity))
        object.__setattr__(self, "needs_view", bool(
            self.cluster_by_header or self.hash_by or self.affinity
            or any(c.header or c.cookie or c.query for c in self.canaries)))
        per_request_tls = bool(
            self.canaries or self.destinations or self.cluster_weights or self.cluster_by_header
            or self.cluster_priority or self.local_zone or self.load_balance != "round_robin"
            or self.hash_by or self.affinity or self.mirror or self.rewrite_target
            or self.upstream_vhost or self.app_root or self.cors or self.whitelist is not None)
        object.__setattr__(self, "per_request", per_request_tls or bool(self.ssl_redirect or self.force_ssl_redirect))
        object.__setattr__(self, "upstream_tls", self.backend_protocol == "HTTPS")
        object.__setattr__(self, "grpc", self.backend_protocol in ("GRPC", "GRPCS"))
        object.__setattr__(self, "fast_send", self.plain_pick and not self.upstream_tls and not self.grpc)
        object.__setattr__(self, "warm_send",
                           self.load_balance == "round_robin" and not self.upstream_tls and not self.grpc)
        object.__setattr__(self, "fast", self.fast_send and not self.per_request and self.total_timeout is None)
        object.__setattr__(self, "fast_tls", self.fast_send and not per_request_tls and self.total_timeout is None)

    def describe(self) -> dict[str, Any]:
        """Only the annotated fields that differ from the defaults, for /debug/routes."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _DERIVED or value == getattr(DEFAULT_POLICY, f.name):
                continue
            if f.name == "canaries":
                out[f.name] = [c.describe() for c in value]
            elif f.name == "destinations":
                out[f.name] = [{"weight": d.weight, "service": f"{d.namespace}/{d.service}:{d.port}"}
                               for d in value]
            else:
                out[f.name] = _plain(value)
        return out


def _plain(value: Any) -> Any:
    """JSON-friendly form of policy values."""
    if isinstance(value, (frozenset, set, tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value) if f.name != "backend"}
    if isinstance(value, re.Pattern):
        return value.pattern
    if isinstance(value, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
        return str(value)
    return value


DEFAULT_POLICY = RoutePolicy()
# computed from the annotated fields, for the data plane; not shown by describe()
_DERIVED = frozenset(("per_request", "plain_pick", "needs_view", "fast", "fast_tls", "upstream_tls", "fast_send",
                      "warm_send", "grpc"))
