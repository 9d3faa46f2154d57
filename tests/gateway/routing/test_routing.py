"""Ingress routing semantics, asserted through a real gateway with real HTTP clients."""
from __future__ import annotations

import aiohttp
import pytest

from gateway_support import (endpoint_slice, ingress, rule, service)

# Each service is a distinct backend; requests are answered with the backend's name.
SERVICES = ["exact-foo", "prefix-foo", "prefix-root", "wild", "any-host", "regex", "merged",
            "old-dup", "new-dup", "default", "legacy", "other-class", "prefix-slash", "exact-slash"]


@pytest.fixture
async def routed(fleet_dir, echo_backends, start_gateway):
    fd = fleet_dir("zone-a")
    objs = []
    for i, name in enumerate(SERVICES):
        b = await echo_backends(name, host=f"127.0.1.{i + 1}")
        objs += [service(name), endpoint_slice(name, [(b.host, b.port)])]
    fd.member("zone-a", objs)
    fd.hub([
        ingress("main", [
            rule("foo.example.com",
                 ("/foo", "Exact", "exact-foo"),
                 ("/foo", "Prefix", "prefix-foo"),
                 ("/", "Prefix", "prefix-root"),
                 ("/aaa/bbb/", "Prefix", "prefix-slash"),
                 ("/exact/", "Exact", "exact-slash")),
            rule("*.wild.example.com", ("/", "Prefix", "wild")),
            rule(None, ("/anyhost", "ImplementationSpecific", "any-host")),
        ], created="2026-01-01T00:00:00Z"),
        ingress("regex", [rule("re.example.com", ("/api/v[0-9]+/items", "ImplementationSpecific", "regex"),
                               ("/", "Prefix", "prefix-root"))],
                annotations={"nginx.ingress.kubernetes.io/use-regex": "true"}, created="2026-01-01T00:00:00Z"),
        # a second Ingress for the same host merges its paths in
        ingress("merge", [rule("foo.example.com", ("/merged", "Prefix", "merged"))], created="2026-01-02T00:00:00Z"),
        # true duplicate of foo.example.com/dup: the older Ingress wins
        ingress("dup-old", [rule("dup.example.com", ("/dup", "Prefix", "old-dup"))], created="2026-01-01T00:00:00Z"),
        ingress("dup-new", [rule("dup.example.com", ("/dup", "Prefix", "new-dup"))], created="2026-02-01T00:00:00Z"),
        ingress("catch-all", [], default=("default", 80), created="2026-01-01T00:00:00Z"),
        ingress("legacy", [rule("legacy.example.com", ("/", "Prefix", "legacy"))], cls=None,
                annotations={"kubernetes.io/ingress.class": "fleetgate"}),
        ingress("not-ours", [rule("other.example.com", ("/", "Prefix", "other-class"))], cls="nginx"),
    ], name="ingresses.yaml")
    gw = await start_gateway(fd)
    return gw


CASES = [
    # (host header, path, expected backend or HTTP status)
    ("foo.example.com", "/foo", "exact-foo"),            # Exact beats Prefix at equal length
    ("foo.example.com", "/foo/bar", "prefix-foo"),       # element-wise prefix
    ("foo.example.com", "/foobar", "prefix-root"),       # /foo does not match /foobar
    ("foo.example.com", "/foo/", "prefix-foo"),          # Prefix ignores a trailing slash
    ("FOO.Example.COM:8080", "/foo/x", "prefix-foo"),    # host case-insensitive, port ignored
    ("foo.example.com", "/FOO/x", "prefix-root"),        # paths are case-sensitive
    ("foo.example.com", "/aaa/bbb", "prefix-slash"),     # Prefix /aaa/bbb/ matches /aaa/bbb
    ("foo.example.com", "/aaa/bbb/c", "prefix-slash"),
    ("foo.example.com", "/exact/", "exact-slash"),
    ("foo.example.com", "/exact", "prefix-root"),        # Exact /exact/ does not match /exact
    ("foo.example.com", "/merged/x?q=1", "merged"),      # merged from a second Ingress
    ("a.wild.example.com", "/x", "wild"),                # wildcard covers one label
    ("a.b.wild.example.com", "/x", "default"),           # ...not two
    ("wild.example.com", "/x", "default"),               # ...nor zero
    ("unknown.example.com", "/anyhost/x", "any-host"),   # rule without host
    ("unknown.example.com", "/nothing", "default"),      # unmatched: defaultBackend
    ("re.example.com", "/api/v2/items", "regex"),
    ("re.example.com", "/api/vX/items", "prefix-root"),
    ("dup.example.com", "/dup", "old-dup"),              # the oldest Ingress wins a duplicate
    ("legacy.example.com", "/", "legacy"),               # legacy class annotation
    ("other.example.com", "/", "default"),               # another class's Ingress is not ours
]


@pytest.mark.parametrize("host,path,expected", CASES)
async def test_request_reaches_the_backend_ingress_semantics_choose(routed, host, path, expected):
    async with aiohttp.ClientSession() as s:
        async with s.get(routed.url + path, headers={"Host": host}) as r:
            assert r.status == 200, await r.text()
            body = await r.json()
    assert body["backend"] == expected
    assert body["path"] == path


async def test_duplicate_path_gets_a_diagnostic_naming_the_winner(routed):
    msgs = [str(d) for d in routed.gateway.diagnostics]
    assert any("Ingress/demo/dup-new" in m and "dup-old" in m for m in msgs), msgs


async def test_unmatched_request_without_default_backend_is_404_no_route(fleet_dir, echo_backends, start_gateway):
    fd = fleet_dir("zone-a")
    b = await echo_backends("svc", host="127.0.2.1")
    fd.member("zone-a", [service("svc"), endpoint_slice("svc", [(b.host, b.port)])])
    fd.hub([ingress("only", [rule("known.example.com", ("/app", "Prefix", "svc"))])])
    gw = await start_gateway(fd)
    async with aiohttp.ClientSession() as s:
        for host, path in (("known.example.com", "/other"), ("unknown.example.com", "/app")):
            async with s.get(gw.url + path, headers={"Host": host}) as r:
                assert r.status == 404
                assert r.headers["x-fleetgate-reason"] == "no-route"
        async with s.get(gw.url + "/app/x", headers={"Host": "known.example.com"}) as r:
            assert r.status == 200
            assert r.headers["x-fleetgate-cluster"] == "zone-a"


async def test_absolute_form_request_is_routed_by_the_uri_host(routed):
    from gateway_support import raw_request
    data = await raw_request(routed.host, routed.port,
                             b"GET http://foo.example.com/foo HTTP/1.1\r\nHost: ignored.example\r\n"
                             b"Connection: close\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200")
    assert b'"backend": "exact-foo"' in data


async def test_default_ingress_class_selects_ingresses_without_a_class(fleet_dir, echo_backends, start_gateway):
    fd = fleet_dir("zone-a")
    b = await echo_backends("svc", host="127.0.2.2")
    fd.member("zone-a", [service("svc"), endpoint_slice("svc", [(b.host, b.port)])])
    default_class = {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
                     "metadata": {"name": "fleetgate",
                                  "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
                     "spec": {"controller": "fleetgate.io/gateway"}}
    fd.hub([default_class], name="class.yaml")
    fd.hub([ingress("classless", [rule("c.example.com", ("/", "Prefix", "svc"))], cls=None)])
    gw = await start_gateway(fd)
    async with aiohttp.ClientSession() as s:
        async with s.get(gw.url + "/", headers={"Host": "c.example.com"}) as r:
            assert r.status == 200
