"""Per-request policy for routes that have one (`RoutePolicy.per_request`): access
checks, redirects, CORS, canary/destination choice, rewrites and mirroring.

Kept out of downstream.py so the plain round-robin path reads no policy at all; these
functions run only for routes whose annotations ask for them. `prepare` is pure: the
request's facts and the random values in, a Plan out.
"""
from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING, Callable, NamedTuple

from ..routing.backends import Backend
from ..routing.policy import CorsPolicy, MirrorPolicy, RoutePolicy
from ..routing.select import RequestView, choose_backend
from ..routing.table import Route
from .http1 import host_name

if TYPE_CHECKING:
    from ..exchange import Exchange

_GROUP = re.compile(r"\$(\d)")
_NO_VIEW = RequestView()  # for policies that read nothing of the request


def _origin_allowed(cors: CorsPolicy, origin: str | None) -> str | None:
    if origin is None:
        return None
    if "*" in cors.allow_origin:
        return origin if cors.allow_credentials else "*"
    return origin if origin in cors.allow_origin else None


def cors_headers(cors: CorsPolicy, origin: str, *, preflight: bool) -> bytes:
    lines = [f"access-control-allow-origin: {origin}\r\n"]
    if cors.allow_credentials:
        lines.append("access-control-allow-credentials: true\r\n")
    if preflight:
        lines += [f"access-control-allow-methods: {cors.allow_methods}\r\n",
                  f"access-control-allow-headers: {cors.allow_headers}\r\n",
                  f"access-control-max-age: {cors.max_age}\r\n"]
    elif cors.expose_headers:
        lines.append(f"access-control-expose-headers: {cors.expose_headers}\r\n")
    if origin != "*":
        lines.append("vary: Origin\r\n")
    return "".join(lines).encode("latin-1")


def rewrite_path(route: Route, target: str, path: str, query: str) -> str:
    """ingress-nginx rewrite-target: when the route's path (a regex under use-regex) matches,
    the URI becomes the target with `$n` replaced by capture groups; the query stays."""
    pattern = re.compile(route.path, re.IGNORECASE) if route.path_type == "Regex" else re.compile(re.escape(route.path))
    m = pattern.match(path)
    if m is None:
        return path + (("?" + query) if query else "")
    groups = m.groups()
    new = _GROUP.sub(lambda g: (groups[int(g.group(1)) - 1] or "") if 0 < int(g.group(1)) <= len(groups) else "",
                     target)
    if not new.startswith("/"):
        new = "/" + new
    if query:
        new += ("&" if "?" in new else "?") + query
    return new


def https_url(host: bytes, port: int, target: bytes) -> bytes:
    """Where an HTTPS redirect points: the request's host name on the TLS listener's port."""
    return b"https://" + host_name(host) + (b":%d" % port if port != 443 else b"") + target


class Plan(NamedTuple):
    """What a route's per-request policy decided for one request: `answer` (a response
    the gateway gives itself, else None), `extra_resp` (response header lines: CORS),
    `backend` and `label` (a canary's or destination's; None: the route's), the upstream
    `target` and `host`, `mirror` (this request is mirrored), `view` (what the balancer
    reads of the request: header cluster, hash, affinity)."""

    answer: tuple[int, str, bytes] | None
    extra_resp: bytes
    backend: Backend | None
    label: str
    target: bytes
    host: bytes
    mirror: MirrorPolicy | None
    view: RequestView | None


_new_plan = tuple.__new__  # Plan(...) without the Python-level __new__ NamedTuple generates


def prepare(route: Route, method: bytes, host: bytes, target: bytes, headers: dict[str, str], *, peer: bytes,
            tls: bool, https_port: int, usable: Callable[[Backend], bool], rand_backend: float,
            rand_mirror: float) -> Plan:
    """Resolve the route's per-request policy (access, redirects, CORS, canary, cluster
    weights and header, rewrite, mirror) in one pure call: the random values are passed
    in, so a test fixes them. (Per request: only what the policy reads is decoded.)"""
    policy: RoutePolicy = route.policy
    if policy.needs_view:
        q = target.find(b"?")
        view: RequestView | None = RequestView(headers, "" if q < 0 else target[q + 1:].decode("latin-1"),
                                               peer.decode(), host.decode("latin-1"), target.decode("latin-1"))
    else:
        view = None
    if policy.whitelist is not None:
        try:
            addr = ipaddress.ip_address(peer.decode())
        except ValueError:
            addr = None
        if addr is None or not any(addr in net for net in policy.whitelist):
            return Plan((403, "source-not-allowed", b""), b"", None, route.ingress, target, host, None, view)
    if (policy.force_ssl_redirect or policy.ssl_redirect) and not tls:
        return Plan((308, "ssl-redirect", b"location: " + https_url(host, https_port, target) + b"\r\n"),
                    b"", None, route.ingress, target, host, None, view)
    if policy.app_root and _path(target) == "/":
        return Plan((302, "app-root", b"location: " + policy.app_root.encode() + b"\r\n"),
                    b"", None, route.ingress, target, host, None, view)
    extra = b""
    if policy.cors is not None:
        origin = _origin_allowed(policy.cors, headers.get("origin"))
        if origin is not None:
            if method == b"OPTIONS" and "access-control-request-method" in headers:
                return Plan((204, "cors-preflight", cors_headers(policy.cors, origin, preflight=True)),
                            b"", None, route.ingress, target, host, None, view)
            extra = cors_headers(policy.cors, origin, preflight=False)
    backend, label = None, route.ingress
    if policy.canaries or policy.destinations:
        backend, label = choose_backend(route, view or _NO_VIEW, rand_backend, usable)
    up_target = target
    if policy.rewrite_target is not None:
        q = target.find(b"?")
        query = "" if q < 0 else target[q + 1:].decode("latin-1")
        up_target = rewrite_path(route, policy.rewrite_target, _path(target), query).encode("latin-1")
    up_host = policy.upstream_vhost.encode() if policy.upstream_vhost else host
    mirror = policy.mirror
    if mirror is not None and not rand_mirror * 100 < mirror.percentage:
        mirror = None
    return _new_plan(Plan, (None, extra, backend, label, up_target, up_host, mirror, view))


def _path(target: bytes) -> str:
    """The request target's path (without its query)."""
    q = target.find(b"?")
    return (target if q < 0 else target[:q]).decode("latin-1")


def mirror_head(ex: "Exchange", head_tail: bytes, target: bytes) -> bytes:
    """The mirror copy's request head: Host gets `-shadow` unless mirror-host is set, and
    without mirror-request-body the copy carries no body."""
    m = ex.mirror
    assert m is not None
    host = m.host.encode() if m.host else (ex.host or b"") + b"-shadow"
    if m.url_path is not None:
        target = m.url_path.replace("$request_uri", ex.target.decode("latin-1")).encode("latin-1")
    head = b"%s %s HTTP/1.1\r\nhost: %s\r\n" % (ex.method, target, host) + head_tail
    req = ex.req
    if not m.request_body and (req.chunked or req.content_length > 0):
        head = head.replace(b"transfer-encoding: chunked\r\n", b"").replace(
            b"content-length: %d\r\n" % max(req.content_length, 0), b"")
        head = head[:-2] + b"content-length: 0\r\n\r\n"
    return head
