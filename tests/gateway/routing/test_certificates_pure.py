"""build()'s certificate map as pure data: which Secret serves which host, and the
diagnostics for tls entries that cannot serve."""
from __future__ import annotations

from gateway_support import INGRESS_CLASS, ingress, rule
from tls_support import tls_entry, tls_secret

from fleet.objects import parse_object
from fleet.snapshot import ClusterObjects, FleetSnapshot
from gateway.routing.build import build


def table_for(*docs: dict):
    hub = ClusterObjects.build([parse_object(d) for d in (INGRESS_CLASS, *docs)],
                               origins={("Secret", "demo", "s1"): "hub/secrets.yaml"})
    return build(FleetSnapshot(hub=hub, members=()))


def test_hosts_map_to_secrets_oldest_ingress_first_and_entries_without_hosts_cover_rule_hosts():
    table, diags = table_for(
        tls_secret("s1", b"CERT1", b"KEY1"), tls_secret("s2", b"CERT2", b"KEY2"),
        ingress("old", [rule("a.example", ("/", "Prefix", "web")), rule("b.example", ("/b", "Prefix", "web"))],
                tls=[tls_entry("s1")], created="2024-01-01T00:00:00Z"),
        ingress("new", [rule("a.example", ("/new", "Prefix", "web"))],
                tls=[tls_entry("s2", "a.example", "*.c.example")], created="2025-01-01T00:00:00Z"))
    assert {h: c.secret for h, c in table.tls.items()} == {
        "a.example": "demo/s1", "b.example": "demo/s1", "*.c.example": "demo/s2"}
    assert table.tls["a.example"].cert == b"CERT1" and table.tls["a.example"].origin == "hub/secrets.yaml"
    clash = [str(d) for d in diags if "already has Secret" in str(d)]
    assert clash == ["?: Ingress/demo/new: spec.tls[0]: host a.example already has Secret demo/s1 from older "
                     "Ingress demo/old; ignored here"]
    # the Ingress with tls redirects plain HTTP unless told not to
    assert all(r.policy.ssl_redirect and r.policy.fast_tls and not r.policy.fast for r in table.routes)


def test_tls_entries_that_cannot_serve_are_diagnosed_and_left_out():
    no_key = tls_secret("nokey", b"CERT", b"KEY")
    del no_key["data"]["tls.key"]
    table, diags = table_for(
        no_key,
        ingress("a", [rule("a.example", ("/", "Prefix", "web"))], tls=[tls_entry("missing", "a.example")]),
        ingress("b", [rule("b.example", ("/", "Prefix", "web"))], tls=[tls_entry("nokey", "b.example")]),
        ingress("c", [rule("c.example", ("/", "Prefix", "web"))], tls=[{"hosts": ["c.example"]}],
                annotations={"nginx.ingress.kubernetes.io/ssl-redirect": "true"}),
        ingress("d", [rule("d.example", ("/", "Prefix", "web"))]))
    assert table.tls == {}
    text = "\n".join(str(d) for d in diags)
    assert "Ingress/demo/a: spec.tls[0]: Secret demo/missing not found" in text
    assert "Ingress/demo/b: spec.tls[0]: Secret demo/nokey has no tls.key" in text
    assert "Ingress/demo/c: spec.tls[0]: no secretName" in text
    redirect = {r.host: r.policy.ssl_redirect for r in table.routes}
    # an Ingress with a tls section redirects even while its Secret is missing (as ingress-nginx);
    # one without tls never does, even when annotated
    assert redirect == {"a.example": True, "b.example": True, "c.example": True, "d.example": False}
