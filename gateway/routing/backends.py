"""Resolved backends: a Service port's ready endpoints in every member cluster that has it.

What build.py resolves a policy's service references to, and what the data plane picks
endpoints from. Plain frozen data; imports nothing else of the gateway.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class UpstreamEndpoint:
    """One ready address:port of a backend, in one member cluster."""
    address: str
    port: int
    cluster: str
    zone: str | None = None
    key: str = ""  # "address:port", the identity shared with pools and health state


def make_endpoint(address: str, port: int, cluster: str, zone: str | None = None) -> UpstreamEndpoint:
    key = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    return UpstreamEndpoint(address, port, cluster, zone, key)


@dataclass(frozen=True, slots=True)
class ClusterShare:
    """A backend's ready endpoints in one member cluster."""
    cluster: str
    zone: str | None
    endpoints: tuple[UpstreamEndpoint, ...]


@dataclass(frozen=True, slots=True)
class Backend:
    """A Service port resolved in every member cluster that has it.

    `endpoints` is every ready endpoint of every cluster; round robin over it balances in
    proportion to replica count across clusters, which is the default policy.
    """
    key: str  # "namespace/service:port"
    namespace: str
    service: str
    port: str
    clusters: tuple[ClusterShare, ...]
    endpoints: tuple[UpstreamEndpoint, ...]
