"""`fleetgate demo`: echo backends for every endpoint of the demo fleet, then `up`.

The backends are read from the fleet's own EndpointSlices, so the demo shows exactly what
the files say: each echo server answers as the pod (cluster, address) it stands in for.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
from typing import Any

from aiohttp import web

from .config import load_fleet_config
from .fleet import load_fleet_once

log = logging.getLogger("fleetgate.demo")


def demo_pods(fleet_path: str) -> list[tuple[str, str, str, int]]:
    """(cluster, service, address, port) of every ready endpoint in the fleet's files."""
    snapshot = load_fleet_once(load_fleet_config(fleet_path))
    pods = set()
    for member in snapshot.members:
        for sl in member.objects.endpoint_slices.values():
            for port in sl.ports:
                for ep in sl.endpoints:
                    for addr in ep.addresses:
                        if port.port and sl.address_type == "IPv4":
                            pods.add((member.name, sl.service_name or "?", addr, port.port))
    return sorted(pods)


def echo_app(cluster: str, service: str, address: str, port: int) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response({
            "cluster": cluster, "service": service, "pod": f"{address}:{port}",
            "method": request.method, "path": request.path_qs,
            "headers": dict(request.headers), "body_bytes": len(body),
        }, dumps=lambda o: json.dumps(o, indent=2) + "\n")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


async def start_echo_backends(pods: list[tuple[str, str, str, int]]) -> list[web.AppRunner]:
    runners = []
    for cluster, service, address, port in pods:
        runner = web.AppRunner(echo_app(cluster, service, address, port), access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, address, port).start()
        except OSError as exc:
            log.warning("demo backend %s:%s (%s/%s) not started: %s", address, port, cluster, service, exc)
            await runner.cleanup()
            continue
        runners.append(runner)
    return runners


def print_try_lines(bound: dict[str, Any]) -> None:
    http = bound.get("http")
    admin = bound.get("admin")
    dns = bound.get("dns")
    lines = ["", "fleetgate demo is running. Try:"]
    if http:
        base = f"http://{http[0]}:{http[1]}"
        lines += [
            f"  curl -s -H 'Host: echo.demo.local' {base}/hello        # balanced over 3 pods in 2 clusters",
            f"  curl -si -H 'Host: echo.demo.local' {base}/ | grep x-fleetgate-cluster",
            f"  curl -s -H 'Host: api.demo.local' {base}/v1/users      # Prefix /v1",
            f"  curl -si -H 'Host: nope.demo.local' {base}/            # 404 no-route",
        ]
    if dns:
        lines.append(f"  dig @{dns[0]} -p {dns[1]} echo.demo.svc.clusterset.local")
        lines.append(f"  dig @{dns[0]} -p {dns[1]} db-0.db.demo.svc.clusterset.local")
    if admin:
        base = f"http://{admin[0]}:{admin[1]}"
        lines += [f"  curl -s {base}/debug/routes", f"  curl -s '{base}/debug/imports?cluster=zone-b'",
                  f"  curl -s {base}/metrics | grep fleetgate_http"]
    lines.append("Edit the files under the fleet folder and the gateway follows within a second. Ctrl-C stops.")
    print("\n".join(lines), flush=True)


async def run_demo(args: argparse.Namespace, stop: asyncio.Event) -> None:
    from .cli import run_components

    runners = await start_echo_backends(demo_pods(args.fleet))
    print(f"started {len(runners)} echo backends standing in for the member clusters' pods", flush=True)
    try:
        await run_components(args, stop, gateway=True, dns=True, controller=True, on_ready=print_try_lines)
    finally:
        for runner in runners:
            await runner.cleanup()
