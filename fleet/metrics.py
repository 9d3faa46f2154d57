"""Prometheus metrics of the fleet plumbing, defined once per process (default registry)."""
from __future__ import annotations

from prometheus_client import Counter

CONFIG_RELOADS = Counter(
    "fleetgate_config_reload_total",
    "Manifest file (re)loads by source and result (error: the file's last good objects stay).",
    ["source", "result"],
)
