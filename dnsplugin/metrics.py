"""DNS metrics without a cost on the hot path: plain lists and dicts, exported when scraped.

Per transport (label `transport`: udp, tcp), one `Counts`:

- `queries`: (qtype, rcode) -> answers counted by the resolver (and the forwarder);
- `fast`: qtype -> NOERROR answers sent by the fast path (learned answers, qtypes below
  256): one slot of a list bumped per hit, no key built;
- `latency`: one histogram row (codec.types.LATENCY_BOUNDS) of answer latency, from the
  query read to its reply handed to the kernel. For UDP, the fast path's pump keeps its
  own row (codec.pumped_latency: the compiled one times each recvmmsg batch once, two
  clock reads per batch of up to 64, and observes every reply of the batch with the
  batch's time, an upper bound for each, in C), added in when scraped; this row has the
  rest: forwarded queries (from the read to the upstream's reply sent) and the
  pure-Python path on uvloop. TCP times each read's queries together the same way. Time
  spent queued in the socket buffer before the read is not seen.

A Collector merges them into `fleetgate_dns_queries_total{qtype,rcode,transport}` and
`fleetgate_dns_answer_seconds{transport}` at scrape time. One of each per process, like the
default registry they are exported through.
"""
from __future__ import annotations

from bisect import bisect_left
from typing import Callable, Iterator

from dnslib import QTYPE, RCODE
from prometheus_client.core import REGISTRY, CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from .codec import pumped_latency
from .codec.types import LATENCY_BOUNDS

LatencyRow = list[float]


def latency_row() -> LatencyRow:
    return [0.0] * (len(LATENCY_BOUNDS) + 2)


def observe(row: LatencyRow, seconds: float, answers: int = 1) -> None:
    """`answers` replies that each took (at most) `seconds`."""
    row[bisect_left(LATENCY_BOUNDS, seconds)] += answers
    row[-1] += seconds * answers


class Counts:
    """One transport's counters (see the module docstring)."""

    __slots__ = ("transport", "queries", "fast", "latency", "pumped")

    def __init__(self, transport: str, pumped: Callable[[], LatencyRow] | None = None) -> None:
        self.transport = transport
        self.queries: dict[tuple[int, int], int] = {}
        self.fast: list[int] = [0] * 256
        self.latency: LatencyRow = latency_row()
        self.pumped = pumped  # a row kept elsewhere (the UDP pump's), added when scraped

    def latency_now(self) -> LatencyRow:
        row = list(self.latency)
        if self.pumped is not None:
            row = [a + b for a, b in zip(row, self.pumped())]
        return row


UDP = Counts("udp", pumped_latency)
TCP = Counts("tcp")
# the names the listeners used before the split by transport: UDP's
QUERY_COUNTS = UDP.queries
FAST_NOERROR = UDP.fast

_RCODE_NAMES = {16: "BADVERS"}


def count(stats: dict[tuple[int, int], int], qtype: int, rcode: int) -> None:
    k = (qtype, rcode)
    stats[k] = stats.get(k, 0) + 1


def qtype_name(qtype: int) -> str:
    return str(QTYPE.get(qtype, f"TYPE{qtype}"))


def rcode_name(rcode: int) -> str:
    return _RCODE_NAMES.get(rcode) or str(RCODE.get(rcode, f"RCODE{rcode}"))


QUERIES_HELP = "DNS queries answered, by qtype, rcode and transport"
LATENCY_HELP = ("Seconds from reading a DNS query to handing its answer to the kernel, by transport "
                "(a batch's answers share its time)")


class DnsCollector(Collector):
    def __init__(self, transports: tuple[Counts, ...]) -> None:
        self.transports = transports

    def collect(self) -> Iterator[CounterMetricFamily | HistogramMetricFamily]:
        family = CounterMetricFamily("fleetgate_dns_queries", QUERIES_HELP, labels=["qtype", "rcode", "transport"])
        latency = HistogramMetricFamily("fleetgate_dns_answer_seconds", LATENCY_HELP, labels=["transport"])
        for t in self.transports:
            merged: dict[tuple[str, str], int] = {}
            fast = [((qtype, 0), value) for qtype, value in enumerate(t.fast) if value]
            for (qtype, rcode), value in list(t.queries.items()) + fast:
                key = (qtype_name(qtype), rcode_name(rcode))
                merged[key] = merged.get(key, 0) + value
            for (qtype_label, rcode_label), value in sorted(merged.items()):
                family.add_metric([qtype_label, rcode_label, t.transport], value)
            row = t.latency_now()  # one copy: buckets and sum of the same moment
            buckets, running = [], 0.0
            for bound, n in zip((*map(str, LATENCY_BOUNDS), "+Inf"), row[:-1]):
                running += n
                buckets.append((bound, running))
            latency.add_metric([t.transport], buckets, sum_value=row[-1])
        yield family
        yield latency

    def describe(self) -> Iterator[CounterMetricFamily | HistogramMetricFamily]:
        yield CounterMetricFamily("fleetgate_dns_queries", QUERIES_HELP, labels=["qtype", "rcode", "transport"])
        yield HistogramMetricFamily("fleetgate_dns_answer_seconds", LATENCY_HELP, labels=["transport"])


_registered = False


def register(registry=REGISTRY) -> None:  # type: ignore[no-untyped-def]
    """Export the counts through `registry` (idempotent for the default one)."""
    global _registered
    if registry is REGISTRY:
        if _registered:
            return
        _registered = True
    registry.register(DnsCollector((UDP, TCP)))


register()
