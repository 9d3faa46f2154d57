"""ClusterIP allocation in the test API server: distinct, reused after a delete, bounded by
the range, and not a scan of every Service per create (a 10,000-Service bench seeds fast)."""
from __future__ import annotations

import pytest

from kubefake import KubeAPIServer
from kubefake.errors import ApiError


def svc(name: str, **spec: object) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "demo"},
            "spec": {"ports": [{"port": 80}], **spec}}


def test_allocation_is_distinct_reuses_freed_addresses_and_stops_at_a_full_range() -> None:
    server = KubeAPIServer(service_cidr="10.96.0.0/29")  # six hosts
    ips = [server.create(svc(f"s{i}"))["spec"]["clusterIP"] for i in range(6)]
    assert len(set(ips)) == 6 and all(ip.startswith("10.96.0.") for ip in ips)
    with pytest.raises(ApiError):
        server.create(svc("full"))
    server.delete("Service", "s2", "demo")
    assert server.create(svc("again"))["spec"]["clusterIP"] == ips[2]
    with pytest.raises(ApiError):
        server.create(svc("taken", clusterIP=ips[0]))


def test_ten_thousand_services_get_ten_thousand_addresses() -> None:
    server = KubeAPIServer()
    ips = {server.create(svc(f"s{i}"))["spec"]["clusterIP"] for i in range(10_000)}
    assert len(ips) == 10_000
