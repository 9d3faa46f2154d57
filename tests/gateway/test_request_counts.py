"""RequestCounts.done (the per-request metrics call, in the request path's core): the
compiled build and the pure-Python twin count the same exchange into the same row and
queue the same access-log record. The real-traffic results are test_request_metrics.py's
and test_accesslog*.py's (run under either build); this holds the two builds to each other
on the edges one gateway run rarely meets: a duration on a bucket's bound and beyond the
last, a method outside METHODS, a retry that failed over, a non-DownstreamCore client."""
from __future__ import annotations

from bisect import bisect_left
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from gateway.codec import head_end, parse_request
from gateway.metrics import BUCKETS, RECV, SENT, SUM, GatewayMetrics
from gateway_support import exchange_builds


class PendingLog:
    """What RequestCounts needs of AccessLog: its pending batch and schedule()."""

    def __init__(self) -> None:
        self.pending: list[tuple[Any, float, int, int]] = []
        self.scheduled = 0

    def schedule(self) -> None:
        self.scheduled += 1


def _head(raw: bytes) -> Any:
    return parse_request(raw, 0, head_end(raw, 0, 65536), 8192, 65536)


REQUEST = b"GET /a/b?x=1 HTTP/1.1\r\nHost: web.example.com\r\nUser-Agent: t\r\n\r\n"
ENDPOINTS = {"10.0.0.1:80": "zone-a", "10.0.0.2:80": "zone-b"}
CASES = [
    # (method, seconds, status, attempt, tried, endpoint's cluster, routed)
    (b"GET", 0.001, 200, 1, None, "zone-a", True),  # exactly on a bound: that bucket (bisect_left)
    (b"GET", 0.0004, 200, 1, None, "zone-a", True),
    (b"POST", 61.0, 503, 1, None, "zone-a", True),  # beyond the last bound: +Inf
    (b"BREW", 0.02, 200, 1, None, "zone-a", True),  # outside METHODS: OTHER
    (b"GET", 0.3, 200, 2, ["10.0.0.1:80"], "zone-b", True),  # retried on another cluster: a failover
    (b"GET", 0.0, 404, 0, None, "", False),  # no route
]


def _count(build: ModuleType, downstream: str, with_log: bool) -> tuple[GatewayMetrics, PendingLog, list]:
    m = GatewayMetrics()
    m.endpoint_cluster = ENDPOINTS
    m.counts = build.RequestCounts(m, m.rows)
    log = PendingLog()
    if with_log:
        m.log = log
    head = _head(REQUEST)
    backend = SimpleNamespace(key="shop/web:80")
    route = SimpleNamespace(ingress="shop/web", backend=backend)
    exchanges = []
    for method, seconds, status, attempt, tried, cluster, routed in CASES:
        if downstream == "core":
            ds = build.DownstreamCore()
            ds.out = [b"abc", b"defg"]
            ds.sent = 100
            ds.logged = 40
        else:  # another Downstream (an HTTP/2 stream's): plain attributes
            ds = SimpleNamespace(out=[b"abc", b"defg"], sent=100, logged=40)
        ex = build.Exchange()
        ex.ds = ds
        ex.req = head
        ex.method = method
        ex.start = 0.0  # (now - start is then exactly the case's seconds)
        ex.status = status
        ex.cluster = cluster
        ex.attempt = attempt
        ex.tried = tried
        ex.body_size = 5
        ex.endpoint = SimpleNamespace(cluster=cluster) if cluster else None
        if routed:
            ex.route = route
            ex.label = "shop/web"
        m.counts.done(ex, seconds)
        assert ds.logged == 107  # what the connection sent and holds, now accounted
        exchanges.append(ex)
    return m, log, exchanges


@pytest.mark.parametrize("downstream", ["core", "other"])
def test_both_builds_count_the_same_rows(downstream: str) -> None:
    results = [_count(build, downstream, with_log=True) for build in exchange_builds()]
    m, log, exchanges = results[0]
    received = len(b"/a/b?x=1") + len(b"web.example.com") + len(_head(REQUEST)[12]) + 30 + 5
    # the twin's rows, against the request's own figures
    key = ("shop/web", "shop/web", "shop/web:80", "zone-a", b"GET", 200)
    row = m.rows[key]
    assert row[bisect_left(BUCKETS, 0.001)] == 1 and row[bisect_left(BUCKETS, 0.0004)] == 1
    assert row[SUM] == pytest.approx(0.0014)
    assert row[RECV] == 2 * received and row[SENT] == 2 * 67
    assert m.rows[("shop/web", "shop/web", "shop/web:80", "zone-a", b"POST", 503)][len(BUCKETS)] == 1
    assert ("shop/web", "shop/web", "shop/web:80", "zone-a", b"OTHER", 200) in m.rows
    assert ("", "", "", "", b"GET", 404) in m.rows  # no route: no label either
    assert m.failovers == {("shop/web", "zone-a", "zone-b"): 1}
    assert log.scheduled == 1 and [r[1:] for r in log.pending][0] == (pytest.approx(0.001), 67, received)
    assert [r[0] for r in log.pending] == exchanges
    for other_m, other_log, other_exchanges in results[1:]:  # the compiled build: the same
        assert other_m.rows == m.rows
        assert other_m.failovers == m.failovers
        assert [r[1:] for r in other_log.pending] == [r[1:] for r in log.pending]
        assert [r[0] for r in other_log.pending] == other_exchanges
        assert other_log.scheduled == 1


def test_no_access_log_queues_nothing() -> None:
    for build in exchange_builds():
        m, log, _ = _count(build, "core", with_log=False)
        assert m.log is None and log.pending == [] and log.scheduled == 0
        assert sum(sum(row[:SUM]) for row in m.rows.values()) == len(CASES)
