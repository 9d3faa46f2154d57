"""Prometheus metrics of the fleet plumbing, defined once per process (default registry)."""
from __future__ import annotations

from prometheus_client import Counter, Gauge

CONFIG_RELOADS = Counter(
    "fleetgate_config_reload_total",
    "Manifest file (re)loads by source and result (error: the file's last good objects stay).",
    ["source", "result"],
)

SOURCE_UP = Gauge(
    "fleetgate_source_up",
    "1 while a live source's API server answers, 0 while it does not (its last known objects stay).",
    ["source"],
)
