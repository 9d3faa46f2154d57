"""Per-request policy for routes that have one (`RoutePolicy.per_request`): access
checks, redirects, CORS, canary/destination choice, rewrites and mirroring.

Kept out of downstream.py so the plain round-robin path reads no policy at all; these
functions run only for routes whose annotations ask for them.
"""
from __future__ import annotations

import ipaddress
import random
import re
from typing import TYPE_CHECKING

from ..routing.policy import CorsPolicy, RoutePolicy
from ..routing.select import RequestView, choose_backend
from ..routing.table import Route
from .http1 import host_name

if TYPE_CHECKING:
    from .downstream import DownstreamH1, Exchange

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


def prepare(ds: "DownstreamH1", ex: "Exchange", route: Route, path: str, query: str) -> tuple[bytes, bytes] | None:
    """Apply the route's per-request policy. Returns (upstream target, upstream host), or
    None when the gateway answers itself (ex.answer is set)."""
    policy: RoutePolicy = route.policy
    headers = ex.headers or {}
    if policy.needs_view:
        view = ex.view = RequestView(headers=headers, query_string=query, remote_addr=ds.peer.decode(),
                                     host=ex.host.decode("latin-1") if ex.host else "",
                                     uri=ex.target.decode("latin-1"))
    else:
        view = _NO_VIEW
    if policy.whitelist is not None:
        try:
            addr = ipaddress.ip_address(ds.peer.decode())
        except ValueError:
            addr = None
        if addr is None or not any(addr in net for net in policy.whitelist):
            ex.answer = (403, "source-not-allowed", b"")
            return None
    if (policy.force_ssl_redirect or policy.ssl_redirect) and not ds.tls:
        ex.answer = (308, "ssl-redirect", b"location: " + https_url(ex.host or b"", ds.ctx.https_port, ex.target)
                     + b"\r\n")
        return None
    if policy.app_root and path == "/":
        ex.answer = (302, "app-root", b"location: " + policy.app_root.encode() + b"\r\n")
        return None
    if policy.cors is not None:
        origin = _origin_allowed(policy.cors, headers.get("origin"))
        if origin is not None:
            preflight = ex.method == b"OPTIONS" and "access-control-request-method" in headers
            if preflight:
                ex.answer = (204, "cors-preflight", cors_headers(policy.cors, origin, preflight=True))
                return None
            ex.extra_resp += cors_headers(policy.cors, origin, preflight=False)
    if policy.canaries or policy.destinations:
        backend, label = choose_backend(route, view, random.random(), ds.ctx.usable)
        ex.backend = backend
        ex.label = label
    target = ex.target
    if policy.rewrite_target is not None:
        target = rewrite_path(route, policy.rewrite_target, path, query).encode("latin-1")
    upstream_host = policy.upstream_vhost.encode() if policy.upstream_vhost else (ex.host or b"")
    if policy.mirror is not None and random.random() * 100 < policy.mirror.percentage:
        ex.mirror = policy.mirror
    return target, upstream_host


def mirror_head(ex: "Exchange", head_tail: bytes, target: bytes) -> bytes:
    """The mirror copy's request head: Host gets `-shadow` unless mirror-host is set, and
    without mirror-request-body the copy carries no body."""
    m = ex.mirror
    assert m is not None
    host = m.host.encode() if m.host else (ex.host or b"") + b"-shadow"
    if m.url_path is not None:
        target = m.url_path.replace("$request_uri", ex.target.decode("latin-1")).encode("latin-1")
    head = b"%s %s HTTP/1.1\r\nhost: %s\r\n" % (ex.method, target, host) + head_tail
    if not m.request_body and (ex.chunked_request or ex.content_length):
        head = head.replace(b"transfer-encoding: chunked\r\n", b"").replace(
            b"content-length: %d\r\n" % (ex.content_length or 0), b"")
        head = head[:-2] + b"content-length: 0\r\n\r\n"
    return head
