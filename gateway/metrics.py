"""Gateway metrics: plain dict counters on the request path, exported at scrape time.

prometheus_client's labelled counters take a lock and a label lookup per increment; on a
path that runs 30k times a second that is measurable. Here a finished request costs one
call, `request_done(ex, now)` (RequestCounts.done in the request path's core, compiled
where built, so its reads of the exchange are C): the previous request's row again when
its key is the same (else one dict lookup by (label, ingress, service, cluster, method,
status)), a bisect, four additions, and a tuple appended for the access log when it is on. The custom Collector turns the rows into the CONTRACT's families and the
operator's (ingress-nginx / Envoy style) families when /metrics is scraped; everything
that is not per request (connections, pools, ejections) is read from the gateway's state
at scrape time too. docs/metrics.md lists the families.
"""
from __future__ import annotations

import sys
from bisect import bisect_left
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from . import exchange

# the build gateway/exchange chose (compiled or the twin): its RequestCounts counts each request
_core = sys.modules[exchange.DownstreamCore.__module__]

if TYPE_CHECKING:
    from .accesslog import AccessLog

BUCKETS: tuple[float, ...] = _core.BUCKETS  # the request duration histogram's (the core counts them)
# a row: request count per bucket (len(BUCKETS) + the +Inf one), then these
SUM, RECV, SENT = len(BUCKETS) + 1, len(BUCKETS) + 2, len(BUCKETS) + 3
ROW = len(BUCKETS) + 4
# the method label's values (any other method is counted as OTHER, so a client inventing
# methods cannot make series without bound)
METHODS = frozenset((b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS", b"CONNECT", b"TRACE"))
_OTHER = b"OTHER"

RowKey = tuple  # (label, ingress, service key, cluster, method, status)


def status_class(code: int) -> str:
    return "%dxx" % (code // 100) if 100 <= code < 600 else "other"


def _histogram(rows: Mapping[Any, list[float]], name: str, doc: str, labels: list[str]) -> HistogramMetricFamily:
    h = HistogramMetricFamily(name, doc, labels=labels)
    for key, counts in sorted(rows.items()):
        cumulative: list[tuple[str, float]] = []
        running = 0.0
        for bound, count in zip((*map(str, BUCKETS), "+Inf"), counts[:SUM]):
            running += count
            cumulative.append((bound, running))
        h.add_metric(list(key), cumulative, sum_value=counts[SUM])
    return h


class GatewayMetrics(Collector):
    def __init__(self) -> None:
        # (label, ingress, service, cluster, method, status) -> [count per bucket..., +Inf,
        # sum of seconds, request bytes, response bytes]: one dict lookup per request
        self.rows: dict[RowKey, list[float]] = {}
        # the per-request counting: the request path's core (the same rows dict)
        self.counts = _core.RequestCounts(self, self.rows)
        self.retries: dict[str, int] = {}
        self.failovers: dict[tuple[str, str, str], int] = {}  # (ingress, from, to) -> requests
        self.ejections: dict[tuple[str, str], int] = {}  # (cluster, endpoint or "") -> ejections
        self.endpoint_labels = False  # --metrics-endpoint-labels: per-endpoint series too
        self.endpoint_cluster: Mapping[str, str] = {}  # endpoint key -> member cluster (the current table)
        self.accepted: dict[str, int] = {}  # listener -> downstream connections accepted
        self.health_rows: Callable[[], dict[tuple[str, str, str], int]] = dict
        self.connection_rows: Callable[[], tuple[int, dict[tuple[str, str, str], int]]] = lambda: (0, {})
        self.mirror_counts: dict[tuple[str, str], int] = {}
        # set by the server on each route-table swap, read at scrape time
        self.config_generation = 0
        self.last_reload = 0.0  # Unix time of the last swap
        self.cert_expiry: Callable[[], Mapping[str, float]] = dict  # Secret -> notAfter

    # --- the request path -------------------------------------------------------------

    def request_done(self, ex: Any, now: float) -> None:
        """A downstream request was answered (relayed, generated or cut): count it, and
        queue it for the access log. `now` is the same clock as `ex.start` (monotonic).
        The work is RequestCounts.done (the request path's core, compiled where built),
        which the hot path calls itself (`self.counts`)."""
        self.counts.done(ex, now)

    @property
    def log(self) -> "AccessLog | None":
        """The access log, when on (RequestCounts queues the requests for it)."""
        return self.counts.log

    @log.setter
    def log(self, log: "AccessLog | None") -> None:
        self.counts.log = log

    def _new_row(self, key: RowKey) -> list[float]:
        """A key's first request: its row (a method outside METHODS counts as OTHER, so a
        client inventing methods cannot make rows without bound; checked here, once per
        key, not on every request)."""
        if key[4] not in METHODS:
            key = (*key[:4], _OTHER, key[5])
            row = self.rows.get(key)
            if row is not None:
                return row
        row = self.rows[key] = [0.0] * ROW
        return row

    def _failover(self, ex: Any, r: Any) -> None:
        """A retried request: a failover when its last attempt went to another member cluster."""
        if not ex.tried:
            return
        first = self.endpoint_cluster.get(ex.tried[0], "")
        ep = ex.endpoint
        to = ep.cluster if ep is not None else ""
        if first and to and to != first:
            k = (r.ingress if r is not None else "", first, to)
            self.failovers[k] = self.failovers.get(k, 0) + 1

    def refused(self, peer: bytes, code: int, sent: int, length: int, seconds: float) -> None:
        """A head refused before it became a request (a malformed request line: 400...):
        counted (method OTHER, no ingress or cluster) and logged with "-" for what is not
        known. `sent`: the answer's bytes; `length`: the request bytes read, 0 if unknown."""
        self.observe("", "", code, seconds)
        lg = self.counts.log
        if lg is not None:
            lg.add_refused(peer, code, sent, length, seconds)

    def observe(self, ingress: str, cluster: str, code: int, seconds: float) -> None:
        """A response that is no exchange's, counted only (`refused` logs it too)."""
        key = (ingress, ingress, "", cluster, _OTHER, code)
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = [0.0] * ROW
        row[bisect_left(BUCKETS, seconds)] += 1
        row[SUM] += seconds

    def grpc_done(self, gs: Any, now: float) -> None:
        """A gRPC call ended (h2_grpc.py's GrpcStream: no Exchange): counted and logged."""
        r = gs.route
        b = gs.backend or r.backend
        ep = gs.ep
        cluster = ep.cluster if ep is not None else ""
        status = gs.status or 499
        seconds = now - gs.start
        key = (gs.label, r.ingress, b.key if b is not None else "", cluster, b"POST", status)
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = [0.0] * ROW
        row[bisect_left(BUCKETS, seconds)] += 1
        row[SUM] += seconds
        row[RECV] += gs.body_size
        if self.log is not None:
            from .accesslog import grpc_entry
            self.log.add_entry(grpc_entry(gs, seconds, cluster, status))

    def retry(self, cluster: str) -> None:
        self.retries[cluster] = self.retries.get(cluster, 0) + 1

    def ejected(self, key: str) -> None:
        """An endpoint was ejected by outlier detection (rare: called from HealthState)."""
        cluster = self.endpoint_cluster.get(key, "")
        k = (cluster, key if self.endpoint_labels else "")
        self.ejections[k] = self.ejections.get(k, 0) + 1

    def connection_accepted(self, listener: str) -> None:
        self.accepted[listener] = self.accepted.get(listener, 0) + 1

    # --- scrape time ------------------------------------------------------------------

    def collect(self) -> Iterator:
        rows = sorted(self.rows.items())
        contract: dict[tuple[str, str, str], float] = {}
        detailed: dict[tuple[str, ...], float] = {}
        durations: dict[tuple[str], list[float]] = {}
        upstream: dict[tuple[str, str], list[float]] = {}
        recv: dict[tuple[str, str], float] = {}
        sent: dict[tuple[str, str], float] = {}
        for (label, ingress, service, cluster, method, code), row in rows:
            n = sum(row[:SUM])
            k3 = (label, cluster, str(code))
            contract[k3] = contract.get(k3, 0) + n
            canary = label if ingress and label != ingress else ""
            k6 = (ingress or label, service, cluster, method.decode("latin-1"), status_class(code), canary)
            detailed[k6] = detailed.get(k6, 0) + n
            d = durations.setdefault((label,), [0.0] * ROW)
            for i in range(SUM + 1):
                d[i] += row[i]
            if cluster:  # an upstream's response (the gateway's own answers have no member cluster)
                u = upstream.setdefault((ingress or label, cluster), [0.0] * ROW)
                for i in range(SUM + 1):
                    u[i] += row[i]
            kb = (ingress or label, cluster)
            recv[kb] = recv.get(kb, 0) + row[RECV]
            sent[kb] = sent.get(kb, 0) + row[SENT]
        c = CounterMetricFamily("fleetgate_http_requests", "HTTP requests by ingress, member cluster and status",
                                labels=["ingress", "cluster", "code"])
        for k, v in contract.items():
            c.add_metric(list(k), int(v))
        yield c
        c = CounterMetricFamily("fleetgate_ingress_requests",
                                "HTTP requests by ingress, service, member cluster, method, status class and "
                                "the canary Ingress that matched (ingress-nginx's requests)",
                                labels=["ingress", "service", "cluster", "method", "status_class", "canary"])
        for k, v in sorted(detailed.items()):
            c.add_metric(list(k), int(v))
        yield c
        yield _histogram(durations, "fleetgate_http_request_duration_seconds",
                         "Time from request head to the end of the response", ["ingress"])
        yield _histogram(upstream, "fleetgate_upstream_response_seconds",
                         "Time from request head to the end of an upstream's response, by member cluster",
                         ["ingress", "cluster"])
        for name, doc, values in (("fleetgate_http_request_bytes", "Request bytes received (head and body)", recv),
                                  ("fleetgate_http_response_bytes", "Response bytes sent (head and body)", sent)):
            c = CounterMetricFamily(name, doc, labels=["ingress", "cluster"])
            for k, v in sorted(values.items()):
                c.add_metric(list(k), int(v))
            yield c
        r = CounterMetricFamily("fleetgate_upstream_rq_retry", "Upstream request retries by member cluster",
                                labels=["cluster"])
        for cluster, n in sorted(self.retries.items()):
            r.add_metric([cluster], n)
        yield r
        f = CounterMetricFamily("fleetgate_failovers", "Requests whose last attempt went to another member "
                                "cluster than their first", labels=["ingress", "from_cluster", "to_cluster"])
        for k, n in sorted(self.failovers.items()):
            f.add_metric(list(k), n)
        yield f
        e = CounterMetricFamily("fleetgate_endpoint_ejections", "Outlier ejections of upstream endpoints",
                                labels=["cluster", "endpoint"] if self.endpoint_labels else ["cluster"])
        for (cluster, key), n in sorted(self.ejections.items()):
            e.add_metric([cluster, key] if self.endpoint_labels else [cluster], n)
        yield e
        active, conns = self.connection_rows()
        yield GaugeMetricFamily("fleetgate_downstream_connections_active",
                                "Client connections open (HTTP/1.1 and HTTP/2)", value=active)
        a = CounterMetricFamily("fleetgate_downstream_connections_accepted", "Client connections accepted",
                                labels=["listener"])
        for listener, n in sorted(self.accepted.items()):
            a.add_metric([listener], n)
        yield a
        u = GaugeMetricFamily("fleetgate_upstream_connections", "Upstream HTTP/1.1 connections open, by state "
                              "(active: carrying a request; idle: pooled)",
                              labels=["cluster", "state", "endpoint"] if self.endpoint_labels else ["cluster", "state"])
        for (cluster, state, key), n in sorted(conns.items()):
            u.add_metric([cluster, state, key] if self.endpoint_labels else [cluster, state], n)
        yield u
        lg = self.log
        le = CounterMetricFamily("fleetgate_access_log_errors", "Access log lines not written (write failed, or "
                                 "dropped behind a stalled writer)")
        le.add_metric([], lg.errors if lg is not None else 0)
        yield le
        g = GaugeMetricFamily("fleetgate_upstream_endpoint_healthy", "1 when the endpoint receives traffic",
                              labels=["cluster", "service", "address"])
        for (cluster, service, address), v in sorted(self.health_rows().items()):
            g.add_metric([cluster, service, address], v)
        yield g
        m = CounterMetricFamily("fleetgate_mirror_requests", "Mirrored request copies by result",
                                labels=["cluster", "result"])
        for (cluster, result), n in sorted(self.mirror_counts.items()):
            m.add_metric([cluster, result], n)
        yield m
        yield GaugeMetricFamily("fleetgate_config_generation",
                                "Version of the fleet snapshot the route table in force was built from",
                                value=self.config_generation)
        yield GaugeMetricFamily("fleetgate_config_last_reload_timestamp_seconds",
                                "Unix time the route table in force was swapped in", value=self.last_reload)
        t = GaugeMetricFamily("fleetgate_tls_certificate_expiry_timestamp_seconds",
                              "notAfter of the leaf certificate each TLS Secret in use holds (Unix time)",
                              labels=["secret"])
        for secret, when in sorted(self.cert_expiry().items()):
            t.add_metric([secret], when)
        yield t
