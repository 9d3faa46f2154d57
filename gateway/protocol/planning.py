"""DownstreamH1's per-request decisions applied: the route's policy plan, the endpoint
pick, mirroring.

A mixin of the downstream connection (downstream.py): the decisions themselves are pure
(policy_hooks.prepare, upstream/decide.py); this part gathers their inputs from the
exchange and the connection (headers a policy reads, health, random values) and keeps
the results on the exchange.
"""
from __future__ import annotations

import asyncio
from random import random as _random
from typing import TYPE_CHECKING, Any

from ..codec import RequestHead
from ..exchange import Exchange
from ..routing.table import Route
from ..upstream import decide
from ..upstream.balancer import affinity_id, hash_key
from .policy_hooks import mirror_head, prepare

if TYPE_CHECKING:
    from ..routing.table import UpstreamEndpoint

_TARGET, _HOST = 1, 3  # RequestHead's indexes (a NamedTuple field read is a descriptor call)


def header_pairs(fields: bytes) -> list[tuple[bytes, bytes]]:
    """The forwarded request header lines as (name, value) (for policies that read them)."""
    pairs = []
    for line in fields.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name:
            pairs.append((name, value.strip(b" \t")))
    return pairs


def wanted_headers(fields: bytes, want: "frozenset[bytes]") -> dict[str, str]:
    """The values of the header lines named in `want` (lowercase names), the last line
    winning when a name repeats: dict((n.lower(), v) for n, v in header_pairs(fields) if
    n.lower() in want), decoded, found by a search per wanted name instead of a Python
    object per line (a table usually wants one or two names)."""
    if len(want) > 8:  # many names: one pass over the lines is cheaper than a search each
        out: dict[str, str] = {}
        for name, value in header_pairs(fields):
            name = name.lower()
            if name in want:
                out[name.decode("latin-1")] = value.decode("latin-1")
        return out
    headers: dict[str, str] = {}
    src = b"\r\n" + fields  # every line now starts after a CRLF (a value holds none)
    low = src.lower()
    for name in want:
        i = low.rfind(b"\r\n" + name + b":")
        if i >= 0:
            i += len(name) + 3
            headers[name.decode("latin-1")] = src[i:low.find(b"\r\n", i)].strip(b" \t").decode("latin-1")
    return headers


