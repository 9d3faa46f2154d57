"""The fleet most DNS tests serve: two member clusters, ClusterSetIP, dual-stack and headless."""
from __future__ import annotations

from fleet.snapshot import FleetSnapshot
from tests.controller.mcs_support import cluster, endpoint, endpoint_slice, export, fleet, namespace, service

RANGE = "242.0.0.0/16,fd00:242::/64"


def two_cluster_fleet(*, version: int = 1) -> FleetSnapshot:
    a = [namespace("demo"),
         service("web", ports=(("http", 80, "TCP"), ("grpc", 9000, "TCP"), ("dns", 53, "UDP"))), export("web"),
         service("dual", ipFamilies=["IPv4", "IPv6"]), export("dual"),
         service("db", headless=True, ports=(("mysql", 3306, "TCP"),)), export("db"),
         endpoint_slice("db", [endpoint("10.1.0.1", hostname="mysql-0"), endpoint("10.1.0.2"),
                               endpoint("10.1.0.3", hostname="mysql-9", ready=False)],
                        ports=(("mysql", 3306, "TCP"),)),
         service("cache", headless=True, ports=(("redis", 6379, "TCP"),)), export("cache"),
         endpoint_slice("cache", [endpoint("10.1.1.1", hostname="cache-0", ready=False)],
                        ports=(("redis", 6379, "TCP"),))]
    b = [namespace("demo"),
         service("db", headless=True, ports=(("mysql", 3306, "TCP"),)), export("db"),
         endpoint_slice("db", [endpoint("10.2.0.1", hostname="mysql-0")], ports=(("mysql", 3306, "TCP"),)),
         endpoint_slice("db", [endpoint("fd00:b::1", hostname="mysql-1")], family="IPv6",
                        ports=(("mysql", 3306, "TCP"),))]
    return fleet({"zone-a": cluster(*a), "zone-b": cluster(*b)}, version=version, ip_range=RANGE)


def big_headless_fleet(endpoints: int = 120, *, octet: int = 1, version: int = 1) -> FleetSnapshot:
    """A headless service whose A answer (16 bytes a record) outgrows UDP."""
    eps = [endpoint(f"10.{octet}.{i // 250}.{i % 250 + 1}") for i in range(endpoints)]
    objs = [namespace("demo"), service("big", headless=True, ports=(("http", 80, "TCP"),)), export("big"),
            endpoint_slice("big", eps, ports=(("http", 80, "TCP"),))]
    return fleet({"zone-a": cluster(*objs)}, version=version)
