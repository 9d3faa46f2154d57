"""Gateway metrics: plain dict counters on the request path, exported at scrape time.

prometheus_client's labelled counters take a lock and a label lookup per increment; on a
path that runs 30k times a second that is measurable. Here a request costs one dict
lookup and a bisect; a custom Collector turns them into the CONTRACT's metric families
when /metrics is scraped.
"""
from __future__ import annotations

from bisect import bisect_left
from typing import Callable, Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class GatewayMetrics(Collector):
    def __init__(self) -> None:
        # (ingress, cluster, code) -> [count per bucket..., +Inf bucket, sum of seconds]:
        # one dict lookup per request; request counts are the bucket sums
        self.rows: dict[tuple[str, str, int], list[float]] = {}
        self.retries: dict[str, int] = {}
        self.health_rows: Callable[[], dict[tuple[str, str, str], int]] = dict
        self.mirror_counts: dict[tuple[str, str], int] = {}
        # set by the server on each route-table swap, read at scrape time
        self.config_generation = 0
        self.last_reload = 0.0  # Unix time of the last swap
        self.cert_expiry: Callable[[], Mapping[str, float]] = dict  # Secret -> notAfter

    def observe(self, ingress: str, cluster: str, code: int, seconds: float) -> None:
        key = (ingress, cluster, code)
        h = self.rows.get(key)
        if h is None:
            h = self.rows[key] = [0.0] * (len(BUCKETS) + 2)
        h[bisect_left(BUCKETS, seconds)] += 1
        h[-1] += seconds

    def retry(self, cluster: str) -> None:
        self.retries[cluster] = self.retries.get(cluster, 0) + 1

    def collect(self) -> Iterator:
        c = CounterMetricFamily("fleetgate_http_requests", "HTTP requests by ingress, member cluster and status",
                                labels=["ingress", "cluster", "code"])
        durations: dict[str, list[float]] = {}
        for (ingress, cluster, code), row in sorted(self.rows.items()):
            c.add_metric([ingress, cluster, str(code)], int(sum(row[:-1])))
            d = durations.setdefault(ingress, [0.0] * len(row))
            for i, v in enumerate(row):
                d[i] += v
        yield c
        h = HistogramMetricFamily("fleetgate_http_request_duration_seconds",
                                  "Time from request head to the end of the response", labels=["ingress"])
        for ingress, counts in sorted(durations.items()):
            cumulative: list[tuple[str, float]] = []
            running = 0.0
            for bound, count in zip((*map(str, BUCKETS), "+Inf"), counts[:-1]):
                running += count
                cumulative.append((bound, running))
            h.add_metric([ingress], cumulative, sum_value=counts[-1])
        yield h
        r = CounterMetricFamily("fleetgate_upstream_rq_retry", "Upstream request retries by member cluster",
                                labels=["cluster"])
        for cluster, n in sorted(self.retries.items()):
            r.add_metric([cluster], n)
        yield r
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
