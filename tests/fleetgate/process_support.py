"""Helpers for tests that run the real `fleetgate` command: free ports, a one-Ingress fleet
written as files, a started process, readiness, and aiohttp backends on 127.0.7.1."""
from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable

import aiohttp
from aiohttp import web

FLEETGATE = [sys.executable, "-m", "fleetgate.cli"]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


async def wait_ready(admin: str, proc: subprocess.Popen, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as s:
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "exited"
            try:
                async with s.get(f"http://{admin}/readyz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError("gateway not ready in time")


def write_fleet(root: Path, backend_port: int) -> Path:
    (root / "hub").mkdir(parents=True)
    (root / "a").mkdir()
    (root / "fleet.yaml").write_text("hub: {manifests: hub/}\nclusters:\n  - name: a\n    manifests: a/\n")
    (root / "hub" / "ing.yaml").write_text("""
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: demo}
spec:
  ingressClassName: fleetgate
  rules:
  - host: web.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
""")
    (root / "a" / "web.yaml").write_text(f"""
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: demo}}
spec: {{ports: [{{name: http, port: 80}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: web-1, namespace: demo, labels: {{kubernetes.io/service-name: web}}}}
addressType: IPv4
ports: [{{name: http, port: {backend_port}}}]
endpoints: [{{addresses: ["127.0.7.1"]}}]
""")
    return root / "fleet.yaml"


def start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(FLEETGATE + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=Path(__file__).resolve().parents[2])


def _write_secret(fleet: Path, cert: bytes, key: bytes) -> Path:
    """The tls Secret of write_fleet's Ingress (see the test below); returns its file."""
    import base64
    secret = fleet.parent / "hub" / "tls.yaml"
    secret.write_text("apiVersion: v1\nkind: Secret\ntype: kubernetes.io/tls\n"
                      "metadata: {name: web-tls, namespace: demo}\n"
                      f"data: {{tls.crt: {base64.b64encode(cert).decode()}, tls.key: {base64.b64encode(key).decode()}}}\n")
    return secret


@asynccontextmanager
async def served(handle: Callable[[web.Request], Awaitable[web.StreamResponse]],
                 host: str = "127.0.7.1") -> AsyncIterator[int]:
    """An aiohttp backend answering every GET path with `handle`; yields its port."""
    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    try:
        yield site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    finally:
        await runner.cleanup()
