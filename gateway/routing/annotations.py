"""Ingress annotations → RoutePolicy (+ a CanaryRule for canary Ingresses), with every bad
value reported, never fatal.

Users write the same annotation under several prefixes (ingress-nginx, Alibaba MSE,
Higress) plus ours; all are accepted. An invalid value becomes an error on the Ingress and
fails safe: a policy with an invalid value never sends traffic where the valid one would
not. An invalid canary rule disables that canary (the main backend serves, as
ingress-nginx's false canary rule), an invalid cluster, destination or mirror annotation
disables that policy, an invalid `whitelist-source-range` refuses every client, and any
other invalid value keeps its default. ON_INVALID says which, per annotation.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

from .policy import (DEFAULT_POLICY, AffinityCookie, CanaryRule, CorsPolicy, HealthCheck,
                     MirrorPolicy, RetryPolicy, RoutePolicy, ServiceRef, WeightedService)

PREFIXES = ("nginx.ingress.kubernetes.io/", "mse.ingress.kubernetes.io/", "higress.io/",
            "fleetgate.io/")


@dataclass(frozen=True, slots=True)
class AnnotationProblem:
    annotation: str
    message: str
    severity: str = "error"


# --- value parsers (each raises ValueError with a message for the diagnostic) --------------

def _seconds(value: str) -> float:
    """nginx-style durations: seconds, optionally with an `s` or `ms` suffix."""
    v = value.strip().lower()
    try:
        seconds = float(v[:-2]) / 1000 if v.endswith("ms") else float(v.rstrip("s"))
    except ValueError:
        raise ValueError("expected seconds such as 5, 0.5 or 500ms") from None
    if not 0 < seconds <= 86400:
        raise ValueError("must be between 0 and 86400 seconds")
    return seconds


_SIZE = re.compile(r"^\s*(\d+)\s*([kKmMgG]?)\s*$")


def _size(value: str) -> int | None:
    """nginx sizes: `1m`, `512k`, `0` (= unlimited)."""
    m = _SIZE.match(value)
    if not m:
        raise ValueError("expected a size such as 8m, 512k or 0")
    number = int(m.group(1)) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[m.group(2).lower()]
    return None if number == 0 else number


def _int(lo: int, hi: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            n = int(value.strip())
        except ValueError:
            raise ValueError("expected a whole number") from None
        if not lo <= n <= hi:
            raise ValueError(f"must be between {lo} and {hi}")
        return n
    return parse


def _bool(value: str) -> bool:
    v = value.strip().lower()
    if v in ("true", "on", "1", "yes"):
        return True
    if v in ("false", "off", "0", "no"):
        return False
    raise ValueError("expected true or false")


def _regex(value: str) -> re.Pattern[str]:
    try:
        return re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression: {exc}") from None


def _header_name(value: str) -> str:
    v = value.strip().lower()
    if not v or not re.fullmatch(r"[!#$%&'*+.^_`|~0-9a-z-]+", v):
        raise ValueError("not a valid header name")
    return v


def _cluster_weights(value: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in value.split(","):
        name, sep, weight = part.strip().partition("=")
        if not sep or not name.strip():
            raise ValueError("expected cluster=weight pairs such as zone-a=80,zone-b=20")
        try:
            w = int(weight)
        except ValueError:
            raise ValueError(f"weight of {name.strip()} is not a whole number") from None
        if w < 0:
            raise ValueError(f"weight of {name.strip()} is negative")
        out[name.strip()] = w
    if not any(out.values()):
        raise ValueError("at least one weight must be positive")
    return out


def _cluster_list(value: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in value.split(",") if n.strip())
    if not names:
        raise ValueError("expected a comma-separated list of member clusters")
    return names


def _service_ref(namespace: str) -> Callable[[str], ServiceRef]:
    """`[ns/]name[:port]`."""
    def parse(value: str) -> ServiceRef:
        v = value.strip()
        m = re.fullmatch(r"(?:([a-z0-9-]+)/)?([a-z0-9]([a-z0-9-]*[a-z0-9])?)(?::([a-z0-9-]+))?", v)
        if not m:
            raise ValueError("expected [namespace/]service[:port]")
        return ServiceRef(m.group(1) or namespace, m.group(2), m.group(4) or "")
    return parse


def _destinations(namespace: str) -> Callable[[str], tuple[WeightedService, ...]]:
    """MSE/Higress `destination`: one `NN% host:port` per line, weights summing to 100."""
    line_re = re.compile(r"^\s*(\d+)%\s+([a-z0-9.-]+?)(?::(\d+))?\s*$")

    def parse(value: str) -> tuple[WeightedService, ...]:
        out = []
        for line in value.strip().splitlines():
            if not line.strip():
                continue
            m = line_re.match(line)
            if not m:
                raise ValueError(f"line {line.strip()!r}: expected `NN% service.namespace.svc.cluster.local:port`")
            host = m.group(2)
            parts = host.split(".")
            name, ns = parts[0], (parts[1] if len(parts) > 1 else namespace)
            out.append(WeightedService(int(m.group(1)), ns, name, m.group(3) or ""))
        if not out:
            raise ValueError("no destinations")
        total = sum(d.weight for d in out)
        if total != 100:
            raise ValueError(f"weights sum to {total}, not 100")
        return tuple(out)
    return parse


_NEXT_UPSTREAM = {"error", "timeout", "http_500", "http_502", "http_503", "http_504", "http_404",
                  "http_429", "http_403", "non_idempotent", "off", "invalid_header"}


def _next_upstream(value: str) -> dict[str, Any]:
    tokens = value.replace(",", " ").split()
    bad = [t for t in tokens if t not in _NEXT_UPSTREAM]
    if bad or not tokens:
        raise ValueError(f"unknown condition(s) {', '.join(bad) or '(none)'}; use error timeout "
                         "http_502 http_503 http_504 non_idempotent off")
    return {"on_error": "error" in tokens or "invalid_header" in tokens, "on_timeout": "timeout" in tokens,
            "on_status": frozenset(int(t[5:]) for t in tokens if t.startswith("http_")),
            "non_idempotent": "non_idempotent" in tokens, "off": "off" in tokens}


def _url(value: str) -> tuple[str, int, str | None]:
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected an http:// URL")
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80), (parts.path or None)


def _percentage(value: str) -> float:
    try:
        p = float(value)
    except ValueError:
        raise ValueError("expected a number from 0 to 100") from None
    if not 0 <= p <= 100:
        raise ValueError("must be between 0 and 100")
    return p


def _cidrs(value: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    try:
        return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in value.split(",") if v.strip())
    except ValueError as exc:
        raise ValueError(f"invalid CIDR: {exc}") from None


def _choice(*options: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        v = value.strip()
        if v.lower() not in [o.lower() for o in options]:
            raise ValueError(f"expected one of {', '.join(options)}")
        return next(o for o in options if o.lower() == v.lower())
    return parse


_HASH_BY = re.compile(r"^\$(request_uri|host|remote_addr|http_[a-z0-9_]+|arg_[a-z0-9_]+)$")


def _hash_by(value: str) -> str:
    v = value.strip()
    if not _HASH_BY.match(v):
        raise ValueError("expected $request_uri, $host, $remote_addr, $http_<name> or $arg_<name>")
    return v


def _path(value: str) -> str:
    v = value.strip()
    if not v.startswith("/") and not v.startswith("http"):
        raise ValueError("expected a path starting with /")
    return v


# bare name -> (group, key, parser factory taking the Ingress namespace)
_Parser = Callable[[str], Any]
_SPEC: dict[str, tuple[str, str, Callable[[str], _Parser]]] = {
    "proxy-connect-timeout": ("policy", "connect_timeout", lambda ns: _seconds),
    "proxy-read-timeout": ("policy", "read_timeout", lambda ns: _seconds),
    "proxy-send-timeout": ("policy", "send_timeout", lambda ns: _seconds),
    "timeout": ("policy", "total_timeout", lambda ns: _seconds),
    "proxy-body-size": ("policy", "max_body_size", lambda ns: _size),
    "proxy-next-upstream": ("retry", "*", lambda ns: _next_upstream),
    "proxy-next-upstream-tries": ("retry", "tries", lambda ns: _int(0, 20)),
    "proxy-next-upstream-timeout": ("retry", "timeout", lambda ns: _seconds),
    "cluster-weights": ("policy", "cluster_weights", lambda ns: _cluster_weights),
    "cluster-by-header": ("policy", "cluster_by_header", lambda ns: _header_name),
    "cluster-priority": ("policy", "cluster_priority", lambda ns: _cluster_list),
    "local-zone": ("policy", "local_zone", lambda ns: str.strip),
    "load-balance": ("policy", "load_balance", lambda ns: _choice("round_robin", "least_conn", "random", "ewma")),
    "upstream-hash-by": ("policy", "hash_by", lambda ns: _hash_by),
    "affinity": ("affinity", "on", lambda ns: _choice("cookie")),
    "session-cookie-name": ("affinity", "name", lambda ns: str.strip),
    "session-cookie-path": ("affinity", "path", lambda ns: _path),
    "session-cookie-max-age": ("affinity", "max_age", lambda ns: _int(0, 10 * 365 * 86400)),
    "destination": ("policy", "destinations", _destinations),
    "default-backend": ("policy", "default_backend", _service_ref),
    "mirror-target-service": ("mirror", "service", _service_ref),
    "mirror-percentage": ("mirror", "percentage", lambda ns: _percentage),
    "mirror-target": ("mirror", "url", lambda ns: _url),
    "mirror-request-body": ("mirror", "request_body", lambda ns: _bool),
    "mirror-host": ("mirror", "host", lambda ns: str.strip),
    "consecutive-5xx": ("policy", "consecutive_5xx", lambda ns: _int(1, 1000)),
    "health-check-path": ("health", "path", lambda ns: _path),
    "health-check-interval": ("health", "interval", lambda ns: _seconds),
    "health-check-grpc-service": ("health", "grpc_service", lambda ns: str.strip),
    "healthy-threshold": ("health", "healthy_threshold", lambda ns: _int(1, 100)),
    "unhealthy-threshold": ("health", "unhealthy_threshold", lambda ns: _int(1, 100)),
    "rewrite-target": ("policy", "rewrite_target", lambda ns: _path),
    "upstream-vhost": ("policy", "upstream_vhost", lambda ns: str.strip),
    "app-root": ("policy", "app_root", lambda ns: _path),
    "ssl-redirect": ("policy", "ssl_redirect", lambda ns: _bool),
    "force-ssl-redirect": ("policy", "force_ssl_redirect", lambda ns: _bool),
    "backend-protocol": ("policy", "backend_protocol", lambda ns: _choice("HTTP", "HTTPS", "GRPC", "GRPCS")),
    "enable-cors": ("cors", "on", lambda ns: _bool),
    "cors-allow-origin": ("cors", "allow_origin",
                          lambda ns: lambda v: tuple(o.strip() for o in v.split(",") if o.strip())),
    "cors-allow-methods": ("cors", "allow_methods", lambda ns: str.strip),
    "cors-allow-headers": ("cors", "allow_headers", lambda ns: str.strip),
    "cors-expose-headers": ("cors", "expose_headers", lambda ns: str.strip),
    "cors-allow-credentials": ("cors", "allow_credentials", lambda ns: _bool),
    "cors-max-age": ("cors", "max_age", lambda ns: _int(0, 10 * 365 * 86400)),
    "whitelist-source-range": ("policy", "whitelist", lambda ns: _cidrs),
    "use-regex": ("builder", "use_regex", lambda ns: _bool),
    "canary": ("canary", "on", lambda ns: _bool),
    "canary-by-header": ("canary", "header", lambda ns: _header_name),
    "canary-by-header-value": ("canary", "header_value", lambda ns: str.strip),
    "canary-by-header-pattern": ("canary", "header_pattern", lambda ns: _regex),
    "canary-by-cookie": ("canary", "cookie", lambda ns: str.strip),
    "canary-by-query": ("canary", "query", lambda ns: str.strip),
    "canary-by-query-value": ("canary", "query_value", lambda ns: str.strip),
    "canary-by-query-pattern": ("canary", "query_pattern", lambda ns: _regex),
    "canary-weight": ("canary", "weight", lambda ns: _int(0, 1_000_000)),
    "canary-weight-total": ("canary", "weight_total", lambda ns: _int(1, 1_000_000)),
}



# What an invalid value does, per annotation (the diagnostic says it; docs list it).
_CANARY_OFF = "the canary is disabled: the main backend serves all of its traffic"
_MIRROR_OFF = "mirroring is off for this Ingress"
ON_INVALID: dict[str, str] = {
    "canary": "the Ingress is taken as a disabled canary: it adds no route, the main Ingress serves",
    "cluster-weights": "no cluster weights: the other cluster rules (or replica-proportional spread) apply",
    "cluster-by-header": "the header is not read: the other cluster rules apply",
    "cluster-priority": "no priority order: the other cluster rules apply",
    "destination": "no destination split: the Ingress's own backend serves",
    "whitelist-source-range": "every client is refused (403), as an allow-list that admits no one",
    "default-backend": "no fallback backend",
    "proxy-connect-timeout": "the default, 5 s",
    "proxy-read-timeout": "the default, 60 s",
    "proxy-send-timeout": "the default, 60 s",
    "timeout": "the default: no total deadline",
    "proxy-body-size": "the default: no limit",
    "proxy-next-upstream": "the default: retry on error and timeout",
    "proxy-next-upstream-tries": "the default, 3",
    "proxy-next-upstream-timeout": "the default: no limit",
    "local-zone": "the gateway's own zone",
    "load-balance": "the default, round_robin",
    "upstream-hash-by": "no hashing: load-balance applies",
    "affinity": "no session affinity",
    "session-cookie-name": "the default, INGRESSCOOKIE",
    "session-cookie-path": "the default, /",
    "session-cookie-max-age": "the default: a session cookie",
    "consecutive-5xx": "the default, 5",
    "health-check-path": "the default: a TCP connect check",
    "health-check-interval": "the default, 2 s",
    "health-check-grpc-service": "the server as a whole (service \"\")",
    "healthy-threshold": "the default, 2",
    "unhealthy-threshold": "the default, 2",
    "rewrite-target": "no rewrite: the path is sent as received",
    "upstream-vhost": "the request's own Host",
    "app-root": "no app-root redirect",
    "ssl-redirect": "the default: on when the Ingress has tls",
    "force-ssl-redirect": "the default, false",
    "backend-protocol": "the default, HTTP",
    "enable-cors": "CORS stays off",
    "cors-allow-origin": "the default, *",
    "cors-allow-methods": "the default list",
    "cors-allow-headers": "the default list",
    "cors-expose-headers": "none exposed",
    "cors-allow-credentials": "the default, true",
    "cors-max-age": "the default, 1728000",
    "use-regex": "the default, false (paths are prefixes)",
}
for _name, _spec in _SPEC.items():
    ON_INVALID.setdefault(_name, {"canary": _CANARY_OFF, "mirror": _MIRROR_OFF}.get(_spec[0], "the default"))


def ours(annotations: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """Our annotations by bare name -> (full key, value). When several prefixes set the same
    name, the first prefix in PREFIXES order wins."""
    out: dict[str, tuple[str, str]] = {}
    for prefix in PREFIXES:
        for key, value in annotations.items():
            if key.startswith(prefix):
                out.setdefault(key[len(prefix):], (key, value))
    return out


@dataclass(frozen=True, slots=True)
class ParsedAnnotations:
    policy: RoutePolicy
    canary: CanaryRule | None  # set when this is a canary Ingress (`canary: "true"`)
    use_regex: bool
    problems: tuple[AnnotationProblem, ...]
    # a canary Ingress (or one whose `canary` value is invalid) with an invalid canary rule:
    # it attaches to no route, so the main backend keeps its traffic
    canary_disabled: bool = False


def parse_annotations(annotations: Mapping[str, str], *, namespace: str, ingress: str,
                      zone: str | None = None) -> ParsedAnnotations:
    groups: dict[str, dict[str, Any]] = {g: {} for g in
                                         ("policy", "retry", "affinity", "mirror", "health", "cors",
                                          "canary", "builder")}
    problems: list[AnnotationProblem] = []
    unknown: list[str] = []
    bad_groups: set[str] = set()  # _SPEC groups and bare names that had an invalid value
    bad_names: set[str] = set()
    for name, (key, value) in ours(annotations).items():
        spec = _SPEC.get(name)
        if spec is None:
            unknown.append(key)
            continue
        group, field_name, factory = spec
        try:
            parsed = factory(namespace)(value)
        except (ValueError, TypeError) as exc:
            problems.append(AnnotationProblem(key, f"invalid value {value!r}: {exc}; {ON_INVALID[name]}"))
            bad_groups.add(group)
            bad_names.add(name)
            continue
        if field_name == "*":
            groups[group].update(parsed)
        else:
            groups[group][field_name] = parsed
    if unknown:
        problems.append(AnnotationProblem(", ".join(sorted(unknown)), "unknown annotation(s) ignored",
                                          severity="warning"))
    kw = dict(groups["policy"])
    if "whitelist-source-range" in bad_names:
        kw["whitelist"] = ()  # fail closed: an allow-list nobody matches
    if zone and "local_zone" not in kw:
        kw["local_zone"] = zone
    if groups["retry"]:
        kw["retry"] = RetryPolicy(**groups["retry"])
    aff = groups["affinity"]
    if aff.pop("on", None) == "cookie":
        kw["affinity"] = AffinityCookie(**aff)
    elif aff:
        problems.append(AnnotationProblem("session-cookie-*", "ignored without affinity: cookie", "warning"))
    mirror = groups["mirror"]
    if mirror and "mirror" not in bad_groups:
        url = mirror.pop("url", None)
        if url is not None:
            mirror.update(url_host=url[0], url_port=url[1], url_path=url[2])
        if mirror.get("service") is None and url is None:
            problems.append(AnnotationProblem("mirror-*", "no mirror-target-service or mirror-target; ignored",
                                              "warning"))
        elif kw.get("backend_protocol") in ("GRPC", "GRPCS"):
            # gRPC streams are relayed frame by frame; copying them is not built, so say so
            problems.append(AnnotationProblem("mirror-*", "not supported on gRPC routes (backend-protocol "
                                              "GRPC|GRPCS): mirroring is off for this Ingress", "warning"))
        else:
            kw["mirror"] = MirrorPolicy(**mirror)
    if groups["health"]:
        if kw.get("backend_protocol") in ("GRPC", "GRPCS"):  # probed with grpc.health.v1.Health/Check
            groups["health"]["grpc"] = "tls" if kw["backend_protocol"] == "GRPCS" else "h2c"
        kw["health_check"] = HealthCheck(**groups["health"])
    cors = groups["cors"]
    if cors.pop("on", False):
        kw["cors"] = CorsPolicy(**cors)
    policy = RoutePolicy(**kw) if kw else DEFAULT_POLICY
    canary_kw = groups["canary"]
    canary = None
    marked = canary_kw.pop("on", False)
    # Fail safe: no canary at all rather than a rule missing one of its conditions. An
    # invalid `canary` value itself counts: the Ingress may have been meant as a canary, so
    # it routes nothing rather than being taken as a main Ingress.
    disabled = "canary" in bad_groups and (marked or "canary" in bad_names)
    if marked and not disabled:
        if canary_kw.get("header_value") is not None:
            canary_kw.pop("header_pattern", None)  # -value wins over -pattern
        canary = CanaryRule(ingress=ingress, service="", port="", **canary_kw)
    elif canary_kw and not disabled:
        problems.append(AnnotationProblem("canary-*", "ignored: the Ingress is not marked canary: \"true\"",
                                          "warning"))
    if "canary" in bad_groups and not marked and not disabled:  # no canary to disable: say so
        problems = [replace(p, message=p.message.replace(_CANARY_OFF, "ignored: the Ingress is not marked "
                                                                      "canary: \"true\""))
                    for p in problems]
    return ParsedAnnotations(policy, canary, bool(groups["builder"].get("use_regex")), tuple(problems),
                             canary_disabled=disabled)