class Planning:
    """Policy plan, endpoint pick and mirroring of a DownstreamH1 (see the module docstring)."""

    __slots__ = ()

    ctx: Any
    peer: bytes
    tls: bool
    balancer: Any

    def _plan(self, ex: Exchange, r: Route, head: RequestHead) -> tuple[bytes, bytes]:
        """The route's per-request policy, resolved once into ex (policy_hooks.prepare)."""
        # the head and the plan unpacked at once: a NamedTuple field read is a descriptor
        # call each (see downstream.py's _on_head)
        method, target, _, host, _, _, _, _, _, _, _, _, fields, _ = head
        ctx = self.ctx
        want = ctx.table.request_headers
        if want:
            ex.headers = headers = wanted_headers(fields, want) if fields else {}
        else:
            headers = {}
        # answer, mirror and view stored even when None: they are read again on every such
        # request, and a read that falls back to the class default is an unspecialised
        # attribute load on 3.11 (measured: leaving them unset cost ~3k instructions)
        (ex.answer, ex.extra_resp, backend, ex.label, up_target, up_host, ex.mirror, ex.view) = prepare(
            r, method, host, target, headers, peer=self.peer, tls=self.tls, https_port=ctx.https_port,
            usable=ctx.usable, rand_backend=_random(), rand_mirror=_random())
        if backend is not None:
            ex.backend = backend
        return up_target, up_host

    def _pick(self, ex: Exchange, now: float) -> "UpstreamEndpoint | None":
        """The endpoint for ex's next attempt (decide.pick), with the `default-backend`
        annotation's backend when the route's has no usable endpoint; sets the affinity
        cookie when the pick differs from the client's."""
        route = ex.route
        policy = route.policy
        ctx = self.ctx
        health = ctx.health
        down = health.down
        backend = ex.backend or route.backend
        # every endpoint up and one there: decide.fallback_backend would keep this backend
        if not (backend is not None and not down and backend.endpoints):
            backend = ex.backend = decide.fallback_backend(backend, policy, ctx.usable)
        if backend is None:
            return None
        header_cluster = hash_value = affinity = None
        if not policy.plain_pick:
            view = ex.view
            if view is not None:
                if policy.cluster_by_header:
                    header_cluster = view.header(policy.cluster_by_header)
                if policy.hash_by:
                    hash_value = hash_key(policy, view.uri, view.host, view.remote_addr, view.header, view.arg)
                if policy.affinity is not None:
                    affinity = view.cookie(policy.affinity.name)
        is_up = (lambda k: health.is_up(k, now)) if down else None  # None: all up, skip the checks
        ep = decide.pick(backend, policy, self.balancer, is_up, ex.tried or (), now, _random(), _random(),
                         header_cluster=header_cluster, hash_value=hash_value, affinity=affinity)
        if ep is not None and policy.affinity is not None:
            cookie = affinity_id(ep.key)
            if cookie != affinity:
                a = policy.affinity
                ex.extra_resp += (f"set-cookie: {a.name}={cookie}; Path={a.path or '/'}; HttpOnly"
                                  + (f"; Max-Age={a.max_age}" if a.max_age else "") + "\r\n").encode()
        return ep

    def _mirror_now(self, ex: Exchange) -> None:
        """A bodiless request the warm plan mirrors (DownstreamCore._warm_head): the copy's
        head from the upstream head, submitted. _submit_mirror's work with its calls folded
        in (a copy to a Service, the common kind: ~27k -> ~15k instructions a copy)."""
        m = ex.mirror
        h = ex.head
        tail = h[h.find(b"\r\n", h.find(b"\r\n") + 2) + 2:]  # after the request and host lines
        if m.url_path is not None or m.service is None:
            ex.mirror_head = mirror_head(ex, tail, ex.target)
            self._submit_mirror(ex)
            return
        ex.mirror = None
        req = ex.req
        host = m.host.encode() if m.host else req[_HOST] + b"-shadow"
        data = ex.mirror_head = b"%s %s HTTP/1.1\r\nhost: %s\r\n" % (ex.method, req[_TARGET], host) + tail
        backend = m.service.backend
        mirrors = self.ctx.mirrors
        if backend is None or not backend.endpoints:
            mirrors._count("", "no-endpoint")
            return
        ep = decide.round_robin(backend.endpoints, self.balancer, backend.key)
        target = mirrors.targets.get((ep.address, ep.port))
        if target is None:
            mirrors.submit(ep.address, ep.port, ep.cluster, data, self.ctx.loop or asyncio.get_running_loop())
        else:
            target.submit(data, self.ctx.loop or asyncio.get_running_loop())

    def _submit_mirror(self, ex: Exchange) -> None:
        """Fire and forget a copy (a body larger than the retry buffer is not mirrored)."""
        m = ex.mirror
        ex.mirror = None
        if m is None or (m.request_body and not ex.replayable):
            return
        body = b"".join(ex.body) if m.request_body and ex.body else b""
        loop = self.ctx.loop or asyncio.get_running_loop()
        if m.url_host is not None:
            self.ctx.mirrors.submit(m.url_host, m.url_port, "external", ex.mirror_head + body, loop)
            return
        backend = m.service.backend if m.service is not None else None
        if backend is None or not backend.endpoints:
            self.ctx.mirrors._count("", "no-endpoint")
            return
        ep = decide.round_robin(backend.endpoints, self.balancer, backend.key)
        self.ctx.mirrors.submit(ep.address, ep.port, ep.cluster, ex.mirror_head + body, loop)

