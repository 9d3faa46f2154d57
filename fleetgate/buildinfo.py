"""What this build runs: the version and, per hot path, the compiled module or its twin.

The composition root is the one place that knows every component, so it merges their
`build_info()` for `fleetgate --version` and exports it once as `fleetgate_build_info`
(a constant 1 whose labels carry the facts, the Prometheus convention for build facts).
"""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from prometheus_client import Gauge

import dnsplugin
import gateway


def fleetgate_version() -> str:
    try:
        return version("fleetgate")
    except PackageNotFoundError:  # running from a tree that was never installed
        return "unknown (not installed)"


def build_info() -> dict[str, str]:
    """{"version": ..., "http1_codec": "compiled" | "pure", "dns_fastpath": ...}."""
    return {"version": fleetgate_version(), **gateway.build_info(), **dnsplugin.build_info()}


_published: Gauge | None = None


def publish_metric() -> None:
    """Export fleetgate_build_info{version, http1_codec, dns_fastpath} = 1 (once per process)."""
    global _published
    if _published is not None:
        return
    info = build_info()
    _published = Gauge("fleetgate_build_info", "This build's version and which implementation "
                       "(compiled or pure) each hot-path codec runs.", list(info))
    _published.labels(**info).set(1)
