"""Fixtures for the fleet plumbing tests: atomic file writes, bounded waits, small fleets.

Helpers are handed out as fixtures (factory style) so the tests need no import path
tricks whatever pytest's import mode.
"""
from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Awaitable, Callable

import pytest

from tests.live_support import api_servers, kube  # noqa: F401  (fixtures: test API servers, clients)

Write = Callable[[Path, str], Path]
WaitFor = Callable[..., Awaitable[None]]


def _write(path: Path, text: str) -> Path:
    """Write atomically (hidden temp file + rename), as editors and kubectl cp do, so a
    poll never sees half a file; the scanner ignores hidden names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp"
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


async def _wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll a condition with a deadline (for states no event announces)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached within %.1fs" % timeout)
        await asyncio.sleep(0.01)


def service_yaml(name: str, namespace: str = "demo", port: int = 80) -> str:
    return (f"apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: {namespace}\n"
            f"spec:\n  ports:\n    - name: http\n      port: {port}\n")


@pytest.fixture
def write() -> Write:
    return _write


@pytest.fixture
def wait_for() -> WaitFor:
    return _wait_for


@pytest.fixture
def service() -> Callable[..., str]:
    return service_yaml


@pytest.fixture
def two_clusters(tmp_path: Path) -> Path:
    """A small file fleet: hub with one Ingress, zone-a and zone-b with one Service each."""
    _write(tmp_path / "hub" / "ingress.yaml", """\
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: demo}
spec:
  rules:
    - host: web.example
      http:
        paths:
          - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
""")
    _write(tmp_path / "a" / "web.yaml", service_yaml("web"))
    _write(tmp_path / "b" / "web.yaml", service_yaml("web"))
    return _write(tmp_path / "fleet.yaml", """\
hub: {manifests: hub}
clusters:
  - {name: zone-a, zone: az-1, manifests: a}
  - {name: zone-b, zone: az-2, manifests: b}
""")
