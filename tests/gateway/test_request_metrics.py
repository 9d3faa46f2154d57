"""The operator's request metrics (issue 15 item 3), scraped from a real admin /metrics
after real traffic through a real gateway: requests by ingress, service, member cluster,
method, status class and canary; bytes; upstream response time; connections; failovers
and ejections; per-endpoint series only with --metrics-endpoint-labels."""
from __future__ import annotations

import re
from typing import Any

import aiohttp
import pytest

from fleet.admin import AdminServer
from fleet.config import load_fleet_config
from fleet.fleet import Fleet
from gateway.server import Gateway, GatewayOptions
from gateway_support import endpoint_slice, ingress, rule, served, service

NGINX = "nginx.ingress.kubernetes.io/"
SAMPLE = re.compile(r'^(\w+)(?:\{([^}]*)\})? (\S+)$', re.M)


@pytest.fixture
async def metered():
    """start(fd, **options) -> (gateway url, scrape()): a gateway with its metrics on a real admin listener."""
    running: list[tuple[Gateway, Fleet, AdminServer]] = []

    async def start(fd, **options: Any):
        fleet = Fleet.from_config(load_fleet_config(fd.fleet_yaml), poll_interval=0.05)
        await fleet.start()
        gw = Gateway(GatewayOptions(http=("127.0.0.1", 0), **options))
        gw.follow(fleet)
        (host, port), *_ = await gw.start()
        admin = AdminServer()
        admin.add_collector(gw.ctx.metrics)
        await admin.start("127.0.0.1", 0)
        running.append((gw, fleet, admin))

        async def scrape() -> list[tuple[str, dict[str, str], float]]:
            async with aiohttp.ClientSession() as s:
                async with s.get("http://%s:%d/metrics" % admin.address) as r:
                    assert r.status == 200
                    text = await r.text()
            return [(name, dict(re.findall(r'(\w+)="([^"]*)"', labels or "")), float(v))
                    for name, labels, v in SAMPLE.findall(text)]

        return f"http://{host}:{port}", scrape

    yield start
    for gw, fleet, admin in running:
        await admin.close()
        await gw.close()
        await fleet.stop()


