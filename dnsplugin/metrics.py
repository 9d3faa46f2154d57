"""`fleetgate_dns_queries_total{qtype,rcode}` without a cost on the hot path.

The resolver counts into a plain dict keyed by (qtype, rcode) numbers, and the UDP fast
path (NOERROR answers learned by the resolver, qtypes below 256) bumps one slot of a list
indexed by qtype; a custom collector merges both into the Prometheus counter when scraped.
One of each per process, like the default registry they are exported through.
"""
from __future__ import annotations

from typing import Iterator

from dnslib import QTYPE, RCODE
from prometheus_client.core import REGISTRY, CounterMetricFamily
from prometheus_client.registry import Collector

QUERY_COUNTS: dict[tuple[int, int], int] = {}
FAST_NOERROR: list[int] = [0] * 256  # qtype -> NOERROR answers sent by the UDP fast path

_RCODE_NAMES = {16: "BADVERS"}


def count(stats: dict[tuple[int, int], int], qtype: int, rcode: int) -> None:
    k = (qtype, rcode)
    stats[k] = stats.get(k, 0) + 1


def qtype_name(qtype: int) -> str:
    return str(QTYPE.get(qtype, f"TYPE{qtype}"))


def rcode_name(rcode: int) -> str:
    return _RCODE_NAMES.get(rcode) or str(RCODE.get(rcode, f"RCODE{rcode}"))


class DnsQueryCollector(Collector):
    def __init__(self, counts: dict[tuple[int, int], int], fast: list[int] | None = None) -> None:
        self.counts = counts
        self.fast = fast if fast is not None else []

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily("fleetgate_dns_queries", "DNS queries answered, by qtype and rcode",
                                     labels=["qtype", "rcode"])
        merged: dict[tuple[str, str], int] = {}
        fast = [((qtype, 0), value) for qtype, value in enumerate(self.fast) if value]
        for (qtype, rcode), value in list(self.counts.items()) + fast:
            key = (qtype_name(qtype), rcode_name(rcode))
            merged[key] = merged.get(key, 0) + value
        for (qtype_label, rcode_label), value in sorted(merged.items()):
            family.add_metric([qtype_label, rcode_label], value)
        yield family

    def describe(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily("fleetgate_dns_queries", "DNS queries answered, by qtype and rcode",
                                  labels=["qtype", "rcode"])


_registered = False


def register(registry=REGISTRY) -> None:  # type: ignore[no-untyped-def]
    """Export the counts through `registry` (idempotent for the default one)."""
    global _registered
    if registry is REGISTRY:
        if _registered:
            return
        _registered = True
    registry.register(DnsQueryCollector(QUERY_COUNTS, FAST_NOERROR))


register()
