"""RequestCounts.done remembers the last request's row (in both builds: a row chosen by the
identity of the route, backend, label and cluster and the equality of method and status,
with no key tuple built). These hold both builds to a count made key by key: a
remembered row must never take a request whose key differs in any one field, including
an equal-but-new cluster string, a new backend object with the same key, a status or a
method that changes back and forth, and a method outside METHODS (counted as OTHER)."""
from __future__ import annotations

from collections import Counter
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from gateway.codec import head_end, parse_request
from gateway.metrics import METHODS, SUM, GatewayMetrics
from gateway_support import exchange_builds


REQUEST = b"GET /a HTTP/1.1\r\nHost: web.example.com\r\n\r\n"


def _steps() -> list[tuple[Any, Any, str, str, bytes, int]]:
    """(route, backend, label, cluster, method, status) per request, in an order that
    changes one key field at a time and returns to earlier keys."""
    web = SimpleNamespace(key="shop/web:80")
    web_again = SimpleNamespace(key="shop/web:80")  # another object, the same key
    api = SimpleNamespace(key="shop/api:80")
    r1 = SimpleNamespace(ingress="shop/web", backend=web)
    r2 = SimpleNamespace(ingress="shop/other", backend=api)
    zone_b = "".join(["zone", "-b"])  # equal to "zone-b", a different object
    steps = [
        (r1, None, "shop/web", "zone-a", b"GET", 200),
        (r1, None, "shop/web", "zone-a", b"GET", 200),
        (r1, None, "shop/web", "zone-a", b"GET", 404),
        (r1, None, "shop/web", "zone-a", b"GET", 200),
        (r1, None, "shop/web", "zone-a", bytes(b"POST"), 200),
        (r1, None, "shop/web", "zone-a", b"POS" + b"T", 200),  # equal method, new bytes
        (r1, None, "shop/web", "zone-b", b"GET", 200),
        (r1, None, "shop/web", zone_b, b"GET", 200),  # equal cluster, another string
        (r1, api, "shop/web", "zone-b", b"GET", 200),  # a split's other backend
        (r1, web_again, "shop/web", "zone-b", b"GET", 200),
        (r1, None, "shop/web", "zone-b", b"GET", 200),
        (r2, None, "shop/other", "zone-b", b"GET", 200),
        (r2, None, "shop/web", "zone-b", b"GET", 200),  # another label on the same route
        (None, None, "", "", b"GET", 404),  # no route
        (None, None, "", "", b"GET", 404),
        (r1, None, "shop/web", "zone-a", b"BREW", 200),  # outside METHODS: OTHER
        (r1, None, "shop/web", "zone-a", b"BREW", 200),
        (r1, None, "shop/web", "zone-a", b"TEAPOT", 200),
        (r1, None, "shop/web", "zone-a", b"GET", 200),
    ]
    return steps


def _expected_key(route: Any, backend: Any, label: str, cluster: str, method: bytes, status: int) -> tuple:
    if route is None:
        return (label, "", "", cluster, method, status)
    be = backend or route.backend
    return (label, route.ingress, be.key, cluster, method if method in METHODS else b"OTHER", status)


@pytest.mark.parametrize("build", exchange_builds(), ids=lambda b: b.__name__.rsplit(".", 1)[-1])
def test_each_request_lands_in_its_own_keys_row(build: ModuleType) -> None:
    m = GatewayMetrics()
    m.counts = build.RequestCounts(m, m.rows)
    head = parse_request(REQUEST, 0, head_end(REQUEST, 0, 65536), 8192, 65536)
    want: Counter[tuple] = Counter()
    seconds: dict[tuple, float] = {}
    for n, (route, backend, label, cluster, method, status) in enumerate(_steps()):
        ds = build.DownstreamCore()
        ds.out = []
        ds.sent = 0
        ds.logged = 0
        ex = build.Exchange()
        ex.ds = ds
        ex.req = head
        ex.method = method
        ex.start = 0.0
        ex.status = status
        ex.cluster = cluster
        ex.attempt = 1
        ex.tried = None
        ex.body_size = 0
        ex.endpoint = None
        ex.route = route
        ex.backend = backend
        ex.label = label
        took = 0.001 * (n + 1)
        m.counts.done(ex, took)
        key = _expected_key(route, backend, label, cluster, method, status)
        want[key] += 1
        seconds[key] = seconds.get(key, 0.0) + took
    got = {key: int(sum(row[:SUM])) for key, row in m.rows.items()}
    assert got == dict(want)
    for key, total in seconds.items():
        assert m.rows[key][SUM] == pytest.approx(total)