def value(samples, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    return sum(v for n, lab, v in samples if n == name and all(lab.get(k) == x for k, x in labels.items()))


def label_sets(samples, name: str) -> list[dict[str, str]]:
    return [lab for n, lab, _ in samples if n == name]


async def test_requests_by_ingress_service_cluster_method_class_and_canary(fleet_dir, echo_backends, metered):
    fd = fleet_dir("zone-a")
    main = await echo_backends("main", host="127.0.8.31")
    can = await echo_backends("canary", host="127.0.8.32")
    fd.member("zone-a", served("main", main) + served("canary", can))
    fd.hub([ingress("main", [rule("web.example.com", ("/", "Prefix", "main"))]),
            ingress("canary", [rule("web.example.com", ("/", "Prefix", "canary"))],
                    annotations={f"{NGINX}canary": "true", f"{NGINX}canary-by-header": "x-canary"})])
    url, scrape = await metered(fd)
    async with aiohttp.ClientSession() as s:
        for _ in range(3):
            async with s.get(url + "/", headers={"Host": "web.example.com"}) as r:
                assert r.status == 200
                await r.read()
        async with s.post(url + "/", data=b"x" * 1000, headers={"Host": "web.example.com"}) as r:
            assert r.status == 200
        async with s.get(url + "/", headers={"Host": "web.example.com", "x-canary": "always"}) as r:
            assert r.status == 200
        async with s.request("FROB", url + "/", headers={"Host": "web.example.com"}) as r:
            assert r.status == 400  # (the aiohttp backend's answer, relayed)
        async with s.get(url + "/", headers={"Host": "nope.example"}) as r:
            assert r.status == 404
    m = await scrape()
    fam = "fleetgate_ingress_requests_total"
    assert value(m, fam, ingress="demo/main", service="demo/main:80", cluster="zone-a", method="GET",
                 status_class="2xx", canary="") == 3
    assert value(m, fam, ingress="demo/main", method="POST", status_class="2xx") == 1
    assert value(m, fam, ingress="demo/main", service="demo/canary:80", method="GET",
                 canary="demo/canary") == 1
    # FROB: counted as OTHER, no series per invented method
    assert value(m, fam, method="OTHER", status_class="4xx", cluster="zone-a") == 1
    assert value(m, fam, ingress="", service="", cluster="", status_class="4xx") == 1
    assert {frozenset(lab) for lab in label_sets(m, fam)} == {
        frozenset(("ingress", "service", "cluster", "method", "status_class", "canary"))}
    # the contract's family keeps its labels and its counts
    contract = "fleetgate_http_requests_total"
    assert {frozenset(lab) for lab in label_sets(m, contract)} == {frozenset(("ingress", "cluster", "code"))}
    assert value(m, contract, ingress="demo/main", cluster="zone-a", code="200") == 4
    assert value(m, contract, ingress="demo/canary", code="200") == 1
    assert value(m, contract, ingress="", code="404") == 1
    # bytes: the POST's body is in the request bytes; responses are the echo's JSON and more
    assert value(m, "fleetgate_http_request_bytes_total", ingress="demo/main", cluster="zone-a") > 1000
    assert value(m, "fleetgate_http_response_bytes_total", ingress="demo/main", cluster="zone-a") > 5 * 100
    assert value(m, "fleetgate_http_response_bytes_total", ingress="", cluster="") > 0  # the 404's
    # upstream response time: the upstream's answers only, by member cluster
    assert value(m, "fleetgate_upstream_response_seconds_count", ingress="demo/main", cluster="zone-a") == 6
    assert value(m, "fleetgate_upstream_response_seconds_count", cluster="") == 0
    # latency of a generated 404 is measured, not 0 (monotonic clock at both ends)
    assert value(m, "fleetgate_http_request_duration_seconds_count", ingress="") == 1
    assert 0 < value(m, "fleetgate_http_request_duration_seconds_sum", ingress="") < 1


async def test_connections_accepted_active_and_upstream_idle(fleet_dir, echo_backends, metered):
    fd = fleet_dir("zone-a")
    web = await echo_backends("web", host="127.0.8.33")
    fd.member("zone-a", served("web", web))
    fd.hub([ingress("web", [rule("web.example.com", ("/", "Prefix", "web"))])])
    url, scrape = await metered(fd)
    sessions = [aiohttp.ClientSession() for _ in range(3)]
    try:
        for s in sessions:  # three kept-alive client connections, idle once answered
            async with s.get(url + "/", headers={"Host": "web.example.com"}) as r:
                assert r.status == 200
                await r.read()
        m = await scrape()
    finally:
        for s in sessions:
            await s.close()
    assert value(m, "fleetgate_downstream_connections_active") == 3
    assert value(m, "fleetgate_downstream_connections_accepted_total", listener="http") == 3
    assert value(m, "fleetgate_upstream_connections", cluster="zone-a", state="idle") >= 1
    assert value(m, "fleetgate_upstream_connections", state="active") == 0
    assert all("endpoint" not in lab for lab in label_sets(m, "fleetgate_upstream_connections"))


@pytest.mark.parametrize("endpoint_labels", [False, True])
async def test_a_request_moved_to_another_member_cluster_is_a_failover_and_its_endpoint_an_ejection(
        fleet_dir, echo_backends, metered, endpoint_labels):
    fd = fleet_dir("zone-a", "zone-b")
    good = await echo_backends("good", host="127.0.9.35")
    fd.member("zone-a", [service("web"), endpoint_slice("web", [("127.0.8.35", 9)])])  # nothing listens
    fd.member("zone-b", [service("web"), endpoint_slice("web", [(good.host, good.port)], suffix="2")])
    fd.hub([ingress("web", [rule("web.example.com", ("/", "Prefix", "web"))])])
    url, scrape = await metered(fd, metrics_endpoint_labels=endpoint_labels)
    async with aiohttp.ClientSession() as s:
        for _ in range(6):  # round robin starts one of the first two in zone-a
            async with s.get(url + "/", headers={"Host": "web.example.com"}) as r:
                assert r.status == 200
    m = await scrape()
    assert value(m, "fleetgate_failovers_total", ingress="demo/web", from_cluster="zone-a", to_cluster="zone-b") == 1
    assert value(m, "fleetgate_endpoint_ejections_total", cluster="zone-a") == 1
    ejections = label_sets(m, "fleetgate_endpoint_ejections_total")
    if endpoint_labels:
        assert ejections == [{"cluster": "zone-a", "endpoint": "127.0.8.35:9"}]
    else:
        assert ejections == [{"cluster": "zone-a"}]
    # the contract's per-endpoint gauge is there either way (docs/metrics.md: how to drop it)
    assert value(m, "fleetgate_upstream_endpoint_healthy", address="127.0.8.35:9") == 0
