"""`--workers N`: /metrics on worker 0's admin listener is the sum of every worker's.

The process tests start a real `fleetgate gateway --workers 3` (and `fleetgate dns
--workers 2`), send traffic on separate connections (separate sockets for UDP) until
/debug/workers shows that every worker counted some (SO_REUSEPORT spreads them by the
4-tuple), then scrape once and find exactly what the client sent and saw.
"""
from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from collections import Counter
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter
from prometheus_client import Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from fleetgate.workers import decode, encode, merge
from tests.fleetgate.process_support import free_port, served, start, wait_ready, write_fleet

MAX_BATCHES = 40  # x BATCH requests at most, and DEADLINE seconds at most
BATCH = 12
DEADLINE = 45.0


def samples(exposition: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [(s.labels, s.value) for f in text_string_to_metric_families(exposition) for s in f.samples
            if s.name == name]


async def http_get_new_connection(address: str, host: str) -> int:
    """One GET on its own TCP connection (so the kernel picks a worker for it); the status."""
    h, p = address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(h, int(p))
    try:
        writer.write(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n"), 10)
        await asyncio.wait_for(reader.read(), 10)  # to EOF: the response is complete
        return int(head.split()[1])
    finally:
        writer.close()


async def per_worker(s: aiohttp.ClientSession, admin: str, metric: str) -> list[dict[str, Any]]:
    async with s.get(f"http://{admin}/debug/workers", params={"metric": metric}) as r:
        assert r.status == 200
        return await r.json()  # type: ignore[no-any-return]


def children_of(pid: int) -> set[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True).stdout.split()
    return {int(x) for x in out}


@pytest.fixture
async def backend():
    async def handle(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async with served(handle) as port:
        yield port


async def test_gateway_workers_metrics_are_the_sum_of_every_worker(tmp_path, backend):
    fleet = write_fleet(tmp_path / "fleet", backend)
    http, admin = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    proc = start(["gateway", "--fleet", str(fleet), "--http", http, "--admin", admin, "--workers", "3",
                  "--log-level", "warning", "--drain-delay", "0"])
    statuses: Counter[int] = Counter()
    try:
        await wait_ready(admin, proc)
        deadline = time.monotonic() + DEADLINE
        async with aiohttp.ClientSession() as s:
            rows: list[dict[str, Any]] = []
            for _ in range(MAX_BATCHES):
                got = await asyncio.gather(*(http_get_new_connection(http, "web.example.com") for _ in range(BATCH)))
                statuses.update(got)
                rows = await per_worker(s, admin, "fleetgate_http_requests_total")
                if all(r["up"] and r["fleetgate_http_requests_total"] for r in rows) or time.monotonic() > deadline:
                    break
            assert len(rows) == 3 and all(r["fleetgate_http_requests_total"] > 0 for r in rows), rows
            assert {r["pid"] for r in rows} == children_of(proc.pid)
            async with s.get(f"http://{admin}/metrics") as r:
                assert r.status == 200
                exposition = await r.text()
    finally:
        proc.terminate()
        assert await asyncio.to_thread(proc.wait, 15) == 0
    sent = sum(statuses.values())
    assert set(statuses) <= {200, 404}  # 404: a worker that had not loaded its routes yet
    requests = samples(exposition, "fleetgate_http_requests_total")
    assert sum(v for _, v in requests) == sent
    by_code = Counter({int(labels["code"]): 0 for labels, _ in requests})
    for labels, v in requests:
        by_code[int(labels["code"])] += int(v)
    assert +by_code == +statuses
    served_200 = [v for labels, v in requests if labels["ingress"] == "demo/web" and labels["code"] == "200"]
    assert sum(served_200) == statuses[200]
    # a histogram sums bucket by bucket: its count is every request of that ingress
    counts = [v for labels, v in samples(exposition, "fleetgate_http_request_duration_seconds_count")
              if labels["ingress"] == "demo/web"]
    assert sum(counts) == statuses[200]
    # gauges that are a state or a fact take one value, not the sum
    assert [v for _, v in samples(exposition, "fleetgate_build_info")] == [1.0]
    assert [v for _, v in samples(exposition, "fleetgate_draining")] == [0.0]
    assert sorted((labels["worker"], v) for labels, v in samples(exposition, "fleetgate_worker_up")) == [
        ("0", 1.0), ("1", 1.0), ("2", 1.0)]


def registry_with(requests: int, seconds: list[float], generation: int) -> CollectorRegistry:
    reg = CollectorRegistry()
    c = PromCounter("demo_requests", "requests", ["code"], registry=reg)
    c.labels("200").inc(requests)
    h = Histogram("demo_latency_seconds", "latency", buckets=(0.1, 1.0), registry=reg)
    for v in seconds:
        h.observe(v)
    Gauge("demo_connections", "open connections", registry=reg).set(requests)
    Gauge("fleetgate_config_generation", "generation", registry=reg).set(generation)
    return reg


def parsed(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def test_merge_sums_counters_and_buckets_and_takes_the_largest_state_gauge() -> None:
    a = decode(encode(generate_latest(registry_with(3, [0.05, 0.5], 7)), worker=0)).text
    b = decode(encode(generate_latest(registry_with(4, [0.05, 5.0, 0.01], 9)), worker=1)).text
    merged = parsed(merge([a, b]))
    assert merged[("demo_requests_total", (("code", "200"),))] == 7
    assert merged[("demo_latency_seconds_bucket", (("le", "0.1"),))] == 3
    assert merged[("demo_latency_seconds_bucket", (("le", "1.0"),))] == 4
    assert merged[("demo_latency_seconds_bucket", (("le", "+Inf"),))] == 5
    assert merged[("demo_latency_seconds_count", ())] == 5
    assert merged[("demo_latency_seconds_sum", ())] == pytest.approx(5.61)
    assert merged[("demo_connections", ())] == 7  # an amount: summed
    assert merged[("fleetgate_config_generation", ())] == 9  # a version: the largest
    created_a = parsed(a)[("demo_requests_created", (("code", "200"),))]
    assert merged[("demo_requests_created", (("code", "200"),))] == created_a  # the earliest


def test_merge_keeps_a_label_set_only_one_worker_has_and_bucket_order() -> None:
    reg_a, reg_b = CollectorRegistry(), CollectorRegistry()
    Histogram("demo_seconds", "x", ["ingress"], buckets=(0.1, 1.0), registry=reg_a).labels("a").observe(0.5)
    Histogram("demo_seconds", "x", ["ingress"], buckets=(0.1, 1.0), registry=reg_b).labels("b").observe(0.05)
    (family,) = [f for f in text_string_to_metric_families(
        merge([generate_latest(reg_a).decode(), generate_latest(reg_b).decode()])) if f.name == "demo_seconds"]
    buckets = [(s.labels["ingress"], s.labels["le"], s.value) for s in family.samples if s.name.endswith("_bucket")]
    assert buckets == [("a", "0.1", 0), ("a", "1.0", 1), ("a", "+Inf", 1),
                       ("b", "0.1", 1), ("b", "1.0", 1), ("b", "+Inf", 1)]


async def test_a_worker_that_stops_answering_counts_with_its_last_answer(tmp_path) -> None:
    from fleetgate.workers import MetricsPeer, WorkerMetrics, socket_path

    peer_reg = registry_with(5, [], 1)
    own = generate_latest(registry_with(2, [], 1))
    peer = await MetricsPeer(socket_path(str(tmp_path), 1), 1, lambda: generate_latest(peer_reg)).start()
    merged = WorkerMetrics(str(tmp_path), 2, timeout=2.0)

    def total(text: bytes) -> float:
        return sum(v for (name, _), v in parsed(text.decode()).items() if name == "demo_requests_total")

    def up(text: bytes) -> list[float]:
        return [v for (name, _), v in sorted(parsed(text.decode()).items()) if name == "fleetgate_worker_up"]
    first = await merged.aggregate(own)
    assert total(first) == 7 and up(first) == [1, 1]
    await peer.close()
    later = await merged.aggregate(own)
    assert total(later) == 7 and up(later) == [1, 0]  # never backwards (Prometheus would see a reset)
    rows = await merged.debug(own, "demo_requests_total")
    assert [(r["worker"], r["up"], r["demo_requests_total"]) for r in rows] == [(0, True, 2), (1, False, 5)]


def dns_free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            with socket.socket() as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return int(port)
    raise AssertionError("no free port")


async def test_dns_workers_metrics_are_the_sum_of_every_worker() -> None:
    import dns.asyncquery
    import dns.message
    import dns.rcode

    port, admin = dns_free_port(), f"127.0.0.1:{free_port()}"
    proc = start(["dns", "--workers", "2", "--cluster", "zone-b", "--listen", f"127.0.0.1:{port}",
                  "--admin", admin, "--log-level", "warning", "--drain-delay", "0"])
    udp_answers = tcp_answers = 0
    try:
        await wait_ready(admin, proc)
        deadline = time.monotonic() + DEADLINE
        async with aiohttp.ClientSession() as s:
            rows: list[dict[str, Any]] = []
            for _ in range(MAX_BATCHES):
                # each query from its own socket (dnspython opens one per query): its own 4-tuple
                got = await asyncio.gather(*(dns.asyncquery.udp(
                    dns.message.make_query("echo.demo.svc.clusterset.local", "A"), "127.0.0.1", port=port,
                    timeout=5) for _ in range(BATCH)))
                udp_answers += sum(1 for r in got if r.rcode() == dns.rcode.NOERROR and r.answer)
                tcp = await dns.asyncquery.tcp(dns.message.make_query("echo.demo.svc.clusterset.local", "A"),
                                               "127.0.0.1", port=port, timeout=5)
                tcp_answers += 1 if tcp.rcode() == dns.rcode.NOERROR and tcp.answer else 0
                rows = await per_worker(s, admin, "fleetgate_dns_queries_total")
                if all(r["up"] and r["fleetgate_dns_queries_total"] for r in rows) or time.monotonic() > deadline:
                    break
            assert len(rows) == 2 and all(r["fleetgate_dns_queries_total"] > 0 for r in rows), rows
            assert {r["pid"] for r in rows} == children_of(proc.pid)
            async with s.get(f"http://{admin}/metrics") as r:
                exposition = await r.text()
    finally:
        proc.terminate()
        assert await asyncio.to_thread(proc.wait, 15) == 0
    queries = {(labels["qtype"], labels["rcode"], labels["transport"]): v
               for labels, v in samples(exposition, "fleetgate_dns_queries_total")}
    assert queries == {("A", "NOERROR", "udp"): udp_answers, ("A", "NOERROR", "tcp"): tcp_answers}
    counts = {labels["transport"]: v for labels, v in samples(exposition, "fleetgate_dns_answer_seconds_count")}
    assert counts == {"udp": udp_answers, "tcp": tcp_answers}
